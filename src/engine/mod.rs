//! The engine: runs a model over prompts with a KV-cache strategy and owns every clock.
//! Strategies and caches never time themselves; the engine synchronises the device before
//! each timestamp, so per-token times measure finished work.

pub mod device;
#[cfg(feature = "cuda")]
pub mod device_memory;
#[cfg(not(feature = "cuda"))]
#[path = "device_memory_disabled.rs"]
pub mod device_memory;
pub mod batch;
pub mod batch_run;
pub mod batch_spec;
pub mod generate;

pub use generate::{Engine, GenerateRequest, Generation, PhaseTimes, StopReason, Timings, TokenEvent};
