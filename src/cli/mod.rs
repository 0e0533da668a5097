//! Command-line definitions (clap). Shared flag groups live in `args`; one file per subcommand.

pub mod args;
pub mod generate;

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
}
