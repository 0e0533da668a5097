//! Results: the versioned schema, the sink that writes run directories, comparisons against
//! the standard baseline, and exporters (table, Markdown, CSV, JSON, JSONL).

pub mod export;
pub mod kvcache;
pub mod relative;
pub mod schema;
pub mod sink;
