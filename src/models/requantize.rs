//! Converting a model's linear weights to another format as they load: dense f32/f16/bf16,
//! a GGUF block format through candle's quantizer (`quantize` and speculative decoding's
//! `quant:FORMAT` draft), or our int8/int4 (`quant::int_weights`). A GGUF format whose blocks
//! do not divide a weight's rows falls back, per tensor, to the 32-wide format llama.cpp's
//! quantizer picks in the same case (`llama_tensor_get_type` in llama-quant.cpp): SmolLM2's
//! 576-wide rows are not a multiple of the k-quants' 256. The conversion counts what each
//! tensor became and the time spent quantizing.

use super::layers::Linear;
use crate::quant::format::{gguf_name, WeightFormat, GGUF_FORMATS};
use crate::quant::int_weights::{IntFormat, IntWeights};
use anyhow::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The GGUF format named `name` (q4_0, q2_k, ...) for `quant:NAME`, or an input error listing the choices.
pub fn parse_format(name: &str) -> Result<GgmlDType> {
    GGUF_FORMATS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f).ok_or_else(|| {
        let names: Vec<&str> = GGUF_FORMATS.iter().map(|(n, _)| *n).collect();
        crate::error::LlmbenchError::invalid(format!("quant:{name}: unknown format; use one of {}", names.join(", ")))
    })
}

/// llama.cpp's fallback for a tensor whose rows a k-quant's 256-wide blocks do not divide.
fn fallback(format: GgmlDType) -> GgmlDType {
    match format {
        GgmlDType::Q2K | GgmlDType::Q3K => GgmlDType::Q4_0,
        GgmlDType::Q4K => GgmlDType::Q5_0,
        GgmlDType::Q5K => GgmlDType::Q5_1,
        _ => GgmlDType::Q8_0,
    }
}

/// `weight: [out, in]` in GGUF `format` on `device`, or in llama.cpp's fallback where the
/// format's blocks do not divide the rows (the quantizer runs on the CPU).
pub fn quantize_gguf(format: GgmlDType, weight: &Tensor, device: &Device) -> Result<QTensor> {
    let row = weight.dim(weight.rank() - 1)?;
    let chosen = if row % format.block_size() == 0 { format } else { fallback(format) };
    if row % chosen.block_size() != 0 {
        crate::bail_input!(
            "{}: rows of {row} values fit neither its {}-value blocks nor {}'s",
            gguf_name(format),
            format.block_size(),
            gguf_name(chosen)
        );
    }
    let cpu = weight.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    Ok(QTensor::quantize_onto(&cpu, chosen, device)?)
}

/// A target format, and a tally of what each tensor became and how long quantizing took.
pub struct Conversion {
    pub format: WeightFormat,
    tally: Mutex<(BTreeMap<String, usize>, Duration)>,
}

impl Conversion {
    pub fn new(format: WeightFormat) -> Self {
        Self { format, tally: Mutex::new((BTreeMap::new(), Duration::ZERO)) }
    }

    /// `weight: [out, in]` (and its bias) as a linear layer in the target format on `device`.
    pub fn linear(&self, weight: &Tensor, bias: Option<Tensor>, device: &Device) -> Result<Linear> {
        let started = Instant::now();
        let (linear, name) = match self.format {
            WeightFormat::Dense(dtype) => {
                let bias = bias.map(|b| b.to_dtype(dtype)).transpose()?;
                (Linear::Dense(candle_nn::Linear::new(weight.to_dtype(dtype)?, bias)), self.format.name())
            }
            WeightFormat::Gguf(format) => {
                let q = quantize_gguf(format, weight, device)?;
                let name = gguf_name(q.dtype()).to_string();
                (Linear::Quantized { weight: QMatMul::from_qtensor(q)?, bias }, name)
            }
            WeightFormat::Int(format) => (self.quantize_int(format, weight, bias, device)?, format.name()),
        };
        if let Ok(mut tally) = self.tally.lock() {
            *tally.0.entry(name).or_default() += 1;
            tally.1 += started.elapsed();
        }
        Ok(linear)
    }

    fn quantize_int(&self, format: IntFormat, weight: &Tensor, bias: Option<Tensor>, device: &Device) -> Result<Linear> {
        if !device.is_cpu() && !device.is_cuda() {
            crate::bail_input!("{}: our integer kernels run on the CPU and CUDA; use --device cpu or cuda, or a GGUF format (q8_0, q4_0) on this device", format.name());
        }
        let (n, k) = weight.dims2()?;
        let values = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let weights = IntWeights::quantize(format, &values, n, k)
            .map_err(|why| crate::error::LlmbenchError::invalid(format!("{}: a {n} x {k} weight: {why}; pick another --group-size", format.name())))?;
        Ok(Linear::int(weights, bias, device)?)
    }

    /// Seconds spent quantizing so far.
    pub fn quantize_seconds(&self) -> f64 {
        self.tally.lock().map(|t| t.1.as_secs_f64()).unwrap_or(0.0)
    }

    /// Tensors per resulting format, e.g. {"q4_0": 151, "q2_k": 60}.
    pub fn tensors(&self) -> BTreeMap<String, usize> {
        self.tally.lock().map(|t| t.0.clone()).unwrap_or_default()
    }

    /// "requantized to q2_k (60 tensors; 151 q4_0 where rows are not a multiple of 256)".
    pub fn describe(&self) -> String {
        let tally = self.tensors();
        let main = self.format.name();
        let own = tally.get(&main).copied().unwrap_or(0);
        let others: Vec<String> = tally.iter().filter(|(n, _)| **n != main).map(|(n, c)| format!("{c} {n}")).collect();
        match self.format {
            WeightFormat::Gguf(format) if !others.is_empty() => format!(
                "requantized to {main} ({own} tensors; {} where rows are not a multiple of {})",
                others.join(", "),
                format.block_size()
            ),
            WeightFormat::Dense(_) => format!("converted to {main} ({own} tensors)"),
            _ => format!("requantized to {main} ({own} tensors)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_where_blocks_do_not_divide_the_rows_and_tallies() {
        let r = Conversion::new(WeightFormat::Gguf(parse_format("q2_k").unwrap()));
        let wide = Tensor::randn(0f32, 1.0, (4, 512), &Device::Cpu).unwrap();
        let narrow = Tensor::randn(0f32, 1.0, (4, 576), &Device::Cpu).unwrap();
        let dtype = |l: Linear| match l {
            Linear::Quantized { weight: QMatMul::QTensor(q), .. } => q.dtype(),
            _ => panic!("not quantized"),
        };
        assert_eq!(dtype(r.linear(&wide, None, &Device::Cpu).unwrap()), GgmlDType::Q2K);
        assert_eq!(dtype(r.linear(&narrow, None, &Device::Cpu).unwrap()), GgmlDType::Q4_0);
        assert_eq!(r.describe(), "requantized to q2_k (1 tensors; 1 q4_0 where rows are not a multiple of 256)");
        let odd = Tensor::randn(0f32, 1.0, (4, 48), &Device::Cpu).unwrap();
        assert!(r.linear(&odd, None, &Device::Cpu).is_err());
        assert!(parse_format("q1_x").is_err());
    }

    #[test]
    fn int_formats_need_groups_that_divide_the_rows() {
        let r = Conversion::new(WeightFormat::Int(IntFormat::Int4 { group: 128 }));
        let narrow = Tensor::randn(0f32, 1.0, (4, 576), &Device::Cpu).unwrap();
        let err = r.linear(&narrow, None, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("--group-size"), "{err}");
        let ok = Conversion::new(WeightFormat::Int(IntFormat::Int4 { group: 64 }));
        assert!(matches!(ok.linear(&narrow, None, &Device::Cpu).unwrap(), Linear::Int { .. }));
        assert_eq!(ok.describe(), "requantized to int4:g64 (1 tensors)");
    }
}
