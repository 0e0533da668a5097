//! GGUF Q8_0 / Q4_0 / Q4_1 rows split into codes and scales: the layout the CUDA kernels read
//! (`kernels/block_dot.cuh`). In the file a block is its f16 scale (and Q4_1's f16 minimum)
//! followed by its codes, 18, 20 or 34 bytes, so no block starts 16-byte aligned; split, every
//! row's codes are whole 16-byte chunks (one load a lane) and the scales an array beside them.
//! Nothing is converted: the codes and f16 scales are the file's bytes, reordered.

use super::cpu_matmul::{BlockFormat, BLOCK};

/// One matrix's codes (`[n][k]` bytes for Q8_0, `[n][k / 2]` for Q4_x, nibble order as in the
/// file) and scales (`[n][k / 32]` f16 d, or (d, m) f16 pairs for Q4_1), little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitBlocks {
    pub codes: Vec<u8>,
    pub scales: Vec<u8>,
}

/// Splits the GGUF bytes of an `[n, k]` matrix; an error names what does not fit.
pub fn split_blocks(format: BlockFormat, bytes: &[u8], n: usize, k: usize) -> Result<SplitBlocks, String> {
    if k % BLOCK != 0 {
        return Err(format!("rows of {k} values are not whole {BLOCK}-value blocks"));
    }
    let block_bytes = format.block_bytes();
    let blocks = n * (k / BLOCK);
    if bytes.len() != blocks * block_bytes {
        return Err(format!("{} bytes for {n} x {k} {format:?} values (expected {})", bytes.len(), blocks * block_bytes));
    }
    let scale_bytes = if format == BlockFormat::Q4_1 { 4 } else { 2 };
    let mut codes = Vec::with_capacity(blocks * (block_bytes - scale_bytes));
    let mut scales = Vec::with_capacity(blocks * scale_bytes);
    for block in bytes.chunks_exact(block_bytes) {
        scales.extend_from_slice(&block[..scale_bytes]);
        codes.extend_from_slice(&block[scale_bytes..]);
    }
    Ok(SplitBlocks { codes, scales })
}

#[cfg(test)]
mod tests {
    use super::super::cpu_matmul::dequantize_row;
    use super::super::test_values::pseudo;
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn f16(b: &[u8]) -> f32 {
        half::f16::from_le_bytes([b[0], b[1]]).to_f32()
    }

    /// Row `r` read back from the split layout the way block_dot.cuh reads it.
    fn dequantize_split(format: BlockFormat, split: &SplitBlocks, k: usize, r: usize) -> Vec<f32> {
        let blocks = k / BLOCK;
        let code_bytes = if format == BlockFormat::Q8_0 { BLOCK } else { BLOCK / 2 };
        let scale_bytes = if format == BlockFormat::Q4_1 { 4 } else { 2 };
        (0..blocks)
            .flat_map(|b| {
                let codes = &split.codes[(r * blocks + b) * code_bytes..][..code_bytes];
                let scale = &split.scales[(r * blocks + b) * scale_bytes..][..scale_bytes];
                let d = f16(scale);
                (0..BLOCK).map(move |j| match format {
                    BlockFormat::Q8_0 => d * codes[j] as i8 as f32,
                    BlockFormat::Q4_0 | BlockFormat::Q4_1 => {
                        let q = if j < 16 { codes[j] & 15 } else { codes[j - 16] >> 4 } as f32;
                        if format == BlockFormat::Q4_0 { d * (q - 8.0) } else { d * q + f16(&scale[2..]) }
                    }
                })
            })
            .collect()
    }

    #[test]
    fn split_rows_hold_the_values_of_the_gguf_rows() {
        let (n, k) = (5, 96);
        let w = Tensor::from_vec(pseudo(n * k, 11), (n, k), &Device::Cpu).unwrap();
        for (dtype, format) in [(GgmlDType::Q8_0, BlockFormat::Q8_0), (GgmlDType::Q4_0, BlockFormat::Q4_0), (GgmlDType::Q4_1, BlockFormat::Q4_1)] {
            let bytes = QTensor::quantize(&w, dtype).unwrap().data().unwrap().to_vec();
            let split = split_blocks(format, &bytes, n, k).unwrap();
            assert_eq!(split.codes.len() + split.scales.len(), bytes.len(), "{format:?}: bytes kept");
            let row_bytes = bytes.len() / n;
            for r in 0..n {
                let mut want = vec![0f32; k];
                dequantize_row(format, &bytes[r * row_bytes..(r + 1) * row_bytes], &mut want);
                assert_eq!(dequantize_split(format, &split, k, r), want, "{format:?} row {r}");
            }
        }
    }

    #[test]
    fn mismatched_sizes_are_refused() {
        assert!(split_blocks(BlockFormat::Q4_1, &[0u8; 40], 1, 48).unwrap_err().contains("whole 32-value blocks"));
        assert!(split_blocks(BlockFormat::Q4_1, &[0u8; 39], 1, 64).unwrap_err().contains("39 bytes"));
    }
}
