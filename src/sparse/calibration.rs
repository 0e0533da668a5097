//! What a calibration pass learns about a model's projection inputs: per layer and input, a
//! magnitude histogram (TEAL's thresholds) and, for the two hidden-size inputs, the second
//! moment `sum x x^T` (LaRoSA's rotations are its eigenvectors). The model fills it
//! (`Model::calibrate_activations`); this file turns it into thresholds and rotations, and keeps
//! them in the llmbench cache so a sweep over sparsities calibrates each model once.

use super::eigen::SymmetricEigen;
use super::histogram::MagnitudeHistogram;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The four projection inputs of a block, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The normalized hidden state entering q/k/v.
    AttentionInput = 0,
    /// The attention output entering o.
    AttentionOutput = 1,
    /// The normalized hidden state entering gate/up.
    MlpInput = 2,
    /// silu(gate) * up entering down.
    MlpHidden = 3,
}

pub const SITES: [Site; 4] = [
    Site::AttentionInput,
    Site::AttentionOutput,
    Site::MlpInput,
    Site::MlpHidden,
];

impl Site {
    pub fn name(self) -> &'static str {
        ["qkv", "o", "gate_up", "down"][self as usize]
    }
    /// The hidden-size inputs, which LaRoSA rotates (slot 0 and 1 of `moments`).
    pub fn rotated_slot(self) -> Option<usize> {
        match self {
            Self::AttentionInput => Some(0),
            Self::MlpInput => Some(1),
            _ => None,
        }
    }
}

/// Statistics of every projection input over the calibration tokens.
pub struct ActivationStats {
    pub tokens: usize,
    /// Per layer, one histogram per site.
    pub histograms: Vec<[MagnitudeHistogram; 4]>,
    /// Per layer, `sum x x^T` (row-major, f64) of the attention and MLP inputs; empty when
    /// not collected.
    pub moments: Vec<[Vec<f64>; 2]>,
    hidden: usize,
}

impl ActivationStats {
    pub fn new(layers: usize, hidden: usize, with_moments: bool) -> Self {
        let moments = if with_moments {
            (0..layers)
                .map(|_| [vec![0f64; hidden * hidden], vec![0f64; hidden * hidden]])
                .collect()
        } else {
            Vec::new()
        };
        Self {
            tokens: 0,
            histograms: (0..layers).map(|_| Default::default()).collect(),
            moments,
            hidden,
        }
    }

    /// Records `rows` (`[t, width]` row-major) entering `site` of `layer`.
    pub fn observe(
        &mut self,
        layer: usize,
        site: Site,
        rows: &[f32],
        width: usize,
    ) -> candle_core::Result<()> {
        self.histograms[layer][site as usize].add(rows);
        if let (Some(slot), false) = (site.rotated_slot(), self.moments.is_empty()) {
            if width != self.hidden {
                candle_core::bail!(
                    "calibration: {} input of width {width}, expected {}",
                    site.name(),
                    self.hidden
                );
            }
            // X^T X through candle's GEMM (f32 per pass; passes are summed in f64).
            let x = Tensor::from_slice(rows, (rows.len() / width, width), &Device::Cpu)?;
            let m = x.t()?.matmul(&x)?.flatten_all()?.to_vec1::<f32>()?;
            self.moments[layer][slot]
                .iter_mut()
                .zip(m)
                .for_each(|(acc, v)| *acc += v as f64);
        }
        Ok(())
    }

    /// TEAL's threshold per layer and site for `share` (0 everywhere for share 0).
    pub fn thresholds(&self, share: f64) -> Result<Vec<[f32; 4]>> {
        thresholds(&self.histograms, share)
    }

    /// LaRoSA's rotations per layer: for the attention and MLP inputs, `Q` (`[hidden, hidden]`
    /// row-major, f32) whose columns are the second moment's eigenvectors, largest first.
    pub fn rotations(&self) -> Result<Vec<[Vec<f32>; 2]>> {
        anyhow::ensure!(
            !self.moments.is_empty(),
            "calibration collected no second moments"
        );
        let n = self.hidden;
        let jobs: Vec<&Vec<f64>> = self.moments.iter().flat_map(|m| m.iter()).collect();
        // Two eigensolves at a time (one per core here); each is independent.
        let solved: Vec<Result<Vec<f32>>> = std::thread::scope(|scope| {
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .max(1);
            let chunk = jobs.len().div_ceil(threads);
            let handles: Vec<_> = jobs
                .chunks(chunk.max(1))
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|m| {
                                Ok(SymmetricEigen::of(m, n)?
                                    .vectors
                                    .iter()
                                    .map(|&v| v as f32)
                                    .collect())
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(anyhow::anyhow!("an eigensolver thread panicked"))]
                    })
                })
                .collect()
        });
        let mut solved = solved.into_iter();
        (0..self.moments.len())
            .map(|_| {
                let a = solved.next().context("eigensolve missing")??;
                let b = solved.next().context("eigensolve missing")??;
                Ok([a, b])
            })
            .collect()
    }
}

/// The magnitude under which the share `share` of each layer's and site's inputs fell.
fn thresholds(histograms: &[[MagnitudeHistogram; 4]], share: f64) -> Result<Vec<[f32; 4]>> {
    histograms
        .iter()
        .map(|sites| {
            let mut t = [0f32; 4];
            for (slot, h) in sites.iter().enumerate() {
                t[slot] = h.threshold(share)?;
            }
            Ok(t)
        })
        .collect()
}

/// Bytes LaRoSA's f64 moments may take (2 x layers x hidden^2 x 8): SmolLM2 needs 159 MB,
/// TinyLlama 2.1 GB, an 8B Llama 8.6 GB, which this machine class cannot hold beside the model.
pub const MOMENT_BYTES_LIMIT: u64 = 4 << 30;

/// What a cached calibration holds: the histograms always, the rotations once computed.
pub struct Calibration {
    pub tokens: usize,
    pub histograms: Vec<[MagnitudeHistogram; 4]>,
    pub rotations: Option<Vec<[Vec<f32>; 2]>>,
}

impl Calibration {
    /// From freshly collected statistics (solving for rotations where moments were collected).
    pub fn from_stats(stats: ActivationStats) -> Result<Self> {
        let rotations = if stats.moments.is_empty() {
            None
        } else {
            Some(stats.rotations()?)
        };
        Ok(Self {
            tokens: stats.tokens,
            histograms: stats.histograms,
            rotations,
        })
    }

    pub fn thresholds(&self, share: f64) -> Result<Vec<[f32; 4]>> {
        thresholds(&self.histograms, share)
    }

    /// Saved as safetensors: `hist.{layer}.{site}` (i64 counts, then the total),
    /// `rot.{layer}.{slot}` (f32), `tokens` (i64).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (l, sites) in self.histograms.iter().enumerate() {
            for (s, h) in sites.iter().enumerate() {
                let counts: Vec<i64> = h.counts().iter().map(|&c| c as i64).collect();
                tensors.insert(format!("hist.{l}.{s}"), Tensor::new(counts, &Device::Cpu)?);
            }
        }
        if let Some(rotations) = &self.rotations {
            for (l, pair) in rotations.iter().enumerate() {
                for (s, q) in pair.iter().enumerate() {
                    tensors.insert(
                        format!("rot.{l}.{s}"),
                        Tensor::new(q.as_slice(), &Device::Cpu)?,
                    );
                }
            }
        }
        tensors.insert(
            "tokens".into(),
            Tensor::new(&[self.tokens as i64], &Device::Cpu)?,
        );
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // Written to a temporary file beside it and renamed, so a reader (or a second process
        // calibrating the same model) never sees half a file.
        let dir = path.parent().unwrap_or(Path::new("."));
        let partial = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
        candle_core::safetensors::save(&tensors, partial.path())
            .with_context(|| format!("writing {}", partial.path().display()))?;
        partial.persist(path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// A saved calibration of a `layers`-layer model of width `hidden`; any missing or
    /// mis-sized entry is an error (the caller then calibrates again).
    pub fn load(path: &Path, layers: usize, hidden: usize) -> Result<Self> {
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        let get = |name: &str| {
            tensors
                .get(name)
                .with_context(|| format!("{}: no `{name}`", path.display()))
        };
        let histograms = (0..layers)
            .map(|l| {
                let mut sites: [MagnitudeHistogram; 4] = Default::default();
                for (s, h) in sites.iter_mut().enumerate() {
                    let counts: Vec<i64> = get(&format!("hist.{l}.{s}"))?.to_vec1()?;
                    *h = MagnitudeHistogram::from_counts(
                        counts.into_iter().map(|c| c as u64).collect(),
                    )?;
                }
                Ok(sites)
            })
            .collect::<Result<Vec<_>>>()?;
        let rotations = if tensors.contains_key("rot.0.0") {
            Some(
                (0..layers)
                    .map(|l| {
                        let rotation = |slot: usize| -> Result<Vec<f32>> {
                            let q: Vec<f32> = get(&format!("rot.{l}.{slot}"))?.to_vec1()?;
                            anyhow::ensure!(q.len() == hidden * hidden, "{}: rotation {l}.{slot} has {} values, not {hidden}^2", path.display(), q.len());
                            Ok(q)
                        };
                        Ok([rotation(0)?, rotation(1)?])
                    })
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        let tokens = get("tokens")?.to_vec1::<i64>()?.first().copied().with_context(|| format!("{}: empty `tokens`", path.display()))? as usize;
        Ok(Self {
            tokens,
            histograms,
            rotations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_calibration_loads_back_equal() {
        let mut stats = ActivationStats::new(2, 3, true);
        let rows: Vec<f32> = (0..3 * 40_000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for layer in 0..2 {
            for site in SITES {
                stats.observe(layer, site, &rows, 3).unwrap();
            }
        }
        stats.tokens = 40_000;
        // The moment is X^T X.
        let xx: f64 = rows.chunks(3).map(|r| (r[0] * r[1]) as f64).sum();
        assert!(
            (stats.moments[1][0][1] - xx).abs() < 1e-3 * xx.abs().max(1.0),
            "{} vs {xx}",
            stats.moments[1][0][1]
        );
        let calibration = Calibration::from_stats(stats).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        calibration.save(&path).unwrap();
        let back = Calibration::load(&path, 2, 3).unwrap();
        assert!(Calibration::load(&path, 2, 4).is_err(), "rotations of another width are refused");
        assert_eq!(back.tokens, 40_000);
        assert_eq!(back.histograms, calibration.histograms);
        assert_eq!(back.rotations, calibration.rotations);
        assert_eq!(
            back.thresholds(0.4).unwrap(),
            calibration.thresholds(0.4).unwrap()
        );
    }
}
