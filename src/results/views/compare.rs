//! compare's columns: speed with spread, speed against standard decoding with its interval,
//! KV bytes and their reduction, peak RSS, agreement with standard, perplexity.

use super::{bytes, not_run, opt, Table, MIB};
use crate::results::relative::relative;
use crate::results::schema::{CaseResult, CompareParams, CompareQuality, Report};

fn parts(case: &CaseResult) -> (Option<&CompareParams>, Option<&CompareQuality>) {
    (case.params.as_compare(), case.quality.as_ref().and_then(|q| q.as_compare()))
}

pub fn human(report: &Report) -> Table {
    let mut table = Table::new(&[
        "model",
        "method",
        "new tokens",
        "TTFT ms",
        "TPOT ms",
        "decode tok/s",
        "speed vs standard",
        "KV",
        "KV saved",
        "peak RSS MiB",
        "agreement",
    ]);
    for case in &report.cases {
        let (Some(p), quality) = parts(case) else { continue };
        let mut cells = vec![p.model.clone(), case.params.label(), p.max_new_tokens.to_string()];
        match (not_run(case), &case.summary) {
            (None, Some(s)) => {
                let rel = relative(report, case);
                let is_standard = p.is_baseline();
                cells.push(format!("{:.1}", s.ttft_ms.median));
                cells.push(format!("{:.2} ± {:.2}", s.tpot_ms.median, s.tpot_ms.std));
                cells.push(format!("{:.1} ± {:.1}", s.decode_tokens_per_s.mean, s.decode_tokens_per_s.std));
                cells.push(match rel.and_then(|r| r.speed) {
                    _ if is_standard => "1.00x".into(),
                    Some(r) => format!("{:.2}x [{:.2}, {:.2}]", r.ratio, r.low, r.high),
                    None => "-".into(),
                });
                cells.push(bytes(s.kv_cache_bytes.mean));
                cells.push(match rel {
                    Some(r) if !is_standard => format!("{:.1}%", r.kv_reduction_pct),
                    _ => "-".into(),
                });
                cells.push(format!("{:.0}", s.peak_rss_bytes.max / MIB));
                cells.push(
                    quality.and_then(|q| q.agreement_with_standard).map_or("-".into(), |a| format!("{:.1}%", a * 100.0)),
                );
            }
            (why, _) => cells.push(why.unwrap_or_default()),
        }
        table.push(cells);
    }
    let perplexity = report
        .cases
        .iter()
        .filter(|c| c.params.as_compare().is_some())
        .map(|c| parts(c).1.and_then(|q| q.perplexity).map(|p| format!("{p:.2}")))
        .collect();
    table.push_column_if_any("perplexity", perplexity);
    let input = report
        .cases
        .iter()
        .filter(|c| c.params.as_compare().is_some())
        .map(|c| {
            let q = parts(c).1?;
            Some(format!("{} ({:.1}% fewer)", q.input_tokens?, q.input_reduction? * 100.0))
        })
        .collect();
    table.push_column_if_any("input tokens", input);
    let keywords = report
        .cases
        .iter()
        .filter(|c| c.params.as_compare().is_some())
        .map(|c| parts(c).1.and_then(|q| q.keyword_hit_rate).map(|k| format!("{:.0}%", k * 100.0)))
        .collect();
    table.push_column_if_any("keywords", keywords);
    for (header, pick) in [
        ("ROUGE-L vs standard", (|q: &CompareQuality| q.rouge_l_vs_standard.map(|r| format!("{r:.3}"))) as fn(&CompareQuality) -> Option<String>),
        ("BLEU vs standard", |q: &CompareQuality| q.bleu_vs_standard.map(|b| format!("{b:.1}"))),
    ] {
        let cells = report.cases.iter().filter(|c| c.params.as_compare().is_some()).map(|c| parts(c).1.and_then(pick)).collect();
        table.push_column_if_any(header, cells);
    }
    table
}

pub fn csv(report: &Report) -> Table {
    let mut table = Table::new(&[
        "case_id",
        "model",
        "method",
        "window",
        "stride",
        "max_new_tokens",
        "kv_cache",
        "status",
        "runs",
        "median_ttft_ms",
        "mean_tpot_ms",
        "median_tpot_ms",
        "p99_itl_ms",
        "avg_ts",
        "stddev_ts",
        "mean_prefill_tokens_per_s",
        "mean_kv_cache_bytes",
        "max_peak_rss_bytes",
        "speed_ratio_vs_standard",
        "kv_reduction_pct",
        "agreement_with_standard",
        "perplexity",
        "input",
        "input_tokens",
        "input_reduction",
        "keyword_hit_rate",
        "rouge_l_vs_standard",
        "bleu_vs_standard",
    ]);
    for case in &report.cases {
        let (Some(p), q) = parts(case) else { continue };
        let s = case.summary.as_ref();
        let rel = relative(report, case);
        table.push(vec![
            case.case_id.clone(),
            p.model.clone(),
            p.method.clone(),
            p.window.map_or(String::new(), |w| w.to_string()),
            p.stride.map_or(String::new(), |w| w.to_string()),
            p.max_new_tokens.to_string(),
            p.kv_cache.clone(),
            format!("{:?}", case.status).to_lowercase(),
            case.runs.len().to_string(),
            opt(s.map(|s| s.median_ttft_ms)),
            opt(s.map(|s| s.mean_tpot_ms)),
            opt(s.map(|s| s.median_tpot_ms)),
            opt(s.and_then(|s| s.p99_itl_ms)),
            opt(s.map(|s| s.avg_ts)),
            opt(s.map(|s| s.stddev_ts)),
            opt(s.map(|s| s.prefill_tokens_per_s.mean)),
            opt(s.map(|s| s.kv_cache_bytes.mean)),
            opt(s.map(|s| s.peak_rss_bytes.max)),
            opt(rel.and_then(|r| r.speed).map(|r| r.ratio)),
            opt(rel.map(|r| r.kv_reduction_pct)),
            opt(q.and_then(|q| q.agreement_with_standard)),
            opt(q.and_then(|q| q.perplexity)),
            p.input.clone().unwrap_or_default(),
            q.and_then(|q| q.input_tokens).map_or(String::new(), |t| t.to_string()),
            opt(q.and_then(|q| q.input_reduction)),
            opt(q.and_then(|q| q.keyword_hit_rate)),
            opt(q.and_then(|q| q.rouge_l_vs_standard)),
            opt(q.and_then(|q| q.bleu_vs_standard)),
        ]);
    }
    table
}
