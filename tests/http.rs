//! `llmbench http` against the scripted loopback server (common/sse_server.rs): each metric
//! equals its definition on scripted timings, within what the timer and scheduler allow.

use crate::common::sse_server::{serve, End, Script};
use llmbench::http::client::{Endpoint, Failure, Timeouts};
use llmbench::http::load::{run_level, Load};
use llmbench::http::metrics::{level_metrics, Slo};
use llmbench::http::openai::{Api, RequestOptions};
use llmbench::http::request::RequestRecord;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

fn opts(api: Api) -> RequestOptions {
    RequestOptions { api, served_model: None, max_tokens: 8, ignore_eos: true, temperature: 0.0, seed: None }
}

fn timeouts() -> Timeouts {
    Timeouts { connect: Duration::from_secs(2), read: Duration::from_millis(500) }
}

fn run(url: &str, n: usize, concurrency: Option<usize>) -> Vec<RequestRecord> {
    let ep = Endpoint::parse(url).unwrap();
    let prompts: Vec<String> = (0..n).map(|i| format!("prompt {i}")).collect();
    let load = Load { arrivals: vec![Duration::ZERO; n], max_concurrency: concurrency, duration: None };
    run_level(&ep, &opts(Api::Chat), &prompts, &load, timeouts()).unwrap().0
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Scripted: role-only chunk at once, content at 40 ms, then every 10 ms (4 chunks), usage 4.
#[test]
fn ttft_skips_the_role_only_chunk_and_tpot_itl_follow_the_script() {
    let server = serve(|_| Script::chat(40 * MS, 10 * MS, &["a", "b", "c", "d"], Some(4)));
    let recs = run(&server.url(), 3, Some(1));
    assert!(recs.iter().all(|r| r.failure.is_none()), "{recs:?}");
    let m = level_metrics(&recs, &Slo::default(), &chars);
    let ttft = m.ttft_ms.unwrap();
    // Sequential (concurrency 1): the 2nd and 3rd wait in the client's queue, and their TTFT
    // counts from their scheduled time (0), so it grows by a whole request each time.
    assert!(ttft.min >= 40.0 && ttft.min < 48.0, "{ttft:?}");
    assert!(ttft.max >= 2.0 * 70.0 + 40.0, "queued requests' TTFT includes the queue: {ttft:?}");
    let itl = m.itl_ms.unwrap();
    assert_eq!(itl.n, 3 * 3);
    assert!(itl.median >= 9.5 && itl.median < 13.0, "{itl:?}");
    let tpot = m.tpot_ms.unwrap();
    assert!(tpot.median >= 9.5 && tpot.median < 13.0, "{tpot:?}");
    assert!(m.queue_ms.unwrap().max >= 140.0);
    assert_eq!((m.total_output_tokens, m.output_tokens_from_tokenizer, m.multi_token_chunk_requests), (12, 0, 0));
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[test]
fn multi_token_chunks_divide_the_gap_and_missing_usage_falls_back_to_the_tokenizer() {
    // Two chunks of 3 tokens (usage 6): ITL = 30 ms / 3, three samples a gap.
    let multi = serve(|_| Script::chat(20 * MS, 30 * MS, &["abc", "def"], Some(6)));
    let m = level_metrics(&run(&multi.url(), 1, None), &Slo::default(), &chars);
    assert_eq!((m.multi_token_chunk_requests, m.itl_ms.as_ref().unwrap().n), (1, 3));
    assert!((9.5..13.0).contains(&m.itl_ms.unwrap().median));
    // No usage trailer: our tokenizer (here characters) counts "ab" + "cde" = 5.
    let bare = serve(|_| Script::chat(5 * MS, 5 * MS, &["ab", "cde"], None));
    let m = level_metrics(&run(&bare.url(), 1, None), &Slo::default(), &chars);
    assert_eq!((m.total_output_tokens, m.output_tokens_from_tokenizer), (5, 1));
}

#[test]
fn reasoning_deltas_count_as_output_and_are_reported_apart() {
    let server = serve(|_| {
        let mut s = Script::chat(10 * MS, 5 * MS, &["x"], Some(2));
        s.events.insert(1, (10 * MS, r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#.into()));
        s
    });
    let recs = run(&server.url(), 1, None);
    let m = level_metrics(&recs, &Slo::default(), &chars);
    assert_eq!((m.reasoning_chunks, recs[0].chunk_s.len()), (1, 2));
    // TTFT is the reasoning chunk (10 ms), not the content (15 ms later).
    assert!((10.0..14.0).contains(&m.ttft_ms.unwrap().median));
}

#[test]
fn failures_are_counted_by_cause_and_kept_out_of_latency() {
    let server = serve(|req| match req["messages"][0]["content"].as_str().unwrap_or("") {
        "prompt 0" => Script::status(500, r#"{"error":{"message":"boom"}}"#),
        "prompt 1" => Script { end: End::Drop, events: Script::chat(MS, MS, &["a"], None).events[..1].to_vec(), status: 200 },
        "prompt 2" => Script { end: End::Stall, events: vec![], status: 200 },
        "prompt 3" => Script::chat(MS, MS, &["a"], None).with_error(),
        _ => Script::chat(5 * MS, MS, &["ok"], Some(1)),
    });
    let recs = run(&server.url(), 5, None);
    let causes: Vec<String> = recs.iter().map(|r| r.failure.as_ref().map(Failure::cause).unwrap_or_default()).collect();
    assert_eq!(causes, ["http_500", "dropped", "stalled", "server_error", ""]);
    assert!(recs[0].failure.as_ref().unwrap().to_string().contains("boom"));
    let m = level_metrics(&recs, &Slo::default(), &chars);
    assert_eq!((m.completed, m.failed, m.e2el_ms.unwrap().n), (1, 4, 1));
}

#[test]
fn an_unreachable_endpoint_fails_within_the_connect_timeout() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = std::time::Instant::now();
    let recs = run(&format!("http://127.0.0.1:{port}"), 2, None);
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(recs.iter().all(|r| r.failure.as_ref().is_some_and(|f| f.cause() == "connect")));
}

#[test]
fn sends_follow_the_schedule_not_the_free_slots() {
    let server = serve(|_| Script::chat(2 * MS, MS, &["a"], Some(1)));
    let ep = Endpoint::parse(&server.url()).unwrap();
    let arrivals: Vec<Duration> = (0..20).map(|i| i * 10 * MS).collect();
    let prompts = vec!["p".to_string(); 20];
    let (recs, _) = run_level(&ep, &opts(Api::Completions), &prompts, &Load { arrivals, max_concurrency: None, duration: None }, timeouts()).unwrap();
    for (i, r) in recs.iter().enumerate() {
        assert!((r.scheduled_s - i as f64 * 0.010).abs() < 1e-3, "request {i} scheduled at {}", r.scheduled_s);
        assert!(r.queue_s < 2e-3, "request {i} left {} s late", r.queue_s);
    }
}
