//! The one results format every command writes. Versioned (`schema_version`), every raw sample
//! kept, units in field names, llama-bench (`avg_ts`, `stddev_ts`, `samples_ns`) and vLLM
//! (`mean_tpot_ms`, `p99_itl_ms`, ...) names where the quantity is the same.
//!
//! A report is the same shape for every command: provenance, settings, and cases that each hold
//! raw runs, a summary and quality. What differs between commands is typed, not free-form:
//! the command's own settings, case parameters and quality are enums tagged by `command`, so a
//! reader branches on one field and every variant is in `results/schema.json` (generated from
//! these types; a test keeps it in sync). A new command adds one variant to each of the three.

use crate::kv::{KvOptions, KvStats};
use crate::measure::stats::Summary;
use crate::measure::system::Provenance;
pub use super::schema_compare::{CompareParams, CompareQuality, CompareSettings};
pub use super::schema_batch::{BatchParams, BatchQuality, BatchRepetition, BatchSettings};
pub use super::schema_http::{HttpParams, HttpQuality, HttpSettings};
pub use super::schema_evaluate::{EvaluateParams, EvaluateQuality, EvaluateSettings, Interval, McScores, TextScores, TruthfulqaScores};
pub use super::schema_sled::{SledParams, SledQuality, SledSettings};
pub use super::schema_quantize::{QuantizeParams, QuantizeQuality, QuantizeSettings, SparsityRecord, SparsitySettings};
pub use super::schema_specdec::{Ratio, SpecdecParams, SpecdecQuality, SpecdecSettings, SpeculativeRun};
use serde::{Deserialize, Serialize};

/// Bumped on any change that old readers would misread. Version 1 files (compare's
/// results.json, kvcache's kvcache.json) are converted on reading (`results::convert`).
pub const SCHEMA_VERSION: u32 = 2;

/// The subcommands that write reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandName {
    Compare,
    Kvcache,
    Specdec,
    Quantize,
    Evaluate,
    Sled,
    Http,
    Batch,
}

impl CommandName {
    pub fn name(self) -> &'static str {
        match self {
            Self::Compare => "compare",
            Self::Kvcache => "kvcache",
            Self::Specdec => "specdec",
            Self::Quantize => "quantize",
            Self::Evaluate => "evaluate",
            Self::Sled => "sled",
            Self::Http => "http",
            Self::Batch => "batch",
        }
    }
}

/// One results file: a subcommand's run over a set of test cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    pub schema_version: u32,
    /// The subcommand that made it; `settings`, every case's `params` and `quality` carry the same tag.
    pub command: CommandName,
    pub provenance: Provenance,
    /// The validated settings shared by every case.
    pub settings: Settings,
    pub cases: Vec<CaseResult>,
    /// Set when the file was converted from an older schema: from what, and what that version
    /// did not record (so absent samples are not mistaken for zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<String>,
}

/// Settings shared by all cases of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Settings {
    /// Full-length warm-up runs per case before measuring.
    pub warmup: usize,
    /// Measured runs per prompt and case.
    pub repetitions: usize,
    pub seed: u64,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub repetition_penalty: f32,
    pub stop_at_eos: bool,
    pub dtype: String,
    /// Whether single-token steps on a static cache ran as a captured CUDA graph (CUDA only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_graph: Option<bool>,
    /// What only this command sets.
    pub command_settings: CommandSettings,
}

/// A command's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum CommandSettings {
    Compare(CompareSettings),
    Kvcache(KvcacheSettings),
    Specdec(SpecdecSettings),
    Quantize(QuantizeSettings),
    Evaluate(EvaluateSettings),
    Sled(SledSettings),
    Http(HttpSettings),
    Batch(BatchSettings),
}

impl CommandSettings {
    pub fn command(&self) -> CommandName {
        match self {
            Self::Compare(_) => CommandName::Compare,
            Self::Kvcache(_) => CommandName::Kvcache,
            Self::Specdec(_) => CommandName::Specdec,
            Self::Quantize(_) => CommandName::Quantize,
            Self::Evaluate(_) => CommandName::Evaluate,
            Self::Sled(_) => CommandName::Sled,
            Self::Http(_) => CommandName::Http,
            Self::Batch(_) => CommandName::Batch,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KvcacheSettings {
    /// The prompt file and the sha256 of its text.
    pub prompt_file: String,
    pub prompt_file_sha256: String,
    pub contexts: Vec<usize>,
    /// Strategy labels in the order they ran (`full` first: the reference).
    pub strategies: Vec<String>,
    /// Tokens of the real continuation teacher-forced for perplexity and KL.
    pub eval_tokens: usize,
    pub options: KvOptions,
}

/// What varies between cases; its hash (with the settings) is the case id used by `--resume`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum CaseParams {
    Compare(CompareParams),
    Kvcache(KvcacheParams),
    Specdec(SpecdecParams),
    Quantize(QuantizeParams),
    Evaluate(EvaluateParams),
    Sled(SledParams),
    Http(HttpParams),
    Batch(BatchParams),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KvcacheParams {
    pub model: String,
    /// Label with its main option (`window:256`, `kivi:2`).
    pub strategy: String,
    /// Tokens of the prompt file fed as the context.
    pub context_tokens: usize,
    pub max_new_tokens: usize,
}

impl CaseParams {
    /// A short stable id: FNV-1a over the canonical JSON of the parameters and the settings.
    pub fn id(&self, settings: &Settings) -> String {
        let text = serde_json::to_string(&(self, settings)).unwrap_or_default();
        let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        format!("{h:016x}")
    }

    pub fn command(&self) -> CommandName {
        match self {
            Self::Compare(_) => CommandName::Compare,
            Self::Kvcache(_) => CommandName::Kvcache,
            Self::Specdec(_) => CommandName::Specdec,
            Self::Quantize(_) => CommandName::Quantize,
            Self::Evaluate(_) => CommandName::Evaluate,
            Self::Sled(_) => CommandName::Sled,
            Self::Http(_) => CommandName::Http,
            Self::Batch(_) => CommandName::Batch,
        }
    }

    pub fn model(&self) -> &str {
        match self {
            Self::Compare(p) => &p.model,
            Self::Kvcache(p) => &p.model,
            Self::Specdec(p) => &p.model,
            Self::Quantize(p) => &p.model,
            Self::Evaluate(p) => &p.model,
            Self::Sled(p) => &p.model,
            Self::Http(p) => &p.model,
            Self::Batch(p) => &p.model,
        }
    }

    pub fn max_new_tokens(&self) -> usize {
        match self {
            Self::Compare(p) => p.max_new_tokens,
            Self::Kvcache(p) => p.max_new_tokens,
            Self::Specdec(p) => p.max_new_tokens,
            Self::Quantize(p) => p.max_new_tokens,
            Self::Evaluate(p) => p.max_new_tokens,
            // Scoring teacher-forces answers: nothing is generated.
            Self::Sled(_) => 0,
            Self::Http(p) => p.max_new_tokens,
            Self::Batch(p) => p.max_new_tokens,
        }
    }

    /// "sled:stride w=50 s=25" or "window:256 @4096" for tables, legends and `diff`.
    pub fn label(&self) -> String {
        match self {
            Self::Compare(p) => {
                let mut s = p.method.clone();
                if let Some(w) = p.window {
                    s += &format!(" w={w}");
                }
                if let Some(st) = p.stride {
                    s += &format!(" s={st}");
                }
                if let Some(k) = p.k {
                    s += &format!(" k={k}");
                }
                if let Some(c) = &p.contrast {
                    s += &format!(" {c}");
                }
                if let Some(i) = &p.input {
                    s += &format!(" in={i}");
                }
                if let Some(sp) = &p.sparsity {
                    s += &format!(" sp={sp}");
                }
                // An all_combined study's cases differ in their cache too; its parts are named.
                match p.part.as_deref() {
                    Some("all_combined") => "all_combined".into(),
                    Some("baseline") => "baseline".into(),
                    Some("kv") => format!("{s} kv={}", p.kv_cache),
                    _ => s,
                }
            }
            Self::Kvcache(p) => format!("{} @{}", p.strategy, p.context_tokens),
            Self::Specdec(p) => match (&p.draft, p.k) {
                (Some(draft), Some(k)) => {
                    let policy = p.policy.as_deref().unwrap_or("greedy");
                    let mut s = format!("{draft} k={k}");
                    if policy != "greedy" {
                        s += &format!(" {policy}");
                    }
                    if p.lossy {
                        s += " (lossy)";
                    }
                    s
                }
                _ => "standard".into(),
            },
            Self::Quantize(p) => p.variant(),
            Self::Evaluate(p) => p.format.clone(),
            Self::Sled(p) => p.label(),
            Self::Http(p) => p.label(),
            Self::Batch(p) => p.label(),
        }
    }

    pub fn as_compare(&self) -> Option<&CompareParams> {
        match self {
            Self::Compare(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_kvcache(&self) -> Option<&KvcacheParams> {
        match self {
            Self::Kvcache(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_specdec(&self) -> Option<&SpecdecParams> {
        match self {
            Self::Specdec(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_quantize(&self) -> Option<&QuantizeParams> {
        match self {
            Self::Quantize(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_evaluate(&self) -> Option<&EvaluateParams> {
        match self {
            Self::Evaluate(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_sled(&self) -> Option<&SledParams> {
        match self {
            Self::Sled(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_batch(&self) -> Option<&BatchParams> {
        match self {
            Self::Batch(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_http(&self) -> Option<&HttpParams> {
        match self {
            Self::Http(p) => Some(p),
            _ => None,
        }
    }
}

/// How a case ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    Ok,
    /// It ran and failed (`--continue-on-error` recorded it and went on); `reason` says why.
    Failed,
    /// A combination this model or strategy cannot run, planned in a sweep; `reason` says why.
    Skipped,
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
    /// Why the case failed or was skipped; absent when it ran.
    pub reason: Option<String>,
    pub model: Option<ModelRecord>,
    pub runs: Vec<RunRecord>,
    pub summary: Option<CaseSummary>,
    pub quality: Option<Quality>,
}

impl CaseResult {
    /// A case that ran: its runs, their summary and the command's quality.
    pub fn ran(
        params: CaseParams,
        settings: &Settings,
        model: ModelRecord,
        runs: Vec<RunRecord>,
        summary: Option<CaseSummary>,
        quality: Option<Quality>,
    ) -> Self {
        Self { case_id: params.id(settings), params, status: CaseStatus::Ok, reason: None, model: Some(model), runs, summary, quality }
    }

    /// A case that did not run: failed (with the error) or skipped (with the reason).
    pub fn not_run(params: CaseParams, settings: &Settings, status: CaseStatus, reason: String) -> Self {
        Self {
            case_id: params.id(settings),
            params,
            status,
            reason: Some(reason),
            model: None,
            runs: vec![],
            summary: None,
            quality: None,
        }
    }
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
    /// What the cache held when the run ended: tokens, evictions, and the strategy's own
    /// details (static's used bytes, paged's blocks); absent in files converted from schema 1.
    pub kv_stats: Option<KvStats>,
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
    /// Speculative decoding's raw samples (specdec cases and `specdec:` methods only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative: Option<SpeculativeRun>,
}

/// Summaries over a case's runs, plus the flat names llama-bench and vLLM users look for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CaseSummary {
    pub ttft_ms: Summary,
    pub tpot_ms: Summary,
    /// Over every inter-token gap of every run; absent when no run recorded gaps (one-token
    /// runs, or files converted from a version that did not keep them).
    pub itl_ms: Option<Summary>,
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
    pub mean_itl_ms: Option<f64>,
    pub median_itl_ms: Option<f64>,
    pub p99_itl_ms: Option<f64>,
}

/// Quality next to speed, as each command measures it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Quality {
    Compare(CompareQuality),
    Kvcache(KvcacheQuality),
    Specdec(SpecdecQuality),
    Quantize(QuantizeQuality),
    Evaluate(EvaluateQuality),
    Sled(SledQuality),
    Http(HttpQuality),
    Batch(BatchQuality),
}

impl Quality {
    pub fn command(&self) -> CommandName {
        match self {
            Self::Compare(_) => CommandName::Compare,
            Self::Kvcache(_) => CommandName::Kvcache,
            Self::Specdec(_) => CommandName::Specdec,
            Self::Quantize(_) => CommandName::Quantize,
            Self::Evaluate(_) => CommandName::Evaluate,
            Self::Sled(_) => CommandName::Sled,
            Self::Http(_) => CommandName::Http,
            Self::Batch(_) => CommandName::Batch,
        }
    }

    pub fn as_quantize(&self) -> Option<&QuantizeQuality> {
        match self {
            Self::Quantize(q) => Some(q),
            _ => None,
        }
    }

    pub fn as_evaluate(&self) -> Option<&EvaluateQuality> {
        match self {
            Self::Evaluate(q) => Some(q),
            _ => None,
        }
    }

    pub fn as_sled(&self) -> Option<&SledQuality> {
        match self {
            Self::Sled(q) => Some(q),
            _ => None,
        }
    }

    pub fn as_batch(&self) -> Option<&BatchQuality> {
        match self {
            Self::Batch(q) => Some(q),
            _ => None,
        }
    }

    pub fn as_http(&self) -> Option<&HttpQuality> {
        match self {
            Self::Http(q) => Some(q),
            _ => None,
        }
    }

    pub fn as_specdec(&self) -> Option<&SpecdecQuality> {
        match self {
            Self::Specdec(q) => Some(q),
            _ => None,
        }
    }

    pub fn as_compare(&self) -> Option<&CompareQuality> {
        match self {
            Self::Compare(q) => Some(q),
            _ => None,
        }
    }
    pub fn as_kvcache(&self) -> Option<&KvcacheQuality> {
        match self {
            Self::Kvcache(q) => Some(q),
            _ => None,
        }
    }
}

/// kvcache: quality against the full cache at the same context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KvcacheQuality {
    /// Perplexity of the real continuation, teacher-forced token by token through the cache.
    pub perplexity: f64,
    /// (perplexity / full's - 1) in percent.
    pub perplexity_delta_pct: f64,
    /// Mean KL(full || strategy) of the next-token distributions over the continuation (nats).
    pub mean_kl: f64,
    /// Fraction of teacher-forced steps whose argmax equals full's.
    pub teacher_forced_agreement: f64,
    /// Fraction of greedy tokens equal to full's, position by position.
    pub greedy_agreement: f64,
    /// First greedy token that differs from full's; absent when all agree.
    pub first_divergence: Option<usize>,
}

impl Report {
    /// A report with no cases yet.
    pub fn new(command: CommandName, provenance: Provenance, settings: Settings) -> Self {
        Self { schema_version: SCHEMA_VERSION, command, provenance, settings, cases: vec![], converted_from: None }
    }

    /// Checks that every command-specific part carries the report's command.
    pub fn check_consistent(&self) -> Result<(), String> {
        let command = self.command;
        let settings_command = self.settings.command_settings.command();
        if settings_command != command {
            return Err(format!("settings are {}'s but the report is {}'s", settings_command.name(), command.name()));
        }
        for case in &self.cases {
            if case.params.command() != command || case.quality.as_ref().is_some_and(|q| q.command() != command) {
                return Err(format!("case {} is not a {} case", case.case_id, command.name()));
            }
        }
        Ok(())
    }

    pub fn compare_settings(&self) -> Option<&CompareSettings> {
        match &self.settings.command_settings {
            CommandSettings::Compare(s) => Some(s),
            _ => None,
        }
    }

    pub fn kvcache_settings(&self) -> Option<&KvcacheSettings> {
        match &self.settings.command_settings {
            CommandSettings::Kvcache(s) => Some(s),
            _ => None,
        }
    }

    pub fn specdec_settings(&self) -> Option<&SpecdecSettings> {
        match &self.settings.command_settings {
            CommandSettings::Specdec(s) => Some(s),
            _ => None,
        }
    }

    pub fn quantize_settings(&self) -> Option<&QuantizeSettings> {
        match &self.settings.command_settings {
            CommandSettings::Quantize(s) => Some(s),
            _ => None,
        }
    }

    pub fn evaluate_settings(&self) -> Option<&EvaluateSettings> {
        match &self.settings.command_settings {
            CommandSettings::Evaluate(s) => Some(s),
            _ => None,
        }
    }

    pub fn sled_settings(&self) -> Option<&SledSettings> {
        match &self.settings.command_settings {
            CommandSettings::Sled(s) => Some(s),
            _ => None,
        }
    }

    pub fn http_settings(&self) -> Option<&HttpSettings> {
        match &self.settings.command_settings {
            CommandSettings::Http(s) => Some(s),
            _ => None,
        }
    }
}

/// The JSON Schema of `Report`, as committed in results/schema.json.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Report);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}
