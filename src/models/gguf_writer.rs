//! Writing a converted GGUF model: every 2-D weight of the source file in the target type
//! (GGUF block formats through `requantize::quantize_gguf`, with llama.cpp's fallback where
//! blocks do not divide the rows; f32 / f16 / bf16 as such), 1-D tensors (norms, rope
//! factors) kept, and the source's metadata copied (architecture, rope, tokenizer, chat
//! template) with `general.file_type` set to the target's llama.cpp file type. llama.cpp and
//! llmbench both load the result; it is written to a temporary file beside the target and
//! renamed into place, so a failure leaves nothing half-written.

use super::gguf::GgufFile;
use super::requantize::quantize_gguf;
use crate::quant::format::WeightFormat;
use anyhow::{Context, Result};
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};
use std::path::Path;

/// llama.cpp's `llama_ftype` for a file mostly of this type (`general.file_type`).
fn file_type(format: &WeightFormat) -> Option<u32> {
    Some(match format {
        WeightFormat::Dense(DType::F32) => 0,
        WeightFormat::Dense(DType::F16) => 1,
        WeightFormat::Dense(DType::BF16) => 32,
        WeightFormat::Gguf(GgmlDType::Q4_0) => 2,
        WeightFormat::Gguf(GgmlDType::Q4_1) => 3,
        WeightFormat::Gguf(GgmlDType::Q8_0) => 7,
        WeightFormat::Gguf(GgmlDType::Q5_0) => 8,
        WeightFormat::Gguf(GgmlDType::Q5_1) => 9,
        WeightFormat::Gguf(GgmlDType::Q2K) => 10,
        WeightFormat::Gguf(GgmlDType::Q3K) => 12,
        WeightFormat::Gguf(GgmlDType::Q4K) => 15,
        WeightFormat::Gguf(GgmlDType::Q5K) => 17,
        WeightFormat::Gguf(GgmlDType::Q6K) => 18,
        _ => return None,
    })
}

/// Writes `source` converted to `format` at `path`.
pub fn write(source: &GgufFile, format: &WeightFormat, path: &Path) -> Result<()> {
    let Some(ftype) = file_type(format) else {
        crate::bail_input!("--save: {} has no GGUF type; only GGUF block formats and f32/f16/bf16 are written as GGUF", format.name());
    };
    let cpu = Device::Cpu;
    let mut names: Vec<&String> = source.content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let mut reader = std::fs::File::open(&source.path).with_context(|| format!("reading {}", source.path.display()))?;
        let q = source.content.tensor(&mut reader, name, &cpu).with_context(|| format!("{}: tensor `{name}`", source.path.display()))?;
        let converted = if q.shape().rank() == 2 {
            let values = q.dequantize(&cpu)?;
            match format {
                WeightFormat::Gguf(g) => quantize_gguf(*g, &values, &cpu)?,
                WeightFormat::Dense(d) => {
                    let ggml = match d {
                        DType::F16 => GgmlDType::F16,
                        DType::BF16 => GgmlDType::BF16,
                        _ => GgmlDType::F32,
                    };
                    QTensor::quantize(&values, ggml)?
                }
                WeightFormat::Int(_) => unreachable!("file_type() refused it"),
            }
        } else {
            q
        };
        tensors.push((name.clone(), converted));
    }
    // candle's writer aligns to 32 bytes (the GGUF default), so a different alignment key
    // from the source would misdescribe the file.
    let ftype_value = Value::U32(ftype);
    let mut metadata: Vec<(&str, &Value)> = source
        .content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment" && k.as_str() != "general.file_type")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    metadata.push(("general.file_type", &ftype_value));
    metadata.sort_by(|a, b| a.0.cmp(b.0));
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("--save: cannot write in {}", dir.display()))?;
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        candle_core::quantized::gguf_file::write(&mut w, &metadata, &refs).with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::flush(&mut w)?;
    }
    // Readable like any file the user writes (a temporary file starts private).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map_err(|e| anyhow::anyhow!("--save: moving the file to {}: {}", path.display(), e.error))?;
    Ok(())
}
