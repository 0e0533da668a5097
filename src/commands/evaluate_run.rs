//! `llmbench evaluate` (the pipeline, seed 004's "compress then evaluate"): every model of
//! `--model A,B` (or a `--models` list), each in each weight format (converted in memory as
//! `quantize` does), generates for every prompt of the data through the shared harness
//! (warm-up, repetitions, per-run latency and memory). The first repetition's outputs are
//! scored by `evaluate score`'s scorer: against the data's references where it has them,
//! against the baseline's outputs (the first model in f32: fidelity), and by the metrics that
//! need no reference. `--text` adds each variant's perplexity of a text. Cases go through the
//! one sink as they finish, so `--resume`, `plot`, `diff` and the exporters work as for any
//! command.

use super::evaluate_inputs::{entries, metrics, read_data, validate, Data};
use super::harness::file_sha256;
use super::evaluate_score::{self, ScoreOptions};
use super::harness::{self, CaseSpec};
use super::{model_list, output, Outcome};
use crate::cli::evaluate::{EvaluateTask, PerplexityMethod, PipelineArgs, TextMetric};
use crate::decode::sampling::SamplingConfig;
use crate::decode::Standard;
use crate::engine::device::set_cpu_threads;
use crate::engine::Engine;
use crate::kv::KvKind;
use crate::measure::system::Provenance;
use crate::models::sentence_encoder::SentenceEncoder;
use crate::models::source::{self, SourceOptions};
use crate::models::LoadedModel;
use crate::quant::format::WeightFormat;
use crate::results::schema::{
    CaseParams, CaseResult, CommandName, CommandSettings, EvaluateParams, EvaluateQuality,
    EvaluateSettings, Quality, Report, RunRecord, Settings, TextScores,
};
use anyhow::Result;
use candle_core::{DType, Device};
use sha2::Digest;

/// Largest default perplexity window (as `evaluate perplexity`'s).
const DEFAULT_MAX_WINDOW: usize = 1024;

pub fn run(args: &PipelineArgs) -> Result<Outcome> {
    validate(args)?;
    let truthfulqa = args.task == EvaluateTask::Truthfulqa;
    let questions = if truthfulqa {
        super::truthfulqa::load_questions(&args.truthfulqa, "--truthfulqa", args.limit)?
    } else {
        vec![]
    };
    // Nothing is generated for the perplexity and TruthfulQA tasks: no prompts.
    let data = if args.task == EvaluateTask::Generate {
        read_data(args)?
    } else {
        Data {
            prompts: vec![],
            references: vec![],
            keywords: vec![],
            sha256: None,
        }
    };
    let entries = entries(args)?;
    let generate = args.task == EvaluateTask::Generate;
    let metrics = if generate {
        metrics(&args.metrics)
    } else {
        vec![]
    };
    let text = args
        .text
        .as_deref()
        .map(super::evaluate_perplexity::read_text)
        .transpose()?;
    // Names checked before anything loads; each model's int4 group is settled once it is.
    for e in &entries {
        super::quantize::parse_formats(&e.formats, crate::quant::int_weights::GROUP_SIZES[0])?;
    }
    let encoder = if metrics.contains(&TextMetric::Coherence) {
        Some(evaluate_score::load_encoder(&args.encoder)?)
    } else {
        None
    };

    let threads = set_cpu_threads(args.device.threads)?;
    let (device, device_info) = args.device.device.open()?;
    let sampling = SamplingConfig::default();
    let baseline = EvaluateParams {
        model: entries[0].id.clone(),
        format: "f32".into(),
        max_new_tokens: args.max_new_tokens,
    };
    let settings = harness::settings(
        &sampling,
        args.warmup,
        args.repetitions,
        !args.ignore_eos,
        "per format".into(),
        device_info
            .name
            .starts_with("cuda")
            .then_some(!args.device.no_cuda_graph),
        CommandSettings::Evaluate(EvaluateSettings {
            task: match args.task {
                EvaluateTask::Generate => "generate",
                EvaluateTask::Perplexity => "perplexity",
                EvaluateTask::Truthfulqa => "truthfulqa",
            }
            .into(),
            data: if truthfulqa {
                Some(args.truthfulqa.display().to_string())
            } else {
                args.data.as_ref().map(|p| p.display().to_string())
            },
            data_sha256: if truthfulqa {
                Some(file_sha256(&args.truthfulqa)?)
            } else {
                data.sha256.clone()
            },
            prompts: data.prompts.clone(),
            references: data.references.clone(),
            keywords: data.keywords.clone(),
            metrics: metrics.iter().map(|m| m.name().to_string()).collect(),
            baseline: baseline.clone(),
            stem: args.stem,
            encoder: encoder.as_ref().map(|_| args.encoder.clone()),
            text: args.text.clone(),
            text_sha256: text
                .as_ref()
                .map(|t| format!("{:x}", sha2::Sha256::digest(t.as_bytes()))),
            perplexity_window: args.window,
        }),
    );
    let report = Report::new(
        CommandName::Evaluate,
        Provenance::collect(&device_info.name, threads),
        settings.clone(),
    );
    let (mut sink, done) = output::open(&args.output, report)?;
    harness::install_interrupt_handler();
    let runs_per_case = if generate {
        args.warmup + args.repetitions * data.prompts.len()
    } else {
        0
    };
    let progress = super::progress::bar(1);
    let pipeline = Pipeline {
        questions: &questions,
        settings: &settings,
        args,
        data: &data,
        metrics: &metrics,
        encoder: encoder.as_ref(),
        text: text.as_deref(),
        device: &device,
        sampling,
    };
    let mut baseline_outputs: Option<Outputs> = None;
    let mut any_failed = false;
    for entry in &entries {
        let options = SourceOptions {
            no_weights: entry.no_weights,
            ..args.model.source_options()
        };
        let resolved = source::resolve(&entry.id, &options)?;
        let source = super::quantize::load(
            &resolved,
            WeightFormat::Dense(DType::F32),
            sampling.seed,
            &device,
            args.device.no_cuda_graph,
        )?;
        let config = source.0.model.config().clone();
        let mut reference = Some(source);
        let (formats, _) =
            super::quantize::model_formats(&entry.formats, args.group_size, &config, &device)?;
        progress
            .set_length(progress.length().unwrap_or(0) + (formats.len() * runs_per_case) as u64);
        for format in &formats {
            let params = EvaluateParams {
                model: entry.id.clone(),
                format: format.name(),
                max_new_tokens: args.max_new_tokens,
            };
            let case_params = CaseParams::Evaluate(params.clone());
            let case_id = case_params.id(&settings);
            if done.contains(&case_id) {
                progress.inc(runs_per_case as u64);
                if params == baseline {
                    let case = sink.report().cases.iter().find(|c| c.case_id == case_id);
                    if let (Some(c), Some((l, _))) = (case, &reference) {
                        baseline_outputs = Some(Outputs::of_runs(&c.runs, l)?);
                    }
                }
                continue;
            }
            progress.set_message(format!(
                "{} {}",
                model_list::dir_name(&entry.id),
                format.name()
            ));
            let loaded = match (format, reference.take()) {
                (WeightFormat::Dense(DType::F32), Some(r)) => Ok(r),
                _ => super::quantize::load(
                    &resolved,
                    *format,
                    sampling.seed,
                    &device,
                    args.device.no_cuda_graph,
                ),
            };
            let is_baseline = params == baseline;
            let case = CaseToRun {
                params: params.clone(),
                evaluate: !entry.skip_evaluate,
                baseline: if is_baseline {
                    None
                } else {
                    baseline_outputs.as_ref()
                },
                same_model_as_baseline: entry.id == baseline.model,
            };
            let measured = loaded.and_then(|(loaded, load_s)| {
                pipeline.measure(&loaded, load_s, &case, &mut || progress.inc(1))
            });
            let (result, outputs) = match measured {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(output::interrupted(&sink, &progress)),
                Err(e) if output::goes_on_after(&args.output, &e) => {
                    any_failed |= output::record_not_run(&mut sink, case_params, &settings, &e)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if is_baseline {
                baseline_outputs = Some(outputs);
            }
            if let Some(line) = progress_line(&params, &result) {
                super::progress::note(&progress, &line);
            }
            sink.record(result)?;
        }
    }
    progress.finish_and_clear();
    output::finish(&mut sink, &args.output)?;
    Ok(if any_failed {
        Outcome::CasesFailed
    } else {
        Outcome::Success
    })
}

/// One line per finished case on stderr: speed and the headline scores.
fn progress_line(params: &EvaluateParams, result: &CaseResult) -> Option<String> {
    let q = result.quality.as_ref()?.as_evaluate()?;
    let mut line = format!(
        "{:<24} {:<9} {:>5.2} bpw",
        model_list::dir_name(&params.model),
        params.format,
        q.bits_per_weight
    );
    if let Some(s) = &result.summary {
        line += &format!(
            "  TTFT {:>7.1} ms  decode {:>6.1} tok/s",
            s.ttft_ms.median, s.decode_tokens_per_s.median
        );
    }
    for (what, scores) in [("ref", &q.references), ("fid", &q.fidelity)] {
        if let Some(rouge) = scores.as_ref().and_then(|t| t.corpus.get("rougeL")) {
            line += &format!("  {what} ROUGE-L {rouge:.4}");
        }
    }
    if let Some(p) = &q.perplexity {
        line += &format!("  text PPL {:.3}", p.token_perplexity);
    }
    Some(line)
}

/// A case's outputs (first repetition, per prompt): the tokens, and the text scored (the
/// tokens up to the first end-of-sequence token, decoded, outer whitespace trimmed).
struct Outputs {
    tokens: Vec<Vec<u32>>,
    texts: Vec<String>,
}

impl Outputs {
    fn of_runs(runs: &[RunRecord], loaded: &LoadedModel) -> Result<Self> {
        let eos = loaded.model.config().eos_token_ids();
        let tokens = harness::first_repetition(runs);
        let texts = tokens
            .iter()
            .map(|ids| {
                let end = ids
                    .iter()
                    .position(|t| eos.contains(t))
                    .unwrap_or(ids.len());
                Ok(loaded.tokenizer.decode(&ids[..end])?.trim().to_string())
            })
            .collect::<Result<_>>()?;
        Ok(Self { tokens, texts })
    }
}

/// One case to measure: which, whether its outputs are scored (a model list's `skip_evaluate`),
/// and the baseline's outputs to score them against (none for the baseline itself).
struct CaseToRun<'a> {
    params: EvaluateParams,
    evaluate: bool,
    baseline: Option<&'a Outputs>,
    /// Token agreement is only meaningful with the baseline's tokenizer.
    same_model_as_baseline: bool,
}

/// Bootstrap resamples of the TruthfulQA intervals (as `sled --task truthfulqa`'s default).
const TRUTHFULQA_BOOTSTRAP: usize = 1000;

/// What every case shares.
struct Pipeline<'a> {
    questions: &'a [crate::metrics::truthfulqa::Question],
    settings: &'a Settings,
    args: &'a PipelineArgs,
    data: &'a Data,
    metrics: &'a [TextMetric],
    encoder: Option<&'a SentenceEncoder>,
    text: Option<&'a str>,
    device: &'a Device,
    sampling: SamplingConfig,
}

impl Pipeline<'_> {
    /// Generation through the harness, the scores and the text's perplexity of one loaded
    /// model: the case (its id and params filled in by the caller) and its outputs.
    fn measure(
        &self,
        loaded: &LoadedModel,
        load_s: f64,
        case: &CaseToRun,
        tick: &mut dyn FnMut(),
    ) -> Result<Option<(CaseResult, Outputs)>> {
        let (evaluate, baseline) = (case.evaluate, case.baseline);
        let engine = Engine::new(loaded.model.as_ref(), self.device);
        let config = loaded.model.config();
        let prompt_ids = super::prompts::token_ids(&loaded.tokenizer, &self.data.prompts, None)?;
        let runs = if self.args.task == EvaluateTask::Generate {
            let spec = CaseSpec {
                prompts: &prompt_ids,
                max_new_tokens: self.args.max_new_tokens,
                sampling: self.sampling,
                stop_at_eos: !self.args.ignore_eos,
                warmup: self.args.warmup,
                repetitions: self.args.repetitions,
                // On CUDA the static cache, so decoding takes the captured graph (as quantize).
                kv: if self.device.is_cuda() && !self.args.device.no_cuda_graph {
                    KvKind::Static
                } else {
                    KvKind::Full
                },
                kv_options: Default::default(),
            };
            let Some(runs) = harness::run_case(loaded, &engine, &mut Standard, &spec, tick)? else {
                return Ok(None);
            };
            runs
        } else {
            vec![]
        };
        let outputs = Outputs::of_runs(&runs, loaded)?;
        let generated = !runs.is_empty();
        let scores = if evaluate && generated {
            Some(self.score(&outputs, baseline)?)
        } else {
            None
        };
        let perplexity = match self.text {
            Some(text) if evaluate => {
                let window = self
                    .args
                    .window
                    .unwrap_or(config.context_window().min(DEFAULT_MAX_WINDOW))
                    .min(config.context_window());
                let ids = loaded.tokenizer.encode(text)?;
                if ids.len() < 2 {
                    crate::bail_input!(
                        "--text: {} token(s); perplexity needs at least 2",
                        ids.len()
                    );
                }
                let (_, scores) = super::evaluate_perplexity::score_text(
                    &engine,
                    config,
                    &ids,
                    text,
                    PerplexityMethod::Rolling,
                    window,
                    window,
                )?;
                Some(scores)
            }
            _ => None,
        };
        let token_agreement = match baseline {
            Some(b) if case.same_model_as_baseline && generated => {
                harness::agreement(&outputs.tokens, &b.tokens).0
            }
            None if generated => Some(1.0),
            _ => None,
        };
        let truthfulqa = if self.args.task == EvaluateTask::Truthfulqa && evaluate {
            let Some((scored, seconds)) = super::truthfulqa::score_questions(
                loaded,
                self.device,
                None,
                self.questions,
                &mut || !super::harness::interrupted(),
            )?
            else {
                // Ctrl-C: the run stops like an interrupted generation.
                return Ok(None);
            };
            Some(super::truthfulqa::summarize(
                &scored,
                seconds,
                TRUTHFULQA_BOOTSTRAP,
            ))
        } else {
            None
        };
        let footprint = loaded.model.weight_footprint();
        let (reference_free, references, fidelity) = scores.unwrap_or((None, None, None));
        let quality = EvaluateQuality {
            weight_bytes: footprint.bytes,
            bits_per_weight: footprint.bytes as f64 * 8.0 / footprint.params.max(1) as f64,
            load_s,
            reference_free,
            references,
            fidelity,
            token_agreement,
            perplexity,
            truthfulqa,
            outputs: outputs.texts.clone(),
        };
        let summary = if generated {
            harness::summarize(&loaded.spec.id, &runs)
        } else {
            None
        };
        let result = CaseResult::ran(
            CaseParams::Evaluate(case.params.clone()),
            self.settings,
            harness::model_record(&loaded.spec)?,
            runs,
            summary,
            Some(Quality::Evaluate(quality)),
        );
        Ok(Some((result, outputs)))
    }

    /// The reference-free scores, the scores against the references (if the data has them) and
    /// against the baseline's outputs (`None` for the baseline itself).
    #[allow(clippy::type_complexity)]
    fn score(
        &self,
        outputs: &Outputs,
        baseline: Option<&Outputs>,
    ) -> Result<(Option<TextScores>, Option<TextScores>, Option<TextScores>)> {
        let hyps: Vec<&str> = outputs.texts.iter().map(String::as_str).collect();
        let options = ScoreOptions {
            stem: self.args.stem,
            lowercase: false,
        };
        let (with_refs, free): (Vec<TextMetric>, Vec<TextMetric>) =
            self.metrics.iter().partition(|m| m.needs_references());
        let mut free_scores =
            evaluate_score::text_scores(&evaluate_score::score(&free, &hyps, &[], options));
        if let Some(encoder) = self.encoder {
            let prompts: Vec<&str> = self.data.prompts.iter().map(String::as_str).collect();
            let sims = evaluate_score::coherence(encoder, &prompts, &hyps)?;
            evaluate_score::add_per_sample(
                &mut free_scores,
                "coherence",
                &sims,
                format!("cosine, {}", self.args.encoder),
            );
        }
        if self.data.keywords.iter().any(|k| !k.is_empty()) {
            let coverage: Vec<f64> = hyps
                .iter()
                .zip(&self.data.keywords)
                .map(|(h, k)| crate::metrics::diversity::keyword_coverage(h, k))
                .collect();
            evaluate_score::add_per_sample(
                &mut free_scores,
                "keywords",
                &coverage,
                "share of the prompt's keywords in the output, case-insensitive".into(),
            );
        }
        let against = |refs: &[&str]| {
            evaluate_score::text_scores(&evaluate_score::score(&with_refs, &hyps, refs, options))
        };
        let references = match (&self.data.references(), with_refs.is_empty()) {
            (Some(refs), false) => Some(against(refs)),
            _ => None,
        };
        // The baseline against itself says nothing (and rouge-score gives an empty output 0
        // against itself, so it would not even read 1).
        let fidelity = match baseline {
            Some(b) if !with_refs.is_empty() => Some(against(
                &b.texts.iter().map(String::as_str).collect::<Vec<_>>(),
            )),
            _ => None,
        };
        Ok((Some(free_scores), references, fidelity))
    }
}
