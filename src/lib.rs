//! llmbench: measure how LLM decoding strategies trade speed, memory and quality, on one
//! shared engine built on candle.
//!
//! model source -> weights + tokenizer -> `Model` -> `Engine` (prefill, decode loop) with a
//! `KvCache` strategy -> timed events -> results. See DESIGN.md in the shared folder.

pub mod charts;
pub mod cli;
pub mod commands;
pub mod decode;
pub mod engine;
pub mod error;
pub mod http;
pub mod input;
pub mod kv;
pub mod measure;
pub mod metrics;
pub mod models;
pub mod quant;
pub mod results;
pub mod serve;
pub mod sparse;
