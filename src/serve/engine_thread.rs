//! The engine's own thread: it owns the model and the continuous-batching engine, takes
//! submissions and cancellations from the connections over a channel, steps while anything runs
//! (blocking on the channel when idle), and sends each request its tokens as they come. A
//! connection that went away (its receiver dropped) is cancelled at its next token, so its
//! blocks free up even when the cancellation message raced the step.

use super::metrics::{Metrics, SchedulerGauges};
use crate::engine::batch::{BatchEngine, BatchLimits, SeqEvent, SeqId, SeqRequest};
use crate::engine::batch_spec::BatchSpeculation;
use crate::engine::StopReason;
use crate::models::Model;
use candle_core::Device;
use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// What a connection asks of the engine.
pub enum Command {
    Submit { request: u64, seq: SeqRequest, updates: UnboundedSender<Update> },
    Cancel { request: u64 },
    /// Cancel everything still running and end the thread.
    Shutdown,
}

/// What the engine tells a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A token, ready at `at` (after the step's device sync).
    Token { token: u32, at: Instant },
    Finished { reason: StopReason },
    Failed(String),
}

/// Starts the thread; it runs until `Shutdown` or until every sender is dropped.
pub fn spawn(
    model: Box<dyn Model>,
    device: Device,
    limits: BatchLimits,
    speculation: Option<BatchSpeculation>,
    metrics: Arc<Metrics>,
    commands: Receiver<Command>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("llmbench-engine".into()).spawn(move || run(model.as_ref(), &device, limits, speculation, &metrics, commands))
}

fn run(model: &dyn Model, device: &Device, limits: BatchLimits, speculation: Option<BatchSpeculation>, metrics: &Metrics, commands: Receiver<Command>) {
    let engine = BatchEngine::new(model, device, limits).map(|e| match speculation {
        Some(s) => e.with_speculation(s),
        None => e,
    });
    let mut engine = match engine {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("the batch engine cannot start: {e:#}");
            return;
        }
    };
    let mut clients: HashMap<SeqId, (u64, UnboundedSender<Update>)> = HashMap::new();
    let mut by_request: HashMap<u64, SeqId> = HashMap::new();
    let publish = |engine: &BatchEngine| {
        let u = engine.usage();
        metrics.set_gauges(SchedulerGauges { running: u.running, waiting: u.waiting, kv_blocks_used: u.blocks_used, kv_blocks_free: u.blocks_free, preemptions: u.preemptions, spec: u.spec });
    };
    publish(&engine);
    loop {
        // Idle: wait for work. Busy: take what arrived, then step.
        let first = if engine.is_idle() {
            match commands.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        } else {
            commands.try_recv().ok()
        };
        let mut shutdown = false;
        for command in first.into_iter().chain(std::iter::from_fn(|| commands.try_recv().ok())) {
            match command {
                Command::Submit { request, seq, updates } => match engine.submit(seq) {
                    Ok(id) => {
                        clients.insert(id, (request, updates));
                        by_request.insert(request, id);
                    }
                    Err(e) => {
                        let _ = updates.send(Update::Failed(format!("{e:#}")));
                    }
                },
                Command::Cancel { request } => {
                    if let Some(id) = by_request.remove(&request) {
                        engine.cancel(id);
                        clients.remove(&id);
                    }
                }
                Command::Shutdown => shutdown = true,
            }
        }
        if shutdown {
            fail_all(&mut engine, &mut clients, &mut by_request, "the server is shutting down");
            publish(&engine);
            return;
        }
        if engine.is_idle() {
            publish(&engine);
            continue;
        }
        match engine.step() {
            Ok(report) => {
                for event in report.events {
                    match event {
                        SeqEvent::Token { seq, token, .. } => {
                            let gone = clients.get(&seq).is_some_and(|(_, tx)| tx.send(Update::Token { token, at: report.finished }).is_err());
                            if gone {
                                engine.cancel(seq);
                                if let Some((request, _)) = clients.remove(&seq) {
                                    by_request.remove(&request);
                                }
                            }
                        }
                        SeqEvent::Finished { seq, reason } => {
                            if let Some((request, tx)) = clients.remove(&seq) {
                                by_request.remove(&request);
                                let _ = tx.send(Update::Finished { reason });
                            }
                        }
                        SeqEvent::Preempted { .. } => {}
                    }
                }
            }
            Err(e) => {
                // A failed step leaves no sequence in a known state: fail them all, free the pool.
                tracing::error!("batched step failed: {e:#}");
                fail_all(&mut engine, &mut clients, &mut by_request, &format!("the engine failed: {e:#}"));
            }
        }
        publish(&engine);
    }
}

/// Cancels every sequence a client waits on, freeing its blocks, and tells the client why.
fn fail_all(engine: &mut BatchEngine, clients: &mut HashMap<SeqId, (u64, UnboundedSender<Update>)>, by_request: &mut HashMap<u64, SeqId>, why: &str) {
    for (id, (_, updates)) in clients.drain() {
        engine.cancel(id);
        let _ = updates.send(Update::Failed(why.to_string()));
    }
    by_request.clear();
}
