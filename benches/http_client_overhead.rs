//! What `llmbench http`'s client costs: the scripted loopback server (src/http/scripted.rs)
//! answers every request at once with a whole stream (a role-only chunk, CHUNKS one-token
//! content chunks, the usage trailer, [DONE]) written in one piece, and the client runs it as
//! `llmbench http` does (one current-thread runtime). Both share this machine's cores, so the
//! numbers bound the client from below: a server elsewhere leaves it more CPU.
//!
//!   closed loop: REQUESTS requests at 64 concurrent: requests/s and streamed chunks/s the
//!     client sustains, parsing every event;
//!   open loop: Poisson arrivals at each of RATES requests/s, after a warm-up pass at the same
//!     rate: TTFT against a server that answers at once is what the client, the loopback and
//!     the server's thread add to every request's TTFT (an upper bound of the client's share),
//!     with the client parked between events (the default) and with --busy-poll.
//!
//! `cargo bench --bench http_client_overhead` (OUT=DIR also writes DIR/overhead.json).

use llmbench::http::client::{Endpoint, Timeouts};
use llmbench::http::load::{run_level, Load, Request};
use llmbench::http::metrics::{level_metrics, Slo};
use llmbench::http::openai::{Api, RequestOptions};
use llmbench::http::schedule::{arrivals, Rate};
use llmbench::http::scripted::{serve, Script};
use std::time::{Duration, Instant};

const CHUNKS: usize = 100;
const REQUESTS: usize = 5_000;
const CONCURRENCY: usize = 64;
const RATES: [f64; 3] = [100.0, 500.0, 1_000.0];
const OPEN_LOOP_REQUESTS: usize = 5_000;

fn main() {
    let pieces: Vec<String> = (0..CHUNKS).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let script = Script::chat(Duration::ZERO, Duration::ZERO, &refs, Some(CHUNKS as u64));
    let server = serve(move |_| script.clone()).unwrap();
    let ep = Endpoint::parse(&server.url()).unwrap();
    let opts = RequestOptions {
        api: Api::Chat,
        served_model: None,
        max_tokens: CHUNKS,
        ignore_eos: true,
        temperature: 0.0,
        seed: None,
    };
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        read: Duration::from_secs(10),
    };
    let chars = |s: &str| s.len();

    // Closed loop: as fast as the client goes.
    let (requests, load) = level(
        REQUESTS,
        vec![Duration::ZERO; REQUESTS],
        Some(CONCURRENCY),
        false,
    );
    let t = Instant::now();
    let (records, _) = run_level(&ep, &opts, &requests, &load, timeouts).unwrap();
    let wall = t.elapsed().as_secs_f64();
    let closed = level_metrics(&records, &Slo::default(), &chars);
    assert_eq!(closed.failed, 0, "{:?}", closed.failures_by_cause);
    let chunks: usize = records.iter().map(|r| r.chunk_s.len()).sum();
    let (req_s, chunk_s) = (REQUESTS as f64 / wall, chunks as f64 / wall);

    // Open loop: Poisson arrivals; TTFT from the scheduled send time. A first pass at the same
    // rate warms the connection pool (and the server's connection threads): steady state.
    let mut open = Vec::new();
    for busy_poll in [false, true] {
        for rate in RATES {
            let poisson = arrivals(OPEN_LOOP_REQUESTS, Rate::PerSecond(rate), 1.0, 0);
            let (requests, load) = level(OPEN_LOOP_REQUESTS, poisson, None, busy_poll);
            run_level(&ep, &opts, &requests, &load, timeouts).unwrap();
            let (records, _) = run_level(&ep, &opts, &requests, &load, timeouts).unwrap();
            let m = level_metrics(&records, &Slo::default(), &chars);
            assert_eq!(m.failed, 0, "{:?}", m.failures_by_cause);
            open.push((busy_poll, rate, m));
        }
    }

    println!("closed loop, {REQUESTS} requests x {CHUNKS} chunks at {CONCURRENCY} concurrent: {wall:.2} s");
    println!("  {req_s:.0} requests/s, {chunk_s:.0} chunks/s (targets: 1,000 and 100,000)");
    let mut levels = Vec::new();
    for (busy_poll, rate, m) in &open {
        let (ttft, queue) = (m.ttft_ms.clone().unwrap(), m.queue_ms.clone().unwrap());
        let mode = if *busy_poll {
            "--busy-poll"
        } else {
            "parked between events (default)"
        };
        println!("open loop, {OPEN_LOOP_REQUESTS} requests, Poisson {rate} requests/s (achieved {:.0}), {mode}:", m.achieved_rate.unwrap_or(0.0));
        println!("  TTFT against an instant server: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms (target p99 < 1 ms)", ttft.p50, ttft.p90, ttft.p99);
        println!(
            "  send lateness (queue): p50 {:.3} ms, p99 {:.3} ms",
            queue.p50, queue.p99
        );
        levels.push(serde_json::json!({"rate": rate, "busy_poll": busy_poll, "achieved_rate": m.achieved_rate, "ttft_ms": ttft, "queue_ms": queue}));
    }
    if let Ok(dir) = std::env::var("OUT") {
        let json = serde_json::json!({
            "chunks_per_request": CHUNKS,
            "closed_loop": {"requests": REQUESTS, "concurrency": CONCURRENCY, "wall_s": wall, "requests_per_s": req_s, "chunks_per_s": chunk_s},
            "open_loop": {"requests": OPEN_LOOP_REQUESTS, "levels": levels},
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        });
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            format!("{dir}/overhead.json"),
            serde_json::to_string_pretty(&json).unwrap() + "\n",
        )
        .unwrap();
    }
}

/// `n` identical requests and their load.
fn level(
    n: usize,
    arrivals: Vec<Duration>,
    max_concurrency: Option<usize>,
    busy_poll: bool,
) -> (Vec<Request>, Load) {
    let request = Request {
        prompt: "hi".into(),
        max_tokens: CHUNKS,
    };
    (
        vec![request; n],
        Load {
            arrivals,
            max_concurrency,
            duration: None,
            busy_poll,
        },
    )
}
