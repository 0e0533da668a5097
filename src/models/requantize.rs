//! In-memory re-quantization of a model's linear weights to a GGUF format through candle's
//! quantizer (speculative decoding's `quant:FORMAT` draft). A format whose blocks do not divide
//! a weight's rows falls back, per tensor, to the 32-wide format llama.cpp's quantizer picks
//! in the same case (`llama_tensor_get_type` in llama-quant.cpp): SmolLM2's 576-wide rows are
//! not a multiple of the k-quants' 256.

use anyhow::Result;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The formats `quant:` takes, by their llama.cpp names.
pub const FORMATS: [(&str, GgmlDType); 10] = [
    ("q2_k", GgmlDType::Q2K),
    ("q3_k", GgmlDType::Q3K),
    ("q4_0", GgmlDType::Q4_0),
    ("q4_1", GgmlDType::Q4_1),
    ("q4_k", GgmlDType::Q4K),
    ("q5_0", GgmlDType::Q5_0),
    ("q5_1", GgmlDType::Q5_1),
    ("q5_k", GgmlDType::Q5K),
    ("q6_k", GgmlDType::Q6K),
    ("q8_0", GgmlDType::Q8_0),
];

/// The format named `name` (q4_0, q2_k, ...), or an input error listing the choices.
pub fn parse_format(name: &str) -> Result<GgmlDType> {
    FORMATS.iter().find(|(n, _)| *n == name).map(|&(_, f)| f).ok_or_else(|| {
        let names: Vec<&str> = FORMATS.iter().map(|(n, _)| *n).collect();
        crate::error::LlmbenchError::invalid(format!("quant:{name}: unknown format; use one of {}", names.join(", ")))
    })
}

fn name_of(format: GgmlDType) -> &'static str {
    FORMATS.iter().find(|(_, f)| *f == format).map_or("?", |(n, _)| n)
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

/// A target format and a tally of what each tensor became.
pub struct Requantize {
    pub format: GgmlDType,
    tally: Mutex<BTreeMap<&'static str, usize>>,
}

impl Requantize {
    pub fn new(format: GgmlDType) -> Self {
        Self { format, tally: Mutex::new(BTreeMap::new()) }
    }

    /// `weight: [out, in]` quantized onto `device` (the quantizer runs on the CPU).
    pub fn quantize(&self, weight: &Tensor, device: &Device) -> Result<QTensor> {
        let row = weight.dim(1)?;
        let format = if row % self.format.block_size() == 0 { self.format } else { fallback(self.format) };
        if row % format.block_size() != 0 {
            crate::bail_input!(
                "quant:{}: rows of {row} values fit neither its {}-value blocks nor {}'s",
                name_of(self.format),
                self.format.block_size(),
                name_of(format)
            );
        }
        let cpu = weight.to_device(&Device::Cpu)?.to_dtype(candle_core::DType::F32)?;
        let q = QTensor::quantize_onto(&cpu, format, device)?;
        if let Ok(mut tally) = self.tally.lock() {
            *tally.entry(name_of(format)).or_default() += 1;
        }
        Ok(q)
    }

    /// "requantized to q2_k (60 tensors; 151 q4_0 where rows are not a multiple of 256)".
    pub fn describe(&self) -> String {
        let tally = self.tally.lock().map(|t| t.clone()).unwrap_or_default();
        let main = name_of(self.format);
        let own = tally.get(main).copied().unwrap_or(0);
        let others: Vec<String> = tally.iter().filter(|(n, _)| **n != main).map(|(n, c)| format!("{c} {n}")).collect();
        if others.is_empty() {
            format!("requantized to {main} ({own} tensors)")
        } else {
            format!(
                "requantized to {main} ({own} tensors; {} where rows are not a multiple of {})",
                others.join(", "),
                self.format.block_size()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_back_where_blocks_do_not_divide_the_rows_and_tallies() {
        let r = Requantize::new(parse_format("q2_k").unwrap());
        let wide = Tensor::randn(0f32, 1.0, (4, 512), &Device::Cpu).unwrap();
        let narrow = Tensor::randn(0f32, 1.0, (4, 576), &Device::Cpu).unwrap();
        assert_eq!(r.quantize(&wide, &Device::Cpu).unwrap().dtype(), GgmlDType::Q2K);
        assert_eq!(r.quantize(&narrow, &Device::Cpu).unwrap().dtype(), GgmlDType::Q4_0);
        assert_eq!(r.describe(), "requantized to q2_k (1 tensors; 1 q4_0 where rows are not a multiple of 256)");
        let odd = Tensor::randn(0f32, 1.0, (4, 48), &Device::Cpu).unwrap();
        assert!(r.quantize(&odd, &Device::Cpu).is_err());
        assert!(parse_format("q1_x").is_err());
    }
}
