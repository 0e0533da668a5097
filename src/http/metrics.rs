//! The metrics of one load level from its request records, with the definitions `vllm bench
//! serve` reports under the same names (and where ours differ, why):
//!
//! - TTFT: first chunk carrying output, from the scheduled send time.
//! - E2E: end of the stream, from the scheduled send time.
//! - TPOT: (E2E - TTFT) / (output tokens - 1), per request with 2 or more tokens.
//! - ITL: the gaps between consecutive output chunks; a chunk carrying t > 1 tokens (the
//!   server's token count exceeds its chunk count) contributes t samples of gap / t, and the
//!   request is counted as having multi-token chunks.
//! - Throughputs over the level's duration (first scheduled send to last completion); peak
//!   output tok/s over 1-second windows of chunk arrivals.
//! - Goodput: completed requests a second meeting every given SLO.
//!
//! Failed requests are counted by cause and left out of every latency statistic.

use super::request::{RequestRecord, TokenSource};
use crate::measure::stats::Summary;
use std::collections::BTreeMap;

/// Service-level objectives for goodput, in milliseconds (`--goodput ttft:MS,tpot:MS,e2el:MS`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct Slo {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl Slo {
    pub fn is_empty(&self) -> bool {
        self.ttft_ms.is_none() && self.tpot_ms.is_none() && self.e2el_ms.is_none()
    }
}

/// One load level's metrics (times in ms, rates a second).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct LevelMetrics {
    pub completed: usize,
    pub failed: usize,
    pub failures_by_cause: BTreeMap<String, usize>,
    pub duration_s: f64,
    pub total_input_tokens: u64,
    pub total_output_tokens: u64,
    /// Where the output counts came from: every request's usage, or our tokenizer for some.
    pub output_tokens_from_tokenizer: usize,
    /// Requests whose stream had chunks of several tokens (their ITL gaps were divided).
    pub multi_token_chunk_requests: usize,
    /// Output chunks that carried reasoning, over all requests (counted as output too).
    pub reasoning_chunks: usize,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub peak_output_throughput: f64,
    /// Requests the schedule offered a second (count over the span of scheduled sends).
    pub offered_rate: Option<f64>,
    /// Requests actually sent a second over the span of sends.
    pub achieved_rate: Option<f64>,
    pub goodput: Option<f64>,
    pub ttft_ms: Option<Summary>,
    pub tpot_ms: Option<Summary>,
    pub itl_ms: Option<Summary>,
    pub e2el_ms: Option<Summary>,
    /// Time in the client's queue before sending (not part of the server's latency, part of ours).
    pub queue_ms: Option<Summary>,
    /// Requests in flight, sampled every `concurrency_step_s` from the first scheduled send.
    pub concurrency: Vec<u32>,
    pub concurrency_step_s: f64,
}

/// The output tokens of one record and where the count came from.
pub fn output_tokens(r: &RequestRecord, count: &dyn Fn(&str) -> usize) -> (u64, TokenSource) {
    match r.usage {
        Some(u) => (u.completion_tokens, TokenSource::Usage),
        None => (
            r.chunk_text.iter().map(|t| count(t) as u64).sum(),
            TokenSource::Tokenizer,
        ),
    }
}

/// Computes a level's metrics; `count` tokenizes text (for servers without usage, and for the
/// share of tokens among a request's chunks when some carry several).
pub fn level_metrics(
    records: &[RequestRecord],
    slo: &Slo,
    count: &dyn Fn(&str) -> usize,
) -> LevelMetrics {
    let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.failure.is_none()).collect();
    let mut failures_by_cause = BTreeMap::new();
    for r in records.iter().filter_map(|r| r.failure.as_ref()) {
        *failures_by_cause.entry(r.cause()).or_insert(0) += 1;
    }
    let start = records
        .iter()
        .map(|r| r.scheduled_s)
        .fold(f64::INFINITY, f64::min);
    let end = records
        .iter()
        .map(|r| r.scheduled_s + r.e2e_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let duration_s = if records.is_empty() {
        0.0
    } else {
        (end - start).max(1e-9)
    };
    let (mut ttft, mut tpot, mut itl, mut e2el, mut queue) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut input, mut output, mut from_tokenizer, mut multi, mut reasoning, mut good) =
        (0u64, 0u64, 0, 0, 0, 0);
    let mut arrivals: Vec<(f64, u64)> = Vec::new();
    for r in &ok {
        let (n, source) = output_tokens(r, count);
        output += n;
        input += r.usage.map(|u| u.prompt_tokens).unwrap_or(0);
        from_tokenizer += usize::from(source == TokenSource::Tokenizer);
        reasoning += r.reasoning_chunks;
        queue.push(r.queue_s * 1e3);
        e2el.push(r.e2e_s * 1e3);
        let first = r.ttft_s();
        if let Some(t) = first {
            ttft.push(t * 1e3);
        }
        let tpot_ms = match first {
            Some(t) if n > 1 => Some((r.e2e_s - t) * 1e3 / (n - 1) as f64),
            _ => None,
        };
        tpot.extend(tpot_ms);
        let per_chunk = tokens_per_chunk(r, n, count);
        multi += usize::from(per_chunk.iter().any(|&t| t > 1));
        for (i, w) in r.chunk_s.windows(2).enumerate() {
            let t = per_chunk[i + 1].max(1);
            let gap = (w[1] - w[0]) * 1e3 / t as f64;
            itl.extend(std::iter::repeat_n(gap, t as usize));
        }
        for (at, t) in r.chunk_s.iter().zip(&per_chunk) {
            arrivals.push((r.scheduled_s + at - start, *t));
        }
        let meets =
            |v: Option<f64>, limit: Option<f64>| limit.is_none_or(|l| v.is_some_and(|v| v <= l));
        if meets(first.map(|t| t * 1e3), slo.ttft_ms)
            && meets(tpot_ms.or(Some(0.0)), slo.tpot_ms)
            && meets(Some(r.e2e_s * 1e3), slo.e2el_ms)
        {
            good += 1;
        }
    }
    let rate =
        |count: usize, span: f64| (count > 1 && span > 0.0).then(|| (count - 1) as f64 / span);
    let scheduled: Vec<f64> = records.iter().map(|r| r.scheduled_s).collect();
    let sent: Vec<f64> = records.iter().map(|r| r.scheduled_s + r.queue_s).collect();
    let span = |v: &[f64]| {
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            - v.iter().copied().fold(f64::INFINITY, f64::min)
    };
    let step = concurrency_step(duration_s);
    LevelMetrics {
        completed: ok.len(),
        failed: records.len() - ok.len(),
        failures_by_cause,
        duration_s,
        total_input_tokens: input,
        total_output_tokens: output,
        output_tokens_from_tokenizer: from_tokenizer,
        multi_token_chunk_requests: multi,
        reasoning_chunks: reasoning,
        request_throughput: ok.len() as f64 / duration_s.max(1e-9),
        output_throughput: output as f64 / duration_s.max(1e-9),
        total_token_throughput: (input + output) as f64 / duration_s.max(1e-9),
        peak_output_throughput: peak_per_second(&arrivals),
        offered_rate: rate(scheduled.len(), span(&scheduled)),
        achieved_rate: rate(sent.len(), span(&sent)),
        goodput: (!slo.is_empty()).then(|| good as f64 / duration_s.max(1e-9)),
        ttft_ms: Summary::of(&ttft),
        tpot_ms: Summary::of(&tpot),
        itl_ms: Summary::of(&itl),
        e2el_ms: Summary::of(&e2el),
        queue_ms: Summary::of(&queue),
        concurrency: concurrency(records, start, duration_s, step),
        concurrency_step_s: step,
    }
}

/// Tokens each output chunk carried: 1 each when the count equals the chunks; otherwise the
/// tokenizer's count of each chunk's text, scaled so that they add up to `n` (at least 1 a chunk).
fn tokens_per_chunk(r: &RequestRecord, n: u64, count: &dyn Fn(&str) -> usize) -> Vec<u64> {
    let chunks = r.chunk_s.len() as u64;
    if chunks == 0 || n <= chunks {
        return vec![1; chunks as usize];
    }
    let raw: Vec<f64> = r
        .chunk_text
        .iter()
        .map(|t| count(t).max(1) as f64)
        .collect();
    let total: f64 = raw.iter().sum();
    // Largest remainders: whole tokens that add up to n exactly.
    let exact: Vec<f64> = raw
        .iter()
        .map(|c| (c / total * n as f64).max(1.0))
        .collect();
    let mut out: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut left = n.saturating_sub(out.iter().sum());
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    for &i in order.iter().cycle().take(out.len() * 2) {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

/// Most output tokens that arrived in any 1-second window (starting at an arrival).
fn peak_per_second(arrivals: &[(f64, u64)]) -> f64 {
    let mut a = arrivals.to_vec();
    a.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut best, mut sum, mut lo) = (0u64, 0u64, 0usize);
    for hi in 0..a.len() {
        sum += a[hi].1;
        while a[hi].0 - a[lo].0 >= 1.0 {
            sum -= a[lo].1;
            lo += 1;
        }
        best = best.max(sum);
    }
    best as f64
}

/// About 200 samples over the level, at 10 ms or coarser.
fn concurrency_step(duration_s: f64) -> f64 {
    (duration_s / 200.0).max(0.01)
}

fn concurrency(records: &[RequestRecord], start: f64, duration_s: f64, step: f64) -> Vec<u32> {
    let samples = (duration_s / step).ceil() as usize + 1;
    let mut out = vec![0u32; samples.min(100_000)];
    for r in records {
        let sent = r.scheduled_s + r.queue_s - start;
        let end = r.scheduled_s + r.e2e_s - start;
        for (i, c) in out.iter_mut().enumerate() {
            let t = i as f64 * step;
            if t >= sent && t < end {
                *c += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::client::Failure;
    use super::super::openai::Usage;
    use super::*;

    fn rec(scheduled: f64, chunks: &[f64], e2e: f64, tokens: Option<u64>) -> RequestRecord {
        RequestRecord {
            index: 0,
            scheduled_s: scheduled,
            queue_s: 0.0,
            chunk_s: chunks.to_vec(),
            chunk_text: chunks.iter().map(|_| "ab".to_string()).collect(),
            reasoning_chunks: 0,
            e2e_s: e2e,
            usage: tokens.map(|t| Usage {
                prompt_tokens: 10,
                completion_tokens: t,
            }),
            server_timings: None,
            failure: None,
        }
    }

    fn chars(s: &str) -> usize {
        s.len()
    }

    #[test]
    fn definitions_on_scripted_requests() {
        // One token a chunk: TTFT 100 ms, gaps 20 ms, E2E 140 ms, TPOT (140 - 100) / 2.
        let a = rec(0.0, &[0.100, 0.120, 0.140], 0.140, Some(3));
        // Six tokens in three chunks (2 each): ITL gaps divided in two, TPOT over 5 gaps.
        let b = rec(1.0, &[0.050, 0.090, 0.130], 0.130, Some(6));
        let mut failed = rec(0.5, &[], 0.2, None);
        failed.failure = Some(Failure::Status(500, "boom".into()));
        let m = level_metrics(
            &[a, b, failed],
            &Slo {
                ttft_ms: Some(60.0),
                ..Slo::default()
            },
            &chars,
        );
        assert_eq!(
            (m.completed, m.failed, m.failures_by_cause.get("http_500")),
            (2, 1, Some(&1))
        );
        assert_eq!(
            m.ttft_ms.as_ref().map(|s| (s.min, s.max)),
            Some((50.0, 100.0))
        );
        let tpot = m.tpot_ms.unwrap();
        assert!((tpot.min - 80.0 / 5.0).abs() < 1e-9 && (tpot.max - 20.0).abs() < 1e-9);
        let itl = m.itl_ms.unwrap();
        assert_eq!(itl.n, 2 + 4);
        assert!((itl.min - 20.0).abs() < 1e-9 && (itl.max - 20.0).abs() < 1e-9);
        assert_eq!(m.multi_token_chunk_requests, 1);
        assert_eq!((m.total_output_tokens, m.total_input_tokens), (9, 20));
        assert!((m.duration_s - 1.13).abs() < 1e-9);
        assert!(
            (m.goodput.unwrap() - 1.0 / 1.13).abs() < 1e-9,
            "only b meets TTFT <= 60 ms"
        );
        // The window from 0.14 s holds a's last token and all six of b's.
        assert_eq!(m.peak_output_throughput, 7.0);
    }

    #[test]
    fn without_usage_the_tokenizer_counts() {
        let m = level_metrics(&[rec(0.0, &[0.1, 0.2], 0.2, None)], &Slo::default(), &chars);
        assert_eq!(
            (m.total_output_tokens, m.output_tokens_from_tokenizer),
            (4, 1)
        );
        assert_eq!(m.goodput, None);
    }

    #[test]
    fn chunk_shares_add_up_to_the_servers_count() {
        let mut r = rec(0.0, &[0.1, 0.2, 0.3], 0.3, Some(7));
        r.chunk_text = vec!["a".into(), "abcd".into(), "ab".into()];
        let t = tokens_per_chunk(&r, 7, &chars);
        assert_eq!(t.iter().sum::<u64>(), 7);
        assert!(t.iter().all(|&x| x >= 1) && t[1] >= t[2] && t[2] >= t[0]);
    }

    #[test]
    fn concurrency_counts_requests_in_flight() {
        let recs = [
            rec(0.0, &[0.5], 1.0, Some(1)),
            rec(0.5, &[0.1], 1.0, Some(1)),
        ];
        let m = level_metrics(&recs, &Slo::default(), &chars);
        let at = |t: f64| m.concurrency[(t / m.concurrency_step_s).round() as usize];
        assert_eq!((at(0.25), at(0.75), at(1.25)), (1, 2, 1));
    }
}
