//! A bounded reader for the GGUF header (magic, version, counts, metadata, tensor infos),
//! following the GGUF spec (ggml `docs/gguf.md`) and the checks of llama.cpp's `gguf.cpp`.
//! Every count and length read from the file is checked against the bytes that actually
//! remain before anything is allocated, all offset arithmetic is checked, and each tensor
//! info is validated (dims, dtype, block size, data range inside the file). The result is
//! candle's `Content`, so tensor data is still read with `Content::tensor`.
//!
//! Why our own: candle's `Content::read` caps counts at 2^30 but then divides by a
//! `general.alignment` of 0 (a panic), multiplies dims without checking, accepts 0-d and
//! zero-sized tensors, duplicate names, and tensor data that lies past the end of the file.

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;
use std::collections::HashMap;
use std::io::Read;

/// "GGUF" as the first four bytes (a little-endian u32 0x46554747).
const MAGIC: [u8; 4] = *b"GGUF";
/// GGML_MAX_DIMS in ggml.h.
const MAX_DIMS: u32 = 4;
/// The spec allows arrays of arrays; llama.cpp writes none. A small bound keeps recursion shallow.
const MAX_ARRAY_DEPTH: usize = 4;
/// Metadata values held in memory, over all arrays. Each `Value` takes 32 bytes however small
/// it is on disk (a u8 takes 1), so this caps memory at ~512 MiB whatever the file claims. Real
/// vocabularies are far under it: Llama 3 stores ~540k tokens, merges and types together.
const MAX_METADATA_VALUES: u64 = 1 << 24;
/// ggml keeps element counts in an int64 (`ggml_nelements`).
const MAX_ELEMENTS: u64 = i64::MAX as u64;
/// The alignment when `general.alignment` is absent (GGUF spec: GGUF_DEFAULT_ALIGNMENT).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// What is wrong with a GGUF header, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufError {
    /// Byte offset in the file where the bad field starts (or ends, for truncation).
    pub offset: u64,
    pub why: String,
}

impl std::fmt::Display for GgufError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (at byte {})", self.why, self.offset)
    }
}

impl std::error::Error for GgufError {}

type Result<T> = std::result::Result<T, GgufError>;

/// Parses a whole GGUF file held in memory (what the fuzz targets drive).
pub fn parse_header(bytes: &[u8]) -> Result<Content> {
    read_content(&mut std::io::Cursor::new(bytes), bytes.len() as u64)
}

/// Reads the header of a GGUF file of `file_len` bytes from its start. `reader` must be at
/// offset 0; only the header is read, tensor data stays where it is.
pub fn read_content<R: Read>(reader: &mut R, file_len: u64) -> Result<Content> {
    let mut r = Bounded { inner: reader, pos: 0, len: file_len, v1: false, values: 0 };
    let magic = r.array::<4>("magic")?;
    if magic != MAGIC {
        if magic == [b'F', b'U', b'G', b'G'] {
            return r.fail_at(0, "a big-endian GGUF file; llmbench reads little-endian GGUF only");
        }
        return r.fail_at(0, format!("starts with {magic:02x?}, not the GGUF magic \"GGUF\""));
    }
    let version = r.u32("version")?;
    let magic = match version {
        1 => VersionedMagic::GgufV1,
        2 => VersionedMagic::GgufV2,
        3 => VersionedMagic::GgufV3,
        v => return r.fail_at(4, format!("GGUF version {v}; llmbench reads versions 1 to 3")),
    };
    r.v1 = version == 1;
    let tensor_count = r.length("tensor count")?;
    let kv_count = r.length("metadata count")?;
    // Smallest possible entries: a kv is a key length, a value type and a 1-byte value; a
    // tensor info is a name length, n_dims, one dim, a dtype and an offset.
    let prefix = r.prefix_len();
    let min_kv = prefix + 4 + 1;
    let min_tensor = prefix + 4 + r.dim_len() + 4 + 8;
    let needed = kv_count.checked_mul(min_kv).zip(tensor_count.checked_mul(min_tensor)).and_then(|(a, b)| a.checked_add(b));
    if needed.is_none_or(|n| n > r.remaining()) {
        return r.fail(format!(
            "header claims {tensor_count} tensors and {kv_count} metadata entries, more than the {} bytes that follow can hold",
            r.remaining()
        ));
    }

    let mut metadata = HashMap::new();
    for _ in 0..kv_count {
        let at = r.pos;
        let key = r.string("metadata key")?;
        let ty = r.u32("value type")?;
        let value = r.value(ty, 0, &key)?;
        if metadata.insert(key.clone(), value).is_some() {
            return r.fail_at(at, format!("metadata key `{key}` appears twice"));
        }
    }
    let alignment = alignment(&metadata).map_err(|why| GgufError { offset: r.pos, why })?;

    let mut infos: Vec<(String, TensorInfo, u64)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for _ in 0..tensor_count {
        let at = r.pos;
        let name = r.string("tensor name")?;
        if !names.insert(name.clone()) {
            return r.fail_at(at, format!("tensor `{name}` appears twice"));
        }
        let (info, bytes) = r.tensor_info(&name, alignment)?;
        infos.push((name, info, bytes));
    }
    let header_end = r.pos;
    let tensor_data_offset = header_end
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| GgufError { offset: header_end, why: "tensor data offset overflows".into() })?;
    for (name, info, bytes) in &infos {
        let end = tensor_data_offset.checked_add(info.offset).and_then(|start| start.checked_add(*bytes));
        if end.is_none_or(|end| end > file_len) {
            return r.fail_at(
                header_end,
                format!(
                    "tensor `{name}` needs {bytes} bytes at offset {} past the data start {tensor_data_offset}, but the file holds {file_len} bytes (truncated)",
                    info.offset
                ),
            );
        }
    }
    let tensor_infos = infos.into_iter().map(|(name, info, _)| (name, info)).collect();
    Ok(Content { magic, metadata, tensor_infos, tensor_data_offset })
}

/// `general.alignment`: a non-zero power of two (the spec says u32; candle also takes other
/// integer types, and so do we).
fn alignment(metadata: &HashMap<String, Value>) -> std::result::Result<u64, String> {
    let Some(v) = metadata.get("general.alignment") else { return Ok(DEFAULT_ALIGNMENT) };
    let n = match v {
        Value::U8(n) => u64::from(*n),
        Value::U16(n) => u64::from(*n),
        Value::U32(n) => u64::from(*n),
        Value::U64(n) => *n,
        Value::I8(n) => u64::try_from(*n).unwrap_or(0),
        Value::I16(n) => u64::try_from(*n).unwrap_or(0),
        Value::I32(n) => u64::try_from(*n).unwrap_or(0),
        Value::I64(n) => u64::try_from(*n).unwrap_or(0),
        other => return Err(format!("general.alignment must be an integer, found a {:?}", other.value_type())),
    };
    if !n.is_power_of_two() {
        return Err(format!("general.alignment {n} is not a non-zero power of two"));
    }
    Ok(n)
}

/// The GGUF (ggml) type id of a tensor, for the types candle can read. Q8_1 and Q8_K are
/// intermediate formats llama.cpp never stores, and candle's reader refuses them.
fn dtype(id: u32) -> std::result::Result<GgmlDType, String> {
    Ok(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        30 => GgmlDType::BF16,
        9 | 15 => return Err(format!("tensor type {id} (Q8_1/Q8_K) cannot be read by candle")),
        _ => return Err(format!("unknown tensor type {id}")),
    })
}

/// A reader that knows how many bytes the file has left and refuses to read past them.
struct Bounded<'r, R> {
    inner: &'r mut R,
    /// Bytes consumed so far; never more than `len`.
    pos: u64,
    len: u64,
    /// Version 1 stores lengths and dims as u32, later versions as u64.
    v1: bool,
    /// Metadata values decoded so far (see MAX_METADATA_VALUES).
    values: u64,
}

impl<R: Read> Bounded<'_, R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }
    fn fail<T>(&self, why: impl Into<String>) -> Result<T> {
        self.fail_at(self.pos, why)
    }
    fn fail_at<T>(&self, offset: u64, why: impl Into<String>) -> Result<T> {
        Err(GgufError { offset, why: why.into() })
    }
    fn prefix_len(&self) -> u64 {
        if self.v1 {
            4
        } else {
            8
        }
    }
    fn dim_len(&self) -> u64 {
        self.prefix_len()
    }

    /// Checks that `n` more bytes exist before reading them.
    fn need(&self, n: u64, what: &str) -> Result<()> {
        if n > self.remaining() {
            return self.fail(format!("{what} needs {n} bytes but only {} remain (truncated)", self.remaining()));
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let n = buf.len() as u64;
        self.need(n, what)?;
        self.inner.read_exact(buf).map_err(|e| GgufError { offset: self.pos, why: format!("reading {what}: {e}") })?;
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array::<4>(what).map(u32::from_le_bytes)
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array::<8>(what).map(u64::from_le_bytes)
    }

    /// A count or string length: u32 in version 1, u64 after.
    fn length(&mut self, what: &str) -> Result<u64> {
        if self.v1 {
            self.u32(what).map(u64::from)
        } else {
            self.u64(what)
        }
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.length(what)?;
        self.need(len, what)?;
        // `need` bounded it by the file length, so the allocation is one the file pays for.
        let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| GgufError { offset: self.pos, why: format!("{what} too long") })?];
        self.fill(&mut bytes, what)?;
        // As candle's reader does: writers sometimes NUL-terminate, and some strings are not UTF-8.
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn count_value(&mut self, n: u64, key: &str) -> Result<()> {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_METADATA_VALUES {
            return self.fail(format!("metadata `{key}` brings the values held past {MAX_METADATA_VALUES}, more than any model needs"));
        }
        Ok(())
    }

    /// Bytes a value of type `ty` takes at least on disk, or None for an unknown type.
    fn min_size(&self, ty: u32) -> Option<u64> {
        Some(match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => self.prefix_len(),
            9 => 4 + self.prefix_len(),
            _ => return None,
        })
    }

    fn value(&mut self, ty: u32, depth: usize, key: &str) -> Result<Value> {
        self.count_value(1, key)?;
        Ok(match ty {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(i8::from_le_bytes(self.array::<1>(key)?)),
            2 => Value::U16(u16::from_le_bytes(self.array::<2>(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array::<2>(key)?)),
            4 => Value::U32(u32::from_le_bytes(self.array::<4>(key)?)),
            5 => Value::I32(i32::from_le_bytes(self.array::<4>(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array::<4>(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return self.fail(format!("metadata `{key}`: bool byte {b} is neither 0 nor 1")),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return self.fail(format!("metadata `{key}`: arrays nested deeper than {MAX_ARRAY_DEPTH}"));
                }
                let elem = self.u32(key)?;
                let Some(min) = self.min_size(elem) else {
                    return self.fail(format!("metadata `{key}`: unknown array element type {elem}"));
                };
                let len = self.length(key)?;
                if len.checked_mul(min).is_none_or(|n| n > self.remaining()) {
                    return self.fail(format!(
                        "metadata `{key}`: array of {len} elements cannot fit in the {} bytes that remain",
                        self.remaining()
                    ));
                }
                // Bounded by the bytes that remain (checked just above), so the file pays for it.
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.value(elem, depth + 1, key)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(u64::from_le_bytes(self.array::<8>(key)?)),
            11 => Value::I64(i64::from_le_bytes(self.array::<8>(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array::<8>(key)?)),
            other => return self.fail(format!("metadata `{key}`: unknown value type {other}")),
        })
    }

    /// One tensor info after its name; returns it with its data size in bytes.
    fn tensor_info(&mut self, name: &str, alignment: u64) -> Result<(TensorInfo, u64)> {
        let at = self.pos;
        let n_dims = self.u32(name)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return self.fail_at(at, format!("tensor `{name}` has {n_dims} dimensions; GGUF tensors have 1 to {MAX_DIMS}"));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(self.length(name)?);
        }
        if ne.contains(&0) {
            return self.fail_at(at, format!("tensor `{name}` has a zero dimension {ne:?}"));
        }
        let elems = ne.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS);
        let Some(elems) = elems else {
            return self.fail_at(at, format!("tensor `{name}`: dimensions {ne:?} hold more elements than ggml can count"));
        };
        let type_at = self.pos;
        let ty = self.u32(name)?;
        let ggml_dtype = dtype(ty).map_err(|why| GgufError { offset: type_at, why: format!("tensor `{name}`: {why}") })?;
        // ggml quantizes rows: the innermost dimension (ne[0]) must be whole blocks.
        let block = ggml_dtype.block_size() as u64;
        if ne[0] % block != 0 {
            return self.fail_at(
                at,
                format!("tensor `{name}`: row length {} is not a multiple of the {ggml_dtype:?} block size {block}", ne[0]),
            );
        }
        let bytes = (elems / block).checked_mul(ggml_dtype.type_size() as u64);
        let Some(bytes) = bytes.filter(|&b| usize::try_from(b).is_ok()) else {
            return self.fail_at(at, format!("tensor `{name}`: size in bytes overflows"));
        };
        let offset_at = self.pos;
        let offset = self.u64(name)?;
        if offset % alignment != 0 {
            return self.fail_at(offset_at, format!("tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"));
        }
        // GGUF lists ne[0] (innermost) first; candle's shapes are outermost first.
        let dims = ne.iter().rev().map(|&d| d as usize).collect::<Vec<_>>();
        Ok((TensorInfo { ggml_dtype, shape: candle_core::Shape::from(dims), offset }, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{gguf_file, QTensor};
    use candle_core::{Device, Tensor};

    /// A GGUF v3 header by hand: (key, value type, value bytes) and (name, ne, dtype, offset).
    fn header(tensor_count: u64, kvs: &[(&str, u32, Vec<u8>)], tensors: &[(&str, &[u64], u32, u64)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(tensor_count.to_le_bytes());
        b.extend((kvs.len() as u64).to_le_bytes());
        let s = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        for (k, ty, v) in kvs {
            s(&mut b, k);
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        for (name, ne, ty, off) in tensors {
            s(&mut b, name);
            b.extend((ne.len() as u32).to_le_bytes());
            ne.iter().for_each(|d| b.extend(d.to_le_bytes()));
            b.extend(ty.to_le_bytes());
            b.extend(off.to_le_bytes());
        }
        b
    }

    fn why(bytes: &[u8]) -> String {
        parse_header(bytes).map(|_| ()).unwrap_err().why
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let start = std::time::Instant::now();
        assert!(why(&header(1 << 40, &[], &[])).contains("1099511627776 tensors"));
        assert!(why(&header(u64::MAX, &[], &[])).contains("tensors"));
        // A string claiming 2^60 bytes, as a key and as a value.
        let mut b = header(0, &[], &[]);
        b[16..24].copy_from_slice(&1u64.to_le_bytes());
        b.extend((1u64 << 60).to_le_bytes());
        b.extend([0u8; 16]);
        assert!(why(&b).contains("needs 1152921504606846976 bytes"), "{}", why(&b));
        let v = [8u32.to_le_bytes().to_vec(), (1u64 << 60).to_le_bytes().to_vec()].concat();
        assert!(why(&header(0, &[("k", 9, v)], &[])).contains("array of 1152921504606846976"));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn bad_alignment_dims_and_ranges_are_refused() {
        let align = |n: u32| ("general.alignment", 4, n.to_le_bytes().to_vec());
        assert!(why(&header(0, &[align(0)], &[])).contains("power of two"));
        assert!(why(&header(0, &[align(24)], &[])).contains("power of two"));
        // Zeros after the header: room for the data of the small cases.
        let one = |ne: &'static [u64], ty: u32, off: u64| [header(1, &[], &[("t", ne, ty, off)]), vec![0; 64]].concat();
        assert!(why(&one(&[], 0, 0)).contains("0 dimensions"));
        assert!(why(&one(&[1, 1, 1, 1, 1], 0, 0)).contains("5 dimensions"));
        assert!(why(&one(&[4, 0], 0, 0)).contains("zero dimension"));
        assert!(why(&one(&[1 << 32, 1 << 32], 0, 0)).contains("more elements"));
        assert!(why(&one(&[16, 2], 2, 0)).contains("block size 32"));
        assert!(why(&one(&[4], 99, 0)).contains("unknown tensor type 99"));
        assert!(why(&one(&[4], 0, 7)).contains("alignment"));
        assert!(why(&one(&[4], 0, u64::MAX - 31)).contains("truncated"));
        assert!(why(&one(&[1 << 40], 0, 0)).contains("truncated"));
        let dup = header(2, &[], &[("t", &[4], 0, 0), ("t", &[4], 0, 32)]);
        assert!(why(&dup).contains("appears twice"));
        let nested = (0..6).fold(vec![], |inner, _| [9u32.to_le_bytes().to_vec(), 1u64.to_le_bytes().to_vec(), inner].concat());
        let nested = [nested, 4u32.to_le_bytes().to_vec(), 0u64.to_le_bytes().to_vec()].concat();
        assert!(why(&header(0, &[("k", 9, nested)], &[])).contains("nested deeper"));
        assert!(why(b"GGU").contains("truncated"));
        assert!(why(b"FUGG\x03\0\0\0").contains("big-endian"));
    }

    /// A file written by candle's own writer reads back exactly as candle's reader sees it.
    #[test]
    fn matches_candles_reader_on_a_valid_file() {
        let t = Tensor::arange(0f32, 64., &Device::Cpu).unwrap().reshape((2, 32)).unwrap();
        let f = QTensor::quantize(&t, GgmlDType::F32).unwrap();
        let q = QTensor::quantize(&t, GgmlDType::Q4_0).unwrap();
        let tokens = Value::Array(vec![Value::String("a".into()), Value::String("b".into())]);
        let mut bytes = std::io::Cursor::new(Vec::new());
        gguf_file::write(
            &mut bytes,
            &[("general.architecture", &Value::String("llama".into())), ("tokenizer.ggml.tokens", &tokens), ("x", &Value::F64(0.5))],
            &[("f", &f), ("q", &q)],
        )
        .unwrap();
        let bytes = bytes.into_inner();
        let ours = parse_header(&bytes).unwrap();
        let theirs = gguf_file::Content::read(&mut std::io::Cursor::new(&bytes)).unwrap();
        assert_same(&ours, &theirs);
        let read = ours.tensor(&mut std::io::Cursor::new(&bytes), "q", &Device::Cpu).unwrap();
        assert_eq!(read.shape().dims(), &[2, 32]);
        // Cut anywhere before the end of the last tensor's data, it is refused, never panics.
        let data_end = ours
            .tensor_infos
            .values()
            .map(|t| t.offset as usize + t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size())
            .max()
            .unwrap();
        let data_end = ours.tensor_data_offset as usize + data_end;
        assert!(parse_header(&bytes[..data_end]).is_ok());
        for cut in 0..data_end {
            assert!(parse_header(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// Field-by-field equality (candle's types implement Debug but not PartialEq).
    pub(crate) fn assert_same(ours: &Content, theirs: &Content) {
        assert_eq!(ours.magic, theirs.magic);
        assert_eq!(ours.tensor_data_offset, theirs.tensor_data_offset);
        let mut keys: Vec<_> = ours.metadata.keys().collect();
        keys.sort();
        let mut their_keys: Vec<_> = theirs.metadata.keys().collect();
        their_keys.sort();
        assert_eq!(keys, their_keys);
        for k in keys {
            assert_eq!(format!("{:?}", ours.metadata[k]), format!("{:?}", theirs.metadata[k]), "{k}");
        }
        assert_eq!(ours.tensor_infos.len(), theirs.tensor_infos.len());
        for (name, t) in &ours.tensor_infos {
            let u = &theirs.tensor_infos[name];
            assert_eq!((t.ggml_dtype, t.shape.dims(), t.offset), (u.ggml_dtype, u.shape.dims(), u.offset), "{name}");
        }
    }
}
