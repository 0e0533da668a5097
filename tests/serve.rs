//! `llmbench serve` end to end on 127.0.0.1 with the random-weight Llama fixture: the binary is
//! started on a free port and spoken to over plain sockets. Greedy outputs are checked against
//! the engine decoding the same prompt alone, usage against the ids, and the robustness rules
//! (400, 404, 413, 429, a disconnect freeing its blocks, SIGTERM) through status codes and
//! `/metrics`.

use crate::common::{fixture, load, smollm2_gguf};
use candle_core::Device;
use llmbench::decode::sampling::SamplingConfig;
use llmbench::engine::{Engine, GenerateRequest};
use llmbench::kv::{self, KvKind};
use llmbench::serve::metrics::sample;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEMPLATE: &str = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        Self::start_model(&fixture("tiny-llama"), extra)
    }

    /// The real model, where a test needs a generation that lasts (the fixture makes 100
    /// tokens in milliseconds).
    fn start_slow(extra: &[&str]) -> Self {
        Self::start_model(&smollm2_gguf(), extra)
    }

    fn start_model(model: &std::path::Path, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("template.jinja");
        std::fs::write(&template, TEMPLATE).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_llmbench"))
            .args(["serve", "--device", "cpu", "--port", "0", "--model"])
            .arg(model)
            .arg("--chat-template")
            .arg(&template)
            .args(extra)
            .env("LLMBENCH_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("no port in {line:?}"));
        Self { child, port, _dir: dir }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    /// One request on a fresh connection: status and body.
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = self.connect();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").map_or("", |x| x.1);
        (status, body.to_string())
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.request("POST", path, &body.to_string());
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, v)
    }

    /// A streamed request's `data:` payloads up to `[DONE]` (the chunked framing's size lines
    /// are skipped: they are hex and never start with `data:`).
    fn stream(&self, path: &str, body: &Value) -> Vec<Value> {
        let mut s = self.connect();
        let body = body.to_string();
        write!(s, "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200") && out.contains("text/event-stream"), "{out}");
        let data: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        assert_eq!(data.last(), Some(&"[DONE]"), "{out}");
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect()
    }

    fn metrics(&self) -> String {
        self.request("GET", "/metrics", "").1
    }

    /// Polls `/metrics` until `name` reads `value` (the engine publishes after each step).
    fn wait_for(&self, name: &str, value: f64) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = self.metrics();
            if sample(&page, name) == Some(value) || Instant::now() > deadline {
                return page;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fixture's greedy continuation of `text` decoded alone, and the prompt's ids.
fn alone(text: &str, max_new: usize) -> (Vec<u32>, String) {
    let loaded = load(&fixture("tiny-llama"));
    let prompt = loaded.tokenizer.encode(text).unwrap();
    let model = loaded.model.as_ref();
    let mut cache = kv::build(KvKind::Full, model.config().n_layers(), 128);
    let req = GenerateRequest { prompt_ids: &prompt, max_new_tokens: max_new, sampling: SamplingConfig::default(), stop_at_eos: false };
    let g = Engine::new(model, &Device::Cpu).generate(cache.as_mut(), &req, &mut |_| {}).unwrap();
    (prompt, loaded.tokenizer.decode(&g.generated_ids).unwrap())
}

/// A reader of a streamed response positioned after its first `data:` line (the first token).
fn until_first_event(s: &TcpStream) -> BufReader<TcpStream> {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    while !line.starts_with("data: ") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    reader
}

/// Every prompt posted at once, each from its own thread: each answer is a 200 with the
/// tokens the prompt gets decoded alone, and usage counts them.
fn all_at_once_get_their_alone_tokens(server: &Server, prompts: &[String], max_tokens: usize) {
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = prompts.iter().map(|p| s.spawn(|| server.post("/v1/completions", &completion(p, max_tokens, false)))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (p, (status, v)) in prompts.iter().zip(answers) {
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["choices"][0]["text"], alone(p, max_tokens).1.as_str(), "prompt {p:?}");
        assert_eq!(v["usage"]["completion_tokens"].as_u64(), Some(max_tokens as u64));
    }
}

fn completion(prompt: &str, max_tokens: usize, stream: bool) -> Value {
    json!({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": true, "stream": stream, "stream_options": {"include_usage": true}})
}

#[test]
fn completions_stream_and_not_with_the_tokens_decoded_alone() {
    let server = Server::start(&[]);
    let (prompt, want) = alone("Hello world, this is", 20);
    let (status, v) = server.post("/v1/completions", &completion("Hello world, this is", 20, false));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], want.as_str());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!((v["usage"]["prompt_tokens"].as_u64(), v["usage"]["completion_tokens"].as_u64()), (Some(prompt.len() as u64), Some(20)));

    let chunks = server.stream("/v1/completions", &completion("Hello world, this is", 20, true));
    let text: String = chunks.iter().filter_map(|c| c["choices"].get(0)?["text"].as_str()).collect();
    assert_eq!(text, want);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(prompt.len() as u64), Some(20)));
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "length");

    let (status, models) = server.request("GET", "/v1/models", "");
    assert_eq!(status, 200);
    assert!(models.contains("tiny-llama") && models.contains("\"max_model_len\":128"), "{models}");
    assert_eq!(server.request("GET", "/health", "").0, 200);
}

#[test]
fn chat_renders_the_template_and_counts_its_tokens() {
    let server = Server::start(&[]);
    let rendered = "<system>be brief\n<user>hi there\n<assistant>";
    let (prompt, want) = alone(rendered, 6);
    let body = json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}], "max_tokens": 6, "temperature": 0, "ignore_eos": true});
    let (status, v) = server.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
    assert_eq!(v["usage"]["prompt_tokens"].as_u64(), Some(prompt.len() as u64));
    let mut stream_body = body.clone();
    stream_body["stream"] = json!(true);
    let chunks = server.stream("/v1/chat/completions", &stream_body);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, want);
}

/// More clients than batch slots at once: all are served, each with its own alone tokens.
#[test]
fn concurrent_clients_each_get_their_own_tokens() {
    let server = Server::start(&["--max-batch", "3", "--max-step-tokens", "8"]);
    let prompts: Vec<String> = (0..6).map(|i| format!("client {i} says {}", "word ".repeat(i))).collect();
    all_at_once_get_their_alone_tokens(&server, &prompts, 16);
    // The engine publishes its gauges after the step that ended the last request.
    let page = server.wait_for("llmbench:kv_cache_blocks_used", 0.0);
    assert_eq!(sample(&page, "llmbench:generation_tokens_total"), Some(96.0));
    assert_eq!(sample(&page, "llmbench:kv_cache_blocks_used"), Some(0.0));
    assert!(!page.contains("spec_decode"), "no --draft, no spec-decode counters");
}

/// `--draft lookup:4`: sequences draft by prompt lookup inside the batch and greedy
/// verification keeps every client's tokens those decoded alone, whole and streamed; /metrics
/// counts drafted and accepted tokens, and every block comes back.
#[test]
fn speculation_keeps_the_greedy_tokens_and_counts_its_drafts() {
    let server = Server::start(&["--draft", "lookup:4", "--max-batch", "3", "--max-step-tokens", "16"]);
    let prompts: Vec<String> = (0..4).map(|i| format!("{}and {i}", "one two three four ".repeat(2 + i))).collect();
    all_at_once_get_their_alone_tokens(&server, &prompts, 24);
    let chunks = server.stream("/v1/completions", &completion(&prompts[1], 24, true));
    let text: String = chunks.iter().filter_map(|c| c["choices"].get(0)?["text"].as_str()).collect();
    assert_eq!(text, alone(&prompts[1], 24).1);
    // Sampled requests verify by rejection sampling: the whole length, and the same text again
    // for the same seed.
    let sampled = json!({"prompt": prompts[2], "max_tokens": 24, "temperature": 0.8, "seed": 7, "ignore_eos": true});
    let (first, second) = (server.post("/v1/completions", &sampled), server.post("/v1/completions", &sampled));
    assert_eq!((first.0, first.1["usage"]["completion_tokens"].as_u64()), (200, Some(24)), "{}", first.1);
    assert_eq!(first.1["choices"][0]["text"], second.1["choices"][0]["text"]);
    // The engine publishes its gauges after the step that ended the last request.
    let page = server.wait_for("llmbench:kv_cache_blocks_used", 0.0);
    let drafted = sample(&page, "llmbench:spec_decode_num_draft_tokens_total").expect("spec-decode counters with --draft");
    let accepted = sample(&page, "llmbench:spec_decode_num_accepted_tokens_total").unwrap();
    assert!(accepted > 0.0 && accepted <= drafted, "drafted {drafted}, accepted {accepted}");
    assert_eq!(sample(&page, "llmbench:generation_tokens_total"), Some(168.0));
    assert_eq!(sample(&page, "llmbench:kv_cache_blocks_used"), Some(0.0));
}

/// A client that hangs up mid-stream is cancelled: its blocks come back and it counts as cancelled.
#[test]
fn a_disconnect_mid_stream_frees_its_blocks() {
    let server = Server::start_slow(&["--kv-block-size", "4"]);
    let mut s = server.connect();
    let body = completion("a long story", 2000, true).to_string();
    write!(s, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let reader = until_first_event(&s);
    let busy = server.wait_for("llmbench:num_requests_running", 1.0);
    assert!(sample(&busy, "llmbench:kv_cache_blocks_used").unwrap() > 0.0, "the stream holds blocks: {busy}");
    drop(reader);
    drop(s);
    let page = server.wait_for("llmbench:kv_cache_blocks_used", 0.0);
    assert_eq!(sample(&page, "llmbench:kv_cache_blocks_used"), Some(0.0), "{page}");
    assert_eq!(sample(&page, "llmbench:num_requests_running"), Some(0.0));
    assert!(page.contains("finished_reason=\"cancelled\"} 1"), "{page}");
}

#[test]
fn bad_requests_get_the_status_and_error_object_that_say_why() {
    let server = Server::start(&["--max-body-bytes", "1000"]);
    let (status, body) = server.request("POST", "/v1/completions", "{not json");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, v["error"]["type"].as_str()), (400, Some("invalid_request_error")));
    let (status, v) = server.post("/v1/completions", &json!({"prompt": "a", "max_tokens": 500}));
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("max_tokens")), "past the 128-token context");
    let (status, v) = server.post("/v1/chat/completions", &json!({"messages": "hi"}));
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("messages")));
    let (status, _) = server.request("POST", "/v1/completions", &format!("{{\"prompt\": \"{}\"}}", "x".repeat(2000)));
    assert_eq!(status, 413);
    assert_eq!(server.request("GET", "/v1/nothing", "").0, 404);
    assert_eq!(server.request("GET", "/v1/completions", "").0, 405);
    let mut s = server.connect();
    s.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // Still serving after all that.
    assert_eq!(server.post("/v1/completions", &completion("ok", 2, false)).0, 200);
}

/// One batch slot and no queue: a second request while the first runs is refused with 429.
#[test]
fn overload_is_refused_with_429() {
    let server = Server::start_slow(&["--max-batch", "1", "--max-queue", "0"]);
    let mut s = server.connect();
    let body = completion("hold the slot", 2000, true).to_string();
    write!(s, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut first = [0u8; 256];
    s.read(&mut first).unwrap();
    let (status, v) = server.post("/v1/completions", &completion("me too", 4, false));
    assert_eq!((status, v["error"]["type"].as_str()), (429, Some("rate_limit_error")), "{v}");
    assert!(server.metrics().contains("finished_reason=\"rejected\"} 1"));
}

/// SIGTERM while a stream runs: the stream still ends properly and the server exits 0.
#[test]
fn sigterm_finishes_in_flight_streams_and_exits_cleanly() {
    let mut server = Server::start_slow(&[]);
    let mut s = server.connect();
    let body = completion("keep going", 100, true).to_string();
    write!(s, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut reader = until_first_event(&s);
    Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.matches("\"text\"").count() >= 50, "the stream went on after SIGTERM: {rest}");
    assert!(rest.contains("\"finish_reason\":\"length\"") && rest.contains("[DONE]"), "{rest}");
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
