//! http's columns: per load level what completed and failed, the throughputs, the latency
//! percentiles under vLLM bench's names (TTFT, TPOT, ITL, E2E), goodput, the offered against
//! the achieved rate, and llama-server's own timings beside ours where it sent them.

use super::{opt, Table};
use crate::http::metrics::LevelMetrics;
use crate::measure::stats::Summary;
use crate::results::schema::{CaseResult, HttpQuality, Report};

fn quality(case: &CaseResult) -> Option<&HttpQuality> {
    case.quality.as_ref().and_then(|q| q.as_http())
}

fn ms(s: &Option<Summary>) -> String {
    s.as_ref()
        .map_or("-".into(), |s| format!("{:.1} / {:.1}", s.median, s.p99))
}

fn rate(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.2}"))
}

fn failures(m: &LevelMetrics) -> String {
    if m.failed == 0 {
        return "0".into();
    }
    let causes: Vec<String> = m
        .failures_by_cause
        .iter()
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    format!("{} ({})", m.failed, causes.join(", "))
}

pub fn human(report: &Report) -> Table {
    let mut table = Table::new(&[
        "load",
        "ok",
        "failed",
        "req/s",
        "out tok/s",
        "peak out tok/s",
        "TTFT ms p50 / p99",
        "TPOT ms p50 / p99",
        "ITL ms p50 / p99",
        "E2E ms p50 / p99",
        "offered / achieved req/s",
    ]);
    let mut goodput = Vec::new();
    let mut server = Vec::new();
    // Runs of several servers overlaid (`plot A B`): each row names its server.
    let several = report.cases.iter().any(|c| c.params.model() != report.cases[0].params.model());
    for case in &report.cases {
        let mut cells = vec![if several { format!("{} {}", case.params.model(), case.params.label()) } else { case.params.label() }];
        match quality(case) {
            Some(q) => {
                let m = &q.metrics;
                cells.push(m.completed.to_string());
                cells.push(failures(m));
                cells.push(format!("{:.2}", m.request_throughput));
                cells.push(format!("{:.1}", m.output_throughput));
                cells.push(format!("{:.0}", m.peak_output_throughput));
                cells.push(ms(&m.ttft_ms));
                cells.push(ms(&m.tpot_ms));
                cells.push(ms(&m.itl_ms));
                cells.push(ms(&m.e2el_ms));
                cells.push(format!(
                    "{} / {}",
                    rate(m.offered_rate),
                    rate(m.achieved_rate)
                ));
                goodput.push(m.goodput.map(|g| format!("{g:.2}")));
                server.push(match (&q.server_prompt_ms, &q.server_per_token_ms) {
                    (Some(p), Some(t)) => Some(format!("{:.1} / {:.2}", p.median, t.median)),
                    _ => None,
                });
            }
            None => {
                cells.push(super::not_run(case).unwrap_or_default());
                goodput.push(None);
                server.push(None);
            }
        }
        table.push(cells);
    }
    table.push_column_if_any("goodput req/s", goodput);
    table.push_column_if_any("server prompt / token ms p50", server);
    table
}

pub fn csv(report: &Report) -> Table {
    let summaries = ["ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "queue_ms"];
    let mut headers: Vec<String> = [
        "model",
        "request_rate",
        "max_concurrency",
        "max_new_tokens",
        "status",
        "completed",
        "failed",
        "duration_s",
        "total_input_tokens",
        "total_output_tokens",
        "output_tokens_from_tokenizer",
        "multi_token_chunk_requests",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "peak_output_throughput",
        "offered_rate",
        "achieved_rate",
        "goodput",
        "server_prompt_ms_median",
        "server_per_token_ms_median",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for name in summaries {
        for stat in ["mean", "median", "std", "p90", "p95", "p99"] {
            headers.push(format!("{stat}_{name}"));
        }
    }
    let mut table = Table {
        headers,
        rows: vec![],
    };
    for case in &report.cases {
        let Some(p) = case.params.as_http() else {
            continue;
        };
        let mut cells = vec![
            p.model.clone(),
            p.request_rate.clone(),
            p.max_concurrency.map(|c| c.to_string()).unwrap_or_default(),
            p.max_new_tokens.to_string(),
            format!("{:?}", case.status).to_lowercase(),
        ];
        if let Some(q) = quality(case) {
            let m = &q.metrics;
            cells.extend([
                m.completed.to_string(),
                m.failed.to_string(),
                m.duration_s.to_string(),
                m.total_input_tokens.to_string(),
                m.total_output_tokens.to_string(),
                m.output_tokens_from_tokenizer.to_string(),
                m.multi_token_chunk_requests.to_string(),
                m.request_throughput.to_string(),
                m.output_throughput.to_string(),
                m.total_token_throughput.to_string(),
                m.peak_output_throughput.to_string(),
                opt(m.offered_rate),
                opt(m.achieved_rate),
                opt(m.goodput),
                opt(q.server_prompt_ms.as_ref().map(|s| s.median)),
                opt(q.server_per_token_ms.as_ref().map(|s| s.median)),
            ]);
            for s in [&m.ttft_ms, &m.tpot_ms, &m.itl_ms, &m.e2el_ms, &m.queue_ms] {
                match s {
                    Some(s) => cells.extend(
                        [s.mean, s.median, s.std, s.p90, s.p95, s.p99].map(|x| x.to_string()),
                    ),
                    None => cells.extend(std::iter::repeat_n(String::new(), 6)),
                }
            }
        }
        table.push(cells);
    }
    table
}
