//! One load level: the requests sent on their schedule, at most `max_concurrency` in flight,
//! on one current-thread tokio runtime (one core for the client, the rest for a local server;
//! every timestamp is taken by the thread that reads the socket). A request whose slot is not
//! free waits in the client's queue; its latency still counts from its scheduled time and the
//! wait is reported apart (`queue_s`).

use super::client::{Endpoint, Pool, Timeouts};
use super::openai::RequestOptions;
use super::request::{run_one, RequestRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request to send: its prompt and how many tokens to ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prompt: String,
    pub max_tokens: usize,
}

/// A level's load.
#[derive(Debug, Clone)]
pub struct Load {
    /// Send offsets from the level's start (schedule::arrivals), one per prompt.
    pub arrivals: Vec<Duration>,
    pub max_concurrency: Option<usize>,
    /// Stop sending new requests after this long (`--duration`); those in flight finish.
    pub duration: Option<Duration>,
    /// Spin instead of parking between events (`--busy-poll`).
    pub busy_poll: bool,
}

impl Load {
    /// Every request due at once under a concurrency cap: a closed loop.
    pub fn closed_loop(&self) -> bool {
        self.max_concurrency.is_some() && self.arrivals.iter().all(|a| a.is_zero())
    }
}

/// Timers of the runtime fire on millisecond ticks: a sleep ends up to ~1 ms late. The last
/// stretch before a send is spent yielding to the runtime, so sends leave within microseconds
/// of their schedule while other requests' reads go on.
const SPIN_BEFORE: Duration = Duration::from_micros(1500);

async fn wait_until(due: Instant) {
    if let Some(early) = due.checked_duration_since(Instant::now() + SPIN_BEFORE) {
        tokio::time::sleep(early).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// Runs a level; `requests[i]` is sent at `load.arrivals[i]` with `opts` (its own max_tokens). Returns every request's record
/// (in send order) and the instant the level started.
pub fn run_level(
    ep: &Endpoint,
    opts: &RequestOptions,
    requests: &[Request],
    load: &Load,
    timeouts: Timeouts,
) -> std::io::Result<(Vec<RequestRecord>, Instant)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(run_level_async(ep, opts, requests, load, timeouts)))
}

async fn run_level_async(
    ep: &Endpoint,
    opts: &RequestOptions,
    requests: &[Request],
    load: &Load,
    timeouts: Timeouts,
) -> (Vec<RequestRecord>, Instant) {
    let pool = Arc::new(Pool::default());
    let slots = Arc::new(tokio::sync::Semaphore::new(
        load.max_concurrency
            .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let ep = Arc::new(ep.clone());
    let start = Instant::now() + Duration::from_millis(5);
    let mut tasks = tokio::task::JoinSet::new();
    // Busy polling: a task that always yields keeps the runtime from parking in epoll, so a
    // response's bytes are read (and timestamped) within microseconds instead of after the
    // thread's wake-up (benches/http_client_overhead.rs: p99 TTFT against an instant server
    // 0.27-0.46 ms instead of 1.1-1.9 ms on a 2-core machine). It costs the client's core.
    let spinner = load.busy_poll.then(|| {
        tokio::spawn(async {
            loop {
                tokio::task::yield_now().await;
            }
        })
    });
    for (index, (request, offset)) in requests.iter().zip(&load.arrivals).enumerate() {
        if load.duration.is_some_and(|d| *offset >= d) {
            break;
        }
        let mut scheduled = start + *offset;
        wait_until(scheduled).await;
        // Waits for a slot here, in order: later requests queue behind this one.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        // A closed loop (every request due at once, a concurrency cap) sends each request when
        // a slot frees: that is its schedule, and its latency counts from there. An open loop
        // keeps its schedule, and the wait for a slot is part of the latency (and queue_s).
        if load.closed_loop() {
            scheduled = Instant::now();
        }
        let opts = RequestOptions {
            max_tokens: request.max_tokens,
            ..opts.clone()
        };
        let (pool, ep, prompt) = (pool.clone(), ep.clone(), request.prompt.clone());
        tasks.spawn(async move {
            let rec = run_one(
                &pool, &ep, &opts, &prompt, timeouts, index, start, scheduled,
            )
            .await;
            drop(permit);
            rec
        });
    }
    let mut records = Vec::with_capacity(requests.len());
    while let Some(done) = tasks.join_next().await {
        if let Ok(rec) = done {
            records.push(rec);
        }
    }
    records.sort_by_key(|r| r.index);
    if let Some(s) = spinner {
        s.abort();
    }
    (records, start)
}
