//! `llmbench compare`: plans the cases (models x lengths x methods x windows x strides, ordered
//! so each model loads once), runs them through the harness, records each case as it finishes,
//! then draws the charts and prints the report.

use super::harness::{self, CaseSpec};
use super::{load_model, output, prompts, Outcome};
use crate::cli::compare::CompareArgs;
use crate::decode::{self, Method};
use crate::engine::{Engine, GenerateRequest};
use crate::measure::system::Provenance;
use crate::results::schema::{
    CaseResult, CommandName, CommandSettings, CompareQuality, CompareSettings,
    Quality, Report,
};
use super::compare_inputs;
use super::compare_plan::{plan, Planned};
use crate::input::adaptivocab::{self, PhraseSource};
use crate::input::{Compressor, InputMethod};
use crate::kv::KvKind;
use super::sparsity::Calibrator;
use anyhow::Result;
use std::collections::HashMap;

/// Seed 002's quick mode: `--quick` makes this many new tokens.
const QUICK_NEW_TOKENS: usize = 30;

pub fn run(args: &CompareArgs) -> Result<Outcome> {
    let quick;
    let args = if args.quick {
        let mut a = args.clone();
        a.generation.max_new_tokens = crate::cli::args::NumList::of(QUICK_NEW_TOKENS);
        quick = a;
        &quick
    } else {
        args
    };
    let methods = sorted_methods(&args.methods)?;
    validate(args, &methods)?;
    let kv_options = args.generation.kv_options()?;
    let prompt_texts = prompts::load(&args.run.prompts, args.run.prompts_file.as_deref())?;
    let calibrator = Calibrator::new(&args.sparsity)?;
    let sampling = args.generation.sampling();
    sampling.validate()?;
    let models: Vec<String> = args.model.model.split(',').map(|m| m.trim().to_string()).collect();
    if models.iter().any(String::is_empty) {
        crate::bail_input!("--model {}: empty entry in the list", args.model.model);
    }
    let (query_types, keywords) = prompts::built_in_queries(&prompt_texts);
    let mut settings = harness::settings(
        &sampling,
        args.run.warmup,
        args.run.repetitions,
        args.run.stop_at_eos,
        format!("{:?}", args.model.dtype).to_lowercase(),
        None,
        CommandSettings::Compare(CompareSettings {
            prompts: prompt_texts.clone(),
            query_types,
            keywords: keywords.clone(),
            quality: args.quality,
            compressor: args.compressor.clone(),
            sparsity: calibrator.as_ref().map(Calibrator::settings),
        }),
    );
    let plan = plan(args, &models, &methods, &kv_options);

    let threads = crate::engine::device::set_cpu_threads(args.device.threads)?;
    let (device, device_info) = args.device.device.open()?;
    if calibrator.is_some() {
        Calibrator::check_device(&device)?;
    }
    if device_info.name.starts_with("cuda") {
        settings.cuda_graph = Some(!args.device.no_cuda_graph);
    }
    let report = Report::new(CommandName::Compare, Provenance::collect(&device_info.name, threads), settings.clone());
    let (mut sink, done) = output::open(&args.output, report)?;
    harness::install_interrupt_handler();
    let total_runs = plan.len() * (args.run.warmup + args.run.repetitions * prompt_texts.len());
    let progress = super::progress::bar(total_runs as u64);
    let mut any_failed = false;
    // --compressor: one model scores every target's prompts for lingua.
    let compressor = match &args.compressor {
        Some(id) if args.input.iter().any(InputMethod::needs_compressor) => {
            let mut compressor_args = args.model.clone();
            compressor_args.model = id.clone();
            Some(load_model(&compressor_args, &args.device, sampling.seed).map_err(|e| e.context(format!("--compressor {id}")))?)
        }
        _ => None,
    };
    let compressor_engine = compressor.as_ref().map(|c| Engine::new(c.model.model.as_ref(), &c.device));
    // Standard decoding's tokens per (model, length), for agreement.
    let mut reference: HashMap<(String, usize), Vec<Vec<u32>>> = HashMap::new();
    let mut reference_texts: HashMap<(String, usize), Vec<String>> = HashMap::new();
    for case in &sink.report().cases {
        if let Some(p) = case.params.as_compare().filter(|p| p.is_baseline()) {
            reference.insert((p.model.clone(), p.max_new_tokens), first_repetition(case));
            reference_texts.insert((p.model.clone(), p.max_new_tokens), first_texts(case));
        }
    }

    for model_id in &models {
        let cases: Vec<&Planned> = plan.iter().filter(|p| &p.compare.model == model_id).collect();
        let todo: Vec<&&Planned> = cases.iter().filter(|p| !done.contains(&p.params.id(&settings))).collect();
        progress.inc(((cases.len() - todo.len()) * (args.run.warmup + args.run.repetitions * prompt_texts.len())) as u64);
        if todo.is_empty() {
            continue;
        }
        let mut model_args = args.model.clone();
        model_args.model = model_id.clone();
        let loaded = match load_model(&model_args, &args.device, sampling.seed) {
            Ok(l) => l,
            Err(e) if args.output.continue_on_error => {
                for p in &todo {
                    output::record_not_run(&mut sink, p.params.clone(), &settings, &e)?;
                }
                any_failed = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(c) = &calibrator {
            c.check(&loaded.model)?;
        }
        let model_record = harness::model_record(&loaded.model.spec)?;
        let engine = Engine::new(loaded.model.model.as_ref(), &loaded.device);
        let n_layers = loaded.model.model.config().n_layers();
        let written_ids = prompts::token_ids(&loaded.model.tokenizer, &prompt_texts, args.run.prompt_tokens)?;
        let written_tokens: usize = written_ids.iter().map(Vec::len).sum();
        let scorer = match (&compressor, &compressor_engine) {
            (Some(c), Some(e)) => Compressor { engine: e, tokenizer: &c.model.tokenizer },
            _ => Compressor { engine: &engine, tokenizer: &loaded.model.tokenizer },
        };
        let mut inputs: HashMap<String, compare_inputs::PreparedInput> = HashMap::new();
        for input in args.input.iter().filter(|i| **i != InputMethod::AdaptiVocab) {
            inputs.insert(input.label(), compare_inputs::prepare(input, &prompt_texts, &written_ids, &scorer, &engine, &loaded.model.tokenizer, args.run.prompt_tokens)?);
        }
        // adaptivocab's phrase tokens, checked before any case runs (its model loads later).
        let phrase_tokens = if args.input.contains(&InputMethod::AdaptiVocab) {
            crate::models::vocab_extension::llama_config(loaded.model.model.config())?;
            let phrase_list = adaptivocab::phrases(&compare_inputs::phrase_source(args)?, &loaded.model.tokenizer)?;
            let extension = adaptivocab::extension(&phrase_list, &loaded.model.tokenizer)?;
            Some((phrase_list, extension))
        } else {
            None
        };
        // adaptivocab's model (the phrase tokens' rows added), loaded before its first case so
        // the cases before it do not carry its memory.
        let mut extended: Option<(super::setup::Loaded, Vec<String>)> = None;
        // Every case of this model fits its context window, before the first one runs (with
        // --continue-on-error the harness records the ones that do not instead).
        if !args.output.continue_on_error {
            for p in &todo {
                // adaptivocab only shortens prompts: the written ones fitting is enough.
                let label = if p.input == InputMethod::AdaptiVocab { InputMethod::None.label() } else { p.input.label() };
                for prompt in inputs.get(&label).map_or(&written_ids, |i| &i.ids) {
                    let request = GenerateRequest {
                        prompt_ids: prompt,
                        max_new_tokens: p.compare.max_new_tokens,
                        sampling,
                        stop_at_eos: args.run.stop_at_eos,
                    };
                    engine.validate(&request).map_err(|e| e.context(format!("{model_id} {}", p.params.label())))?;
                }
            }
        }
        for p in todo {
            progress.set_message(format!("{} {}", short(model_id), p.params.label()));
            if let (InputMethod::AdaptiVocab, None, Some((phrase_list, extension))) = (p.input, &extended, &phrase_tokens) {
                let mut model_args = args.model.clone();
                model_args.model = model_id.clone();
                let x = super::setup::load_model_extended(&model_args, &args.device, sampling.seed, extension)?;
                let x_engine = Engine::new(x.model.model.as_ref(), &x.device);
                let prepared = compare_inputs::prepare(&p.input, &prompt_texts, &written_ids, &scorer, &x_engine, &x.model.tokenizer, None)?;
                inputs.insert(p.input.label(), prepared);
                extended = Some((x, phrase_list.clone()));
            }
            // The case's sparsity on the model it runs (adaptivocab's own, where it is that).
            let target = match (&extended, p.input) {
                (Some((x, _)), InputMethod::AdaptiVocab) => &x.model,
                _ => &loaded.model,
            };
            let applied = match (p.sparsity, &calibrator) {
                (Some(method), Some(c)) => Some((method, c.apply(target, method)?)),
                _ => {
                    target.model.set_sparsity(None)?;
                    None
                }
            };
            let (case_model, case_device) = match (&extended, p.input) {
                (Some((x, _)), InputMethod::AdaptiVocab) => (&x.model, &x.device),
                _ => (&loaded.model, &loaded.device),
            };
            let case_engine = Engine::new(case_model.model.as_ref(), case_device);
            let engine = &case_engine;
            let prepared = &inputs[&p.input.label()];
            let prompt_ids = &prepared.ids;
            let spec = CaseSpec {
                prompts: prompt_ids,
                max_new_tokens: p.compare.max_new_tokens,
                sampling,
                stop_at_eos: args.run.stop_at_eos,
                warmup: args.run.warmup,
                repetitions: args.run.repetitions,
                kv: p.kv,
                kv_options,
            };
            let mut method_params = p.method_params.clone();
            if let Some(spec) = method_params.speculative.as_mut() {
                spec.n_layers = n_layers;
            }
            if let Some(c) = &method_params.contrast {
                c.check(case_model.model.as_ref())?;
            }
            let mut strategy = decode::build(p.method, &method_params)?;
            let outcome = harness::run_case(case_model, engine, strategy.as_mut(), &spec, &mut || progress.inc(1));
            let runs = match outcome {
                Ok(Some(runs)) => runs,
                Ok(None) => return Ok(output::interrupted(&sink, &progress)),
                Err(e) if output::goes_on_after(&args.output, &e) => {
                    any_failed |= output::record_not_run(&mut sink, p.params.clone(), &settings, &e)?;
                    continue;
                }
                Err(e) => return Err(e.context(format!("{} {}", model_id, p.params.label()))),
            };
            let label = format!("{} {}", short(model_id), p.params.label());
            let summary = harness::summarize(&label, &runs);
            let mut record = model_record.clone();
            if p.input == InputMethod::AdaptiVocab {
                record.weights_format = case_model.spec.weights_format.clone();
                record.tokenizer = case_model.spec.tokenizer.clone();
            }
            let mut case = CaseResult::ran(p.params.clone(), &settings, record, runs, summary, None);
            let key = (model_id.clone(), p.compare.max_new_tokens);
            if p.reference {
                reference.insert(key.clone(), first_repetition(&case));
                reference_texts.insert(key.clone(), first_texts(&case));
            }
            // What sparsity did, read before the perplexity pass, which scores under the dense
            // model ("under the full model", like every other case's).
            let sparsity_record = applied.and_then(|(m, (seconds, cached))| super::sparsity::record(case_model, m, seconds, cached));
            case_model.model.set_sparsity(None)?;
            let perplexity = if args.quality {
                let per_prompt = first_repetition(&case)
                    .iter()
                    .zip(prompt_ids)
                    .map(|(generated, prompt)| harness::perplexity(engine, prompt, generated))
                    .collect::<Result<Vec<f64>>>()?;
                Some(per_prompt.iter().sum::<f64>() / per_prompt.len() as f64)
            } else {
                None
            };
            // adaptivocab's outputs hold phrase tokens: compared in base ids, position by position.
            let ours: Vec<Vec<u32>> = first_repetition(&case).iter().map(|ids| case_model.tokenizer.base_ids(ids)).collect();
            let mut q = quality(&ours, reference.get(&key), perplexity);
            q.keyword_hit_rate = keyword_hit_rate(&case, &keywords);
            if let Some(texts) = reference_texts.get(&key) {
                let (rouge_l, bleu) = text_similarity(&first_texts(&case), texts);
                q.rouge_l_vs_standard = Some(rouge_l);
                q.bleu_vs_standard = Some(bleu);
            }
            q.prompt_bits_per_byte = prepared.bits_per_byte;
            q.weight_bytes = Some(case_model.model.weight_footprint().bytes);
            if p.input != InputMethod::None {
                let tokens: usize = prompt_ids.iter().map(Vec::len).sum();
                q.input_tokens = Some(tokens);
                q.input_reduction = Some(1.0 - tokens as f64 / written_tokens.max(1) as f64);
                q.inputs = prepared.texts.clone();
                q.input_seconds = Some(prepared.seconds_per_prompt);
            }
            if let (Some((x, phrase_list)), InputMethod::AdaptiVocab) = (&extended, p.input) {
                q.phrases = phrase_list.clone();
                q.phrase_tokens = Some(x.model.model.config().vocab_size() - loaded.model.model.config().vocab_size());
            }
            q.sparsity = sparsity_record;
            case.quality = Some(Quality::Compare(q));
            sink.record(case)?;
        }
    }
    progress.finish_and_clear();
    output::finish(&mut sink, &args.output)?;
    Ok(if any_failed { Outcome::CasesFailed } else { Outcome::Success })
}

/// The methods in their canonical order, once each: standard first, so its tokens are there
/// for the others' agreement.
fn sorted_methods(methods: &[Method]) -> Result<Vec<Method>> {
    if methods.is_empty() {
        crate::bail_input!("--methods is empty: name at least one method");
    }
    Ok(Method::ALL.into_iter().filter(|m| methods.contains(m)).collect())
}

fn validate(args: &CompareArgs, methods: &[Method]) -> Result<()> {
    if args.generation.max_new_tokens.values.contains(&0) {
        crate::bail_input!("--max-new-tokens 0: generate at least 1 token");
    }
    if args.run.repetitions == 0 {
        crate::bail_input!("--repetitions 0: measure at least one run");
    }
    if args.input.is_empty() {
        crate::bail_input!("--input is empty: name at least one input method (none for the prompts as written)");
    }
    if args.combine {
        let inputs: Vec<&InputMethod> = args.input.iter().filter(|i| **i != InputMethod::None).collect();
        if inputs.len() != 1 {
            crate::bail_input!("--combine stacks one input method: give one of word_removal:N, lingua:RATE, adaptivocab in --input (not {})", inputs.len());
        }
        if args.sparsity.sparsity.len() != 1 {
            crate::bail_input!("--combine stacks one sparsity method: give one --sparsity (e.g. larosa:0.4), not {}", args.sparsity.sparsity.len());
        }
        if args.generation.kv_cache == KvKind::Full {
            crate::bail_input!("--combine stacks a cache that holds less than full: give --kv-cache hybrid (or another strategy)");
        }
    }
    if args.run.prompt_tokens.is_some() && args.input.iter().any(|i| *i != InputMethod::None) {
        crate::bail_input!("--input with --prompt-tokens: prompts are cut or repeated to a fixed length after the input method, so its reduction would not show; drop --prompt-tokens");
    }
    let adaptivocab = args.input.contains(&InputMethod::AdaptiVocab);
    if (args.phrases.is_some() || args.phrase_corpus.is_some()) && !adaptivocab {
        crate::bail_input!("--phrases / --phrase-corpus without --input adaptivocab: add --input none,adaptivocab or drop them");
    }
    if adaptivocab {
        // Read now, so a bad file stops the run before any case.
        match compare_inputs::phrase_source(args)? {
            source @ PhraseSource::File(_) => {
                adaptivocab::phrases(&source, &crate::models::tokenizer::TextTokenizer::Bytes)?;
            }
            PhraseSource::Corpus(corpus) if !corpus.is_file() => {
                crate::bail_input!("--phrase-corpus {}: no such file; give a text file to mine phrases from", corpus.display());
            }
            _ => {}
        }
    }
    if args.compressor.is_some() && !args.input.iter().any(InputMethod::needs_compressor) {
        crate::bail_input!("--compressor without --input lingua:RATE: only lingua scores the prompt with a model; add --input none,lingua:0.5 or drop --compressor");
    }
    if methods.iter().any(|m| m.uses_window()) && args.window.values.contains(&0) {
        crate::bail_input!("--window 0: the window must hold at least 1 token");
    }
    if methods.iter().any(|m| m.uses_k()) {
        let policies = crate::commands::speculative::policies(&[], args.generation.temperature);
        let options = crate::cli::specdec::SpecOptions::default();
        crate::commands::speculative::validate(&options, &args.k.values, args.generation.temperature, args.generation.kv_cache, &policies)?;
    }
    for &m in methods.iter().filter(|m| m.uses_layers()) {
        args.contrast.config(m)?;
    }
    if methods.contains(&Method::Dola) {
        crate::decode::dola::warn_if_low_penalty(args.generation.repetition_penalty);
    }
    if methods.contains(&Method::SledStride) && !args.half_window_stride {
        if args.stride.values.contains(&0) {
            crate::bail_input!("--stride 0: sled:stride must decode at least 1 token per window");
        }
        let min_window = args.window.values.iter().copied().min().unwrap_or(0);
        if let Some(s) = args.stride.values.iter().find(|&&s| s > min_window) {
            crate::bail_input!("--stride {s} is larger than --window {min_window}: the stride must not exceed the window");
        }
    }
    Ok(())
}

fn first_repetition(case: &CaseResult) -> Vec<Vec<u32>> {
    harness::first_repetition(&case.runs)
}

/// Token agreement with standard decoding, position by position, and first divergences.
fn quality(ours: &[Vec<u32>], standard: Option<&Vec<Vec<u32>>>, perplexity: Option<f64>) -> CompareQuality {
    let (agreement_with_standard, first_divergence) = match standard {
        Some(standard) => harness::agreement(ours, standard),
        None => (None, vec![]),
    };
    CompareQuality { agreement_with_standard, first_divergence, perplexity, ..Default::default() }
}

/// The first repetition's output text per prompt, in prompt order.
fn first_texts(case: &CaseResult) -> Vec<String> {
    let mut runs: Vec<&crate::results::schema::RunRecord> = case.runs.iter().filter(|r| r.repetition == 0).collect();
    runs.sort_by_key(|r| r.prompt_index);
    runs.iter().map(|r| r.text.clone()).collect()
}

/// ROUGE-L F1 (mean over prompts, rouge-score's tokenizer without stemming) and corpus BLEU
/// (sacrebleu's defaults) of `ours` against standard decoding's outputs: how far a method moved
/// what the model writes (evaluate's fidelity, per case here).
fn text_similarity(ours: &[String], standard: &[String]) -> (f64, f64) {
    let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
    let standard: Vec<&str> = standard.iter().map(String::as_str).collect();
    let rouge = crate::metrics::rouge::Rouge::default().corpus(&standard, &ours).rouge_l.fmeasure;
    let bleu = crate::metrics::bleu::Bleu::default().corpus(&ours, &standard).score;
    (rouge, bleu)
}

/// The mean over prompts of the share of each prompt's keywords in its first repetition's
/// text; None without keywords.
fn keyword_hit_rate(case: &CaseResult, keywords: &[Vec<String>]) -> Option<f64> {
    if keywords.is_empty() {
        return None;
    }
    let rates: Vec<f64> = keywords
        .iter()
        .enumerate()
        .filter_map(|(i, k)| {
            let run = case.runs.iter().find(|r| r.prompt_index == i && r.repetition == 0)?;
            Some(crate::metrics::diversity::keyword_coverage(&run.text, k))
        })
        .collect();
    (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
}

fn short(model: &str) -> &str {
    model.rsplit('/').next().unwrap_or(model)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_counts_positions_and_first_divergence() {
        let q = quality(&[vec![1, 2, 3, 4], vec![5, 6]], Some(&vec![vec![1, 2, 9, 4], vec![5, 6]]), None);
        assert_eq!(q.agreement_with_standard, Some(5.0 / 6.0));
        assert_eq!(q.first_divergence, vec![Some(2), None]);
    }
}
