//! Results: the one versioned schema every command writes, the sink that writes run
//! directories (and reads them back, converting older schema versions), comparisons against
//! a baseline, per-command views, and exporters (table, Markdown, CSV, JSON, JSONL).

pub mod convert;
pub mod export;
pub mod relative;
pub mod schema;
mod schema_batch;
mod schema_compare;
mod schema_evaluate;
mod schema_http;
mod schema_quantize;
mod schema_sled;
mod schema_specdec;
pub mod speculative;
pub mod sink;
mod summary;
pub mod views;
