//! quantize's columns: per format its size (bits per weight, bytes), time to quantize and
//! load, prefill and decode speed, peak RSS, and the distribution shift against the source in
//! llama-perplexity's terms (PPL, ln(PPL/PPL_base), KLD, Δp, same top-1), plus greedy agreement.

use super::{not_run, opt, Table, MIB};
use crate::results::schema::{CaseResult, QuantizeParams, QuantizeQuality, Report};

fn parts(case: &CaseResult) -> (Option<&QuantizeParams>, Option<&QuantizeQuality>) {
    (case.params.as_quantize(), case.quality.as_ref().and_then(|q| q.as_quantize()))
}

pub fn human(report: &Report) -> Table {
    let mut table = Table::new(&[
        "format",
        "bpw",
        "weights MiB",
        "quantize s",
        "load s",
        "prefill tok/s",
        "decode tok/s",
        "peak RSS MiB",
        "PPL",
        "ln(PPL/base)",
        "KLD mean",
        "KLD p99",
        "KLD max",
        "RMS Δp %",
        "same top-1 %",
        "greedy agree",
        "zeroed %",
    ]);
    for case in &report.cases {
        let (Some(p), q) = parts(case) else { continue };
        let mut cells = vec![p.variant()];
        match (not_run(case), &case.summary, q) {
            (None, Some(s), Some(q)) => {
                cells.extend([
                    format!("{:.2}", q.bits_per_weight),
                    format!("{:.1}", q.weight_bytes as f64 / MIB),
                    format!("{:.2}", q.quantize_s),
                    format!("{:.2}", q.load_s),
                    format!("{:.0}", s.prefill_tokens_per_s.median),
                    format!("{:.1}", s.decode_tokens_per_s.median),
                    format!("{:.0}", s.peak_rss_bytes.max / MIB),
                ]);
                match &q.shift {
                    Some(d) => cells.extend([
                        format!("{:.4}", d.perplexity),
                        format!("{:.5} ± {:.5}", d.ln_ppl_ratio, d.ln_ppl_ratio_stderr),
                        format!("{:.6}", d.kld_mean),
                        format!("{:.5}", d.kld_p99),
                        format!("{:.4}", d.kld_max),
                        format!("{:.3}", d.delta_p_rms * 100.0),
                        format!("{:.2}", d.same_top1 * 100.0),
                    ]),
                    // --skip-evaluate: speed and size only.
                    None => cells.extend(std::iter::repeat_n("-".to_string(), 7)),
                }
                cells.push(q.greedy_agreement.map_or("-".into(), |a| format!("{a:.3}")));
                cells.push(q.sparsity.as_ref().map_or("-".into(), |z| format!("{:.1}", z.zeroed_share_overall * 100.0)));
            }
            (why, _, _) => cells.push(why.unwrap_or_else(|| "no measurements".into())),
        }
        table.push(cells);
    }
    table
}

pub fn csv(report: &Report) -> Table {
    let mut table = Table::new(&[
        "case_id",
        "model",
        "format",
        "max_new_tokens",
        "status",
        "runs",
        "weight_params",
        "weight_bytes",
        "bits_per_weight",
        "quantize_s",
        "load_s",
        "median_prefill_tokens_per_s",
        "median_decode_tokens_per_s",
        "avg_ts",
        "stddev_ts",
        "max_peak_rss_bytes",
        "scored_tokens",
        "perplexity",
        "perplexity_base",
        "ln_ppl_ratio",
        "ln_ppl_ratio_stderr",
        "kld_mean",
        "kld_stderr",
        "kld_median",
        "kld_p99",
        "kld_max",
        "delta_p_mean",
        "delta_p_rms",
        "same_top1",
        "greedy_agreement",
        "zeroed_share",
        "sparse_weight_bytes",
    ]);
    for case in &report.cases {
        let (Some(p), q) = parts(case) else { continue };
        let s = case.summary.as_ref();
        let d = q.and_then(|q| q.shift.as_ref());
        table.push(vec![
            case.case_id.clone(),
            p.model.clone(),
            p.variant(),
            p.max_new_tokens.to_string(),
            format!("{:?}", case.status).to_lowercase(),
            case.runs.len().to_string(),
            opt(q.map(|q| q.weight_params as f64)),
            opt(q.map(|q| q.weight_bytes as f64)),
            opt(q.map(|q| q.bits_per_weight)),
            opt(q.map(|q| q.quantize_s)),
            opt(q.map(|q| q.load_s)),
            opt(s.map(|s| s.prefill_tokens_per_s.median)),
            opt(s.map(|s| s.decode_tokens_per_s.median)),
            opt(s.map(|s| s.avg_ts)),
            opt(s.map(|s| s.stddev_ts)),
            opt(s.map(|s| s.peak_rss_bytes.max)),
            opt(d.map(|d| d.scored_tokens as f64)),
            opt(d.map(|d| d.perplexity)),
            opt(d.map(|d| d.perplexity_base)),
            opt(d.map(|d| d.ln_ppl_ratio)),
            opt(d.map(|d| d.ln_ppl_ratio_stderr)),
            opt(d.map(|d| d.kld_mean)),
            opt(d.map(|d| d.kld_stderr)),
            opt(d.map(|d| d.kld_median)),
            opt(d.map(|d| d.kld_p99)),
            opt(d.map(|d| d.kld_max)),
            opt(d.map(|d| d.delta_p_mean)),
            opt(d.map(|d| d.delta_p_rms)),
            opt(d.map(|d| d.same_top1)),
            opt(q.and_then(|q| q.greedy_agreement)),
            opt(q.and_then(|q| q.sparsity.as_ref()).map(|z| z.zeroed_share_overall)),
            opt(q.and_then(|q| q.sparsity.as_ref()).map(|z| z.sparse_weight_bytes as f64)),
        ]);
    }
    table
}
