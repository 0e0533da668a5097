//! Building blocks shared by the architectures: a linear layer that is dense or GGUF-quantized,
//! the norms, rotary embeddings; scaled dot-product attention lives in `attention` and is
//! re-exported here.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use crate::quant::int_cuda::DeviceIntWeights;
use crate::quant::int_weights::IntWeights;
use candle_core::{DType, Device, Module, Result, Tensor, D};

pub use super::attention::{attention, attention_row_by_row, causal_mask, masked_attention, VerifyAttention};

/// From this many rows (tokens) on, a quantized matmul dequantizes its weight to f32 and runs
/// a dense GEMM, as llama.cpp does for batches of 32 or more with BLAS: for prompt processing
/// this is faster (measured 2.2x for a 141-token prefill of SmolLM2 Q4_1 on 2 cores) and exact
/// with respect to the stored weights, where candle's quantized kernel also rounds the
/// activations to 8 bits. Decoding (one row) keeps the quantized kernel, which reads 4x fewer bytes.
pub const BATCHED_DEQUANT_MIN_ROWS: usize = 32;

/// `y = x W^T + b`, with W dense (safetensors, random), GGUF-quantized (candle's kernels and
/// ours) or in our integer formats (`quant::int_matmul` on the CPU, `quant::int_cuda` on CUDA).
#[derive(Debug, Clone)]
pub enum Linear {
    Dense(candle_nn::Linear),
    Quantized { weight: QMatMul, bias: Option<Tensor> },
    /// The host copy is the format's definition (saving, the tied token table, footprints); on
    /// CUDA `on_device` holds the copy the kernels read.
    Int { weights: std::sync::Arc<IntWeights>, bias: Option<Tensor>, on_device: Option<std::sync::Arc<DeviceIntWeights>> },
}

impl Linear {
    /// Our integer weights as a layer on `device`, copied to it where it is CUDA.
    pub fn int(weights: IntWeights, bias: Option<Tensor>, device: &Device) -> Result<Self> {
        let on_device = if device.is_cuda() { Some(std::sync::Arc::new(DeviceIntWeights::upload(&weights, device)?)) } else { None };
        Ok(Self::Int { weights: std::sync::Arc::new(weights), bias, on_device })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(l) => l.forward(x),
            Self::Int { weights, bias, on_device } => {
                let on_device = on_device.as_ref().filter(|_| x.device().is_cuda());
                let rows = x.elem_count() / x.dim(D::Minus1)?;
                let y = if rows >= BATCHED_DEQUANT_MIN_ROWS {
                    // A prefill: the exact weights through a dense GEMM, as for the GGUF formats
                    // (so every format's quality is measured the same way, on both devices).
                    let w = match on_device {
                        Some(w) => w.dequantize()?,
                        None => Tensor::from_vec(weights.dequantize(), weights.dims(), x.device())?,
                    };
                    x.broadcast_matmul(&w.t()?)?
                } else if let Some(w) = on_device {
                    w.forward(x)?
                } else if let Some(y) = self.forward_with_our_kernels(x)? {
                    // The kernels' path adds the bias itself.
                    return Ok(y);
                } else {
                    // No AVX2 here: the dequantized weights through a dense matmul (same values).
                    let w = Tensor::from_vec(weights.dequantize(), weights.dims(), x.device())?;
                    x.broadcast_matmul(&w.t()?)?
                };
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
            Self::Quantized { weight, bias } => {
                let rows = x.elem_count() / x.dim(D::Minus1)?;
                let y = match weight {
                    QMatMul::QTensor(q) if rows >= BATCHED_DEQUANT_MIN_ROWS => {
                        candle_nn::Linear::new(q.dequantize(x.device())?, None).forward(x)?
                    }
                    _ => match self.forward_with_our_kernels(x)? {
                        // The kernels' path adds the bias itself.
                        Some(y) => return Ok(y),
                        None => weight.forward(x)?,
                    },
                };
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}

/// Parameters and bytes of weights held in memory (what `quantize` reports per format).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub params: u64,
    pub bytes: u64,
}

impl Footprint {
    pub fn of_tensor(t: &Tensor) -> Self {
        Self { params: t.elem_count() as u64, bytes: (t.elem_count() * t.dtype().size_in_bytes()) as u64 }
    }
}

impl std::ops::Add for Footprint {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self { params: self.params + o.params, bytes: self.bytes + o.bytes }
    }
}

impl std::iter::Sum for Footprint {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| a + b)
    }
}

impl Linear {
    /// The weight's and bias's parameters and bytes as stored.
    pub fn footprint(&self) -> Footprint {
        let bias = |b: &Option<Tensor>| b.as_ref().map(Footprint::of_tensor).unwrap_or_default();
        match self {
            Self::Dense(l) => Footprint::of_tensor(l.weight()) + l.bias().map(Footprint::of_tensor).unwrap_or_default(),
            Self::Quantized { weight, bias: b } => {
                let w = match weight {
                    QMatMul::QTensor(q) => Footprint { params: q.shape().elem_count() as u64, bytes: q.storage_size_in_bytes() as u64 },
                    QMatMul::Tensor(t) | QMatMul::TensorF16(t) => Footprint::of_tensor(t),
                };
                w + bias(b)
            }
            Self::Int { weights, bias: b, .. } => {
                let (n, k) = weights.dims();
                Footprint { params: (n * k) as u64, bytes: weights.bytes() as u64 } + bias(b)
            }
        }
    }
}

impl FusedLinear {
    pub fn footprint(&self) -> Footprint {
        match self {
            Self::Fused { linear, .. } => linear.footprint(),
            Self::Separate(parts) => parts.iter().map(Linear::footprint).sum(),
        }
    }
}

impl Linear {
    /// `forward_rows` through our kernels: `Some(out_dim)` when they ran, `None` otherwise.
    pub(super) fn forward_rows_quantized(&self, x: &[f32], in_dim: usize, out: &mut Vec<f32>) -> Result<Option<usize>> {
        if let Self::Int { weights, bias, .. } = self {
            let (n, k) = weights.dims();
            if k != in_dim {
                return Ok(None);
            }
            let m = x.len() / k;
            out.resize(m * n, 0.0);
            if !crate::quant::int_matmul::matmul(weights, m, x, out) {
                return Ok(None);
            }
            if let Some(b) = bias {
                let b = super::cpu_rows::values(b)?;
                out.chunks_exact_mut(n).for_each(|row| super::cpu_rows::add(row, &b));
            }
            return Ok(Some(n));
        }
        let Self::Quantized { weight: QMatMul::QTensor(q), bias } = self else { return Ok(None) };
        let Some(format) = block_format(q) else { return Ok(None) };
        let (n, k) = q.shape().dims2()?;
        if k != in_dim || !q.device().is_cpu() {
            return Ok(None);
        }
        let m = x.len() / k;
        out.resize(m * n, 0.0);
        if !crate::quant::cpu_matmul::matmul(format, &q.data()?, (m, k, n), x, out) {
            return Ok(None);
        }
        if let Some(b) = bias {
            let b = super::cpu_rows::values(b)?;
            out.chunks_exact_mut(n).for_each(|row| super::cpu_rows::add(row, &b));
        }
        Ok(Some(n))
    }
}

fn block_format(w: &QTensor) -> Option<crate::quant::cpu_matmul::BlockFormat> {
    use crate::quant::cpu_matmul::BlockFormat;
    match w.dtype() {
        GgmlDType::Q4_0 => Some(BlockFormat::Q4_0),
        GgmlDType::Q4_1 => Some(BlockFormat::Q4_1),
        GgmlDType::Q8_0 => Some(BlockFormat::Q8_0),
        _ => None,
    }
}


impl Linear {
    /// `forward` through our AVX2 kernels (`quant::cpu_matmul`) for a CPU f32 input and a GGUF
    /// format they cover; `None` for everything else (candle's kernels then run).
    fn forward_with_our_kernels(&self, x: &Tensor) -> Result<Option<Tensor>> {
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            return Ok(None);
        }
        let k = x.dim(D::Minus1)?;
        let mut out = Vec::new();
        let Some(n) = super::cpu_rows::with_slice(x, |xs| self.forward_rows_quantized(xs, k, &mut out))?? else { return Ok(None) };
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("x has a last dim") = n;
        Ok(Some(Tensor::from_vec(out, dims, x.device())?))
    }
}

/// The token embedding table: dense, or (GGUF on the CPU) the quantized rows themselves,
/// dequantized per looked-up token. A Q8_0 table of SmolLM2's 49,152 x 576 is 30 MB; as f32
/// it was 113 MB more resident memory, for ~100 rows a step that can be decoded on the fly.
/// With tied embeddings the quantized table is the LM head's own weight, shared.
#[derive(Debug, Clone)]
pub enum TokenEmbedding {
    Dense(candle_nn::Embedding),
    Quantized { table: std::sync::Arc<QTensor>, hidden: usize },
    /// Our int8/int4 table (tied with the head), rows dequantized per looked-up token.
    Int(std::sync::Arc<IntWeights>),
}

impl TokenEmbedding {
    /// The quantized table where our kernels read its format on this device, else `None`.
    /// Any GGUF type whose blocks tile a row works; our kernels' formats are dequantized by
    /// them, the others through candle one row at a time.
    pub fn quantized(table: &std::sync::Arc<QTensor>) -> Option<Self> {
        let (_, hidden) = table.shape().dims2().ok()?;
        let quantized = !matches!(table.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        (quantized && table.device().is_cpu() && hidden % table.dtype().block_size() == 0)
            .then(|| Self::Quantized { table: table.clone(), hidden })
    }

    /// The f32 rows of `ids`, appended to `out`.
    pub fn rows_into(&self, ids: &[u32], out: &mut Vec<f32>) -> Result<()> {
        match self {
            Self::Dense(e) => super::cpu_rows::with_slice(e.embeddings(), |table| -> Result<()> {
                let h = e.embeddings().dim(1)?;
                for &id in ids {
                    let row = table.get(id as usize * h..(id as usize + 1) * h).ok_or_else(|| out_of_vocabulary(id))?;
                    out.extend_from_slice(row);
                }
                Ok(())
            })?,
            Self::Quantized { table, hidden } => {
                let dtype = table.dtype();
                let data = table.data()?;
                let row_bytes = hidden / dtype.block_size() * dtype.type_size();
                for &id in ids {
                    let row = data.get(id as usize * row_bytes..(id as usize + 1) * row_bytes).ok_or_else(|| out_of_vocabulary(id))?;
                    let start = out.len();
                    match block_format(table) {
                        Some(format) => {
                            out.resize(start + hidden, 0.0);
                            crate::quant::cpu_matmul::dequantize_row(format, row, &mut out[start..]);
                        }
                        None => {
                            let one = candle_core::quantized::ggml_file::qtensor_from_ggml(dtype, row, vec![*hidden], &Device::Cpu)?;
                            out.extend(one.dequantize(&Device::Cpu)?.to_vec1::<f32>()?);
                        }
                    }
                }
                Ok(())
            }
            Self::Int(table) => {
                let (vocab, hidden) = table.dims();
                for &id in ids {
                    if id as usize >= vocab {
                        return Err(out_of_vocabulary(id));
                    }
                    let start = out.len();
                    out.resize(start + hidden, 0.0);
                    table.dequantize_row(id as usize, &mut out[start..]);
                }
                Ok(())
            }
        }
    }

    /// `[b, t] -> [b, t, hidden]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(e) => e.forward(ids),
            Self::Quantized { .. } | Self::Int(_) => {
                let hidden = match self {
                    Self::Int(table) => table.dims().1,
                    Self::Quantized { hidden, .. } => *hidden,
                    Self::Dense(_) => unreachable!(),
                };
                let (b, t) = ids.dims2()?;
                let mut out = Vec::with_capacity(b * t * hidden);
                self.rows_into(&ids.flatten_all()?.to_vec1::<u32>()?, &mut out)?;
                Tensor::from_vec(out, (b, t, hidden), ids.device())
            }
        }
    }

    /// The table's own footprint: none when it is the (tied) head's quantized weight, shared.
    /// The table's bytes, or nothing where it is the head's own weight (a tied quantized or
    /// int table, counted with the head).
    pub fn footprint(&self, head: &Linear) -> Footprint {
        match (self, head) {
            (Self::Dense(e), _) => Footprint::of_tensor(e.embeddings()),
            (Self::Quantized { table, .. }, Linear::Quantized { weight: QMatMul::QTensor(q), .. }) if std::sync::Arc::ptr_eq(table, q) => Footprint::default(),
            (Self::Int(table), Linear::Int { weights, .. }) if std::sync::Arc::ptr_eq(table, weights) => Footprint::default(),
            (Self::Quantized { table, .. }, _) => Footprint { params: table.shape().elem_count() as u64, bytes: table.storage_size_in_bytes() as u64 },
            (Self::Int(table), _) => {
                let (n, k) = table.dims();
                Footprint { params: (n * k) as u64, bytes: table.bytes() as u64 }
            }
        }
    }

    /// The dense table (the CUDA graph reads it); `None` when quantized.
    pub fn dense_table(&self) -> Option<&Tensor> {
        match self {
            Self::Dense(e) => Some(e.embeddings()),
            Self::Quantized { .. } | Self::Int(_) => None,
        }
    }

    /// The dtype rows come out in.
    pub fn dtype(&self) -> DType {
        match self {
            Self::Dense(e) => e.embeddings().dtype(),
            Self::Quantized { .. } | Self::Int(_) => DType::F32,
        }
    }
}

fn out_of_vocabulary(id: u32) -> candle_core::Error {
    candle_core::Error::Msg(format!("token id {id} is outside the vocabulary"))
}

/// Several linear layers that read the same input (Q, K, V; gate and up), run as one matmul
/// where the storage allows it: one kernel launch and one activation quantization instead of
/// several. The outputs are the same dot products, split back along the last dimension.
#[derive(Debug, Clone)]
pub enum FusedLinear {
    Fused { linear: Linear, sizes: Vec<usize> },
    Separate(Vec<Linear>),
}

impl FusedLinear {
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Fused { linear, sizes } => split_last(&linear.forward(x)?, sizes),
            Self::Separate(parts) => parts.iter().map(|l| l.forward(x)).collect(),
        }
    }
}

/// `y` split along its last dimension into parts of `sizes` (a fused projection's outputs).
pub fn split_last(y: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let mut offset = 0;
    sizes
        .iter()
        .map(|&n| {
            let part = y.narrow(D::Minus1, offset, n);
            offset += n;
            part
        })
        .collect()
}

/// RMSNorm as in Llama (candle's fused op, the one `quantized_llama` uses).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f32,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}

/// LayerNorm with bias, as in GPT-2.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Rotary position embedding tables: `cos`, `sin` of shape `[positions, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
}

impl Rope {
    /// Tables for `positions` positions from per-pair inverse frequencies, computed in f32 as
    /// transformers and candle do, then cast to `dtype`.
    pub fn new(inv_freq: &[f32], positions: usize, interleaved: bool, dtype: DType, device: &Device) -> Result<Self> {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for &f in inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (positions, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (positions, half), device)?.to_dtype(dtype)?;
        Ok(Self { cos, sin, interleaved })
    }

    pub fn positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// The `cos` and `sin` tables `[positions, head_dim / 2]`.
    pub fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// Rotates `x: [b, h, t, d]` as positions `start..start + t`.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, start, t)?;
        let sin = self.sin.narrow(0, start, t)?;
        let x = x.contiguous()?;
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, &cos, &sin)
        } else {
            candle_nn::rotary_emb::rope(&x, &cos, &sin)
        }
    }
}

impl Rope {
    /// The table rows of `positions` (one per token of a batched step): `cos`, `sin` `[t, d/2]`.
    pub fn rows(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.cos.index_select(positions, 0)?, self.sin.index_select(positions, 0)?))
    }

    /// Rotates `x: [b, h, t, d]` by table rows from `rows` (row i rotates token i).
    pub fn apply_rows(&self, x: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor> {
        let x = x.contiguous()?;
        if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, cos, sin)
        } else {
            candle_nn::rotary_emb::rope(&x, cos, sin)
        }
    }
}

/// Keeps the logits of the last position: `[b, t, v] -> [b, v]`.
pub fn last_position(x: &Tensor) -> Result<Tensor> {
    let t = x.dim(1)?;
    x.narrow(1, t - 1, 1)?.squeeze(1)
}

/// Softmax over the last dim, for tests and metrics.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::log_softmax(x, D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our int formats follow the GGUF formats' policy: a prefill (from BATCHED_DEQUANT_MIN_ROWS
    /// rows) multiplies the exact dequantized weights, fewer rows go through the kernels (which
    /// round the activations to 8 bits: visibly different from the exact product).
    #[test]
    fn int_layers_prefill_with_exact_weights_and_decode_through_the_kernels() {
        use crate::quant::int_weights::IntFormat;
        let (n, k) = (48, 128);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.1).collect();
        let weights = IntWeights::quantize(IntFormat::Int4 { group: 64 }, &w, n, k).unwrap();
        let exact_w = Tensor::from_vec(weights.dequantize(), (n, k), &Device::Cpu).unwrap();
        let layer = Linear::int(weights.clone(), None, &Device::Cpu).unwrap();
        let exact = |x: &Tensor| x.matmul(&exact_w.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ours = |x: &Tensor| layer.forward(x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let prefill = Tensor::randn(0f32, 1.0, (BATCHED_DEQUANT_MIN_ROWS, k), &Device::Cpu).unwrap();
        assert!(max_diff(&ours(&prefill), &exact(&prefill)) < 1e-5, "a prefill must use the exact weights");
        if crate::quant::cpu_matmul::available() {
            let decode = prefill.narrow(0, 0, 3).unwrap();
            let mut kernel = vec![0f32; 3 * n];
            let x = decode.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(crate::quant::int_matmul::matmul(&weights, 3, &x, &mut kernel));
            assert_eq!(ours(&decode), kernel, "a few rows go through the kernels");
            assert!(max_diff(&kernel, &exact(&decode)) > 1e-4, "the kernels round the activations");
        }
    }
}
