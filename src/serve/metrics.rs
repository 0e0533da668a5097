//! `/metrics` in the Prometheus text format (version 0.0.4), under vLLM's metric names with an
//! `llmbench:` prefix so dashboards built for vLLM read them: requests by how they ended,
//! prompt and generation tokens, running and waiting sequences, KV blocks used and free,
//! preemptions, and TTFT, TPOT and end-to-end latency histograms. The engine thread sets the
//! scheduler's gauges after every step; connections count requests and observe latencies.

use crate::engine::batch_spec::SpecCounters;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// vLLM's TTFT buckets (seconds).
const TTFT_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
/// vLLM's TPOT buckets (seconds).
const TPOT_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const E2E_BUCKETS: &[f64] = &[0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, v: f64) {
        for (bound, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *bound {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", self.count, self.sum, self.count);
    }
}

/// The scheduler's state after a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerGauges {
    pub running: usize,
    pub waiting: usize,
    pub kv_blocks_used: usize,
    pub kv_blocks_free: usize,
    pub preemptions: u64,
    /// Speculation's counters when the server speculates (`--draft`).
    pub spec: Option<SpecCounters>,
}

#[derive(Debug, Clone)]
struct State {
    /// Finished requests by how they ended (`stop`, `length`, `cancelled`, `error`, `rejected`...).
    requests: BTreeMap<&'static str, u64>,
    prompt_tokens: u64,
    generation_tokens: u64,
    gauges: SchedulerGauges,
    ttft: Histogram,
    tpot: Histogram,
    e2e: Histogram,
}

/// Counters and histograms shared by the engine thread and the connections.
#[derive(Debug)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                requests: BTreeMap::new(),
                prompt_tokens: 0,
                generation_tokens: 0,
                gauges: SchedulerGauges::default(),
                ttft: Histogram::new(TTFT_BUCKETS),
                tpot: Histogram::new(TPOT_BUCKETS),
                e2e: Histogram::new(E2E_BUCKETS),
            }),
        }
    }
}

impl Metrics {
    fn with(&self, f: impl FnOnce(&mut State)) {
        // A panic elsewhere cannot leave the counters half-updated in a way that matters.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    pub fn set_gauges(&self, gauges: SchedulerGauges) {
        self.with(|s| s.gauges = gauges);
    }

    pub fn gauges(&self) -> SchedulerGauges {
        let mut g = SchedulerGauges::default();
        self.with(|s| g = s.gauges);
        g
    }

    /// A request ended: how, its token counts and (when it produced tokens) its latencies.
    pub fn finished(&self, outcome: &'static str, prompt_tokens: usize, generated: usize, ttft_s: Option<f64>, tpot_s: Option<f64>, e2e_s: f64) {
        self.with(|s| {
            *s.requests.entry(outcome).or_default() += 1;
            s.prompt_tokens += prompt_tokens as u64;
            s.generation_tokens += generated as u64;
            if let Some(t) = ttft_s {
                s.ttft.observe(t);
            }
            if let Some(t) = tpot_s {
                s.tpot.observe(t);
            }
            s.e2e.observe(e2e_s);
        });
    }

    /// A request refused before it ran (`rejected` for 429, `invalid` for 4xx).
    pub fn refused(&self, outcome: &'static str) {
        self.with(|s| *s.requests.entry(outcome).or_default() += 1);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|s| {
            let _ = writeln!(out, "# HELP llmbench:request_success_total Requests by how they ended.\n# TYPE llmbench:request_success_total counter");
            for (reason, n) in &s.requests {
                let _ = writeln!(out, "llmbench:request_success_total{{finished_reason=\"{reason}\"}} {n}");
            }
            let counter = |out: &mut String, name: &str, help: &str, v: u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
            };
            let gauge = |out: &mut String, name: &str, help: &str, v: usize| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
            };
            counter(&mut out, "llmbench:prompt_tokens_total", "Prompt tokens of finished requests.", s.prompt_tokens);
            counter(&mut out, "llmbench:generation_tokens_total", "Tokens generated for finished requests.", s.generation_tokens);
            counter(&mut out, "llmbench:num_preemptions_total", "Sequences preempted to free KV blocks.", s.gauges.preemptions);
            if let Some(spec) = s.gauges.spec {
                counter(&mut out, "llmbench:spec_decode_num_drafts_total", "Drafts verified (sequence steps that drafted).", spec.drafts);
                counter(&mut out, "llmbench:spec_decode_num_draft_tokens_total", "Tokens drafted by prompt lookup.", spec.draft_tokens);
                counter(&mut out, "llmbench:spec_decode_num_accepted_tokens_total", "Drafted tokens the model accepted.", spec.accepted_tokens);
            }
            gauge(&mut out, "llmbench:num_requests_running", "Sequences in the running batch.", s.gauges.running);
            gauge(&mut out, "llmbench:num_requests_waiting", "Sequences waiting for admission.", s.gauges.waiting);
            gauge(&mut out, "llmbench:kv_cache_blocks_used", "KV blocks held by sequences.", s.gauges.kv_blocks_used);
            gauge(&mut out, "llmbench:kv_cache_blocks_free", "KV blocks free in the pool.", s.gauges.kv_blocks_free);
            s.ttft.render(&mut out, "llmbench:time_to_first_token_seconds", "Time from the request's arrival to its first token.");
            s.tpot.render(&mut out, "llmbench:time_per_output_token_seconds", "Mean time between a request's tokens after the first.");
            s.e2e.render(&mut out, "llmbench:e2e_request_latency_seconds", "Time from the request's arrival to its end.");
        });
        out
    }
}

/// The value of an unlabelled sample `name` in a `/metrics` page (tests and clients).
pub fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_buckets() {
        let m = Metrics::default();
        m.set_gauges(SchedulerGauges { running: 2, waiting: 1, kv_blocks_used: 5, kv_blocks_free: 11, preemptions: 3, spec: None });
        m.finished("length", 10, 4, Some(0.03), Some(0.02), 0.1);
        m.finished("length", 10, 4, Some(0.3), None, 0.5);
        m.refused("rejected");
        let page = m.render();
        assert_eq!(sample(&page, "llmbench:kv_cache_blocks_free"), Some(11.0));
        assert_eq!(sample(&page, "llmbench:generation_tokens_total"), Some(8.0));
        assert!(page.contains("llmbench:request_success_total{finished_reason=\"length\"} 2"));
        assert!(page.contains("llmbench:request_success_total{finished_reason=\"rejected\"} 1"));
        assert!(page.contains("llmbench:time_to_first_token_seconds_bucket{le=\"0.04\"} 1\n"));
        assert!(page.contains("llmbench:time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert_eq!(sample(&page, "llmbench:time_per_output_token_seconds_count"), Some(1.0));
        assert!(!page.contains("spec_decode"), "no speculation, no spec-decode counters");
        m.set_gauges(SchedulerGauges { spec: Some(SpecCounters { drafts: 2, draft_tokens: 7, accepted_tokens: 5 }), ..SchedulerGauges::default() });
        let page = m.render();
        assert_eq!(sample(&page, "llmbench:spec_decode_num_draft_tokens_total"), Some(7.0));
        assert_eq!(sample(&page, "llmbench:spec_decode_num_accepted_tokens_total"), Some(5.0));
        assert_eq!(sample(&page, "llmbench:spec_decode_num_drafts_total"), Some(2.0));
    }
}
