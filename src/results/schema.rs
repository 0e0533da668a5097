//! The results file format. Versioned (`schema_version`), every raw sample kept, units in field
//! names, llama-bench (`avg_ts`, `stddev_ts`, `samples_ns`) and vLLM (`mean_tpot_ms`,
//! `p99_itl_ms`, ...) names where the quantity is the same. `results/schema.json` is generated
//! from these types (a test keeps it in sync).

use crate::measure::stats::Summary;
use crate::measure::system::Provenance;
use serde::{Deserialize, Serialize};

/// Bumped on any change that old readers would misread.
pub const SCHEMA_VERSION: u32 = 1;

/// One results file: a subcommand's run over a set of test cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    pub schema_version: u32,
    /// The subcommand that made it (compare).
    pub command: String,
    pub provenance: Provenance,
    /// The validated settings shared by every case.
    pub settings: Settings,
    pub cases: Vec<CaseResult>,
}

/// Settings shared by all cases of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Settings {
    pub warmup: usize,
    pub repetitions: usize,
    pub seed: u64,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub repetition_penalty: f32,
    pub stop_at_eos: bool,
    pub prompts: Vec<String>,
    pub dtype: String,
    pub quality: bool,
    /// Whether single-token steps on a static cache ran as a captured CUDA graph (CUDA only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_graph: Option<bool>,
}

/// What varies between cases; its hash is the case id used by `--resume`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CaseParams {
    pub model: String,
    pub method: String,
    /// Sliding window (tokens) for SLED methods; absent for standard.
    pub window: Option<usize>,
    /// Stride (tokens) for sled:stride.
    pub stride: Option<usize>,
    pub max_new_tokens: usize,
    pub kv_cache: String,
}

impl CaseParams {
    /// A short stable id: FNV-1a over the canonical JSON of the parameters and the settings.
    pub fn id(&self, settings: &Settings) -> String {
        let text = serde_json::to_string(&(self, settings)).unwrap_or_default();
        let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        format!("{h:016x}")
    }

    /// "method w=50 s=25 n=128" for tables and legends.
    pub fn label(&self) -> String {
        let mut s = self.method.clone();
        if let Some(w) = self.window {
            s += &format!(" w={w}");
        }
        if let Some(st) = self.stride {
            s += &format!(" s={st}");
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Ok,
    Failed,
}

/// A model as loaded, for provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ModelRecord {
    pub id: String,
    pub source: String,
    pub revision: Option<String>,
    /// sha256 of the weights file (GGUF or single safetensors); absent for random weights.
    pub file_sha256: Option<String>,
    pub weights_format: String,
    pub dtype: String,
    pub tokenizer: String,
    pub family: String,
    pub n_layers: usize,
    pub context_window: usize,
}

/// One test case: its parameters, raw runs, summary and quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CaseResult {
    pub case_id: String,
    pub params: CaseParams,
    pub status: CaseStatus,
    pub error: Option<String>,
    pub model: Option<ModelRecord>,
    pub runs: Vec<RunRecord>,
    pub summary: Option<CaseSummary>,
    pub quality: Option<Quality>,
}

/// One generation (one prompt, one repetition), with every raw sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunRecord {
    pub prompt_index: usize,
    pub repetition: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    pub e2e_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens_per_s: f64,
    /// Every inter-token gap.
    pub itl_ms: Vec<f64>,
    /// Time of each token since the run started, after a device synchronisation.
    pub samples_ns: Vec<u64>,
    /// Exact KV-cache bytes after each token.
    pub kv_cache_bytes_per_token: Vec<u64>,
    /// KV-cache bytes when the run ended.
    pub kv_cache_bytes: u64,
    pub peak_rss_bytes: u64,
    /// Peak device memory this process held during the run, from the CUDA memory pool's
    /// high-water mark (weights included); absent on the CPU.
    pub peak_device_memory_bytes: Option<u64>,
    /// The GPU's free and total memory (all processes) when the run ended; absent on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_memory_free_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_memory_total_bytes: Option<u64>,
    pub stop_reason: String,
    pub generated_ids: Vec<u32>,
    pub text: String,
}

/// Summaries over a case's runs, plus the flat names llama-bench and vLLM users look for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CaseSummary {
    pub ttft_ms: Summary,
    pub tpot_ms: Summary,
    /// Over every inter-token gap of every run.
    pub itl_ms: Summary,
    pub e2e_ms: Summary,
    pub prefill_tokens_per_s: Summary,
    pub decode_tokens_per_s: Summary,
    pub peak_rss_bytes: Summary,
    pub kv_cache_bytes: Summary,
    /// llama-bench: mean and sample std of decode tokens/s.
    pub avg_ts: f64,
    pub stddev_ts: f64,
    /// vLLM's names.
    pub mean_ttft_ms: f64,
    pub median_ttft_ms: f64,
    pub p99_ttft_ms: f64,
    pub mean_tpot_ms: f64,
    pub median_tpot_ms: f64,
    pub p99_tpot_ms: f64,
    pub mean_itl_ms: f64,
    pub median_itl_ms: f64,
    pub p99_itl_ms: f64,
}

/// Quality next to speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Quality {
    /// Fraction of generated tokens equal to standard decoding's, position by position
    /// (first repetition of each prompt); 1 for standard itself.
    pub agreement_with_standard: Option<f64>,
    /// Per prompt: index of the first generated token that differs from standard's (absent
    /// when none does).
    pub first_divergence: Vec<Option<usize>>,
    /// Perplexity of the generated tokens under the full model with a full cache (`--quality`).
    pub perplexity: Option<f64>,
}

/// The JSON Schema of `Report`, as committed in results/schema.json.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Report);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
