//! `llmbench quantize`: one model in each weight format, side by side. The source in f32
//! (`f32`, the reference) runs first: its next-token distributions over the eval text, in
//! llama-perplexity's windows (`--eval-context` tokens, the second half scored, the first
//! token BOS where the vocabulary adds one), go to a temporary file, and its greedy tokens on
//! the prompts are kept. Then each format is loaded (the conversion timed), run through the
//! shared harness for speed and memory, teacher-forced over the same windows and compared
//! token by token with the reference (`metrics::quantization`), optionally saved
//! (`models::gguf_writer`), and recorded through the one sink as it finishes. `--models`
//! runs a list of models, each as such a run in its own directory.

use super::harness::{self, CaseSpec};
use super::{output, prompts, Outcome};
use crate::cli::quantize::QuantizeArgs;
use crate::decode::sampling::SamplingConfig;
use crate::decode::Standard;
use crate::engine::device::set_cpu_threads;
use crate::engine::Engine;
use crate::kv::KvKind;
use crate::measure::system::Provenance;
use crate::models::gguf::GgufFile;
use crate::models::source::{self, ModelFiles, ResolvedModel};
use crate::models::{self, gguf_writer, int_writer, LoadedModel};
use crate::quant::format::WeightFormat;
use crate::sparse::SparsityMethod;
use super::sparsity::Calibrator;
use super::quantize_reference::{adds_bos, distribution_shift, reference_shift, windows, ReferenceRows};
use crate::quant::int_weights::GROUP_SIZES;
use crate::results::schema::{
    CaseParams, CaseResult, CommandName, CommandSettings, QuantizeParams, QuantizeQuality, QuantizeSettings, Quality,
    Report,
};
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The formats of `--formats`, `f32` first (added if absent: it is the reference).
pub fn parse_formats(list: &str, group: usize) -> Result<Vec<WeightFormat>> {
    let mut formats = vec![WeightFormat::Dense(DType::F32)];
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            crate::bail_input!("--formats {list}: empty entry in the list");
        }
        let format = WeightFormat::parse(item, group).map_err(|e| crate::error::LlmbenchError::invalid(format!("--formats: {e}")))?;
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    Ok(formats)
}

/// int4's group: `--group-size` checked against the model's layer widths, or the largest
/// allowed one that divides them all.
fn group_size(asked: Option<usize>, widths: &[usize]) -> Result<usize> {
    let divides = |g: usize| widths.iter().all(|w| w % g == 0);
    match asked {
        Some(g) if !GROUP_SIZES.contains(&g) => crate::bail_input!("--group-size {g}: use one of {GROUP_SIZES:?}"),
        Some(g) if !divides(g) => crate::bail_input!(
            "--group-size {g} does not divide the model's layer widths {widths:?}; use one of {:?}",
            GROUP_SIZES.iter().filter(|&&g| divides(g)).collect::<Vec<_>>()
        ),
        Some(g) => Ok(g),
        None => GROUP_SIZES.iter().rev().copied().find(|&g| divides(g)).ok_or_else(|| {
            crate::error::LlmbenchError::invalid(format!("the model's layer widths {widths:?} take no int4 group of {GROUP_SIZES:?}"))
        }),
    }
}

/// `--formats` for one model: int4's group (`--group-size` or the largest that fits), every
/// int4 group checked against the model's layer widths, integer formats only where our kernels
/// run.
pub(super) fn model_formats(
    list: &str,
    asked_group: Option<usize>,
    config: &crate::models::config::ModelConfig,
    device: &Device,
) -> Result<(Vec<WeightFormat>, usize)> {
    let widths = config.linear_input_sizes();
    let group = group_size(asked_group, &widths)?;
    let formats = parse_formats(list, group)?;
    for f in &formats {
        if let WeightFormat::Int(crate::quant::int_weights::IntFormat::Int4 { group }) = f {
            if widths.iter().any(|w| w % group != 0) {
                crate::bail_input!("--formats {}: group {group} does not divide the model's layer widths {widths:?}; use int4:64 or int4:32", f.name());
            }
        }
    }
    if !device.is_cpu() && !device.is_cuda() {
        if let Some(f) = formats.iter().find(|f| matches!(f, WeightFormat::Int(_))) {
            crate::bail_input!("--formats {}: our integer kernels run on the CPU and CUDA; use --device cpu or cuda, or drop it", f.name());
        }
    }
    Ok((formats, group))
}

fn validate(args: &QuantizeArgs) -> Result<()> {
    if args.eval_context < 8 || !args.eval_context.is_multiple_of(2) {
        crate::bail_input!("--eval-context {}: use an even number of at least 8 tokens (the second half is scored)", args.eval_context);
    }
    if args.chunks == 0 {
        crate::bail_input!("--chunks 0: evaluate at least one window");
    }
    if args.max_new_tokens == 0 {
        crate::bail_input!("--max-new-tokens 0: generate at least 1 token");
    }
    if args.run.repetitions == 0 {
        crate::bail_input!("--repetitions 0: measure at least one run");
    }
    Ok(())
}

/// Creates `dir` and checks a file can be written in it, before anything runs.
fn check_save_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .and_then(|_| tempfile::NamedTempFile::new_in(dir).map(drop))
        .map_err(|e| crate::error::LlmbenchError::invalid(format!("--save {}: cannot write there ({e}); pick a writable directory", dir.display())))?;
    Ok(())
}

pub(super) fn load(resolved: &ResolvedModel, format: WeightFormat, seed: u64, device: &Device, no_graph: bool) -> Result<(LoadedModel, f64)> {
    let started = Instant::now();
    let mut loaded = models::load_converted(resolved, format, seed, device).with_context(|| format!("loading {} as {}", resolved.id, format.name()))?;
    loaded.model.set_cuda_graph(!no_graph);
    Ok((loaded, started.elapsed().as_secs_f64()))
}

pub fn run(args: &QuantizeArgs) -> Result<Outcome> {
    match &args.models {
        Some(list) => super::quantize_list::run(args, list, run_one),
        None => run_one(args),
    }
}

pub(super) fn run_one(args: &QuantizeArgs) -> Result<Outcome> {
    validate(args)?;
    // Parsed once with a placeholder group to fail fast on names; again below with the model's.
    parse_formats(&args.formats, GROUP_SIZES[0])?;
    if let Some(dir) = &args.save {
        check_save_dir(dir)?;
    }
    let (eval_path, text) = if args.skip_evaluate {
        (PathBuf::new(), String::new())
    } else {
        let path = source::data_file(&args.eval_file, "--eval-file")?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            crate::error::LlmbenchError::invalid(format!("--eval-file {}: cannot read it as UTF-8 text ({e})", path.display()))
        })?;
        (path, text)
    };
    let prompt_texts = prompts::load(&args.run.prompts, args.run.prompts_file.as_deref())?;
    let calibrator = Calibrator::new(&args.sparsity)?;

    let threads = set_cpu_threads(args.device.threads)?;
    let (device, device_info) = args.device.device.open()?;
    let resolved = source::resolve(&args.model.model, &args.model.source_options())?;
    let seed = SamplingConfig::default().seed;
    let (reference, reference_load_s) = load(&resolved, WeightFormat::Dense(DType::F32), seed, &device, args.device.no_cuda_graph)?;
    let config = reference.model.config().clone();
    let (formats, group) = model_formats(&args.formats, args.group_size, &config, &device)?;
    let source_gguf = match &resolved.files {
        ModelFiles::Gguf(path) => Some(GgufFile::open(path)?),
        _ => None,
    };
    if args.save.is_some() && source_gguf.is_none() {
        crate::bail_input!("--save: writing GGUF needs a GGUF source (its metadata and tokenizer are copied); pass a .gguf --model");
    }

    let bos = if adds_bos(&resolved)? { config.bos_token_id() } else { None };
    let ctx = args.eval_context;
    let ids = if args.skip_evaluate { vec![] } else { prompts::tokens_of_prefix(&reference.tokenizer, &text, ctx * args.chunks)? };
    let windows = windows(&ids, ctx, args.chunks, bos);
    if windows.is_empty() && !args.skip_evaluate {
        crate::bail_input!(
            "--eval-file {}: {} tokens, fewer than one --eval-context window of {ctx}; give a longer text or a smaller --eval-context",
            eval_path.display(),
            ids.len()
        );
    }
    if windows.len() < args.chunks && !args.skip_evaluate {
        tracing::warn!("--eval-file has {} tokens: {} windows of {ctx} instead of {}", ids.len(), windows.len(), args.chunks);
    }
    if ctx > config.context_window() {
        crate::bail_input!("--eval-context {ctx} exceeds the model's context window of {}", config.context_window());
    }
    let prompt_ids = prompts::token_ids(&reference.tokenizer, &prompt_texts, args.run.prompt_tokens)?;
    if let Some(c) = &calibrator {
        Calibrator::check_device(&device)?;
        Calibrator::check_formats(&formats)?;
        c.check(&reference)?;
    }

    let sampling = SamplingConfig::default();
    let reference_label = format!("{} dequantized to f32", reference.spec.weights_format.split(',').next().unwrap_or("the source"));
    let settings = harness::settings(
        &sampling,
        args.run.warmup,
        args.run.repetitions,
        args.run.stop_at_eos,
        "per format".into(),
        device_info.name.starts_with("cuda").then_some(!args.device.no_cuda_graph),
        CommandSettings::Quantize(QuantizeSettings {
            eval_file: args.eval_file.clone(),
            eval_file_sha256: format!("{:x}", sha2::Sha256::digest(text.as_bytes())),
            context_tokens: ctx,
            chunks: windows.len(),
            bos_first: bos.is_some(),
            formats: formats.iter().map(WeightFormat::name).collect(),
            group_size: group,
            reference: reference_label,
            prompts: prompt_texts.clone(),
            skip_evaluate: args.skip_evaluate,
            save_dir: args.save.as_ref().map(|d| d.display().to_string()),
            sparsity: calibrator.as_ref().map(Calibrator::settings),
        }),
    );
    let report = Report::new(CommandName::Quantize, Provenance::collect(&device_info.name, threads), settings.clone());
    let (mut sink, done) = output::open(&args.output, report)?;
    harness::install_interrupt_handler();
    let n_layers = config.n_layers();
    let runs_per_case = args.run.warmup + args.run.repetitions * prompt_ids.len();
    // Each format runs dense, then under each --sparsity method.
    let variants: Vec<Option<SparsityMethod>> = std::iter::once(None).chain(args.sparsity.sparsity.iter().copied().map(Some)).collect();
    let progress = super::progress::bar((formats.len() * variants.len() * runs_per_case) as u64);
    progress.set_message("reference distributions");
    let mut reference_rows = if args.skip_evaluate {
        None
    } else {
        let engine = Engine::new(reference.model.as_ref(), &device);
        Some(ReferenceRows::write(&engine, n_layers, &windows, config.vocab_size())?)
    };
    let case = CaseContext { args, settings: &settings, resolved: &resolved, device: &device, windows: &windows, prompt_ids: &prompt_ids };
    let mut reference = Some((reference, reference_load_s));
    let mut reference_greedy: Option<Vec<Vec<u32>>> = None;
    let mut any_failed = false;
    for format in &formats {
        // Loaded once for the format's dense case and its sparsity cases.
        let mut model: Option<(LoadedModel, f64)> = None;
        for &variant in &variants {
            let params = CaseParams::Quantize(QuantizeParams {
                model: args.model.model.clone(),
                format: format.name(),
                max_new_tokens: args.max_new_tokens,
                sparsity: variant.map(|m| m.to_string()),
            });
            let case_id = params.id(&settings);
            let label = params.as_quantize().map_or_else(String::new, QuantizeParams::variant);
            if done.contains(&case_id) {
                progress.inc(runs_per_case as u64);
                if is_reference(format, variant) {
                    reference_greedy = sink.report().cases.iter().find(|c| c.case_id == case_id).map(|c| harness::first_repetition(&c.runs));
                }
                continue;
            }
            progress.set_message(label.clone());
            if model.is_none() {
                let loaded = match (format, reference.take()) {
                    (WeightFormat::Dense(DType::F32), Some(r)) => Ok(r),
                    (_, _) => load(&resolved, *format, seed, &device, args.device.no_cuda_graph),
                };
                match loaded {
                    Ok(m) => model = Some(m),
                    Err(e) if output::goes_on_after(&args.output, &e) => {
                        any_failed |= output::record_not_run(&mut sink, params, &settings, &e)?;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some((loaded, load_s)) = model.as_mut() else { continue };
            let measured = (|| -> Result<_> {
                let applied = match (variant, &calibrator) {
                    (Some(method), Some(c)) => {
                        let (seconds, cached) = c.apply(loaded, method)?;
                        Some((method, seconds, cached))
                    }
                    _ => {
                        loaded.model.set_sparsity(None)?;
                        None
                    }
                };
                case.measure(loaded, *load_s, format, applied, reference_rows.as_mut(), reference_greedy.as_deref(), source_gguf.as_ref(), &mut || progress.inc(1))
            })();
            let (result, greedy) = match measured {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(output::interrupted(&sink, &progress)),
                Err(e) if output::goes_on_after(&args.output, &e) => {
                    any_failed |= output::record_not_run(&mut sink, params, &settings, &e)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if is_reference(format, variant) {
                reference_greedy = Some(greedy);
            }
            if let (Some(s), Some(Quality::Quantize(q))) = (&result.summary, &result.quality) {
                let quality = q.shift.as_ref().map_or(String::new(), |d| format!("  PPL {:>8.4}  KLD {:.6}", d.perplexity, d.kld_mean));
                let zeroed = q.sparsity.as_ref().map_or(String::new(), |z| format!("  zeroed {:.1}%", z.zeroed_share_overall * 100.0));
                super::progress::note(&progress, &format!(
                    "{label:<16} {:>5.2} bpw {:>7.1} MiB  prefill {:>6.0} tok/s  decode {:>6.1} tok/s{quality}{zeroed}",
                    q.bits_per_weight,
                    q.weight_bytes as f64 / (1u64 << 20) as f64,
                    s.prefill_tokens_per_s.median,
                    s.decode_tokens_per_s.median,
                ));
            }
            sink.record(result)?;
        }
    }
    progress.finish_and_clear();
    output::finish(&mut sink, &args.output)?;
    Ok(if any_failed { Outcome::CasesFailed } else { Outcome::Success })
}

/// What every format's case shares.
struct CaseContext<'a> {
    args: &'a QuantizeArgs,
    settings: &'a crate::results::schema::Settings,
    resolved: &'a ResolvedModel,
    device: &'a Device,
    windows: &'a [Vec<u32>],
    prompt_ids: &'a [Vec<u32>],
}

impl CaseContext<'_> {
    /// Speed runs, the distribution shift and the optional save of one loaded format: the
    /// case (its id and params filled in by the caller) and its greedy tokens per prompt.
    #[allow(clippy::too_many_arguments)]
    fn measure(
        &self,
        loaded: &LoadedModel,
        load_s: f64,
        format: &WeightFormat,
        sparsity: Option<(SparsityMethod, f64, bool)>,
        reference: Option<&mut ReferenceRows>,
        reference_greedy: Option<&[Vec<u32>]>,
        source_gguf: Option<&GgufFile>,
        tick: &mut dyn FnMut(),
    ) -> Result<Option<(CaseResult, Vec<Vec<u32>>)>> {
        let engine = Engine::new(loaded.model.as_ref(), self.device);
        let spec = CaseSpec {
            prompts: self.prompt_ids,
            max_new_tokens: self.args.max_new_tokens,
            sampling: SamplingConfig::default(),
            stop_at_eos: self.args.run.stop_at_eos,
            warmup: self.args.run.warmup,
            repetitions: self.args.run.repetitions,
            // On CUDA the static cache, so decoding takes the captured graph where the weights
            // allow it (dense, our int formats); `full` is bitwise the same computation elsewhere.
            kv: if self.device.is_cuda() && !self.args.device.no_cuda_graph { KvKind::Static } else { KvKind::Full },
            kv_options: Default::default(),
        };
        let Some(runs) = harness::run_case(loaded, &engine, &mut Standard, &spec, tick)? else { return Ok(None) };
        let greedy = harness::first_repetition(&runs);
        let n_layers = loaded.model.config().n_layers();
        // The reference against itself: its own stored rows (a second pass would recompute
        // the same numbers bit for bit).
        let shift = match reference {
            None => None,
            Some(r) if is_reference(format, sparsity.map(|(m, _, _)| m)) => Some(reference_shift(self.windows, r)?),
            Some(r) => Some(distribution_shift(&engine, n_layers, self.windows, r)?),
        };
        let (greedy_agreement, first_divergence) = match reference_greedy {
            Some(r) => harness::agreement(&greedy, r),
            None => (Some(1.0), vec![None; greedy.len()]),
        };
        // A sparsity case saves nothing: its weights are the dense case's.
        let save = self.args.save.as_ref().filter(|_| sparsity.is_none());
        let saved = match (save, source_gguf, format) {
            (Some(dir), Some(source), WeightFormat::Int(int)) => {
                let path = dir.join(saved_name(self.resolved, format).with_extension(""));
                int_writer::write(source, &loaded.tokenizer, *int, &path)?;
                Some(path.display().to_string())
            }
            (Some(dir), Some(source), _) => {
                let path = dir.join(saved_name(self.resolved, format));
                gguf_writer::write(source, format, &path)?;
                Some(path.display().to_string())
            }
            _ => None,
        };
        let footprint = loaded.model.weight_footprint();
        let conversion = loaded.conversion.clone();
        let quality = QuantizeQuality {
            weight_params: footprint.params,
            weight_bytes: footprint.bytes,
            bits_per_weight: footprint.bytes as f64 * 8.0 / footprint.params.max(1) as f64,
            tensors: conversion.as_ref().map(|c| c.tensors.clone()).unwrap_or_default(),
            quantize_s: conversion.as_ref().map_or(0.0, |c| c.quantize_seconds),
            load_s,
            shift,
            greedy_agreement,
            first_divergence,
            saved,
            sparsity: sparsity.and_then(|(m, seconds, cached)| super::sparsity::record(loaded, m, seconds, cached)),
        };
        let params = QuantizeParams {
            model: self.args.model.model.clone(),
            format: format.name(),
            max_new_tokens: self.args.max_new_tokens,
            sparsity: sparsity.map(|(m, _, _)| m.to_string()),
        };
        let summary = harness::summarize(&params.variant(), &runs);
        let params = CaseParams::Quantize(params);
        let result = CaseResult::ran(params, self.settings, harness::model_record(&loaded.spec)?, runs, summary, Some(Quality::Quantize(quality)));
        Ok(Some((result, greedy)))
    }
}

/// Whether a case is the reference: f32, dense.
fn is_reference(format: &WeightFormat, sparsity: Option<SparsityMethod>) -> bool {
    *format == WeightFormat::Dense(DType::F32) && sparsity.is_none()
}

/// `SmolLM2-135M-Instruct.q8_0.gguf` for a source `SmolLM2-135M-Instruct.Q4_1.gguf`.
fn saved_name(resolved: &ResolvedModel, format: &WeightFormat) -> PathBuf {
    let stem = resolved
        .files
        .weight_paths()
        .first()
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    // Drop the source's own type suffix (`.Q4_1`), if it has one.
    let base = match stem.rsplit_once('.') {
        Some((b, t)) if t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && t.len() <= 6 => b.to_string(),
        _ => stem,
    };
    // `int4:g64` -> `int4-g64`: a name every file system takes.
    PathBuf::from(format!("{base}.{}.gguf", format.name().replace(':', "-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_put_f32_first_and_reject_unknown_names() {
        let f = parse_formats("q4_0,int4,q4_0,f32", 64).unwrap();
        let names: Vec<String> = f.iter().map(WeightFormat::name).collect();
        assert_eq!(names, ["f32", "q4_0", "int4:g64"]);
        for bad in ["q1_x", "q4_0,,f16", "int4:48"] {
            assert!(parse_formats(bad, 64).is_err(), "{bad}");
        }
    }

    #[test]
    fn group_size_defaults_to_the_largest_that_divides_and_checks_a_given_one() {
        assert_eq!(group_size(None, &[576, 1536, 576]).unwrap(), 64);
        assert_eq!(group_size(None, &[2048, 5632]).unwrap(), 128);
        let err = group_size(Some(128), &[576, 1536]).unwrap_err().to_string();
        assert!(err.contains("--group-size 128") && err.contains("[32, 64]"), "{err}");
        assert!(group_size(Some(48), &[576]).is_err());
    }
}
