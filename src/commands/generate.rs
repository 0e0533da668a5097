//! `llmbench generate`: streams the continuation to stdout, then a one-line timing summary to
//! stderr; `--json` prints one machine-readable record instead.

use super::{load_model, Outcome};
use crate::cli::generate::GenerateArgs;
use crate::engine::{Engine, GenerateRequest};
use crate::kv;
use anyhow::Result;
use std::io::Write;

pub fn run(args: &GenerateArgs) -> Result<Outcome> {
    if args.prompt.trim().is_empty() {
        crate::bail_input!("--prompt is empty: give the text to continue");
    }
    let max_new_tokens = args.generation.max_new_tokens.single("--max-new-tokens")?;
    if max_new_tokens == 0 {
        crate::bail_input!("--max-new-tokens 0: generate at least 1 token");
    }
    args.generation.sampling().validate()?;
    let loaded = load_model(&args.model, &args.device, args.generation.seed)?;
    let tokenizer = &loaded.model.tokenizer;
    let prompt_ids = tokenizer.encode(&args.prompt)?;
    let engine = Engine::new(loaded.model.model.as_ref(), &loaded.device);
    let request = GenerateRequest {
        prompt_ids: &prompt_ids,
        max_new_tokens,
        sampling: args.generation.sampling(),
        stop_at_eos: !args.ignore_eos,
    };
    engine.validate(&request)?;
    let mut cache = kv::build(args.generation.kv_cache, loaded.model.model.config().n_layers());

    let mut stdout = std::io::stdout().lock();
    let mut streamed = Vec::new();
    let mut printed = 0usize;
    let mut write_error = None;
    let generation = if args.json {
        engine.generate(cache.as_mut(), &request, &mut |_| {})?
    } else {
        write!(stdout, "{}", args.prompt)?;
        stdout.flush()?;
        engine.generate(cache.as_mut(), &request, &mut |id| {
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
    let text = tokenizer.decode(&generation.generated_ids)?;
    let timings = generation.timings();
    if args.json {
        let record = serde_json::json!({
            "llmbench_version": env!("CARGO_PKG_VERSION"),
            "model": loaded.model.spec,
            "device": loaded.device_info,
            "threads": loaded.threads,
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
        });
        writeln!(stdout, "{}", serde_json::to_string(&record)?)?;
    } else {
        if printed < text.len() {
            write!(stdout, "{}", &text[printed.min(text.len())..])?;
        }
        writeln!(stdout)?;
        eprintln!(
            "{} prompt + {} new tokens | TTFT {:.1} ms ({:.1} tok/s prefill) | TPOT {:.2} ms ({:.1} tok/s decode) | KV {:.2} MiB | peak RSS {:.0} MiB | {} on {}",
            generation.prompt_ids.len(),
            generation.generated_ids.len(),
            timings.ttft_ms,
            timings.prefill_tokens_per_s,
            timings.tpot_ms,
            timings.decode_tokens_per_s,
            generation.kv.kv_cache_bytes as f64 / (1 << 20) as f64,
            generation.peak_rss_bytes as f64 / (1 << 20) as f64,
            loaded.model.spec.id,
            loaded.device_info.name,
        );
    }
    Ok(Outcome::Success)
}
