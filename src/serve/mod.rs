//! `llmbench serve`: an OpenAI-compatible HTTP server over the engine's continuous batching
//! (`engine::batch`), so `llmbench http` (or vLLM's bench, or any OpenAI client) can measure our
//! engine as it measures llama-server. A server is one more command over the same engine, not a
//! second engine: the model and scheduler live on one thread (`engine_thread`), connections on a
//! current-thread tokio runtime (`connection`), hand-written HTTP/1.1 (`http1`) as in the client.
//!
//! Robustness: request heads and bodies are bounded (431, 413), bad JSON and bad fields are 400s
//! with OpenAI's error object, requests beyond `--max-batch + --max-queue` in flight get 429
//! instead of an unbounded queue, a client that disconnects is cancelled and its KV blocks freed,
//! and SIGTERM or Ctrl-C stops accepting, lets in-flight requests finish for `--shutdown-grace`
//! seconds, then cancels the rest (their streams end with an error event) and exits 0.

pub mod api;
mod connection;
mod engine_thread;
pub mod http1;
pub mod metrics;
mod text;

use crate::engine::batch::BatchLimits;
use crate::models::chat_template::ChatTemplate;
use crate::models::tokenizer::TextTokenizer;
use crate::models::Model;
use anyhow::{Context, Result};
use candle_core::Device;
use metrics::Metrics;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the server listens and how much it takes on.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// The `model` name the API reports.
    pub model_name: String,
    pub limits: BatchLimits,
    /// Requests waiting beyond the running batch before new ones get 429.
    pub max_queue: usize,
    pub max_body: usize,
    pub shutdown_grace: Duration,
    /// Sampling seed of requests that send none (plus the request's number).
    pub seed: u64,
    /// Prompt-lookup speculation in the batch (`--draft lookup[:K]`).
    pub speculation: Option<crate::engine::batch_spec::BatchSpeculation>,
}

/// What every connection shares.
pub struct ServerState {
    model_name: String,
    tokenizer: TextTokenizer,
    /// The chat template, or why there is none (the chat endpoint's 400 says it).
    template: Result<ChatTemplate, String>,
    context_window: usize,
    /// Positions the KV pool holds in all.
    pool_positions: usize,
    commands: std::sync::mpsc::Sender<engine_thread::Command>,
    metrics: Arc<Metrics>,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    next_request: AtomicU64,
    shutting_down: AtomicBool,
    max_body: usize,
    seed: u64,
    started_unix: u64,
}

/// Set by the signal handler (SIGINT, SIGTERM, SIGHUP).
static STOP: AtomicBool = AtomicBool::new(false);

/// Runs the server until a signal stops it. Prints `listening on http://ADDR` on stdout once
/// the socket is bound (with `--port 0`, the port the system chose).
pub fn run(model: Box<dyn Model>, tokenizer: TextTokenizer, template: Result<ChatTemplate, String>, device: Device, opts: ServeOptions) -> Result<()> {
    let context_window = model.config().context_window();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((opts.host.as_str(), opts.port)).await.map_err(|e| {
            crate::error::LlmbenchError::invalid(format!("--host {} --port {}: cannot listen there ({e}); pick a free port or --port 0", opts.host, opts.port))
        })?;
        let addr = listener.local_addr()?;
        let metrics = Arc::new(Metrics::default());
        let (commands, receiver) = std::sync::mpsc::channel();
        let engine = engine_thread::spawn(model, device, opts.limits, opts.speculation, metrics.clone(), receiver).context("starting the engine thread")?;
        let state = Arc::new(ServerState {
            model_name: opts.model_name.clone(),
            tokenizer,
            template,
            context_window,
            pool_positions: opts.limits.kv_blocks * opts.limits.block_size,
            commands,
            metrics,
            in_flight: AtomicUsize::new(0),
            max_in_flight: opts.limits.max_batch + opts.max_queue,
            next_request: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            max_body: opts.max_body,
            seed: opts.seed,
            started_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        });
        let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));
        {
            use std::io::Write;
            let mut out = std::io::stdout();
            let _ = writeln!(out, "listening on http://{addr}");
            let _ = out.flush();
        }
        eprintln!(
            "serving {} on http://{addr}: --max-batch {}, --max-queue {}, {} KV blocks of {} (Ctrl-C or SIGTERM stops)",
            opts.model_name, opts.limits.max_batch, opts.max_queue, opts.limits.kv_blocks, opts.limits.block_size
        );
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => { tokio::spawn(connection::handle(stream, state.clone())); }
                    Err(e) => tracing::warn!("accept failed: {e}"),
                },
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    if STOP.load(Ordering::SeqCst) { break; }
                }
            }
        }
        drop(listener);
        state.shutting_down.store(true, Ordering::SeqCst);
        let in_flight = state.in_flight.load(Ordering::SeqCst);
        eprintln!("stopping: no new connections; waiting up to {:?} for {in_flight} requests in flight", opts.shutdown_grace);
        let deadline = Instant::now() + opts.shutdown_grace;
        while state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = state.commands.send(engine_thread::Command::Shutdown);
        // Let the cancelled streams write their last event.
        let drain = Instant::now() + Duration::from_secs(2);
        while state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < drain {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tokio::task::spawn_blocking(move || engine.join()).await;
        eprintln!("stopped");
        Ok(())
    })
}
