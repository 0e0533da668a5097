//! Reading older results: schema 1 had two families, compare's `results.json` (cases with raw
//! runs, untagged parameters) and kvcache's `kvcache.json` (one measured row per strategy and
//! context, no raw samples). Both are converted to the current `Report` when read, so `plot`
//! and `diff` work on every file an older llmbench wrote. What version 1 did not record stays
//! absent (never zero), and `converted_from` says so.

use super::schema::{
    CaseParams, CaseResult, CaseStatus, CaseSummary, CommandName, CommandSettings, KvcacheParams, KvcacheQuality,
    KvcacheSettings, ModelRecord, Quality, Report, RunRecord, Settings, SCHEMA_VERSION,
};
use crate::kv::{KvOptions, KvStats, PagedUsage};
use crate::measure::system::Provenance;
use serde::Deserialize;
use serde_json::{json, Value};

/// Converts a schema-1 document (either family) to the current report.
pub fn from_v1(value: Value) -> Result<Report, String> {
    match value.get("command").and_then(Value::as_str) {
        Some("compare") => compare_v1(value),
        Some("kvcache") if value.get("rows").is_some() => kvcache_v1(value),
        Some(other) => Err(format!("schema 1 has no `{other}` results")),
        None => Err("no `command` field".into()),
    }
}

/// compare's version 1 differs in nesting only: parameters, settings and quality were not
/// tagged by command, a case's `error` is now `reason`, and runs did not record cache stats.
fn compare_v1(mut value: Value) -> Result<Report, String> {
    let settings = value.get_mut("settings").and_then(Value::as_object_mut).ok_or("no settings object")?;
    let prompts = settings.remove("prompts").unwrap_or(json!([]));
    let quality = settings.remove("quality").unwrap_or(json!(false));
    settings.insert("command_settings".into(), json!({ "command": "compare", "prompts": prompts, "quality": quality }));
    for case in value.get_mut("cases").and_then(Value::as_array_mut).ok_or("no cases array")? {
        let case = case.as_object_mut().ok_or("a case is not an object")?;
        if let Some(params) = case.get_mut("params").and_then(Value::as_object_mut) {
            params.insert("command".into(), json!("compare"));
        }
        if let Some(quality) = case.get_mut("quality").and_then(Value::as_object_mut) {
            quality.insert("command".into(), json!("compare"));
        }
        let error = case.remove("error").unwrap_or(Value::Null);
        case.insert("reason".into(), error);
        for run in case.get_mut("runs").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(run) = run.as_object_mut() {
                run.insert("kv_stats".into(), Value::Null);
            }
        }
    }
    value["schema_version"] = json!(SCHEMA_VERSION);
    value["converted_from"] = json!("schema 1 (compare results.json): runs did not record the cache's tokens held and evictions");
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct KvcacheV1 {
    provenance: Provenance,
    model: ModelRecord,
    settings: SettingsV1,
    rows: Vec<RowV1>,
}

#[derive(Deserialize)]
struct SettingsV1 {
    prompt_file: String,
    prompt_file_sha256: String,
    contexts: Vec<usize>,
    strategies: Vec<String>,
    max_new_tokens: usize,
    eval_tokens: usize,
    options: KvOptions,
}

#[derive(Deserialize)]
struct RowV1 {
    strategy: String,
    context_tokens: usize,
    new_tokens: usize,
    prefill_ms: f64,
    prefill_tokens_per_s: f64,
    tpot_ms: f64,
    decode_tokens_per_s: f64,
    kv_cache_bytes: u64,
    kv_used_bytes: Option<u64>,
    tokens_held: usize,
    evictions: u64,
    peak_rss_bytes: u64,
    paged: Option<PagedUsage>,
    quality: KvcacheQuality,
}

/// kvcache's version 1: each row becomes a case with its one measured run. Version 1 kept
/// no per-token gaps, timestamps or generated ids: those stay empty, and the summary of
/// inter-token gaps is absent (its median and p90 were in the row; the mean TPOT is kept).
/// The end-to-end time is prefill plus TPOT times the gaps, as the engine defines TPOT.
fn kvcache_v1(value: Value) -> Result<Report, String> {
    let v1: KvcacheV1 = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let settings = Settings {
        // Version 1 ran one short untimed generation before the first case and one run per row.
        warmup: 0,
        repetitions: 1,
        seed: 42,
        temperature: 0.0,
        top_k: None,
        top_p: None,
        repetition_penalty: 1.0,
        stop_at_eos: false,
        dtype: v1.model.dtype.clone(),
        cuda_graph: None,
        command_settings: CommandSettings::Kvcache(KvcacheSettings {
            prompt_file: v1.settings.prompt_file,
            prompt_file_sha256: v1.settings.prompt_file_sha256,
            contexts: v1.settings.contexts,
            strategies: v1.settings.strategies,
            eval_tokens: v1.settings.eval_tokens,
            options: v1.settings.options,
        }),
    };
    let mut report = Report::new(CommandName::Kvcache, v1.provenance, settings);
    for row in v1.rows {
        let run = RunRecord {
            prompt_index: 0,
            repetition: 0,
            prompt_tokens: row.context_tokens,
            generated_tokens: row.new_tokens,
            ttft_ms: row.prefill_ms,
            tpot_ms: row.tpot_ms,
            e2e_ms: row.prefill_ms + row.tpot_ms * row.new_tokens.saturating_sub(1) as f64,
            prefill_tokens_per_s: row.prefill_tokens_per_s,
            decode_tokens_per_s: row.decode_tokens_per_s,
            itl_ms: vec![],
            samples_ns: vec![],
            kv_cache_bytes_per_token: vec![],
            kv_cache_bytes: row.kv_cache_bytes,
            kv_stats: Some(KvStats {
                kv_cache_bytes: row.kv_cache_bytes,
                tokens_held: row.tokens_held,
                evictions: row.evictions,
                used_bytes: row.kv_used_bytes,
                reserved_bytes: None,
                paged: row.paged,
            }),
            peak_rss_bytes: row.peak_rss_bytes,
            peak_device_memory_bytes: None,
            device_memory_free_bytes: None,
            device_memory_total_bytes: None,
            stop_reason: "length".into(),
            generated_ids: vec![],
            text: String::new(),
            speculative: None,
        };
        let params = CaseParams::Kvcache(KvcacheParams {
            model: v1.model.id.clone(),
            strategy: row.strategy,
            context_tokens: row.context_tokens,
            max_new_tokens: v1.settings.max_new_tokens,
        });
        let runs = vec![run];
        report.cases.push(CaseResult {
            case_id: params.id(&report.settings),
            params,
            status: CaseStatus::Ok,
            reason: None,
            model: Some(v1.model.clone()),
            summary: CaseSummary::from_runs(&runs),
            quality: Some(Quality::Kvcache(row.quality)),
            runs,
        });
    }
    report.converted_from = Some(
        "schema 1 (kvcache.json): one run per row; per-token gaps, timestamps and generated ids were not recorded".into(),
    );
    Ok(report)
}
