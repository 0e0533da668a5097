//! `llmbench batch`: batched decoding throughput against batch size (llama-batched-bench).

use super::args::{DeviceArgs, ModelArgs, NumList, OutputArgs};
use clap::Args;

/// Decode B sequences together and measure what batching buys: llama.cpp's llama-batched-bench
/// table per batch size (PP, TG, B, N_KV, T_PP, S_PP, T_TG, S_TG, T, S), each sequence's TTFT
/// and TPOT, and the KV blocks held, on the engine's continuous-batching scheduler over the
/// shared paged KV pool.
///
/// The prompts are random token ids (seeded, different per sequence) and every sequence makes
/// exactly --max-new-tokens tokens, as llama-batched-bench runs.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Sequences decoded together (list or range: 1-64*2).
    #[arg(long, short = 'b', default_value = "1,2,4,8,16,32,64")]
    pub batch_size: NumList,
    /// Prompt tokens per sequence (llama-batched-bench's -npp).
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens generated per sequence (llama-batched-bench's -ntg).
    #[arg(long, short = 'n', default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Full-size warm-up runs per batch size before measuring.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Measured runs per batch size.
    #[arg(long, short = 'r', default_value_t = 3)]
    pub repetitions: usize,
    /// Token slots per KV block.
    #[arg(long, default_value_t = 16)]
    pub kv_block_size: usize,
    /// Blocks in the KV pool (default: enough for every sequence at full length; fewer makes
    /// the scheduler preempt and recompute).
    #[arg(long)]
    pub kv_blocks: Option<usize>,
    /// Tokens one step may feed (default B x prompt tokens: all prompts in the first step, as
    /// llama-batched-bench does; less chunks the prefill beside decoding sequences).
    #[arg(long)]
    pub max_step_tokens: Option<usize>,
    /// Seed of the prompts' token ids.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}
