//! A case's summary from its raw runs: every timing and memory metric summarised (mean,
//! median, sample std, min, max, percentiles), plus the flat llama-bench and vLLM names.
//! A pure function of the runs, so a converted or hand-edited file summarises the same way.

use super::schema::{CaseSummary, RunRecord};
use crate::measure::stats::Summary;

impl CaseSummary {
    /// `None` when there are no runs (or no finite samples).
    pub fn from_runs(runs: &[RunRecord]) -> Option<Self> {
        let of = |f: &dyn Fn(&RunRecord) -> f64| Summary::of(&runs.iter().map(f).collect::<Vec<_>>());
        let itl: Vec<f64> = runs.iter().flat_map(|r| r.itl_ms.iter().copied()).collect();
        let itl_summary = Summary::of(&itl);
        let decode = of(&|r| r.decode_tokens_per_s)?;
        let ttft = of(&|r| r.ttft_ms)?;
        let tpot = of(&|r| r.tpot_ms)?;
        Some(Self {
            avg_ts: decode.mean,
            stddev_ts: decode.std,
            mean_ttft_ms: ttft.mean,
            median_ttft_ms: ttft.median,
            p99_ttft_ms: ttft.p99,
            mean_tpot_ms: tpot.mean,
            median_tpot_ms: tpot.median,
            p99_tpot_ms: tpot.p99,
            mean_itl_ms: itl_summary.as_ref().map(|s| s.mean),
            median_itl_ms: itl_summary.as_ref().map(|s| s.median),
            p99_itl_ms: itl_summary.as_ref().map(|s| s.p99),
            ttft_ms: ttft,
            tpot_ms: tpot,
            itl_ms: itl_summary,
            e2e_ms: of(&|r| r.e2e_ms)?,
            prefill_tokens_per_s: of(&|r| r.prefill_tokens_per_s)?,
            decode_tokens_per_s: decode,
            peak_rss_bytes: of(&|r| r.peak_rss_bytes as f64)?,
            kv_cache_bytes: of(&|r| r.kv_cache_bytes as f64)?,
        })
    }
}
