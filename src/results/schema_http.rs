//! `http`'s part of the results schema: the server and load shared by a run, what varies per
//! case (one load level: a request rate or a concurrency), and the level's metrics beside the
//! per-request runs (src/http/metrics.rs defines every metric).

use crate::http::metrics::{LevelMetrics, Slo};
use crate::http::openai::Api;
use crate::measure::stats::Summary;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HttpSettings {
    pub endpoint: String,
    pub api: Api,
    /// The `model` field sent, when one was.
    pub served_model: Option<String>,
    /// `random:IN:OUT`, `prompts`, `jsonl:PATH` or `sharegpt:PATH`, with the file's sha256.
    pub dataset: String,
    pub dataset_sha256: Option<String>,
    /// Requests a level (or until `duration_s`).
    pub num_prompts: usize,
    pub duration_s: Option<f64>,
    /// Requests sent before each level and not measured.
    pub warmup_requests: usize,
    pub max_tokens: usize,
    pub ignore_eos: bool,
    /// Gamma shape of the inter-arrival times (1: Poisson).
    pub burstiness: f64,
    /// Seconds over which each level's rate ramped up from 0 (`--ramp-up`).
    pub ramp_up_s: Option<f64>,
    pub slo: Slo,
    /// The tokenizer that counts tokens when a server sends no usage (and builds random prompts).
    pub tokenizer: String,
    /// The client spun between events instead of parking (`--busy-poll`).
    pub busy_poll: bool,
    pub connect_timeout_s: f64,
    pub read_timeout_s: f64,
}

/// One load level.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HttpParams {
    /// What the server is called in tables: `--served-model`, or the endpoint.
    pub model: String,
    /// Offered requests a second ("inf": all due at once).
    pub request_rate: String,
    pub max_concurrency: Option<usize>,
    pub max_new_tokens: usize,
}

impl HttpParams {
    pub fn label(&self) -> String {
        match (self.request_rate.as_str(), self.max_concurrency) {
            ("inf", Some(c)) => format!("concurrency {c}"),
            ("inf", None) => "rate inf".into(),
            (r, Some(c)) => format!("rate {r} c={c}"),
            (r, None) => format!("rate {r}"),
        }
    }
}

/// A level's metrics, and llama-server's own timings of the same requests where it sent them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HttpQuality {
    pub metrics: LevelMetrics,
    /// The server's `timings.prompt_ms` per request (llama-server), beside our TTFT.
    pub server_prompt_ms: Option<Summary>,
    /// The server's `timings.predicted_per_token_ms`, beside our TPOT.
    pub server_per_token_ms: Option<Summary>,
}
