//! `llmbench http`: benchmarking OpenAI-compatible servers (llama.cpp's llama-server, vLLM, TGI,
//! SGLang) over HTTP. The wire format (`openai`), the event-stream parser (`sse`), the HTTP/1.1
//! client (`client`), one timed request (`request`), the arrival schedule (`schedule`), a load
//! level (`load`), its metrics (`metrics`), the datasets (`dataset`), and a scripted loopback
//! server for the tests and the client-overhead benchmark (`scripted`). The command itself is
//! `commands::http`.

mod body;
pub mod client;
pub mod dataset;
pub mod load;
pub mod metrics;
pub mod openai;
pub mod request;
pub mod schedule;
pub mod scripted;
pub mod sse;
