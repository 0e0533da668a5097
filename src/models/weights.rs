//! Where layer weights come from: memory-mapped safetensors, a GGUF file (weights stay
//! quantized), or seeded random values for `--no-weights`. The architectures ask for tensors
//! by their Hugging Face names; the GGUF store translates names (see `gguf.rs`), and random
//! weights go through the very same `VarBuilder` path as real ones.

use super::gguf::GgufFile;
use super::layers::{FusedLinear, Linear};
use anyhow::{Context, Result};
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use std::path::PathBuf;

/// The weights of one model, on one device.
pub struct Weights {
    store: Store,
    dtype: DType,
    device: Device,
}

enum Store {
    Dense(VarBuilder<'static>),
    Gguf(GgufFile),
}

impl Weights {
    /// Memory-maps safetensors files (one, or the shards of an index).
    pub fn from_safetensors(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
        for file in files {
            check_safetensors(file)?;
        }
        // SAFETY: the files are not modified while mapped; they live in the model cache.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
            .with_context(|| format!("reading weights {}", display_list(files)))?;
        Ok(Self { store: Store::Dense(vb), dtype, device: device.clone() })
    }

    /// Seeded random weights with the same names and shapes as a real checkpoint.
    pub fn random(seed: u64, dtype: DType, device: &Device) -> Self {
        let backend: Box<dyn SimpleBackend> = Box::new(RandomWeights { seed });
        let vb = VarBuilder::from_backend(backend, dtype, device.clone());
        Self { store: Store::Dense(vb), dtype, device: device.clone() }
    }

    pub fn from_gguf(file: GgufFile, device: &Device) -> Self {
        Self { store: Store::Gguf(file), dtype: DType::F32, device: device.clone() }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn is_quantized(&self) -> bool {
        matches!(self.store, Store::Gguf(_))
    }

    pub fn contains(&self, name: &str) -> bool {
        match &self.store {
            Store::Dense(vb) => vb.contains_tensor(name),
            Store::Gguf(g) => g.contains(name),
        }
    }

    /// A plain tensor (norm weights, biases, embeddings) in the compute dtype.
    pub fn tensor(&self, name: &str, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        match &self.store {
            Store::Dense(vb) => vb.get(shape, name).with_context(|| format!("weight `{name}`")),
            Store::Gguf(g) => {
                let t = g.qtensor(name, &self.device)?.dequantize(&self.device)?;
                anyhow::ensure!(t.shape() == &shape, "weight `{name}`: shape {:?}, expected {shape:?}", t.shape());
                Ok(t)
            }
        }
    }

    /// A linear layer whose weight is stored `[out, in]` (nn.Linear).
    pub fn linear(&self, prefix: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
        let bias = if bias { Some(self.tensor(&format!("{prefix}.bias"), out_dim)?) } else { None };
        let name = format!("{prefix}.weight");
        match &self.store {
            Store::Dense(_) => {
                let w = self.tensor(&name, (out_dim, in_dim))?;
                Ok(Linear::Dense(candle_nn::Linear::new(w, bias)))
            }
            Store::Gguf(g) => {
                let q = g.qtensor(&name, &self.device)?;
                anyhow::ensure!(
                    q.shape().dims() == [out_dim, in_dim],
                    "weight `{name}`: shape {:?}, expected [{out_dim}, {in_dim}]",
                    q.shape()
                );
                Ok(Linear::Quantized { weight: QMatMul::from_qtensor(q)?, bias })
            }
        }
    }

    /// Linear layers over the same input (`[out_i, in]` each), fused into one `[sum out_i, in]`
    /// weight: concatenated for dense weights, and for GGUF when every part has the same
    /// quantization (rows of one format concatenate byte for byte); separate otherwise.
    pub fn fused_linear(&self, prefixes: &[&str], in_dim: usize, out_dims: &[usize], bias: bool) -> Result<FusedLinear> {
        let separate = || -> Result<FusedLinear> {
            let parts = prefixes.iter().zip(out_dims).map(|(p, &o)| self.linear(p, in_dim, o, bias)).collect::<Result<Vec<_>>>()?;
            Ok(FusedLinear::Separate(parts))
        };
        let sizes = out_dims.to_vec();
        let total: usize = out_dims.iter().sum();
        match &self.store {
            Store::Dense(_) => {
                let weights = prefixes
                    .iter()
                    .zip(out_dims)
                    .map(|(p, &o)| self.tensor(&format!("{p}.weight"), (o, in_dim)))
                    .collect::<Result<Vec<_>>>()?;
                let bias = if bias {
                    let parts = prefixes.iter().zip(out_dims).map(|(p, &o)| self.tensor(&format!("{p}.bias"), o)).collect::<Result<Vec<_>>>()?;
                    Some(Tensor::cat(&parts, 0)?)
                } else {
                    None
                };
                let weight = Tensor::cat(&weights, 0)?;
                Ok(FusedLinear::Fused { linear: Linear::Dense(candle_nn::Linear::new(weight, bias)), sizes })
            }
            Store::Gguf(g) => {
                if bias {
                    return separate();
                }
                let parts = prefixes
                    .iter()
                    .map(|p| g.qtensor(&format!("{p}.weight"), &Device::Cpu))
                    .collect::<Result<Vec<_>>>()?;
                let dtype = parts[0].dtype();
                if parts.iter().any(|q| q.dtype() != dtype) {
                    return separate();
                }
                let mut bytes = Vec::new();
                for (q, (p, &o)) in parts.iter().zip(prefixes.iter().zip(out_dims)) {
                    anyhow::ensure!(q.shape().dims() == [o, in_dim], "weight `{p}.weight`: shape {:?}, expected [{o}, {in_dim}]", q.shape());
                    bytes.extend_from_slice(&q.data()?);
                }
                let fused = candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &bytes, vec![total, in_dim], &self.device)?;
                Ok(FusedLinear::Fused { linear: Linear::Quantized { weight: QMatMul::from_qtensor(fused)?, bias: None }, sizes })
            }
        }
    }

    /// A linear layer stored `[in, out]` (GPT-2's Conv1D), transposed once at load.
    pub fn conv1d(&self, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
        let w = self.tensor(&format!("{prefix}.weight"), (in_dim, out_dim))?.t()?.contiguous()?;
        let b = self.tensor(&format!("{prefix}.bias"), out_dim)?;
        Ok(Linear::Dense(candle_nn::Linear::new(w, Some(b))))
    }
}

/// safetensors files start with an 8-byte header length and a JSON header; the data must
/// cover every tensor. Checked here so a truncated download names the file.
fn check_safetensors(path: &PathBuf) -> Result<()> {
    let fail = |why: &str| {
        crate::error::LlmbenchError::invalid(format!(
            "{}: {why}; the file is truncated or corrupt: delete it and download it again",
            path.display()
        ))
    };
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut n = [0u8; 8];
    std::io::Read::read_exact(&mut file, &mut n).map_err(|_| fail("shorter than a safetensors header"))?;
    let header_len = u64::from_le_bytes(n);
    if header_len > len.saturating_sub(8) {
        return Err(fail("header length runs past the end of the file"));
    }
    let mut header = vec![0u8; header_len as usize];
    std::io::Read::read_exact(&mut file, &mut header).map_err(|_| fail("header cut short"))?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| fail("header is not JSON"))?;
    let data_end = header
        .as_object()
        .map(|o| {
            o.values()
                .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    if 8 + header_len + data_end > len {
        return Err(fail(&format!("holds {len} bytes but its tensors need {}", 8 + header_len + data_end)));
    }
    Ok(())
}

fn display_list(files: &[PathBuf]) -> String {
    files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Random weights: norm scales are 1, biases 0, everything else uniform with the standard
/// deviation transformers initialises with (0.02). Each tensor is seeded from its name, so
/// values do not depend on load order.
struct RandomWeights {
    seed: u64,
}

const INIT_STD: f32 = 0.02;

impl SimpleBackend for RandomWeights {
    fn get(&self, shape: Shape, name: &str, _h: candle_nn::Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let n = shape.elem_count();
        let is_norm = name.contains("norm") || name.contains("ln_");
        let values = if name.ends_with("bias") {
            vec![0f32; n]
        } else if is_norm {
            vec![1f32; n]
        } else {
            let mut state = self.seed ^ fnv1a(name.as_bytes());
            let half_width = INIT_STD * 3f32.sqrt();
            (0..n).map(|_| (unit_uniform(&mut state) * 2.0 - 1.0) * half_width).collect()
        };
        Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for `{name}`")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// splitmix64 mapped to [0, 1): fast enough for a billion values, and stable across versions.
fn unit_uniform(state: &mut u64) -> f32 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_weights_are_seeded_by_name_with_the_init_std() {
        let a = Weights::random(7, DType::F32, &Device::Cpu);
        let b = Weights::random(7, DType::F32, &Device::Cpu);
        let x: Vec<f32> = a.tensor("h.0.attn.weight", (64, 64)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let y: Vec<f32> = b.tensor("h.0.attn.weight", (64, 64)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(x, y);
        let z: Vec<f32> = a.tensor("h.1.attn.weight", (64, 64)).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_ne!(x, z);
        let std = (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        assert!((std - INIT_STD).abs() < 0.002, "std {std}");
        let norm: Vec<f32> = a.tensor("ln_f.weight", 8).unwrap().to_vec1().unwrap();
        assert_eq!(norm, vec![1.0; 8]);
    }
}
