//! `llmbench serve`: loads the model, sizes the KV pool and hands both to `serve::run`.

use super::{load_model, Outcome};
use crate::cli::serve::ServeArgs;
use crate::decode::speculative::DraftSource;
use crate::engine::batch::BatchLimits;
use crate::engine::batch_spec::BatchSpeculation;
use crate::models::chat_template::ChatTemplate;
use anyhow::Result;
use std::time::Duration;

/// KV tokens per batch slot in the default pool.
const DEFAULT_TOKENS_PER_SLOT: usize = 1024;
/// Tokens drafted per step by `--draft lookup` (vLLM's examples use 3-5 for n-gram drafts).
const DEFAULT_DRAFT_TOKENS: usize = 4;

pub fn run(args: &ServeArgs) -> Result<Outcome> {
    if args.max_batch == 0 || args.kv_block_size == 0 || args.max_step_tokens == 0 || args.kv_blocks == Some(0) {
        crate::bail_input!("--max-batch, --kv-block-size, --max-step-tokens and --kv-blocks must be at least 1");
    }
    if !(args.shutdown_grace >= 0.0 && args.shutdown_grace.is_finite()) {
        crate::bail_input!("--shutdown-grace {}: give a number of seconds, 0 or more", args.shutdown_grace);
    }
    let speculation = match &args.draft {
        None => None,
        Some(DraftSource::Lookup(k)) => Some(BatchSpeculation::lookup(k.unwrap_or(DEFAULT_DRAFT_TOKENS))?),
        Some(other) => crate::bail_input!(
            "--draft {other}: serve drafts by prompt lookup only (--draft lookup or lookup:K); a draft network needs its own paged cache in the batch, not built yet"
        ),
    };
    let resolved = crate::models::source::resolve(&args.model.model, &args.model.source_options())?;
    let loaded = load_model(&args.model, &args.device, args.seed)?;
    let model = loaded.model.model;
    let tokenizer = loaded.model.tokenizer;
    if !model.has_batch() {
        crate::bail_input!("--model {}: this architecture has no batched forward pass", args.model.model);
    }
    let config = model.config();
    // A model without a template still serves completions; chat requests get the reason.
    let template = ChatTemplate::for_model(&resolved, args.chat_template.as_deref(), &tokenizer, config);
    let template = match (template, &args.chat_template) {
        (Err(e), Some(_)) => return Err(e),
        (t, _) => t.map_err(|e| format!("{e:#}")),
    };
    let window = config.context_window();
    // Default: one full context, or 1,024 tokens per batch slot where that is more (as llama-server's
    // -c is one pool its slots share): any single request fits, and a full batch of long ones
    // gets preempted and recomputed rather than holding max-batch whole contexts of f32 keys.
    let kv_blocks = args.kv_blocks.unwrap_or(window.max(args.max_batch * DEFAULT_TOKENS_PER_SLOT).div_ceil(args.kv_block_size));
    let limits = BatchLimits { max_batch: args.max_batch, max_step_tokens: args.max_step_tokens, block_size: args.kv_block_size, kv_blocks };
    let opts = crate::serve::ServeOptions {
        host: args.host.clone(),
        port: args.port,
        model_name: args.served_model_name.clone().unwrap_or_else(|| args.model.model.clone()),
        limits,
        max_queue: args.max_queue,
        max_body: args.max_body_bytes,
        shutdown_grace: Duration::from_secs_f64(args.shutdown_grace),
        seed: args.seed,
        speculation,
    };
    crate::serve::run(model, tokenizer, template, loaded.device, opts)?;
    Ok(Outcome::Success)
}
