//! One projection under activation sparsity (TEAL, LaRoSA): which entries of its input are
//! kept, and the weights the sparse product reads.
//!
//! - TEAL: entries with |x| under the calibrated threshold are zeroed.
//! - LaRoSA on a hidden-size input (q/k/v, gate/up): `z = Q^T x` with `Q` the eigenvectors of
//!   the input's calibration second moment, the top k = round((1 - S) n) entries of |z| kept,
//!   and the product taken with the folded weights `W' = W Q` (so `W' z = W x` when nothing is
//!   dropped). The paper also folds the input rotation upstream (into the residual stream,
//!   with adapters between layers); here `Q^T x` is a dense n x n product at run time, so its
//!   cost is in every measured LaRoSA time. An upstream fold would still need one n x n
//!   product per layer boundary with per-layer rotations, so this is at most a factor two
//!   away from the paper's overhead, never hidden.
//! - LaRoSA on the o and down inputs: top-k unrotated (rotating down's 1536-wide input would
//!   cost 4x the projection itself).
//!
//! Decoding (one row) runs the sparse product on column-major weights (`sparse::gemv`): f32
//! where the model's weights are dense, Q8_0 columns where they are quantized (GGUF or ours).
//! Several rows (prefill, teacher forcing) zero the same entries and run the model's own dense
//! product on the result (un-rotated for LaRoSA: `Q z`), so perplexity measures the method,
//! and a sweep's speed difference is the decode kernel's.

use super::layers::{FusedLinear, Linear};
use crate::sparse::gemv::ColumnMajor;
use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Result, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};

/// Which input entries survive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Select {
    /// Entries with |x| >= the threshold (TEAL).
    Threshold(f32),
    /// The k entries of largest |x| (LaRoSA); ties keep the earlier entry.
    TopK(usize),
}

/// LaRoSA's rotation of one input: `Q^T` and `Q` as column-major products.
struct Rotation {
    into: ColumnMajor,
    back: ColumnMajor,
}

pub struct SparseProjection {
    select: Select,
    rotation: Option<Rotation>,
    /// The weights the sparse product reads (`W Q` under a rotation), column-major.
    columns: ColumnMajor,
    bias: Option<Vec<f32>>,
    in_dim: usize,
    out_dim: usize,
    /// Entries kept and seen, over every row since load (the share really zeroed).
    kept: AtomicU64,
    seen: AtomicU64,
}

/// A projection's weights as dense f32 rows `[out, in]` (dequantized where stored quantized),
/// its bias, and whether the model stores it quantized (its sparse copy is then Q8_0).
pub struct DenseWeights {
    pub rows: Vec<f32>,
    pub out_dim: usize,
    pub bias: Option<Vec<f32>>,
    pub quantized: bool,
}

impl DenseWeights {
    pub fn of(linear: &Linear) -> Result<Self> {
        let bias = |b: Option<&Tensor>| -> Result<Option<Vec<f32>>> { b.map(|b| b.to_dtype(DType::F32)?.to_vec1()).transpose() };
        let (w, bias, quantized) = match linear {
            Linear::Dense(l) => (l.weight().to_dtype(DType::F32)?, bias(l.bias())?, false),
            Linear::Quantized { weight: QMatMul::QTensor(q), bias: b } => (q.dequantize(&Device::Cpu)?, bias(b.as_ref())?, true),
            Linear::Quantized { weight: QMatMul::Tensor(t) | QMatMul::TensorF16(t), bias: b } => (t.to_dtype(DType::F32)?, bias(b.as_ref())?, false),
            Linear::Int { weights, bias: b, .. } => (Tensor::from_vec(weights.dequantize(), weights.dims(), &Device::Cpu)?, bias(b.as_ref())?, true),
        };
        let out_dim = w.dim(0)?;
        Ok(Self { rows: w.to_device(&Device::Cpu)?.flatten_all()?.to_vec1()?, out_dim, bias, quantized })
    }

    /// A fused projection's parts stacked (`[q; k; v]` rows).
    pub fn of_fused(fused: &FusedLinear) -> Result<Self> {
        match fused {
            FusedLinear::Fused { linear, .. } => Self::of(linear),
            FusedLinear::Separate(parts) => {
                let mut all = Self { rows: Vec::new(), out_dim: 0, bias: Some(Vec::new()), quantized: false };
                for p in parts {
                    let part = Self::of(p)?;
                    all.rows.extend(part.rows);
                    all.out_dim += part.out_dim;
                    all.quantized |= part.quantized;
                    all.bias = match (all.bias, part.bias) {
                        (Some(mut b), Some(more)) => {
                            b.extend(more);
                            Some(b)
                        }
                        _ => None,
                    };
                }
                all.bias = all.bias.filter(|b| !b.is_empty());
                Ok(all)
            }
        }
    }
}

impl SparseProjection {
    /// From the projection's weights; `rotation` is LaRoSA's `Q` (`[in, in]` row-major).
    /// Quantized weights get Q8_0 columns, dense ones f32.
    pub fn new(dense: DenseWeights, select: Select, rotation: Option<&[f32]>) -> anyhow::Result<Self> {
        let DenseWeights { rows, out_dim, bias, quantized } = dense;
        let weights = rows.as_slice();
        let in_dim = weights.len() / out_dim;
        let columns_of = |rows: &[f32]| {
            if quantized {
                ColumnMajor::q8_0_from_rows(rows, out_dim, in_dim)
            } else {
                ColumnMajor::f32_from_rows(rows, out_dim, in_dim)
            }
        };
        let (columns, rotation) = match rotation {
            None => (columns_of(weights)?, None),
            Some(q) => {
                anyhow::ensure!(
                    q.len() == in_dim * in_dim,
                    "a rotation of {} values for a {in_dim}-wide input",
                    q.len()
                );
                let q_t = Tensor::from_slice(q, (in_dim, in_dim), &Device::Cpu)?;
                let w = Tensor::from_slice(weights, (out_dim, in_dim), &Device::Cpu)?;
                let folded: Vec<f32> = w.matmul(&q_t)?.flatten_all()?.to_vec1()?;
                let q_transposed: Vec<f32> = q_t.t()?.contiguous()?.flatten_all()?.to_vec1()?;
                let rotation = Rotation {
                    into: ColumnMajor::f32_from_rows(&q_transposed, in_dim, in_dim)?,
                    back: ColumnMajor::f32_from_rows(q, in_dim, in_dim)?,
                };
                (columns_of(&folded)?, Some(rotation))
            }
        };
        Ok(Self {
            select,
            rotation,
            columns,
            bias,
            in_dim,
            out_dim,
            kept: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        })
    }

    pub fn in_dim(&self) -> usize {
        self.in_dim
    }
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }
    /// Bytes of the column-major weights and rotations this projection added.
    pub fn bytes(&self) -> usize {
        self.columns.bytes()
            + self
                .rotation
                .as_ref()
                .map_or(0, |r| r.into.bytes() + r.back.bytes())
    }
    /// (kept, seen) input entries so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.kept.load(Ordering::Relaxed),
            self.seen.load(Ordering::Relaxed),
        )
    }

    /// One input row in the basis the weights are in, with the dropped entries zeroed.
    fn sparsify(&self, x: &[f32]) -> Result<Vec<f32>> {
        let mut z = match &self.rotation {
            Some(r) => {
                let mut z = vec![0f32; self.in_dim];
                r.into.gemv(x, &mut z).map_err(candle_core::Error::wrap)?;
                z
            }
            None => x.to_vec(),
        };
        match self.select {
            Select::Threshold(t) => z.iter_mut().filter(|v| v.abs() < t).for_each(|v| *v = 0.0),
            Select::TopK(k) => keep_top_k(&mut z, k),
        }
        let kept = z.iter().filter(|v| **v != 0.0).count();
        self.kept.fetch_add(kept as u64, Ordering::Relaxed);
        self.seen.fetch_add(self.in_dim as u64, Ordering::Relaxed);
        Ok(z)
    }

    /// `y = W x` for one row, reading only the weight columns of the kept entries.
    pub fn decode_row(&self, x: &[f32], y: &mut Vec<f32>) -> Result<()> {
        let z = self.sparsify(x)?;
        y.resize(self.out_dim, 0.0);
        self.columns.gemv(&z, y).map_err(candle_core::Error::wrap)?;
        if let Some(b) = &self.bias {
            y.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
        Ok(())
    }

    /// Several rows with the dropped entries zeroed, in the input's own basis (`Q z` under a
    /// rotation), for the model's dense product.
    pub fn masked_rows(&self, x: &[f32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(self.in_dim) {
            let z = self.sparsify(row)?;
            match &self.rotation {
                Some(r) => {
                    let mut back = vec![0f32; self.in_dim];
                    r.back
                        .gemv(&z, &mut back)
                        .map_err(candle_core::Error::wrap)?;
                    out.extend(back);
                }
                None => out.extend(z),
            }
        }
        Ok(out)
    }
}

/// Zeroes all but the `k` entries of largest magnitude (ties: the earlier entry stays).
pub fn keep_top_k(z: &mut [f32], k: usize) {
    if k >= z.len() {
        return;
    }
    if k == 0 {
        z.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let mut order: Vec<u32> = (0..z.len() as u32).collect();
    // Larger magnitude first, then the earlier index: a strict total order.
    let before = |a: &u32, b: &u32| {
        z[*b as usize]
            .abs()
            .total_cmp(&z[*a as usize].abs())
            .then(a.cmp(b))
    };
    order.select_nth_unstable_by(k - 1, before);
    let mut keep = vec![false; z.len()];
    order[..k].iter().for_each(|&i| keep[i as usize] = true);
    z.iter_mut()
        .zip(keep)
        .filter(|(_, k)| !k)
        .for_each(|(v, _)| *v = 0.0);
}

/// Plain-buffer twin of `project_tensor` (the CPU rows path): one row through the sparse
/// product, several through `project` on the masked rows, `project` alone without `sparse`.
pub fn project_rows(
    sparse: Option<&SparseProjection>,
    x: &[f32],
    out: &mut Vec<f32>,
    project: impl FnOnce(&[f32], &mut Vec<f32>) -> Result<()>,
) -> Result<()> {
    match sparse {
        None => project(x, out),
        Some(s) if x.len() == s.in_dim => s.decode_row(x, out),
        Some(s) => project(&s.masked_rows(x)?, out),
    }
}

/// Runs `x` (`[.., in]`) through `sparse` when set (one row: the sparse product; several: the
/// dense `project` on the masked rows), else through `project` alone.
pub fn project_tensor(
    sparse: Option<&SparseProjection>,
    x: &Tensor,
    project: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let Some(s) = sparse else { return project(x) };
    let dims = x.dims().to_vec();
    let rows: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    if rows.len() == s.in_dim {
        let mut y = Vec::new();
        s.decode_row(&rows, &mut y)?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("x has a last dim") = s.out_dim;
        return Tensor::from_vec(y, out_dims, x.device());
    }
    project(&Tensor::from_vec(s.masked_rows(&rows)?, dims, x.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn dense(w: &[f32], out_dim: usize, bias: Option<Vec<f32>>) -> DenseWeights {
        DenseWeights { rows: w.to_vec(), out_dim, bias, quantized: false }
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// An orthogonal matrix: the eigenvectors of a random moment.
    fn rotation(n: usize) -> Vec<f32> {
        let x = random(4 * n * n, 9);
        let mut a = vec![0f64; n * n];
        for r in x.chunks(n) {
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] += (r[i] * r[j]) as f64;
                }
            }
        }
        crate::sparse::eigen::SymmetricEigen::of(&a, n)
            .unwrap()
            .vectors
            .iter()
            .map(|&v| v as f32)
            .collect()
    }

    fn product(w: &[f32], x: &[f32], out: usize) -> Vec<f32> {
        let n = x.len();
        (0..out)
            .map(|o| (0..n).map(|i| w[o * n + i] * x[i]).sum())
            .collect()
    }

    #[test]
    fn top_k_keeps_the_largest_and_the_earlier_of_ties() {
        let mut z = [0.5, -3.0, 1.0, -1.0, 2.0];
        keep_top_k(&mut z, 3);
        assert_eq!(z, [0.0, -3.0, 1.0, 0.0, 2.0]);
        let mut all = [1.0, 2.0];
        keep_top_k(&mut all, 5);
        assert_eq!(all, [1.0, 2.0]);
    }

    #[test]
    fn threshold_decode_equals_the_dense_product_of_the_kept_entries() {
        let (out, n) = (64, 48);
        let w = random(out * n, 1);
        let x = random(n, 2);
        let p = SparseProjection::new(dense(&w, out, Some(vec![0.5; out])), Select::Threshold(0.4), None).unwrap();
        let mut y = Vec::new();
        p.decode_row(&x, &mut y).unwrap();
        let kept: Vec<f32> = x
            .iter()
            .map(|&v| if v.abs() < 0.4 { 0.0 } else { v })
            .collect();
        let want: Vec<f32> = product(&w, &kept, out).iter().map(|v| v + 0.5).collect();
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        let (k, seen) = p.counts();
        assert_eq!(
            (k as usize, seen as usize),
            (kept.iter().filter(|v| **v != 0.0).count(), n)
        );
    }

    /// The folded weights `W Q` on the kept rotated entries give what rotating at run time
    /// (`x~ = Q z~`, then the original `W`) gives: the decode and multi-row paths agree.
    #[test]
    fn folded_rotation_equals_rotating_at_run_time() {
        let (out, n) = (32, 24);
        let w = random(out * n, 3);
        let q = rotation(n);
        let p = SparseProjection::new(dense(&w, out, None), Select::TopK(12), Some(&q)).unwrap();
        let x = random(n, 4);
        let mut folded = Vec::new();
        p.decode_row(&x, &mut folded).unwrap();
        let runtime = product(&w, &p.masked_rows(&x).unwrap(), out);
        for (a, b) in folded.iter().zip(&runtime) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        // With everything kept, the rotation is the identity on the output.
        let all = SparseProjection::new(dense(&w, out, None), Select::TopK(n), Some(&q)).unwrap();
        let mut y = Vec::new();
        all.decode_row(&x, &mut y).unwrap();
        for (a, b) in y.iter().zip(product(&w, &x, out)) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        // Kept entries are exactly k per row.
        assert_eq!(p.counts(), (24, 48));
    }
}
