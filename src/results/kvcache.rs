//! The `kvcache` results file (`kvcache.json`): one row per (context, strategy), versioned with
//! the same `SCHEMA_VERSION` and provenance as compare's report, units in field names.

use super::schema::{ModelRecord, SCHEMA_VERSION};
use crate::kv::{KvOptions, PagedUsage};
use crate::measure::system::Provenance;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const KVCACHE_JSON: &str = "kvcache.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvcacheReport {
    pub schema_version: u32,
    /// Always "kvcache".
    pub command: String,
    pub provenance: Provenance,
    pub model: ModelRecord,
    pub settings: KvcacheSettings,
    pub rows: Vec<KvcacheRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvcacheSettings {
    /// The prompt file and the sha256 of its text.
    pub prompt_file: String,
    pub prompt_file_sha256: String,
    pub contexts: Vec<usize>,
    pub strategies: Vec<String>,
    pub max_new_tokens: usize,
    /// Tokens of the real continuation teacher-forced for perplexity and KL.
    pub eval_tokens: usize,
    pub options: KvOptions,
}

/// One strategy at one context length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvcacheRow {
    /// Label with its options (`window:256`, `kivi:2`).
    pub strategy: String,
    pub context_tokens: usize,
    pub new_tokens: usize,
    pub prefill_ms: f64,
    pub prefill_tokens_per_s: f64,
    /// Mean gap between generated tokens (vLLM's TPOT).
    pub tpot_ms: f64,
    pub median_itl_ms: f64,
    pub p90_itl_ms: f64,
    pub decode_tokens_per_s: f64,
    /// Exact bytes the cache held at the end (keys, values, scales and zero points).
    pub kv_cache_bytes: u64,
    /// `kv_cache_bytes` over the positions consumed (context + new tokens - 1).
    pub kv_bytes_per_token: f64,
    /// Bytes the written slots take, where a strategy reserves more (static).
    pub kv_used_bytes: Option<u64>,
    /// Tokens per layer the cache held at the end (mean over layers for cake).
    pub tokens_held: usize,
    pub evictions: u64,
    pub peak_rss_bytes: u64,
    pub paged: Option<PagedUsage>,
    pub quality: RowQuality,
}

/// Quality against the full cache at the same context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowQuality {
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

impl KvcacheReport {
    pub fn new(provenance: Provenance, model: ModelRecord, settings: KvcacheSettings) -> Self {
        Self { schema_version: SCHEMA_VERSION, command: "kvcache".into(), provenance, model, settings, rows: vec![] }
    }

    /// Reads a kvcache.json (or the one inside a run directory).
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join(KVCACHE_JSON) } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| crate::error::LlmbenchError::invalid(format!("{}: cannot read ({e})", file.display())))?;
        let report: Self = serde_json::from_str(&text).map_err(|e| {
            crate::error::LlmbenchError::invalid(format!("{}: not a kvcache results file ({e})", file.display()))
        })?;
        if report.schema_version != SCHEMA_VERSION {
            crate::bail_input!(
                "{}: schema_version {}, but this llmbench reads version {SCHEMA_VERSION}",
                file.display(),
                report.schema_version
            );
        }
        Ok(report)
    }

    /// A markdown table, one row per (context, strategy).
    pub fn table(&self) -> String {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let mut out = String::from(
            "| context | strategy | prefill ms | decode tok/s | TPOT ms | median ms | KV MiB | B/token | held | evicted | peak RSS MiB | ppl | Δppl % | KL | TF agree | greedy agree | 1st diff | paged used/free/waste |\n\
             |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for r in &self.rows {
            let q = &r.quality;
            out += &format!(
                "| {} | {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {} | {:.0} | {:.3} | {:+.2} | {:.4} | {:.3} | {:.3} | {} | {} |\n",
                r.context_tokens,
                r.strategy,
                r.prefill_ms,
                r.decode_tokens_per_s,
                r.tpot_ms,
                r.median_itl_ms,
                mib(r.kv_cache_bytes),
                r.kv_bytes_per_token,
                r.tokens_held,
                r.evictions,
                mib(r.peak_rss_bytes),
                q.perplexity,
                q.perplexity_delta_pct,
                q.mean_kl,
                q.teacher_forced_agreement,
                q.greedy_agreement,
                q.first_divergence.map_or("-".into(), |i| i.to_string()),
                r.paged.map_or("-".into(), |p| format!("{}/{}/{}", p.blocks_used, p.blocks_free, p.wasted_slots)),
            );
        }
        out
    }
}
