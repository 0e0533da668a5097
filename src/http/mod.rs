//! `llmbench http`: benchmarking OpenAI-compatible servers (llama.cpp's llama-server, vLLM, TGI,
//! SGLang) over HTTP. The wire format (`openai`), the event-stream parser (`sse`).

pub mod client;
pub mod dataset;
pub mod load;
pub mod metrics;
pub mod openai;
pub mod request;
pub mod schedule;
pub mod sse;
