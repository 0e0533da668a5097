//! The Hugging Face source end to end: a local HTTP server on 127.0.0.1 serves a fixture in
//! the Hub's URL layout (`/{repo}/resolve/{revision}/{file}` with the headers hf-hub reads),
//! HF_ENDPOINT points at it, and the model loads; then it loads again from the cache with
//! the server stopped.

use crate::common::{fixture, llmbench};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct HubServer {
    url: String,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl HubServer {
    fn serve(repo: &str, dir: &std::path::Path) -> Self {
        let mut files = HashMap::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(format!("/{repo}/resolve/main/{name}"), std::fs::read(entry.path()).unwrap());
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, r) = (stop.clone(), requests.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        r.fetch_add(1, Ordering::Relaxed);
                        let _ = respond(stream, &files);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { url, stop, requests, handle: Some(handle) }
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn respond(mut stream: TcpStream, files: &HashMap<String, Vec<u8>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = v.trim().strip_prefix("bytes=").map(String::from);
            }
        }
    }
    let Some(body) = files.get(&path) else {
        return stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let size = body.len();
    let (start, end) = match range.as_deref().and_then(|r| r.split_once('-')) {
        Some((a, b)) => (a.parse().unwrap_or(0), b.parse().unwrap_or(size - 1).min(size - 1)),
        None => (0, size - 1),
    };
    let etag = format!("{:x}", fnv(body));
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{size}\r\n\
         ETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
        end + 1 - start
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body[start..=end])
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn generate(endpoint: &str, hf_home: &std::path::Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    llmbench()
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", hf_home)
        .args(["generate", "--device", "cpu", "--json", "-n", "4", "--ignore-eos", "--prompt", "Hello there"])
        .args(["--model", "some-org/tiny-gpt2"])
        .args(extra)
        .assert()
}

#[test]
fn downloads_from_hf_endpoint_then_loads_from_cache_offline() {
    let hf_home = tempfile::tempdir().unwrap();
    let mut server = HubServer::serve("some-org/tiny-gpt2", &fixture("tiny-gpt2"));
    let first = generate(&server.url, hf_home.path(), &[]).success().get_output().stdout.clone();
    assert!(server.requests.load(Ordering::Relaxed) >= 3, "config, tokenizer and weights were fetched");
    let cached = hf_home.path().join("hub/models--some-org--tiny-gpt2/snapshots").join(COMMIT).join("model.safetensors");
    assert_eq!(std::fs::read(&cached).unwrap(), std::fs::read(fixture("tiny-gpt2/model.safetensors")).unwrap());
    let url = server.url.clone();
    server.shutdown();
    assert!(TcpStream::connect(url.trim_start_matches("http://")).is_err(), "server is down");

    let again = generate(&url, hf_home.path(), &[]).success().get_output().stdout.clone();
    let offline = generate(&url, hf_home.path(), &["--offline"]).success().get_output().stdout.clone();
    let ids = |out: &[u8]| serde_json::from_slice::<serde_json::Value>(out).unwrap()["generated_ids"].clone();
    assert_eq!(ids(&first), ids(&again));
    assert_eq!(ids(&first), ids(&offline));
}

#[test]
fn unknown_repo_is_an_input_error() {
    let hf_home = tempfile::tempdir().unwrap();
    let server = HubServer::serve("some-org/tiny-gpt2", &fixture("tiny-gpt2"));
    let out = llmbench()
        .env("HF_ENDPOINT", &server.url)
        .env("HF_HOME", hf_home.path())
        .args(["generate", "--device", "cpu", "--prompt", "Hi", "--model", "some-org/missing"])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8_lossy(&out);
    assert!(stderr.contains("some-org/missing") && stderr.contains("not found"), "{stderr}");
}
