//! `llmbench http` against llama.cpp's llama-server: ignored unless LLMBENCH_LLAMA_SERVER names
//! the binary (benches/http_llama_server.sh builds it and runs this with --ignored).

use std::time::Duration;

fn llmbench() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("llmbench").unwrap()
}

/// A llama-server child, killed when dropped.
struct LlamaServer(std::process::Child, u16);

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// llama.cpp's llama-server (LLMBENCH_LLAMA_SERVER names the binary; ../shared/LLAMA-CPP.md and
/// benches/http_llama_server.sh build it) serving the real SmolLM2 GGUF with 4 slots.
fn llama_server() -> LlamaServer {
    let binary = std::env::var("LLMBENCH_LLAMA_SERVER")
        .expect("LLMBENCH_LLAMA_SERVER: the llama-server binary");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(binary)
        .args([
            "-m",
            crate::common::smollm2_gguf().to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["-t", "2", "-c", "4096", "-np", "4", "--no-webui"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = LlamaServer(child, port);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let health = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                Some(text)
            });
        if health.is_some_and(|t| t.starts_with("HTTP/1.1 200")) {
            return server;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "llama-server did not become healthy within 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Against a real server nobody here wrote: fixed output lengths through ignore_eos, token
/// counts from its usage, and our TPOT beside its own per-token time.
#[test]
#[ignore = "needs llama.cpp's llama-server: set LLMBENCH_LLAMA_SERVER (benches/http_llama_server.sh builds it) and run with --ignored"]
fn llama_server_answers_a_concurrency_sweep_with_its_own_timings_beside_ours() {
    let server = llama_server();
    let dir = tempfile::tempdir().unwrap();
    let assert = llmbench()
        .args([
            "http",
            "--endpoint",
            &format!("http://127.0.0.1:{}", server.1),
            "--dataset",
            "random:32:16",
        ])
        .args([
            "--num-prompts",
            "8",
            "--max-concurrency",
            "1,4",
            "--warmup-requests",
            "1",
            "-o",
            "json",
            "--no-charts",
            "--out",
        ])
        .arg(dir.path().join("run"))
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    for case in report["cases"].as_array().unwrap() {
        let q = &case["quality"];
        let m = &q["metrics"];
        assert_eq!(
            (m["completed"].as_u64(), m["failed"].as_u64()),
            (Some(8), Some(0)),
            "{m}"
        );
        assert_eq!(
            m["total_output_tokens"].as_u64(),
            Some(8 * 16),
            "ignore_eos gives every request its 16 tokens"
        );
        assert_eq!(
            m["output_tokens_from_tokenizer"].as_u64(),
            Some(0),
            "llama-server sends usage"
        );
        let ours = m["tpot_ms"]["median"].as_f64().unwrap();
        let theirs = q["server_per_token_ms"]["median"].as_f64().unwrap();
        // Ours adds HTTP and the event stream to the server's own decode time, never less.
        assert!(
            ours >= 0.9 * theirs && ours < 3.0 * theirs + 5.0,
            "TPOT {ours} ms against the server's {theirs} ms"
        );
    }
}
