//! The small per-row operations of a transformer block on plain f32 buffers, for the CPU decode
//! path (`Llama::forward_rows_cpu`): RMSNorm, rotary embedding, SwiGLU's `silu(gate) * up`, the
//! residual add, and the linear layers through `Linear::forward_rows`. Each works row by row,
//! so a row's result never depends on how many rows a call carries (speculative verification
//! equals decoding bit for bit). One buffer set per forward pass is reused by every layer,
//! instead of a fresh tensor per candle op (~25 per layer per token).

use super::layers::{FusedLinear, Linear};
use candle_core::{Device, Result, Storage, Tensor};

/// RMSNorm of each `weight.len()`-wide row of `x` into `out`, as candle's `rms_norm` computes
/// it: `x / sqrt(mean(x^2) + eps) * weight`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    let h = weight.len();
    out.resize(x.len(), 0.0);
    for (row, dst) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let sum2: f32 = row.iter().map(|v| v * v).sum();
        let m = (sum2 / h as f32 + eps).sqrt();
        dst.iter_mut().zip(row).zip(weight).for_each(|((o, &v), &w)| *o = v / m * w);
    }
}

/// Rotates `heads` heads of `d` values, at `x[row * row_stride + head * d..]`, for rows at
/// positions `start..`: pairs `(2i, 2i + 1)` when `interleaved` (GGUF), `(i, i + d/2)` otherwise
/// (Hugging Face), by the angles in the `[positions, d/2]` tables.
#[allow(clippy::too_many_arguments)]
pub fn rope(x: &mut [f32], row_stride: usize, first_head: usize, heads: usize, d: usize, start: usize, (cos, sin): (&[f32], &[f32]), interleaved: bool) {
    let half = d / 2;
    let rows = x.len() / row_stride;
    for row in 0..rows {
        let (c, s) = (&cos[(start + row) * half..][..half], &sin[(start + row) * half..][..half]);
        for head in first_head..first_head + heads {
            let v = &mut x[row * row_stride + head * d..][..d];
            for i in 0..half {
                let (a, b) = if interleaved { (2 * i, 2 * i + 1) } else { (i, i + half) };
                let (x0, x1) = (v[a], v[b]);
                v[a] = x0 * c[i] - x1 * s[i];
                v[b] = x0 * s[i] + x1 * c[i];
            }
        }
    }
}

/// `silu(gate) * up` for rows laid out `[gate | up]`, each `2 * n` wide, into `out` (`n` wide).
pub fn silu_mul(gate_up: &[f32], n: usize, out: &mut Vec<f32>) {
    out.resize(gate_up.len() / 2, 0.0);
    for (row, dst) in gate_up.chunks_exact(2 * n).zip(out.chunks_exact_mut(n)) {
        let (gate, up) = row.split_at(n);
        dst.iter_mut().zip(gate).zip(up).for_each(|((o, &g), &u)| *o = g / (1.0 + (-g).exp()) * u);
    }
}

/// `x += y`.
pub fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, &b)| *a += b);
}

/// A CPU f32 tensor's values (copied when it is not contiguous).
pub fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Runs `f` on a contiguous CPU f32 tensor's values without copying them.
pub fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (guard, layout) = t.storage_and_layout();
    let Storage::Cpu(s) = &*guard else { candle_core::bail!("expected a CPU tensor") };
    let all = &s.as_slice::<f32>()?[layout.start_offset()..layout.start_offset() + t.elem_count()];
    Ok(f(all))
}

impl Linear {
    /// `y = x W^T (+ b)` for the rows of `x` (each `in_dim` wide) into `out`: our kernels for
    /// the GGUF formats they cover, candle's matmul for the rest.
    pub fn forward_rows(&self, x: &[f32], in_dim: usize, out: &mut Vec<f32>) -> Result<()> {
        if let Some(n) = self.forward_rows_quantized(x, in_dim, out)? {
            debug_assert_eq!(out.len(), x.len() / in_dim * n);
            return Ok(());
        }
        let t = Tensor::from_slice(x, (x.len() / in_dim, in_dim), &Device::Cpu)?;
        let y = self.forward(&t)?;
        out.clear();
        with_slice(&y, |v| out.extend_from_slice(v))
    }
}

impl FusedLinear {
    /// The parts' outputs side by side in each row (`[q | k | v]`, `[gate | up]`).
    pub fn forward_rows(&self, x: &[f32], in_dim: usize, out: &mut Vec<f32>) -> Result<()> {
        match self {
            Self::Fused { linear, .. } => linear.forward_rows(x, in_dim, out),
            Self::Separate(parts) => {
                let rows = x.len() / in_dim;
                let outputs = parts
                    .iter()
                    .map(|p| {
                        let mut o = Vec::new();
                        p.forward_rows(x, in_dim, &mut o)?;
                        Ok(o)
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.clear();
                for r in 0..rows {
                    for o in &outputs {
                        let n = o.len() / rows;
                        out.extend_from_slice(&o[r * n..(r + 1) * n]);
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (3, 16), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., 16, &dev).unwrap();
        let want = values(&candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap()).unwrap();
        let mut got = Vec::new();
        rms_norm(&values(&x).unwrap(), &values(&w).unwrap(), 1e-5, &mut got);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "{got:?} vs {want:?}");
    }

    #[test]
    fn rope_matches_candle_in_both_layouts() {
        let dev = Device::Cpu;
        let (t, h, d, start) = (3, 2, 8, 5);
        let x = Tensor::randn(0f32, 1., (1, h, t, d), &dev).unwrap();
        let angles: Vec<f32> = (0..16 * d / 2).map(|i| i as f32 * 0.37).collect();
        let cos = Tensor::from_vec(angles.iter().map(|a| a.cos()).collect::<Vec<_>>(), (16, d / 2), &dev).unwrap();
        let sin = Tensor::from_vec(angles.iter().map(|a| a.sin()).collect::<Vec<_>>(), (16, d / 2), &dev).unwrap();
        let (c, s) = (cos.narrow(0, start, t).unwrap(), sin.narrow(0, start, t).unwrap());
        for interleaved in [true, false] {
            let want = if interleaved { candle_nn::rotary_emb::rope_i(&x, &c, &s) } else { candle_nn::rotary_emb::rope(&x, &c, &s) };
            let want = values(&want.unwrap().transpose(1, 2).unwrap()).unwrap();
            // Rows of [h * d] as the decode path lays them out.
            let mut got = values(&x.transpose(1, 2).unwrap()).unwrap();
            rope(&mut got, h * d, 0, h, d, start, (&values(&cos).unwrap(), &values(&sin).unwrap()), interleaved);
            assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "interleaved {interleaved}");
        }
    }

    #[test]
    fn silu_mul_is_gate_times_sigmoid_times_up() {
        let mut out = Vec::new();
        silu_mul(&[0.0, 2.0, 3.0, -1.0], 2, &mut out);
        let silu2 = 2.0 / (1.0 + (-2.0f32).exp());
        assert_eq!(out[0], 0.0);
        assert!((out[1] + silu2).abs() < 1e-6);
    }
}
