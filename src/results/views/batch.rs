//! batch's columns: llama-batched-bench's table (PP, TG, B, N_KV, T_PP, S_PP, T_TG, S_TG, T, S;
//! medians over the repetitions), then what batching bought (S_TG against B = 1 in the same
//! run), each sequence's own speed and latency, and the KV pool.

use super::{bytes, Table};
use crate::measure::stats::Summary;
use crate::results::schema::{BatchQuality, CaseResult, Report};

fn quality(case: &CaseResult) -> Option<&BatchQuality> {
    case.quality.as_ref().and_then(|q| q.as_batch())
}

/// The median over the repetitions of `f`.
fn median(q: &BatchQuality, f: fn(&crate::results::schema::BatchRepetition) -> f64) -> f64 {
    Summary::of(&q.repetitions.iter().map(f).collect::<Vec<_>>()).map_or(0.0, |s| s.median)
}

/// Median aggregate decode tokens/s of the B = 1 case, where the run has one.
fn single_sequence_s_tg(report: &Report) -> Option<f64> {
    report.cases.iter().find(|c| c.params.as_batch().is_some_and(|p| p.batch_size == 1)).and_then(quality).map(|q| q.s_tg.median)
}

pub fn human(report: &Report) -> Table {
    let mut table = Table::new(&[
        "PP", "TG", "B", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s", "T s", "S t/s", "S_TG / B=1", "seq t/s", "TTFT ms p50 / p99", "KV used / pool", "preempted",
    ]);
    let base = single_sequence_s_tg(report);
    for case in &report.cases {
        let Some(p) = case.params.as_batch() else { continue };
        let mut cells = vec![p.prompt_tokens.to_string(), p.max_new_tokens.to_string(), p.batch_size.to_string()];
        match quality(case) {
            Some(q) => {
                let first = q.repetitions.first();
                cells.push(first.map_or(0, |r| r.n_kv).to_string());
                cells.push(format!("{:.3}", median(q, |r| r.t_pp_s)));
                cells.push(format!("{:.1}", q.s_pp.median));
                cells.push(format!("{:.3}", median(q, |r| r.t_tg_s)));
                cells.push(format!("{:.1}", q.s_tg.median));
                cells.push(format!("{:.3}", median(q, |r| r.t_s)));
                cells.push(format!("{:.1}", q.s.median));
                cells.push(base.map_or("-".into(), |b| format!("{:.2}x", q.s_tg.median / b)));
                cells.push(q.per_sequence_decode_tokens_per_s.as_ref().map_or("-".into(), |s| format!("{:.1}", s.median)));
                cells.push(case.summary.as_ref().map_or("-".into(), |s| format!("{:.1} / {:.1}", s.ttft_ms.median, s.ttft_ms.p99)));
                let used = q.repetitions.iter().map(|r| r.peak_kv_used_bytes).max().unwrap_or(0);
                cells.push(format!("{} / {}", bytes(used as f64), bytes(first.map_or(0, |r| r.kv_pool_bytes) as f64)));
                cells.push(q.repetitions.iter().map(|r| r.preemptions).sum::<u64>().to_string());
            }
            None => cells.push(super::not_run(case).unwrap_or_default()),
        }
        table.push(cells);
    }
    table
}

pub fn csv(report: &Report) -> Table {
    let mut table = Table::new(&[
        "batch_size",
        "prompt_tokens",
        "max_new_tokens",
        "n_kv",
        "t_pp_s",
        "s_pp",
        "t_tg_s",
        "s_tg",
        "t_s",
        "s",
        "s_tg_stddev",
        "per_sequence_decode_tokens_per_s",
        "median_ttft_ms",
        "p99_ttft_ms",
        "median_tpot_ms",
        "p99_tpot_ms",
        "peak_kv_used_bytes",
        "kv_pool_bytes",
        "kv_blocks",
        "peak_kv_blocks_used",
        "preemptions",
        "status",
    ]);
    for case in &report.cases {
        let Some(p) = case.params.as_batch() else { continue };
        let mut cells = vec![p.batch_size.to_string(), p.prompt_tokens.to_string(), p.max_new_tokens.to_string()];
        match (quality(case), &case.summary) {
            (Some(q), Some(s)) => {
                let first = q.repetitions.first();
                cells.push(first.map_or(0, |r| r.n_kv).to_string());
                cells.push(median(q, |r| r.t_pp_s).to_string());
                cells.push(q.s_pp.median.to_string());
                cells.push(median(q, |r| r.t_tg_s).to_string());
                cells.push(q.s_tg.median.to_string());
                cells.push(median(q, |r| r.t_s).to_string());
                cells.push(q.s.median.to_string());
                cells.push(q.s_tg.std.to_string());
                cells.push(q.per_sequence_decode_tokens_per_s.as_ref().map_or(String::new(), |s| s.median.to_string()));
                cells.extend([s.ttft_ms.median, s.ttft_ms.p99, s.tpot_ms.median, s.tpot_ms.p99].map(|v| v.to_string()));
                cells.push(q.repetitions.iter().map(|r| r.peak_kv_used_bytes).max().unwrap_or(0).to_string());
                cells.push(first.map_or(0, |r| r.kv_pool_bytes).to_string());
                cells.push(q.kv_blocks.to_string());
                cells.push(q.peak_kv_blocks_used.to_string());
                cells.push(q.repetitions.iter().map(|r| r.preemptions).sum::<u64>().to_string());
                cells.push("ok".into());
            }
            _ => {
                cells.resize(table.headers.len() - 1, String::new());
                cells.push(super::not_run(case).unwrap_or_default());
            }
        }
        table.push(cells);
    }
    table
}
