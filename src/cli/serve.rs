//! `llmbench serve`: an OpenAI-compatible server over the continuous-batching engine.

use super::args::{DeviceArgs, ModelArgs};
use clap::Args;
use std::path::PathBuf;

/// Serve the model over HTTP: /v1/completions and /v1/chat/completions (streamed or not, with
/// stream_options.include_usage), /v1/models, /health and /metrics (Prometheus), with
/// continuous batching over a paged KV pool. Measure it with `llmbench http`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0 exposes the server).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The model name the API reports (default: --model).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Sequences decoded together at most.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Requests that may wait for a batch slot beyond --max-batch; more get 429.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// KV blocks in the pool (default: the model's context, or 1,024 tokens per batch slot if
    /// that is more; sequences share the pool and the scheduler preempts when it runs out).
    #[arg(long)]
    pub kv_blocks: Option<usize>,
    /// Token slots per KV block.
    #[arg(long, default_value_t = 16)]
    pub kv_block_size: usize,
    /// Tokens one step may feed (decodes plus prompt chunks): bounds how long a new prompt
    /// stalls the running sequences.
    #[arg(long, default_value_t = 512)]
    pub max_step_tokens: usize,
    /// Largest request body accepted, in bytes (more gets 413).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Seconds in-flight requests may take to finish after SIGTERM or Ctrl-C before they are cancelled.
    #[arg(long, default_value_t = 30.0)]
    pub shutdown_grace: f64,
    /// A Jinja chat template for /v1/chat/completions (default: the model's own).
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<PathBuf>,
    /// Speculative decoding inside the batch: lookup[:K] drafts up to K tokens (default 4) per
    /// decoding sequence and step by prompt lookup (vLLM's n-gram proposer) and verifies them
    /// in the step (lossless: greedy and sampled outputs keep the model's distribution); the
    /// spec-decode counters appear in /metrics. Draft networks are not served yet.
    #[arg(long, value_name = "lookup[:K]")]
    pub draft: Option<crate::decode::speculative::DraftSource>,
    /// Sampling seed of requests that send none (each request adds its number).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}
