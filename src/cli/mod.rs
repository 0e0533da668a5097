//! Command-line definitions (clap). Shared flag groups live in `args`; one file per subcommand.

pub mod args;
pub mod batch;
pub mod chat;
pub mod compare;
pub mod diff;
pub mod evaluate;
pub mod generate;
pub mod http;
pub mod kvcache;
pub mod plan;
pub mod plot;
pub mod quantize;
pub mod serve;
pub mod sled;
pub mod specdec;

use clap::{Parser, Subcommand};

/// Measure how LLM decoding strategies trade speed, memory and quality.
#[derive(Debug, Parser)]
#[command(name = "llmbench", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More logging on stderr (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate from one prompt: streamed text and a timing summary.
    Generate(generate::GenerateArgs),
    /// Chat with a model: its chat template, history kept in the KV cache, streamed replies.
    Chat(chat::ChatArgs),
    /// Run decoding methods side by side: speed, memory and quality, with results and charts.
    Compare(compare::CompareArgs),
    /// KV-cache strategies over real text and growing contexts: speed, exact bytes, quality.
    Kvcache(kvcache::KvcacheArgs),
    /// Speculative decoding: speedup, acceptance and cost per draft source, policy and K.
    Specdec(specdec::SpecdecArgs),
    /// Weight formats side by side: size, speed and quality against the source.
    Quantize(quantize::QuantizeArgs),
    /// How good is what models write, and at what latency: models and weight formats over a
    /// data set, every output scored (BLEU, chrF, ROUGE as the reference implementations
    /// compute them, diversity, coherence); `evaluate score` scores existing text.
    Evaluate(evaluate::EvaluateArgs),
    /// SLED studies: TruthfulQA multiple choice under standard decoding, Self Logits Evolution
    /// Decoding and DoLa.
    Sled(sled::SledArgs),
    /// Benchmark an OpenAI-compatible server (llama-server, vLLM, TGI, SGLang) under load:
    /// throughput, TTFT, TPOT, ITL and end-to-end latency per request rate or concurrency.
    Http(http::HttpArgs),
    /// Batched decoding: aggregate and per-sequence tokens/s against batch size
    /// (llama-batched-bench's table), on the continuous-batching engine.
    Batch(batch::BatchArgs),
    /// Serve the model over an OpenAI-compatible HTTP API with continuous batching.
    Serve(serve::ServeArgs),
    /// Redraw charts from a saved results.json.
    Plot(plot::PlotArgs),
    /// Compare two runs case by case, with confidence intervals.
    Diff(diff::DiffArgs),
    /// Print a shell completion script to stdout (e.g. `llmbench completions bash > /etc/bash_completion.d/llmbench`).
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout (e.g. `llmbench man > llmbench.1`).
    Man,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
