//! kvcache's columns: per (context, strategy) the prefill and decode speed, exact bytes and
//! bytes per token, what the cache held and evicted, peak RSS, and quality against full.

use super::{not_run, opt, Table, MIB};
use crate::results::schema::{CaseResult, KvcacheParams, KvcacheQuality, Report, RunRecord};

fn parts(case: &CaseResult) -> (Option<&KvcacheParams>, Option<&KvcacheQuality>) {
    (case.params.as_kvcache(), case.quality.as_ref().and_then(|q| q.as_kvcache()))
}

/// Bytes over the positions consumed (context + new tokens - 1: the last token is never fed).
fn bytes_per_token(run: &RunRecord) -> f64 {
    let positions = (run.prompt_tokens + run.generated_tokens).saturating_sub(1).max(1);
    run.kv_cache_bytes as f64 / positions as f64
}

pub fn human(report: &Report) -> Table {
    let mut table = Table::new(&[
        "context",
        "strategy",
        "prefill ms",
        "decode tok/s",
        "TPOT ms",
        "median ITL ms",
        "KV MiB",
        "B/token",
        "held",
        "evicted",
        "peak RSS MiB",
        "ppl",
        "Δppl %",
        "KL",
        "TF agree",
        "greedy agree",
        "1st diff",
        "paged used/free/waste",
    ]);
    for case in &report.cases {
        let (Some(p), quality) = parts(case) else { continue };
        let mut cells = vec![p.context_tokens.to_string(), p.strategy.clone()];
        match (not_run(case), &case.summary, case.runs.last()) {
            (None, Some(s), Some(last)) => {
                let stats = last.kv_stats.unwrap_or_default();
                cells.push(format!("{:.0}", s.ttft_ms.median));
                cells.push(format!("{:.1}", s.decode_tokens_per_s.median));
                cells.push(format!("{:.2}", s.tpot_ms.median));
                cells.push(s.median_itl_ms.map_or("-".into(), |m| format!("{m:.2}")));
                cells.push(format!("{:.2}", last.kv_cache_bytes as f64 / MIB));
                cells.push(format!("{:.0}", bytes_per_token(last)));
                cells.push(last.kv_stats.map_or("-".into(), |k| k.tokens_held.to_string()));
                cells.push(last.kv_stats.map_or("-".into(), |k| k.evictions.to_string()));
                cells.push(format!("{:.0}", s.peak_rss_bytes.max / MIB));
                match quality {
                    Some(q) => cells.extend([
                        format!("{:.3}", q.perplexity),
                        format!("{:+.2}", q.perplexity_delta_pct),
                        format!("{:.4}", q.mean_kl),
                        format!("{:.3}", q.teacher_forced_agreement),
                        format!("{:.3}", q.greedy_agreement),
                        q.first_divergence.map_or("-".into(), |i| i.to_string()),
                    ]),
                    None => cells.extend(std::iter::repeat_n("-".to_string(), 6)),
                }
                cells.push(
                    stats.paged.map_or("-".into(), |u| format!("{}/{}/{}", u.blocks_used, u.blocks_free, u.wasted_slots)),
                );
            }
            (why, _, _) => cells.push(why.unwrap_or_else(|| "no runs".into())),
        }
        table.push(cells);
    }
    table
}

pub fn csv(report: &Report) -> Table {
    let mut table = Table::new(&[
        "case_id",
        "model",
        "strategy",
        "context_tokens",
        "max_new_tokens",
        "status",
        "runs",
        "median_ttft_ms",
        "mean_tpot_ms",
        "median_tpot_ms",
        "median_itl_ms",
        "p90_itl_ms",
        "avg_ts",
        "stddev_ts",
        "kv_cache_bytes",
        "kv_bytes_per_token",
        "kv_used_bytes",
        "tokens_held",
        "evictions",
        "max_peak_rss_bytes",
        "perplexity",
        "perplexity_delta_pct",
        "mean_kl",
        "teacher_forced_agreement",
        "greedy_agreement",
        "first_divergence",
    ]);
    for case in &report.cases {
        let (Some(p), q) = parts(case) else { continue };
        let s = case.summary.as_ref();
        let last = case.runs.last();
        table.push(vec![
            case.case_id.clone(),
            p.model.clone(),
            p.strategy.clone(),
            p.context_tokens.to_string(),
            p.max_new_tokens.to_string(),
            format!("{:?}", case.status).to_lowercase(),
            case.runs.len().to_string(),
            opt(s.map(|s| s.median_ttft_ms)),
            opt(s.map(|s| s.mean_tpot_ms)),
            opt(s.map(|s| s.median_tpot_ms)),
            opt(s.and_then(|s| s.median_itl_ms)),
            opt(s.and_then(|s| s.itl_ms.as_ref()).map(|i| i.p90)),
            opt(s.map(|s| s.avg_ts)),
            opt(s.map(|s| s.stddev_ts)),
            opt(last.map(|r| r.kv_cache_bytes as f64)),
            opt(last.map(bytes_per_token)),
            opt(last.and_then(|r| r.kv_stats?.used_bytes).map(|b| b as f64)),
            opt(last.and_then(|r| r.kv_stats).map(|k| k.tokens_held as f64)),
            opt(last.and_then(|r| r.kv_stats).map(|k| k.evictions as f64)),
            opt(s.map(|s| s.peak_rss_bytes.max)),
            opt(q.map(|q| q.perplexity)),
            opt(q.map(|q| q.perplexity_delta_pct)),
            opt(q.map(|q| q.mean_kl)),
            opt(q.map(|q| q.teacher_forced_agreement)),
            opt(q.map(|q| q.greedy_agreement)),
            q.and_then(|q| q.first_divergence).map_or(String::new(), |i| i.to_string()),
        ]);
    }
    table
}
