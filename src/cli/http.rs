//! `llmbench http`: benchmark an OpenAI-compatible server under load.

use super::args::{NumList, OutputArgs};
use crate::http::dataset::Dataset;
use crate::http::openai::Api;
use crate::models::source::DEFAULT_MODEL;
use clap::Args;

/// Benchmark an OpenAI-compatible server (llama.cpp's llama-server, vLLM, TGI, SGLang) under
/// load: request and token throughput, TTFT, TPOT, ITL and end-to-end latency percentiles,
/// goodput, per load level (request rates and/or concurrencies), with results and charts.
///
/// Latency counts from each request's scheduled send time (no coordinated omission); output
/// tokens come from the server's usage; TTFT is the first chunk that carries output.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8080 (the /v1/... paths are added).
    #[arg(long)]
    pub endpoint: String,
    /// Which endpoint: completions (/v1/completions) or chat (/v1/chat/completions).
    #[arg(long, value_enum, default_value_t = Api::Completions)]
    pub api: Api,
    /// The `model` field of each request (servers that serve one model ignore it).
    #[arg(long)]
    pub served_model: Option<String>,
    /// Offered request rates (requests/s, comma-separated; inf = all at once); one load level each.
    #[arg(long, default_value = "inf", value_delimiter = ',')]
    pub request_rate: Vec<String>,
    /// Gamma shape of the inter-arrival times: 1 is a Poisson process, below 1 burstier.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Ramp each level's rate up linearly from 0 over this many seconds (open loop only).
    #[arg(long)]
    pub ramp_up: Option<f64>,
    /// Most requests in flight (a list or range sweeps: 1,2,4,8 or 1-64*2); default unlimited.
    #[arg(long)]
    pub max_concurrency: Option<NumList>,
    /// Requests measured per load level.
    #[arg(long, default_value_t = 100)]
    pub num_prompts: usize,
    /// Stop sending a level's new requests after this many seconds (those in flight finish).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Requests sent (one at a time) before each level and not measured.
    #[arg(long, default_value_t = 2)]
    pub warmup_requests: usize,
    /// What to send: random:IN:OUT (token ids from the tokenizer's vocabulary), prompts (the
    /// built-in prompts), jsonl:PATH ({"prompt": ...} a line) or sharegpt:PATH.
    #[arg(long, default_value = "random:128:128")]
    pub dataset: Dataset,
    /// Tokens to generate a request (default: the dataset's output length, else 128).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Let the server stop at end-of-sequence (by default `ignore_eos` is sent, so output
    /// lengths are what was asked for; servers that do not know it ignore it).
    #[arg(long)]
    pub stop_at_eos: bool,
    /// Sampling temperature sent with each request.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Seeds the arrival schedule, the random dataset and the order of dataset items.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Service-level objectives for goodput, in ms: ttft:MS,tpot:MS,e2el:MS (any of them).
    #[arg(long)]
    pub goodput: Option<String>,
    /// The model whose tokenizer builds random prompts and counts tokens when a server sends
    /// no usage (any --model form: the served model's own is best).
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub tokenizer: String,
    /// Keep the client's core spinning between events, so that every timestamp is taken within
    /// microseconds of the bytes' arrival (p99 TTFT overhead ~0.3-0.5 ms instead of ~1-2 ms on
    /// a 2-core machine, benches/http_client_overhead.rs). It costs that core: leave it off when
    /// the server shares this machine's CPUs.
    #[arg(long)]
    pub busy_poll: bool,
    /// Seconds to wait for a connection.
    #[arg(long, default_value_t = 5.0)]
    pub connect_timeout: f64,
    /// Seconds to wait for the next bytes of a response before the request counts as stalled.
    #[arg(long, default_value_t = 60.0)]
    pub read_timeout: f64,
    #[command(flatten)]
    pub output: OutputArgs,
}
