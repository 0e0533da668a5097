//! Where layer weights come from: memory-mapped safetensors, a GGUF file (weights stay
//! quantized), or seeded random values for `--no-weights`. The architectures ask for tensors
//! by their Hugging Face names; the GGUF store translates names (see `gguf.rs`), and random
//! weights go through the very same `VarBuilder` path as real ones.

use super::gguf::GgufFile;
use super::layers::{FusedLinear, Linear};
use super::requantize::Conversion;
use crate::quant::int_weights::IntWeights;
use anyhow::{Context, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::PathBuf;

pub use super::safetensors_header::{parse_safetensors_header, read_safetensors_header, SafetensorsEntry};
use super::safetensors_header::check_safetensors;

/// A safetensors tensor as stored: dtype name, shape, bytes, and the file it came from.
type RawTensor = (String, Vec<usize>, Vec<u8>, PathBuf);

/// The weights of one model, on one device.
pub struct Weights {
    store: Store,
    dtype: DType,
    device: Device,
    /// Linear weights converted to another format as they load (`quantize`, `quant:FORMAT` drafts).
    conversion: Option<Conversion>,
    /// Rows appended to a tensor as it loads: name -> (the stored tensor it extends, f32 rows).
    /// adaptivocab's phrase tokens (`vocab_extension`); quantized tables keep their format.
    extra_rows: HashMap<String, (String, Tensor)>,
}

enum Store {
    /// `tensors`: name -> (shape, file) from the safetensors headers; None for random weights.
    Dense { vb: VarBuilder<'static>, tensors: Option<HashMap<String, (Vec<usize>, PathBuf)>> },
    Gguf(GgufFile),
}

impl Weights {
    /// Memory-maps safetensors files (one, or the shards of an index).
    pub fn from_safetensors(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        for file in files {
            for (name, entry) in check_safetensors(file)? {
                tensors.insert(name, (entry.shape, file.clone()));
            }
        }
        // SAFETY: the files are not modified while mapped; they live in the model cache.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
            .with_context(|| format!("reading weights {}", display_list(files)))?;
        Ok(Self { store: Store::Dense { vb, tensors: Some(tensors) }, dtype, device: device.clone(), conversion: None, extra_rows: HashMap::new() })
    }

    /// Seeded random weights with the same names and shapes as a real checkpoint.
    pub fn random(seed: u64, dtype: DType, device: &Device) -> Self {
        let backend: Box<dyn SimpleBackend> = Box::new(RandomWeights { seed });
        let vb = VarBuilder::from_backend(backend, dtype, device.clone());
        Self { store: Store::Dense { vb, tensors: None }, dtype, device: device.clone(), conversion: None, extra_rows: HashMap::new() }
    }

    pub fn from_gguf(file: GgufFile, device: &Device) -> Self {
        Self { store: Store::Gguf(file), dtype: DType::F32, device: device.clone(), conversion: None, extra_rows: HashMap::new() }
    }

    /// These weights with every linear layer converted to `format` as it loads; the model
    /// then computes in the format's dtype (f32 for quantized formats, like any GGUF model).
    pub fn converted(mut self, format: crate::quant::format::WeightFormat) -> Self {
        self.dtype = format.compute_dtype();
        if let Store::Dense { vb, .. } = &mut self.store {
            *vb = vb.clone().set_dtype(self.dtype);
        }
        self.conversion = Some(Conversion::new(format));
        self
    }

    /// These weights with `rows` appended to tensor `name`, whose stored rows come from
    /// `source` (itself, or the table a tied head shares).
    pub fn with_extra_rows(mut self, name: &str, source: &str, rows: Tensor) -> Self {
        self.extra_rows.insert(name.to_string(), (source.to_string(), rows));
        self
    }

    /// The conversion applied as layers load, if any (what each tensor became, how long it took).
    pub fn conversion(&self) -> Option<&Conversion> {
        self.conversion.as_ref()
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
        if self.extra_rows.contains_key(name) {
            return true;
        }
        match &self.store {
            // Our int formats store `{prefix}.qweight` (and scales) in place of `{prefix}.weight`.
            Store::Dense { vb, .. } => {
                vb.contains_tensor(name) || name.strip_suffix(".weight").is_some_and(|p| vb.contains_tensor(&format!("{p}.qweight")))
            }
            Store::Gguf(g) => g.contains(name),
        }
    }

    /// A plain tensor (norm weights, biases, embeddings) in the compute dtype.
    pub fn tensor(&self, name: &str, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if let Some((source, rows)) = self.extra_rows.get(name) {
            let (total, cols) = shape.dims2()?;
            let stored = self.stored_tensor(source, (total - rows.dim(0)?, cols).into())?;
            return Ok(Tensor::cat(&[stored, rows.to_dtype(self.dtype)?.to_device(&self.device)?], 0)?);
        }
        self.stored_tensor(name, shape)
    }

    /// The GGUF tensor `name` still quantized (its appended rows quantized to its format), or
    /// None where weights are dense or converted as they load.
    pub fn qtensor(&self, name: &str, shape: impl Into<Shape>) -> Result<Option<QTensor>> {
        let (Store::Gguf(g), None) = (&self.store, &self.conversion) else {
            return Ok(None);
        };
        let q = match self.extra_rows.get(name) {
            Some((source, rows)) => append_rows(&g.qtensor(source, &Device::Cpu)?, rows, &self.device)?,
            None => g.qtensor(name, &self.device)?,
        };
        check_gguf_shape(g, name, q.shape().dims(), shape.into().dims())?;
        Ok(Some(q))
    }

    fn stored_tensor(&self, name: &str, shape: Shape) -> Result<Tensor> {
        match &self.store {
            Store::Dense { vb, tensors } => {
                if let Some(tensors) = tensors {
                    check_dense_shape(tensors, name, shape.dims())?;
                }
                vb.get(shape, name).with_context(|| format!("weight `{name}`"))
            }
            Store::Gguf(g) => {
                let q = g.qtensor(name, &self.device)?;
                check_gguf_shape(g, name, q.shape().dims(), shape.dims())?;
                Ok(q.dequantize(&self.device)?.to_dtype(self.dtype)?)
            }
        }
    }

    /// A linear layer whose weight is stored `[out, in]` (nn.Linear).
    pub fn linear(&self, prefix: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
        let bias = if bias { Some(self.tensor(&format!("{prefix}.bias"), out_dim)?) } else { None };
        let name = format!("{prefix}.weight");
        if let Some(c) = &self.conversion {
            let w = self.tensor(&name, (out_dim, in_dim))?;
            return c.linear(&w, bias, &self.device);
        }
        match &self.store {
            Store::Dense { .. } => {
                if let Some(weights) = self.int_weights(prefix, in_dim, out_dim)? {
                    return Ok(Linear::int(weights, bias, &self.device)?);
                }
                let w = self.tensor(&name, (out_dim, in_dim))?;
                Ok(Linear::Dense(candle_nn::Linear::new(w, bias)))
            }
            Store::Gguf(_) => {
                let q = self.qtensor(&name, (out_dim, in_dim))?.ok_or_else(|| anyhow::anyhow!("`{name}` is not quantized"))?;
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
        if let Some(c) = &self.conversion {
            let (weight, bias) = self.dense_fused(prefixes, in_dim, out_dims, bias)?;
            return Ok(FusedLinear::Fused { linear: c.linear(&weight, bias, &self.device)?, sizes });
        }
        match &self.store {
            Store::Dense { .. } => {
                let ints = prefixes.iter().zip(out_dims).map(|(p, &o)| self.int_weights(p, in_dim, o)).collect::<Result<Vec<_>>>()?;
                if ints.iter().all(Option::is_some) && !bias {
                    let parts: Vec<IntWeights> = ints.into_iter().flatten().collect();
                    let fused = IntWeights::concat_rows(&parts).map_err(|why| anyhow::anyhow!("fusing {}: {why}", prefixes.join(", ")))?;
                    return Ok(FusedLinear::Fused { linear: Linear::int(fused, None, &self.device)?, sizes });
                }
                if ints.iter().any(Option::is_some) {
                    return separate();
                }
                let (weight, bias) = self.dense_fused(prefixes, in_dim, out_dims, bias)?;
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
                let Some(dtype) = parts.first().map(|q| q.dtype()) else { return separate() };
                if parts.iter().any(|q| q.dtype() != dtype) {
                    return separate();
                }
                let mut bytes = Vec::new();
                for (q, (p, &o)) in parts.iter().zip(prefixes.iter().zip(out_dims)) {
                    check_gguf_shape(g, &format!("{p}.weight"), q.shape().dims(), &[o, in_dim])?;
                    bytes.extend_from_slice(&q.data()?);
                }
                let fused = candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, &bytes, vec![total, in_dim], &self.device)?;
                Ok(FusedLinear::Fused { linear: Linear::Quantized { weight: QMatMul::from_qtensor(fused)?, bias: None }, sizes })
            }
        }
    }

    /// Our int8 / int4 weight `{prefix}.qweight` (with `.scales`, and `.zeros` for int4) from
    /// a safetensors file that `quantize --save` wrote, `None` where the layer has no such
    /// tensors. int8: qweight I8 `[n, k]`, scales F32 `[n]`; int4: qweight U32 `[n, k / 8]`
    /// (GPTQ packing), scales F16 and zeros U8 `[n, k / group]`.
    fn int_weights(&self, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Option<IntWeights>> {
        let Some((dtype, shape, codes, file)) = self.raw_tensor(&format!("{prefix}.qweight"))? else { return Ok(None) };
        let bad = |why: String| crate::error::LlmbenchError::invalid(format!("{}: `{prefix}`: {why}; save the model again with llmbench quantize --save", file.display()));
        let part = |name: &str| -> Result<(String, Vec<usize>, Vec<u8>)> {
            self.raw_tensor(&format!("{prefix}.{name}"))?.map(|(d, s, b, _)| (d, s, b)).ok_or_else(|| bad(format!("no `{prefix}.{name}` beside its qweight")))
        };
        let (n, k) = (out_dim, in_dim);
        let weights = match dtype.as_str() {
            "I8" if shape == [n, k] => {
                let (sd, ss, sb) = part("scales")?;
                if sd != "F32" || ss != [n] {
                    return Err(bad(format!("int8 scales must be F32 [{n}], not {sd} {ss:?}")));
                }
                let scales = sb.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                IntWeights::Int8 { n, k, q: codes.into_iter().map(|b| b as i8).collect(), scales }
            }
            "U32" if shape == [n, k / 8] => {
                let (sd, ss, sb) = part("scales")?;
                let (zd, zs, zb) = part("zeros")?;
                let groups = ss.get(1).copied().unwrap_or(0);
                if sd != "F16" || zd != "U8" || ss.len() != 2 || ss[0] != n || zs != ss || groups == 0 {
                    return Err(bad(format!("int4 scales F16 and zeros U8 [{n}, groups], not {sd} {ss:?} and {zd} {zs:?}")));
                }
                let packed = codes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                let scales: Vec<half::f16> = sb.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]])).collect();
                IntWeights::int4_from_parts(n, k, k / groups, packed, &scales, &zb).map_err(bad)?
            }
            _ => return Err(bad(format!("qweight {dtype} {shape:?} is neither int8 (I8 [{n}, {k}]) nor int4 (U32 [{n}, {}])", k / 8))),
        };
        Ok(Some(weights))
    }

    /// A tensor's safetensors dtype, shape, raw bytes and file, read as stored (candle's
    /// VarBuilder would convert integer codes to floats); `None` where no file holds it.
    fn raw_tensor(&self, name: &str) -> Result<Option<RawTensor>> {
        use std::io::{Read, Seek};
        let Store::Dense { tensors: Some(tensors), .. } = &self.store else { return Ok(None) };
        let Some((_, file)) = tensors.get(name) else { return Ok(None) };
        let entries = check_safetensors(file)?;
        let entry = entries.get(name).with_context(|| format!("{}: `{name}` vanished", file.display()))?;
        let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        let mut n = [0u8; 8];
        f.read_exact(&mut n)?;
        f.seek(std::io::SeekFrom::Start(8 + u64::from_le_bytes(n) + entry.start))?;
        let mut bytes = vec![0u8; (entry.end - entry.start) as usize];
        f.read_exact(&mut bytes).with_context(|| format!("reading `{name}` from {}", file.display()))?;
        Ok(Some((entry.dtype.clone(), entry.shape.clone(), bytes, file.clone())))
    }

    /// The parts' weights (and biases) concatenated along the output dimension.
    fn dense_fused(&self, prefixes: &[&str], in_dim: usize, out_dims: &[usize], bias: bool) -> Result<(Tensor, Option<Tensor>)> {
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
        Ok((Tensor::cat(&weights, 0)?, bias))
    }

    /// A linear layer stored `[in, out]` (GPT-2's Conv1D), transposed once at load.
    pub fn conv1d(&self, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
        let w = self.tensor(&format!("{prefix}.weight"), (in_dim, out_dim))?.t()?.contiguous()?;
        let b = self.tensor(&format!("{prefix}.bias"), out_dim)?;
        if let Some(c) = &self.conversion {
            return c.linear(&w, Some(b), &self.device);
        }
        Ok(Linear::Dense(candle_nn::Linear::new(w, Some(b))))
    }
}

/// A weight of the wrong shape for the config is a model-file error: say which file holds it.
fn check_dense_shape(tensors: &HashMap<String, (Vec<usize>, PathBuf)>, name: &str, expected: &[usize]) -> Result<()> {
    match tensors.get(name) {
        Some((shape, _)) if shape == expected => Ok(()),
        Some((shape, file)) => crate::bail_input!(
            "{}: tensor `{name}` has shape {shape:?} but config.json needs {expected:?}; the weights and config.json are from \
             different models: download the model again",
            file.display()
        ),
        None => {
            let files: Vec<PathBuf> = tensors.values().map(|(_, f)| f.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            crate::bail_input!(
                "{}: no tensor `{name}`, which config.json requires; the weights and config.json are from different models: \
                 download the model again",
                display_list(&files)
            )
        }
    }
}

/// `q` (on the CPU) with `rows` quantized to its format appended, on `device`: the stored rows
/// keep their exact bytes. A format whose blocks do not tile a row falls back to f32.
fn append_rows(q: &QTensor, rows: &Tensor, device: &Device) -> Result<QTensor> {
    let (stored, cols) = q.shape().dims2()?;
    let total = stored + rows.dim(0)?;
    let rows = rows.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    match QTensor::quantize(&rows, q.dtype()) {
        Ok(new) if !matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) => {
            let mut bytes = q.data()?.to_vec();
            bytes.extend_from_slice(&new.data()?);
            Ok(candle_core::quantized::ggml_file::qtensor_from_ggml(q.dtype(), &bytes, vec![total, cols], device)?)
        }
        _ => {
            let table = Tensor::cat(&[q.dequantize(&Device::Cpu)?, rows], 0)?.to_device(device)?;
            Ok(QTensor::quantize(&table, GgmlDType::F32)?)
        }
    }
}

fn check_gguf_shape(g: &GgufFile, name: &str, found: &[usize], expected: &[usize]) -> Result<()> {
    if found != expected {
        crate::bail_input!(
            "{}: tensor `{}` has shape {found:?} but the GGUF metadata needs {expected:?}; the file is inconsistent: re-export it \
             with llama.cpp's convert_hf_to_gguf.py",
            g.path.display(),
            super::gguf::gguf_name(name)
        );
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
        // 4,096 uniform samples: the RMS's standard error is ~1.4e-4 of 0.02, so 5e-4 is ~3.5 sigma.
        assert!((std - INIT_STD).abs() < 5e-4, "std {std}");
        let half_width = INIT_STD * 3f32.sqrt();
        assert!(x.iter().all(|v| v.abs() <= half_width), "a value outside the uniform's support");
        let norm: Vec<f32> = a.tensor("ln_f.weight", 8).unwrap().to_vec1().unwrap();
        assert_eq!(norm, vec![1.0; 8]);
    }
}
