//! Activation sparsity for a loaded model (`--sparsity`): its calibration, from the llmbench
//! cache or a pass over `--calibration` (full passes of 512-token windows recording every
//! projection input), then the method set on the model. One calibration serves every share
//! and method of a model and format: the histograms always, the rotations once LaRoSA asks.

use super::prompts;
use crate::cli::args::SparsityArgs;
use crate::models::source;
use crate::models::LoadedModel;
use crate::results::schema::{SparsityRecord, SparsitySettings};
use crate::sparse::calibration::{ActivationStats, Calibration, MOMENT_BYTES_LIMIT, SITES};
use crate::sparse::histogram::MIN_OBSERVATIONS;
use crate::sparse::SparsityMethod;
use anyhow::Result;
use sha2::Digest;
use std::collections::BTreeMap;
use std::time::Instant;

/// Tokens per calibration window (the eval windows' length), or the model's context if shorter.
const WINDOW: usize = 512;

/// The calibration text, read once per run.
pub struct Calibrator {
    spec: String,
    text: String,
    sha256: String,
    tokens: usize,
    /// Whether a LaRoSA method will ask for second moments.
    larosa: bool,
}

impl Calibrator {
    /// `None` when no `--sparsity` was given (nothing read).
    pub fn new(args: &SparsityArgs) -> Result<Option<Self>> {
        if args.sparsity.is_empty() {
            return Ok(None);
        }
        if args.calibration_tokens < 2 {
            crate::bail_input!(
                "--calibration-tokens {}: run at least a few hundred tokens",
                args.calibration_tokens
            );
        }
        let path = source::data_file(&args.calibration, "--calibration")?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            crate::error::LlmbenchError::invalid(format!(
                "--calibration {}: cannot read it as UTF-8 text ({e})",
                path.display()
            ))
        })?;
        let sha256 = format!("{:x}", sha2::Sha256::digest(text.as_bytes()));
        Ok(Some(Self {
            spec: args.calibration.clone(),
            text,
            sha256,
            tokens: args.calibration_tokens,
            larosa: args.sparsity.iter().any(|m| m.needs_moments()),
        }))
    }

    pub fn settings(&self) -> SparsitySettings {
        SparsitySettings {
            calibration_file: self.spec.clone(),
            calibration_file_sha256: self.sha256.clone(),
            calibration_tokens: self.tokens,
            calibration_window_tokens: WINDOW,
        }
    }

    /// The device, checked before a run directory is opened.
    pub fn check_device(device: &candle_core::Device) -> Result<()> {
        if !device.is_cpu() {
            crate::bail_input!("--sparsity: the sparse model runs on the CPU (the CUDA kernel is measured alone by `.ci/gpu-bench sparse`); use --device cpu");
        }
        Ok(())
    }

    /// Formats whose model computes in f32 (f16/bf16 compute in their own dtype), checked before
    /// any case runs.
    pub fn check_formats(formats: &[crate::quant::format::WeightFormat]) -> Result<()> {
        if let Some(f) = formats.iter().find(|f| f.compute_dtype() != candle_core::DType::F32) {
            crate::bail_input!("--sparsity with --formats {}: the sparse model computes in f32; give --formats without f16/bf16 (e.g. f32,q8_0)", f.name());
        }
        Ok(())
    }

    /// Everything else that would fail a sparsity case, checked before any case of the model
    /// runs: the model family, f32 compute, and enough calibration text to fill every histogram.
    pub fn check(&self, loaded: &LoadedModel) -> Result<()> {
        let config = loaded.model.config();
        if !matches!(config, crate::models::config::ModelConfig::Llama(_)) {
            crate::bail_input!("--sparsity: activation sparsity is implemented for the Llama family, not this model; drop --sparsity");
        }
        if loaded.spec.dtype != "f32" {
            crate::bail_input!("--sparsity: the sparse model computes in f32, not {}; drop --dtype", loaded.spec.dtype);
        }
        let moment_bytes = 2 * (config.n_layers() * config.hidden_size() * config.hidden_size() * 8) as u64;
        if self.larosa && moment_bytes > MOMENT_BYTES_LIMIT {
            crate::bail_input!(
                "--sparsity larosa: its calibration holds {:.1} GB of second moments for this model (limit {} GB); use teal, or a smaller model",
                moment_bytes as f64 / 1e9,
                MOMENT_BYTES_LIMIT >> 30
            );
        }
        let ids = prompts::tokens_of_prefix(&loaded.tokenizer, &self.text, self.tokens)?;
        let tokens = ids.len().min(self.tokens);
        let narrowest = config.linear_input_sizes().into_iter().min().unwrap_or(0);
        let fewest = (tokens * narrowest) as u64;
        if fewest < MIN_OBSERVATIONS {
            crate::bail_input!(
                "--calibration {}: {tokens} tokens put only {fewest} activations into the narrowest projection input's histogram, fewer than the {MIN_OBSERVATIONS} thresholds need; give a longer text (or raise --calibration-tokens)",
                self.spec
            );
        }
        Ok(())
    }

    /// Sets `method` on `loaded` (a share of 0 sets nothing: the dense model). Returns the
    /// seconds calibration and building took and whether the calibration was cached.
    pub fn apply(
        &self,
        loaded: &LoadedModel,
        method: SparsityMethod,
    ) -> Result<(f64, bool)> {
        let started = Instant::now();
        // Off first: calibration must see the dense model's activations, never the previous
        // case's sparsified ones.
        loaded.model.set_sparsity(None)?;
        if method.share() == 0.0 {
            return Ok((0.0, false));
        }
        let path = cache_path(&self.cache_key(loaded));
        let layers = loaded.model.config().n_layers();
        let hidden = loaded.model.config().hidden_size();
        let cached = Calibration::load(&path, layers, hidden)
            .ok()
            .filter(|c| !method.needs_moments() || c.rotations.is_some());
        let was_cached = cached.is_some();
        let calibration = match cached {
            Some(c) => c,
            None => {
                let ids = prompts::tokens_of_prefix(&loaded.tokenizer, &self.text, self.tokens)?;
                let windows: Vec<Vec<u32>> = ids[..ids.len().min(self.tokens)]
                    .chunks(WINDOW.min(loaded.model.config().context_window()))
                    .filter(|w| w.len() >= 2)
                    .map(<[u32]>::to_vec)
                    .collect();
                let config = loaded.model.config();
                let mut stats =
                    ActivationStats::new(layers, config.hidden_size(), method.needs_moments());
                loaded.model.calibrate_activations(&windows, &mut stats)?;
                let calibration = Calibration::from_stats(stats)?;
                if let Err(e) = calibration.save(&path) {
                    tracing::warn!("calibration not cached: {e:#}");
                }
                calibration
            }
        };
        // Every input's histogram must hold enough activations for thresholds to mean
        // anything (TEAL); LaRoSA's moments need as much text.
        let fewest = calibration
            .histograms
            .iter()
            .flat_map(|h| h.iter().map(|h| h.observations()))
            .min()
            .unwrap_or(0);
        if fewest < MIN_OBSERVATIONS {
            crate::bail_input!(
                "--calibration {}: {} tokens put only {fewest} activations into a projection input's histogram, fewer than the {MIN_OBSERVATIONS} thresholds need; give a longer text (or raise --calibration-tokens)",
                self.spec,
                calibration.tokens
            );
        }
        loaded.model.set_sparsity(Some((method, &calibration)))?;
        Ok((started.elapsed().as_secs_f64(), was_cached))
    }

    /// The model's files (path, size, modification time), its weight format (a conversion at
    /// load included), dtype and vocabulary (adaptivocab's phrase tokens tokenize the
    /// calibration text differently), and the calibration.
    fn cache_key(&self, loaded: &LoadedModel) -> String {
        let spec = &loaded.spec;
        let files: Vec<String> = spec
            .weight_files
            .iter()
            .map(|p| {
                let meta = std::fs::metadata(p).ok();
                let modified = meta
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                format!("{}:{}:{modified}", p.display(), meta.map_or(0, |m| m.len()))
            })
            .collect();
        let conversion = loaded.conversion.as_ref().map_or_else(String::new, |c| format!("{:?}", c.tensors));
        format!(
            "v1|{}|{}|{}{conversion}|{}|{}|{}|{}|{WINDOW}",
            spec.id,
            files.join(","),
            spec.weights_format,
            spec.dtype,
            loaded.model.config().vocab_size(),
            self.sha256,
            self.tokens
        )
    }
}

/// Where a model's calibration is cached: one file per key, the key hashed into the name.
fn cache_path(key: &str) -> std::path::PathBuf {
    let hash = format!("{:x}", sha2::Sha256::digest(key.as_bytes()));
    source::cache_dir()
        .join("sparsity")
        .join(format!("{}.safetensors", &hash[..24]))
}

/// What sparsity did over a case, from the model's counters.
pub fn record(
    loaded: &LoadedModel,
    method: SparsityMethod,
    calibration_s: f64,
    cached: bool,
) -> Option<SparsityRecord> {
    let counts = loaded.model.sparsity_counts()?;
    let share = |kept: u64, seen: u64| {
        if seen == 0 {
            0.0
        } else {
            1.0 - kept as f64 / seen as f64
        }
    };
    let zeroed_share: BTreeMap<String, f64> = SITES
        .iter()
        .map(|s| {
            (
                s.name().to_string(),
                share(counts.kept[*s as usize], counts.seen[*s as usize]),
            )
        })
        .collect();
    Some(SparsityRecord {
        method: method.to_string(),
        target_share: method.share(),
        zeroed_share,
        zeroed_share_overall: share(counts.kept.iter().sum(), counts.seen.iter().sum()),
        sparse_weight_bytes: counts.bytes,
        calibration_s,
        calibration_cached: cached,
    })
}
