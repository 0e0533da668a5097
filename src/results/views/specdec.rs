//! specdec's columns: per case the decode speed and the speedup over the baseline (95%
//! interval), acceptance (vLLM's names), the cost ratio, the predicted speedups beside the
//! measured one, the time split, and the output's quality (lossy policies are marked).

use super::{not_run, opt, Table};
use crate::results::schema::{CaseResult, Report, SpecdecQuality};

fn quality(case: &CaseResult) -> Option<&SpecdecQuality> {
    case.quality.as_ref().and_then(|q| q.as_specdec())
}

fn fixed(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |x| format!("{x:.digits$}"))
}

pub fn human(report: &Report) -> Table {
    let mut table = Table::new(&[
        "case",
        "decode tok/s",
        "speedup (95% CI)",
        "per prompt",
        "predicted",
        "pred. (measured costs)",
        "accept rate",
        "accept len",
        "alpha",
        "c",
        "verify/step",
        "draft/verify/book ms",
        "agree",
        "ppl",
    ]);
    for case in &report.cases {
        let mut cells = vec![case.params.label()];
        match (not_run(case), &case.summary, quality(case)) {
            (None, Some(s), Some(q)) => {
                cells.push(format!("{:.1}", s.decode_tokens_per_s.median));
                cells.push(q.speedup.map_or("-".into(), |r| format!("{:.2}x [{:.2}, {:.2}]", r.ratio, r.low, r.high)));
                let per_prompt: Vec<String> = q.per_prompt_speedup.iter().map(|s| fixed(*s, 2)).collect();
                cells.push(per_prompt.join("/"));
                cells.push(fixed(q.predicted_speedup, 2));
                cells.push(fixed(q.predicted_speedup_measured_costs, 2));
                cells.push(fixed(q.spec_decode_acceptance_rate, 3));
                cells.push(fixed(q.spec_decode_acceptance_length, 2));
                cells.push(fixed(q.alpha, 3));
                cells.push(fixed(q.cost_ratio, 3));
                cells.push(fixed(q.verify_cost_ratio, 2));
                cells.push(if q.spec_decode_num_drafts > 0 {
                    format!("{:.0}/{:.0}/{:.1}", q.draft_ms, q.verify_ms, q.bookkeeping_ms)
                } else {
                    "-".into()
                });
                cells.push(fixed(q.agreement_with_target, 3));
                cells.push(fixed(q.perplexity, 3));
            }
            (reason, _, _) => cells.push(reason.unwrap_or_default()),
        }
        table.push(cells);
    }
    table
}

pub fn csv(report: &Report) -> Table {
    let mut table = Table::new(&[
        "model",
        "draft",
        "policy",
        "lossy",
        "k",
        "max_new_tokens",
        "kv_cache",
        "status",
        "runs",
        "median_decode_tokens_per_s",
        "median_tpot_ms",
        "speedup",
        "speedup_ci_low",
        "speedup_ci_high",
        "predicted_speedup",
        "predicted_speedup_measured_costs",
        "spec_decode_num_drafts",
        "spec_decode_num_draft_tokens",
        "spec_decode_num_accepted_tokens",
        "spec_decode_acceptance_rate",
        "spec_decode_acceptance_length",
        "alpha",
        "mean_k",
        "cost_ratio",
        "verify_cost_ratio",
        "bookkeeping_cost_ratio",
        "target_step_ms",
        "draft_ms",
        "verify_ms",
        "bookkeeping_ms",
        "agreement_with_target",
        "perplexity",
    ]);
    for case in &report.cases {
        let Some(p) = case.params.as_specdec() else { continue };
        let mut cells = vec![
            p.model.clone(),
            p.draft.clone().unwrap_or_default(),
            p.policy.clone().unwrap_or_default(),
            p.lossy.to_string(),
            p.k.map_or(String::new(), |k| k.to_string()),
            p.max_new_tokens.to_string(),
            p.kv_cache.clone(),
            format!("{:?}", case.status).to_lowercase(),
            case.runs.len().to_string(),
        ];
        if let (Some(s), Some(q)) = (&case.summary, quality(case)) {
            cells.extend([
                format!("{}", s.decode_tokens_per_s.median),
                format!("{}", s.tpot_ms.median),
                opt(q.speedup.map(|r| r.ratio)),
                opt(q.speedup.map(|r| r.low)),
                opt(q.speedup.map(|r| r.high)),
                opt(q.predicted_speedup),
                opt(q.predicted_speedup_measured_costs),
                q.spec_decode_num_drafts.to_string(),
                q.spec_decode_num_draft_tokens.to_string(),
                q.spec_decode_num_accepted_tokens.to_string(),
                opt(q.spec_decode_acceptance_rate),
                opt(q.spec_decode_acceptance_length),
                opt(q.alpha),
                opt(q.mean_k),
                opt(q.cost_ratio),
                opt(q.verify_cost_ratio),
                opt(q.bookkeeping_cost_ratio),
                opt(q.target_step_ms),
                format!("{}", q.draft_ms),
                format!("{}", q.verify_ms),
                format!("{}", q.bookkeeping_ms),
                opt(q.agreement_with_target),
                opt(q.perplexity),
            ]);
        }
        table.push(cells);
    }
    table
}
