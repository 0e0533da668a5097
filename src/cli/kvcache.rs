//! `llmbench kvcache`: KV-cache strategies on the same real text over growing contexts.

use super::args::{DeviceArgs, KvArgs, ModelArgs, NumList, OutputArgs};
use clap::Args;
use std::path::PathBuf;

/// Run KV-cache strategies over real text at several context lengths: speed, exact memory and
/// the quality lost against the full cache.
#[derive(Debug, Clone, Args)]
pub struct KvcacheArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub kv: KvArgs,
    /// Strategies, comma-separated, each optionally with its main option after a colon:
    /// none, full, static, paged[:block], window[:W], sinks[:W], chunked[:keep_last],
    /// int8, int4, mixed, kivi[:bits], h2o[:budget], cake[:budget]. `full` always runs
    /// first: it is the reference for quality.
    #[arg(long, default_value = "full,static,paged,window,sinks,chunked,int8,int4,mixed,kivi:2,kivi:4,h2o,cake")]
    pub strategies: String,
    /// Context lengths in tokens of the prompt file (list or range).
    #[arg(long, default_value = "512,1024,2048,4096")]
    pub context: NumList,
    /// A text file to take the contexts and their continuations from (for example the
    /// Wikipedia text exllamav2==0.3.2 ships: exllamav2/conversion/standard_cal_data/wiki.utf8).
    #[arg(long)]
    pub prompt_file: PathBuf,
    /// Tokens to decode greedily after each context (speed, greedy agreement).
    #[arg(long, short = 'n', default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Tokens of the real continuation teacher-forced through each strategy (perplexity, KL).
    #[arg(long, default_value_t = 64)]
    pub eval_tokens: usize,
    /// Full-length warm-up generations per case before measuring. Default 0: at long
    /// contexts the prefill alone takes minutes on a CPU, and one short untimed generation
    /// before the first case already pays for first touches.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Measured generations per case (every one kept; the table shows medians). Default 1 for
    /// the same reason: 13 strategies x 4 contexts of minutes each; raise it on short contexts
    /// or a GPU for spread and confidence intervals (`llmbench diff`).
    #[arg(long, short = 'r', default_value_t = 1)]
    pub repetitions: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}
