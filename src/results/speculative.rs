//! specdec's numbers from raw runs: acceptance as vLLM counts it, the per-token acceptance
//! probability, the time split, the cost ratio against the baseline's target step, the
//! speedup measured against the baseline (95% interval) and the speedup the model of
//! Leviathan et al. 2023 (section 3.4) predicts from what was measured. Pure functions of
//! results, so `plot` and tests recompute them from a file.

use super::schema::{Ratio, RunRecord, SpecdecQuality};
use crate::measure::stats::{welch_change, Summary};

/// Output quality measured by the caller (it needs the model): agreement with the baseline's
/// tokens and perplexity under the target.
#[derive(Debug, Clone, Default)]
pub struct OutputQuality {
    pub agreement_with_target: Option<f64>,
    pub first_divergence: Vec<Option<usize>>,
    pub perplexity: Option<f64>,
}

/// Expected tokens per target pass with K drafts accepted independently with probability a.
pub fn expected_tokens_per_step(a: f64, k: f64) -> f64 {
    if (1.0 - a).abs() < 1e-12 {
        k + 1.0
    } else {
        (1.0 - a.powf(k + 1.0)) / (1.0 - a)
    }
}

/// Leviathan et al.'s predicted speedup (1 - a^(K+1)) / ((1 - a)(K c + overhead)), where
/// overhead is 1 in the paper (verifying K + 1 tokens costs one target step).
pub fn predicted_speedup(a: f64, k: f64, c: f64, overhead: f64) -> f64 {
    expected_tokens_per_step(a, k) / (k * c + overhead)
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.collect();
    Summary::of(&v).map(|s| s.mean)
}

/// Decode tok/s per prompt, averaged over repetitions.
fn per_prompt_speed(runs: &[RunRecord]) -> Vec<Option<f64>> {
    let prompts = runs.iter().map(|r| r.prompt_index + 1).max().unwrap_or(0);
    (0..prompts).map(|p| mean(runs.iter().filter(|r| r.prompt_index == p).map(|r| r.decode_tokens_per_s))).collect()
}

/// Everything `SpecdecQuality` holds, from a case's runs and its baseline's (standard decoding
/// on the same prompts in the same run). `k` is the case's K (the start of an adaptive one).
pub fn quality(runs: &[RunRecord], baseline: Option<&[RunRecord]>, k: Option<usize>, lossless: bool, output: OutputQuality) -> SpecdecQuality {
    let specs: Vec<_> = runs.iter().filter_map(|r| r.speculative.as_ref()).collect();
    let steps = || specs.iter().flat_map(|s| s.step_drafted.iter().zip(&s.step_accepted).zip(&s.step_k));
    let drafts = steps().filter(|((&d, _), _)| d > 0).count() as u64;
    let drafted: u64 = steps().map(|((&d, _), _)| d as u64).sum();
    let accepted: u64 = steps().map(|((_, &a), _)| a as u64).sum();
    let rejections = steps().filter(|((&d, &a), _)| d > 0 && a < d).count() as u64;
    let longest = steps().map(|((&d, _), _)| d).max().unwrap_or(0);
    let per_position_acceptance_rate = (0..longest)
        .map(|i| if drafts == 0 { 0.0 } else { steps().filter(|((_, &a), _)| a > i).count() as f64 / drafts as f64 })
        .collect();
    let n_steps = steps().count();
    let mean_k = (n_steps > 0).then(|| steps().map(|(_, &k)| k as f64).sum::<f64>() / n_steps as f64);
    let ms = |f: fn(&super::schema::SpeculativeRun) -> u64| mean(specs.iter().map(|s| f(s) as f64 / 1e6)).unwrap_or(0.0);
    let alpha = (accepted + rejections > 0).then(|| accepted as f64 / (accepted + rejections) as f64);

    let target_step_ms = baseline.and_then(|b| Summary::of(&b.iter().map(|r| r.tpot_ms).collect::<Vec<_>>())).map(|s| s.median);
    let total = |f: fn(&super::schema::SpeculativeRun) -> u64| specs.iter().map(|s| f(s) as f64 / 1e6).sum::<f64>();
    let per_target_step = |ms: f64, per: f64| target_step_ms.filter(|&t| t > 0.0 && per > 0.0).map(|t| ms / per / t);
    let cost_ratio = per_target_step(total(|s| s.draft_ns), drafted as f64);
    // Steps of the decode phase: every step after the prefill, drafting or not.
    let verify_cost_ratio = per_target_step(total(|s| s.verify_ns), n_steps as f64);
    let bookkeeping_cost_ratio = per_target_step(total(|s| s.bookkeeping_ns), n_steps as f64);

    let speedup = baseline.and_then(|b| {
        let speed = |runs: &[RunRecord]| runs.iter().map(|r| r.decode_tokens_per_s).collect::<Vec<_>>();
        welch_change(&speed(b), &speed(runs)).map(|c| Ratio { ratio: 1.0 + c.relative, low: 1.0 + c.ci_low, high: 1.0 + c.ci_high })
    });
    let per_prompt_speedup = match baseline {
        Some(b) => per_prompt_speed(runs)
            .into_iter()
            .zip(per_prompt_speed(b))
            .map(|(ours, base)| match (ours, base) {
                (Some(o), Some(b)) if b > 0.0 => Some(o / b),
                _ => None,
            })
            .collect(),
        None => vec![],
    };
    let k = k.map(|k| k as f64);
    let predicted = |overhead: Option<f64>| -> Option<f64> { Some(predicted_speedup(alpha?, k?, cost_ratio?, overhead?)) };
    SpecdecQuality {
        lossless,
        spec_decode_num_drafts: drafts,
        spec_decode_num_draft_tokens: drafted,
        spec_decode_num_accepted_tokens: accepted,
        spec_decode_acceptance_rate: (drafted > 0).then(|| accepted as f64 / drafted as f64),
        spec_decode_acceptance_length: (drafts > 0).then(|| 1.0 + accepted as f64 / drafts as f64),
        per_position_acceptance_rate,
        alpha,
        mean_k,
        prefill_ms: ms(|s| s.prefill_ns),
        draft_ms: ms(|s| s.draft_ns),
        verify_ms: ms(|s| s.verify_ns),
        bookkeeping_ms: ms(|s| s.bookkeeping_ns),
        target_step_ms,
        cost_ratio,
        verify_cost_ratio,
        bookkeeping_cost_ratio,
        speedup,
        per_prompt_speedup,
        predicted_speedup: predicted(Some(1.0)),
        predicted_speedup_measured_costs: predicted(verify_cost_ratio.zip(bookkeeping_cost_ratio).map(|(v, b)| v + b)),
        agreement_with_target: output.agreement_with_target,
        first_divergence: output.first_divergence,
        perplexity: output.perplexity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_formula_matches_hand_computed_values() {
        // a = 0.8, K = 4, c = 0.1: (1 - 0.8^5) / (0.2 * 1.4) = 0.67232 / 0.28 = 2.4011.
        assert!((predicted_speedup(0.8, 4.0, 0.1, 1.0) - 2.401_142_857).abs() < 1e-9);
        // a = 1: K + 1 tokens per step; with c = 0 the speedup is K + 1.
        assert_eq!(predicted_speedup(1.0, 3.0, 0.0, 1.0), 4.0);
        assert_eq!(expected_tokens_per_step(0.0, 5.0), 1.0);
    }
}
