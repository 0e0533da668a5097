//! `llmbench generate`: streams the continuation to stdout, then a one-line timing summary to
//! stderr; `--json` prints one machine-readable record instead.

use super::{load_model, Outcome};
use crate::cli::generate::GenerateArgs;
use crate::engine::{Engine, GenerateRequest};
use crate::kv;
use crate::results::sink::write_atomic;
use anyhow::{Context, Result};
use std::io::Write;

/// The strategy `--decoding` names for `command` (generate, chat): standard, or a
/// layer-contrast method with its flags checked against the model.
pub(super) fn decoding_strategy(
    command: &str,
    method: Option<crate::decode::Method>,
    contrast: &crate::cli::args::LayerContrastArgs,
    model: &dyn crate::models::Model,
    repetition_penalty: f32,
) -> Result<Box<dyn crate::decode::DecodeStrategy>> {
    Ok(match method {
        None | Some(crate::decode::Method::Standard) => Box::new(crate::decode::Standard),
        Some(method) if method.uses_layers() => {
            let config = contrast.config(method)?;
            config.check(model)?;
            if method == crate::decode::Method::Dola {
                crate::decode::dola::warn_if_low_penalty(repetition_penalty);
            }
            Box::new(crate::decode::layer_contrast::LayerContrast::new(config))
        }
        Some(other) => crate::bail_input!(
            "--decoding {}: {command} takes standard, sled-evolution or dola (the sliding-window and speculative methods are compare's --methods, or --draft)",
            other.name()
        ),
    })
}

pub fn run(args: &GenerateArgs) -> Result<Outcome> {
    if args.prompt.trim().is_empty() {
        crate::bail_input!("--prompt is empty: give the text to continue");
    }
    let max_new_tokens = args.generation.max_new_tokens.single("--max-new-tokens")?;
    if max_new_tokens == 0 {
        crate::bail_input!("--max-new-tokens 0: generate at least 1 token");
    }
    args.generation.sampling().validate()?;
    let kv_options = args.generation.kv_options()?;
    let loaded = load_model(&args.model, &args.device, args.generation.seed)?;
    let tokenizer = &loaded.model.tokenizer;
    let prompt_ids = tokenizer.encode(&args.prompt)?;
    if let Some(path) = &args.logits_out {
        if path.extension().and_then(|e| e.to_str()) != Some("npy") {
            crate::bail_input!("--logits-out {}: the file must end in .npy", path.display());
        }
    }
    let mut engine = Engine::new(loaded.model.model.as_ref(), &loaded.device);
    engine.keep_logits = args.logits_out.is_some();
    let request = GenerateRequest {
        prompt_ids: &prompt_ids,
        max_new_tokens,
        sampling: args.generation.sampling(),
        stop_at_eos: !args.ignore_eos,
    };
    engine.validate(&request)?;
    let mut strategy: Box<dyn crate::decode::DecodeStrategy> = match &args.draft {
        None => decoding_strategy("generate", args.decoding, &args.contrast, loaded.model.model.as_ref(), args.generation.repetition_penalty)?,
        Some(source) => {
            let temperature = args.generation.temperature;
            let policies = super::speculative::policies(args.policy.as_slice(), temperature);
            super::speculative::validate(&args.spec, &[args.k], temperature, args.generation.kv_cache, &policies)?;
            super::speculative::check_draft_device(args.spec.draft_device.as_deref(), &loaded)?;
            let draft = super::speculative::prepare(source, &loaded, &args.model, args.generation.seed, &[args.k])?;
            let k = draft.fixed_k.unwrap_or(args.k);
            crate::decode::speculative::build(
                &draft.drafter,
                &crate::decode::speculative::SpecConfig {
                    policy: super::speculative::policy(policies[0], &args.spec),
                    schedule: super::speculative::schedule(&args.spec, k),
                    lookup_max_ngram: args.spec.lookup_ngram,
                    cache: args.generation.kv_cache,
                    kv_options,
                    verify: args.spec.verify_attention(),
                },
            )
        }
    };
    let mut cache = kv::build_with(
        args.generation.kv_cache,
        kv_options,
        loaded.model.model.config().n_layers(),
        prompt_ids.len() + max_new_tokens,
    );

    let mut stdout = std::io::stdout().lock();
    let mut streamed = Vec::new();
    let mut printed = 0usize;
    let mut write_error = None;
    let generation = if args.json {
        engine.generate_with(strategy.as_mut(), cache.as_mut(), &request, &mut |_| {})?
    } else {
        write!(stdout, "{}", args.prompt)?;
        stdout.flush()?;
        engine.generate_with(strategy.as_mut(), cache.as_mut(), &request, &mut |id| {
            streamed.push(id);
            // Print only complete characters: a token can end inside a multi-byte one.
            if let Ok(text) = tokenizer.decode(&streamed) {
                if !text.ends_with('\u{FFFD}') && text.len() > printed {
                    if let Err(e) = write!(stdout, "{}", &text[printed..]).and_then(|_| stdout.flush()) {
                        write_error.get_or_insert(e);
                    }
                    printed = text.len();
                }
            }
        })?
    };
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if let Some(path) = &args.logits_out {
        write_atomic(path, &npy_f32_2d(&generation.logits))
            .with_context(|| format!("--logits-out {}: cannot write the logits", path.display()))?;
    }
    let text = tokenizer.decode(&generation.generated_ids)?;
    let timings = generation.timings();
    if args.json {
        let record = serde_json::json!({
            "llmbench_version": env!("CARGO_PKG_VERSION"),
            "model": loaded.model.spec,
            "device": loaded.device_info,
            "threads": loaded.threads,
            "cpu_kernels": (loaded.device_info.name == "cpu").then(crate::quant::cpu_matmul::kernels_label),
            "kv_cache": args.generation.kv_cache,
            "sampling": request.sampling,
            "prompt": args.prompt,
            "prompt_ids": generation.prompt_ids,
            "generated_ids": generation.generated_ids,
            "text": text,
            "stop_reason": generation.stop_reason,
            "timings": timings,
            "token_times_ns": generation.events.iter().map(|e| e.t_ns).collect::<Vec<_>>(),
            "kv_cache_bytes": generation.kv.kv_cache_bytes,
            "peak_rss_bytes": generation.peak_rss_bytes,
            "peak_device_memory_bytes": generation.peak_device_memory_bytes,
            "device_memory_free_bytes": generation.device_memory.map(|m| m.free_bytes),
            "device_memory_total_bytes": generation.device_memory.map(|m| m.total_bytes),
            "cuda_graph": loaded.model.model.cuda_graph_available() && args.generation.kv_cache == crate::kv::KvKind::Static,
            "draft": args.draft.as_ref().map(|d| d.to_string()),
            "spec_decode_num_drafts": generation.drafts.iter().filter(|d| d.drafted > 0).count(),
            "spec_decode_num_draft_tokens": generation.drafts.iter().map(|d| d.drafted).sum::<usize>(),
            "spec_decode_num_accepted_tokens": generation.drafts.iter().map(|d| d.accepted).sum::<usize>(),
            "phases": generation.phases,
        });
        writeln!(stdout, "{}", serde_json::to_string(&record)?)?;
    } else {
        if printed < text.len() {
            write!(stdout, "{}", &text[printed.min(text.len())..])?;
        }
        writeln!(stdout)?;
        eprintln!(
            "{} prompt + {} new tokens | TTFT {:.1} ms ({:.1} tok/s prefill) | TPOT {:.2} ms ({:.1} tok/s decode) | KV {:.2} MiB | peak RSS {:.0} MiB{} | {} on {}",
            generation.prompt_ids.len(),
            generation.generated_ids.len(),
            timings.ttft_ms,
            timings.prefill_tokens_per_s,
            timings.tpot_ms,
            timings.decode_tokens_per_s,
            generation.kv.kv_cache_bytes as f64 / (1 << 20) as f64,
            generation.peak_rss_bytes as f64 / (1 << 20) as f64,
            match generation.peak_device_memory_bytes {
                Some(b) => format!(" | peak GPU {:.0} MiB", b as f64 / (1 << 20) as f64),
                None => String::new(),
            },
            loaded.model.spec.id,
            loaded.device_info.name,
        );
        if let Some(source) = &args.draft {
            let drafted: usize = generation.drafts.iter().map(|d| d.drafted).sum();
            let accepted: usize = generation.drafts.iter().map(|d| d.accepted).sum();
            eprintln!(
                "draft {source}: {accepted} of {drafted} drafted tokens accepted ({:.1}%) over {} steps",
                if drafted > 0 { 100.0 * accepted as f64 / drafted as f64 } else { 0.0 },
                generation.drafts.len()
            );
        }
    }
    Ok(Outcome::Success)
}

/// A NumPy v1.0 `.npy` file holding `rows` as one little-endian f32 matrix.
fn npy_f32_2d(rows: &[Vec<f32>]) -> Vec<u8> {
    let cols = rows.first().map_or(0, Vec::len);
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", rows.len(), cols);
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in rows.iter().flatten() {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_data_follows() {
        let bytes = npy_f32_2d(&[vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)"), "{header}");
        let data = &bytes[10 + header_len..];
        assert_eq!(data.len(), 6 * 4);
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), 6.0);
    }
}
