//! The safetensors header, read and validated before candle maps the file: an 8-byte length, a
//! JSON object of `name: {dtype, shape, data_offsets}`, and data covering every tensor, so a
//! truncated download is an input error naming the file (and the fuzz target has a parser to
//! drive).

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::Path;

/// safetensors' own cap on the JSON header (`MAX_HEADER_SIZE` in the safetensors crate).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsEntry {
    pub dtype: String,
    pub shape: Vec<usize>,
    /// Byte range in the data section (after the header).
    pub start: u64,
    pub end: u64,
}

/// Parses a whole safetensors file held in memory (what the fuzz target drives).
pub fn parse_safetensors_header(bytes: &[u8]) -> std::result::Result<HashMap<String, SafetensorsEntry>, String> {
    read_safetensors_header(&mut std::io::Cursor::new(bytes), bytes.len() as u64)
}

/// Reads and validates the header of a safetensors file of `len` bytes: an 8-byte header
/// length, a JSON object of `name: {dtype, shape, data_offsets}`, and data that covers every
/// tensor, each range the size its dtype and shape say (the safetensors format spec).
pub fn read_safetensors_header<R: std::io::Read>(r: &mut R, len: u64) -> std::result::Result<HashMap<String, SafetensorsEntry>, String> {
    let mut n = [0u8; 8];
    r.read_exact(&mut n).map_err(|_| "shorter than a safetensors header".to_string())?;
    let header_len = u64::from_le_bytes(n);
    if header_len > len.saturating_sub(8) {
        return Err("header length runs past the end of the file".into());
    }
    if header_len > MAX_SAFETENSORS_HEADER {
        return Err(format!("header of {header_len} bytes is larger than safetensors allows ({MAX_SAFETENSORS_HEADER})"));
    }
    // Bounded by the file length and the cap just above.
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header).map_err(|_| "header cut short".to_string())?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| "header is not JSON".to_string())?;
    let object = header.as_object().ok_or("header is not a JSON object")?;
    let data_len = len - 8 - header_len;
    let mut out = HashMap::new();
    for (name, t) in object {
        if name == "__metadata__" {
            continue;
        }
        let bad = |why: &str| format!("tensor `{name}`: {why}");
        let dtype = t.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| bad("no dtype"))?.to_string();
        let shape = t
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("shape is not a list of sizes"))?;
        let offsets = t.get("data_offsets").and_then(|o| o.as_array()).ok_or_else(|| bad("no data_offsets"))?;
        let (start, end) = match offsets.as_slice() {
            [a, b] => (a.as_u64().ok_or_else(|| bad("bad data_offsets"))?, b.as_u64().ok_or_else(|| bad("bad data_offsets"))?),
            _ => return Err(bad("data_offsets is not [start, end]")),
        };
        if start > end || end > data_len {
            return Err(format!("tensor `{name}` needs bytes {start}..{end} of {data_len} (truncated)"));
        }
        if let Some(size) = dtype_size(&dtype) {
            let bytes = shape.iter().try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64));
            if bytes != Some(end - start) {
                return Err(bad(&format!("shape {shape:?} of {dtype} does not take the {} bytes of its data_offsets", end - start)));
            }
        }
        out.insert(name.clone(), SafetensorsEntry { dtype, shape, start, end });
    }
    Ok(out)
}

/// Bytes per element of the safetensors dtypes candle reads; others are left to candle.
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Checks a safetensors file's header so a truncated download names the file.
pub(super) fn check_safetensors(path: &Path) -> Result<HashMap<String, SafetensorsEntry>> {
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_safetensors_header(&mut std::io::BufReader::new(file), len).map_err(|why| {
        crate::error::LlmbenchError::invalid(format!(
            "{}: {why}; the file is truncated or corrupt: delete it and download it again",
            path.display()
        ))
    })
}
