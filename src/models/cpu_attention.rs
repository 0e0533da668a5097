//! Causal attention on the CPU in one pass over the keys and values, with no `[q, kv]` score
//! matrix and no mask tensor: FlashAttention's online softmax (Dao et al. 2022, Milakov and
//! Gimelshein 2018) over chunks of `KEY_CHUNK` keys, the causal bound as a loop limit.
//! Decoding reads the cache once per query head straight from its buffers (a view of a larger
//! preallocated cache included: any strides but the last); prefill tiles `ROW_BLOCK` query
//! rows per pass over the keys so each key is loaded once per tile.
//!
//! Every query row's arithmetic is the same whatever the tile it sits in and however many
//! rows the call has: chunks start at key 0 in steps of `KEY_CHUNK`, keys past a row's causal
//! bound enter the chunk's exponentials as exact zeros, and sums run in a fixed order. So a
//! prefill row, a speculative verify row and a one-token decode step at the same position give
//! bitwise equal outputs, which is what keeps greedy speculative decoding equal to greedy
//! decoding (`layers::attention_row_by_row`'s reason to exist, free here).
//!
//! The vector code is plain Rust over 8-lane arrays, which LLVM turns into AVX2/FMA under the
//! crate's `x86-64-v3` target (see .cargo/config.toml) and into NEON on aarch64.

use super::cpu_prefill_attention::GEMM_PREFILL_MIN_ROWS;
use candle_core::{DType, Device, Result, Storage, Tensor};

/// Keys per online-softmax step: large enough to amortise the rescaling of the accumulators,
/// small enough that the chunk's scores stay in registers and L1.
const KEY_CHUNK: usize = 32;
/// Query rows per tile: each key row loaded from memory serves this many dot products.
const ROW_BLOCK: usize = 4;
/// Lanes of the hand-vectorised loops (one AVX2 register of f32).
pub(super) const LANES: usize = 8;
/// Head sizes the kernel takes (Llama-family models use 64 to 128); others use the generic path.
const MAX_HEAD_DIM: usize = 256;

/// Causal scaled dot-product attention of `q: [b, h, q_len, d]` over `k, v: [b, h_kv, kv_len, d]`
/// (query row i sees keys `0..=kv_len - q_len + i`; grouped-query heads share a key/value head).
/// Returns `None` where the kernel does not apply (not CPU f32, odd head size), so the caller
/// takes the generic path.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    if !q.device().is_cpu() || q.dtype() != DType::F32 {
        return Ok(None);
    }
    let (b, n_head, q_len, d) = q.dims4()?;
    if k.dim(0)? != b || v.dim(0)? != b {
        return Ok(None);
    }
    if q_len >= GEMM_PREFILL_MIN_ROWS {
        return super::cpu_prefill_attention::blocked_prefill(q, k, v);
    }
    let q = q.contiguous()?;
    let (q_guard, q_layout) = q.storage_and_layout();
    let Storage::Cpu(qs) = &*q_guard else { return Ok(None) };
    let qd = &qs.as_slice::<f32>()?[q_layout.start_offset()..];
    let per_batch = n_head * q_len * d;
    let mut out = vec![0f32; b * per_batch];
    let strides = Strides { head: q_len * d, row: d };
    for batch in 0..b {
        let (k, v) = (k.get(batch)?.unsqueeze(0)?, v.get(batch)?.unsqueeze(0)?);
        let (q, o) = (&qd[batch * per_batch..(batch + 1) * per_batch], &mut out[batch * per_batch..(batch + 1) * per_batch]);
        if !attend(q, strides, n_head, q_len, &k, &v, KeyRows::InOrder, o, strides)? {
            return Ok(None);
        }
    }
    drop(q_guard);
    Ok(Some(Tensor::from_vec(out, (b, n_head, q_len, d), &Device::Cpu)?))
}

/// Where row i of head h starts in a buffer of query rows or outputs: `h * head + i * row`.
#[derive(Debug, Clone, Copy)]
pub struct Strides {
    pub head: usize,
    pub row: usize,
}

/// Where attention finds key (and value) j of a sequence in the `[1, h_kv, rows, d]` buffers.
#[derive(Debug, Clone, Copy)]
pub enum KeyRows<'a> {
    /// Row j: the buffers hold the sequence itself, in order.
    InOrder,
    /// Row `slots[j]`: the buffers are a paged pool and the sequence's positions sit in the
    /// slots its block table maps them to (PagedAttention's read in place, no gather).
    Slots(&'a [u32]),
}

/// The kernel on plain buffers: `q_len` query rows of `n_head` heads in `q` (laid out by
/// `q_strides`), keys and values `[1, h_kv, rows, d]` (any strides but the last) read as
/// `rows` says, the outputs written into `out` at `out_strides`. Returns false, writing
/// nothing, where the kernel does not apply. Each output's arithmetic is the same whichever
/// way the keys are laid out.
#[allow(clippy::too_many_arguments)]
pub fn attend(q: &[f32], q_strides: Strides, n_head: usize, q_len: usize, k: &Tensor, v: &Tensor, rows: KeyRows, out: &mut [f32], out_strides: Strides) -> Result<bool> {
    attend_all(q, q_strides, n_head, &[AttendJob { q_offset: 0, out_offset: 0, q_len, k, v, rows }], out, out_strides)
}

/// One sequence of an `attend_all` call: where its query rows start in `q` and its outputs in
/// `out`, and its keys and values.
pub struct AttendJob<'a> {
    pub q_offset: usize,
    pub out_offset: usize,
    pub q_len: usize,
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub rows: KeyRows<'a>,
}

/// A job checked, with its buffers.
struct Ready<'a> {
    q: &'a [f32],
    keys: &'a [f32],
    values: &'a [f32],
    shape: Shape,
    strides: [usize; 4],
    rep: usize,
    rows: KeyRows<'a>,
    out_offset: usize,
}

/// `attend` for many sequences at once (a batched step's), every (sequence, head, row tile) one
/// item of a single thread-pool call instead of one call per sequence. False, writing nothing,
/// if the kernel does not apply to any job.
pub fn attend_all(q: &[f32], q_strides: Strides, n_head: usize, jobs: &[AttendJob], out: &mut [f32], out_strides: Strides) -> Result<bool> {
    let mut checked = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (k, v) = (job.k, job.v);
        if [k.dtype(), v.dtype()].iter().any(|&t| t != DType::F32) || !k.device().is_cpu() || !v.device().is_cpu() {
            return Ok(false);
        }
        let (kb, n_kv, buffer_rows, d) = k.dims4()?;
        let kv_len = match job.rows {
            KeyRows::InOrder => buffer_rows,
            KeyRows::Slots(slots) if slots.iter().all(|&s| (s as usize) < buffer_rows) => slots.len(),
            KeyRows::Slots(_) => return Ok(false),
        };
        let q_len = job.q_len;
        if kb != 1 || v.dims() != k.dims() || n_kv == 0 || !n_head.is_multiple_of(n_kv) || q_len > kv_len || q_len == 0 {
            return Ok(false);
        }
        if d % LANES != 0 || d > MAX_HEAD_DIM || k.stride()[3] != 1 || v.stride()[3] != 1 {
            return Ok(false);
        }
        let last_q = job.q_offset + (n_head - 1) * q_strides.head + (q_len - 1) * q_strides.row + d;
        let last_out = job.out_offset + (n_head - 1) * out_strides.head + (q_len - 1) * out_strides.row + d;
        if q.len() < last_q || out.len() < last_out {
            return Ok(false);
        }
        checked.push((Shape { q_len, kv_len, d }, n_head / n_kv));
    }
    let guards: Vec<_> = jobs.iter().map(|j| (j.k.storage_and_layout(), j.v.storage_and_layout())).collect();
    let mut ready = Vec::with_capacity(jobs.len());
    for ((job, ((kg, kl), (vg, vl))), (shape, rep)) in jobs.iter().zip(&guards).zip(checked) {
        let (Storage::Cpu(ks), Storage::Cpu(vs)) = (&**kg, &**vg) else { return Ok(false) };
        let (k, v) = (job.k.stride(), job.v.stride());
        ready.push(Ready {
            q: &q[job.q_offset..],
            keys: &ks.as_slice::<f32>()?[kl.start_offset()..],
            values: &vs.as_slice::<f32>()?[vl.start_offset()..],
            strides: [k[1], k[2], v[1], v[2]],
            rep,
            rows: job.rows,
            out_offset: job.out_offset,
            shape,
        });
    }
    // Items: per job n_head x tiles, jobs one after another (`first_item[j]` is job j's first).
    let mut first_item = Vec::with_capacity(ready.len() + 1);
    first_item.push(0);
    for r in &ready {
        first_item.push(first_item.last().copied().unwrap_or(0) + n_head * r.shape.q_len.div_ceil(ROW_BLOCK));
    }
    let total = first_item.last().copied().unwrap_or(0);
    let out_addr = out.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(total, |items| {
        for item in items {
            let job = first_item.partition_point(|&f| f <= item) - 1;
            let r = &ready[job];
            let tiles_per_head = r.shape.q_len.div_ceil(ROW_BLOCK);
            let local = item - first_item[job];
            let (head, tile) = (local / tiles_per_head, local % tiles_per_head);
            let tile = tile * ROW_BLOCK..(r.shape.q_len.min((tile + 1) * ROW_BLOCK));
            let kv_head = head / r.rep;
            let queries = &r.q[head * q_strides.head + tile.start * q_strides.row..];
            let mut result = [[0f32; MAX_HEAD_DIM]; ROW_BLOCK];
            let [k_head, k_row, v_head, v_row] = r.strides;
            let (keys, values) = (&r.keys[kv_head * k_head..], &r.values[kv_head * v_head..]);
            match r.rows {
                KeyRows::InOrder => attend_tile(&r.shape, queries, q_strides.row, tile.clone(), keys, k_row, values, v_row, |j| j, &mut result),
                KeyRows::Slots(slots) => attend_tile(&r.shape, queries, q_strides.row, tile.clone(), keys, k_row, values, v_row, |j| slots[j] as usize, &mut result),
            }
            let d = r.shape.d;
            for (row, i) in tile.enumerate() {
                // SAFETY: each (job, head, row) output lies in `out` (checked above) and is
                // written by exactly one work item; `out` outlives the pool call.
                let dst = unsafe { std::slice::from_raw_parts_mut((out_addr as *mut f32).add(r.out_offset + head * out_strides.head + i * out_strides.row), d) };
                dst.copy_from_slice(&result[row][..d]);
            }
        }
    });
    Ok(true)
}

struct Shape {
    q_len: usize,
    kv_len: usize,
    d: usize,
}

/// One tile of query rows `rows` of one head (row r of the tile at `queries[r * q_row..]`),
/// over the keys of its key/value head (`keys[j * k_row..][..d]` is key j).
#[allow(clippy::too_many_arguments)]
fn attend_tile(
    shape: &Shape,
    queries: &[f32],
    q_row: usize,
    rows: std::ops::Range<usize>,
    keys: &[f32],
    k_row: usize,
    values: &[f32],
    v_row: usize,
    row_of: impl Fn(usize) -> usize,
    dst: &mut [[f32; MAX_HEAD_DIM]; ROW_BLOCK],
) {
    let d = shape.d;
    let (first, n) = (rows.start, rows.len());
    let scale = 1.0 / (d as f32).sqrt();
    let offset = shape.kv_len - shape.q_len;
    // Row r sees keys 0..=bound[r].
    let bound: [usize; ROW_BLOCK] = std::array::from_fn(|r| offset + first + r.min(n - 1));
    let query = |r: usize| &queries[r * q_row..r * q_row + d];
    let mut max = [f32::NEG_INFINITY; ROW_BLOCK];
    let mut sum = [0f32; ROW_BLOCK];
    let acc = dst;
    let last = bound[n - 1];
    let mut scores = [[f32::NEG_INFINITY; KEY_CHUNK]; ROW_BLOCK];
    for j0 in (0..=last).step_by(KEY_CHUNK) {
        let j1 = (j0 + KEY_CHUNK).min(last + 1);
        for row in scores.iter_mut().take(n) {
            row.fill(f32::NEG_INFINITY);
        }
        for j in j0..j1 {
            let at = row_of(j) * k_row;
            let key = &keys[at..at + d];
            for r in 0..n {
                if j <= bound[r] {
                    scores[r][j - j0] = dot(query(r), key) * scale;
                }
            }
        }
        for r in 0..n {
            if j0 > bound[r] {
                continue;
            }
            let chunk_max = scores[r].iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let new_max = max[r].max(chunk_max);
            let correction = exp(max[r] - new_max);
            let p = &mut scores[r];
            p.iter_mut().for_each(|s| *s -= new_max);
            exp_in_place(p);
            sum[r] = sum[r] * correction + lane_sum(p);
            let acc_r = &mut acc[r][..d];
            if correction != 1.0 {
                acc_r.iter_mut().for_each(|a| *a *= correction);
            }
            for j in j0..(j1.min(bound[r] + 1)) {
                let w = p[j - j0];
                let at = row_of(j) * v_row;
                let value = &values[at..at + d];
                acc_r.iter_mut().zip(value).for_each(|(a, &x)| *a = w.mul_add(x, *a));
            }
            max[r] = new_max;
        }
    }
    for r in 0..n {
        let inv = sum[r];
        acc[r][..d].iter_mut().for_each(|a| *a /= inv);
    }
}

/// `a . b` in 8 independent lanes (one FMA register), summed pairwise at the end.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    for (x, y) in a.chunks_exact(LANES).zip(b.chunks_exact(LANES)) {
        for l in 0..LANES {
            lanes[l] = x[l].mul_add(y[l], lanes[l]);
        }
    }
    reduce(lanes)
}

#[inline(always)]
pub(super) fn reduce(l: [f32; LANES]) -> f32 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// The sum of a chunk in a fixed order (lanes, then pairwise).
#[inline(always)]
fn lane_sum(x: &[f32; KEY_CHUNK]) -> f32 {
    let mut lanes = [0f32; LANES];
    for c in x.chunks_exact(LANES) {
        for l in 0..LANES {
            lanes[l] += c[l];
        }
    }
    reduce(lanes)
}

/// Below this, `exp` returns exactly 0 (e^-87 is 1.6e-38, under f32's normal range), so keys
/// past the causal bound (score -inf) weigh nothing.
const EXP_MIN: f32 = -87.0;

/// e^x elementwise with Cephes' `expf` polynomial (about 1 ulp), written so the loop vectorises.
#[inline(always)]
fn exp_in_place(x: &mut [f32; KEY_CHUNK]) {
    for v in x.iter_mut() {
        *v = exp(*v);
    }
}

/// Cephes `expf`: range reduction by ln 2 (split in two for precision), a degree-5 polynomial
/// for e^r on [-ln2/2, ln2/2], and 2^n through the exponent bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let under = x < EXP_MIN;
    let x = x.clamp(EXP_MIN, 88.0);
    let n = x.mul_add(LOG2E, 0.5).floor();
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let z = r * r;
    let p = 1.987_569_1e-4f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 5.000_000_1e-1);
    let y = p.mul_add(z, r) + 1.0;
    let pow2 = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if under {
        0.0
    } else {
        y * pow2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::layers::masked_attention;

    /// Deterministic values in [-2, 2) (candle's CPU generator cannot be seeded).
    fn randn(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
            })
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        for i in -8700..8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x), x.exp());
            assert!(((got - want) / want).abs() < 4e-7, "exp({x}) = {got}, std {want}");
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    /// The masked softmax-matmul path (candle ops) is the reference: decode, prefill from
    /// empty, and prefill over a cached prefix, with grouped-query heads and a key buffer
    /// that is a view of a larger one.
    #[test]
    fn equals_the_masked_softmax_reference() {
        for &(q_len, kv_len) in &[(1, 1), (1, 77), (9, 9), (5, 70), (33, 100), (300, 300), (290, 520)] {
            let q = randn((1, 6, q_len, 64), 1);
            let big_k = randn((1, 2, kv_len + 13, 64), 2);
            let big_v = randn((1, 2, kv_len + 13, 64), 3);
            let (k, v) = (big_k.narrow(2, 0, kv_len).unwrap(), big_v.narrow(2, 0, kv_len).unwrap());
            let got = causal_attention(&q, &k, &v).unwrap().expect("kernel applies");
            let (want, _) = masked_attention(&q, k.contiguous().unwrap(), v.contiguous().unwrap(), false).unwrap();
            let diff = max_diff(&got, &want);
            assert!(diff < 2e-6, "q_len {q_len} kv_len {kv_len}: max diff {diff}");
        }
    }

    /// A prefill row equals a one-token step at its position, bit for bit.
    #[test]
    fn rows_are_bitwise_equal_to_one_token_steps() {
        let (q_len, kv_len) = (11, 90);
        let q = randn((1, 4, q_len, 64), 4);
        let k = randn((1, 2, kv_len, 64), 5);
        let v = randn((1, 2, kv_len, 64), 6);
        let all = causal_attention(&q, &k, &v).unwrap().unwrap();
        for i in 0..q_len {
            let seen = kv_len - q_len + i + 1;
            let one = causal_attention(&q.narrow(2, i, 1).unwrap(), &k.narrow(2, 0, seen).unwrap(), &v.narrow(2, 0, seen).unwrap())
                .unwrap()
                .unwrap();
            let row: Vec<f32> = all.narrow(2, i, 1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let one: Vec<f32> = one.flatten_all().unwrap().to_vec1().unwrap();
            assert!(row.iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()), "row {i}");
        }
    }

    /// Keys read in place through a block table's slots give bitwise the output of the same
    /// keys laid out in order (the paged pool's read equals the gathered copy's).
    #[test]
    fn slots_read_in_place_equal_keys_in_order() {
        let (n_head, n_kv, q_len, kv_len, d) = (4, 2, 3, 40, 64);
        let q = randn((1, n_head, q_len, d), 21).contiguous().unwrap();
        let (k, v) = (randn((1, n_kv, kv_len, d), 22), randn((1, n_kv, kv_len, d), 23));
        // A pool of 64 rows; position j sits at slot (j * 37 + 5) % 64 (distinct for j < 64).
        let slots: Vec<u32> = (0..kv_len as u32).map(|j| (j * 37 + 5) % 64).collect();
        let (mut kp, mut vp) = (vec![0f32; n_kv * 64 * d], vec![0f32; n_kv * 64 * d]);
        let (kd, vd) = (k.flatten_all().unwrap().to_vec1::<f32>().unwrap(), v.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        for h in 0..n_kv {
            for (j, &slot) in slots.iter().enumerate() {
                let (src, dst) = ((h * kv_len + j) * d, (h * 64 + slot as usize) * d);
                kp[dst..dst + d].copy_from_slice(&kd[src..src + d]);
                vp[dst..dst + d].copy_from_slice(&vd[src..src + d]);
            }
        }
        let (kp, vp) = (Tensor::from_vec(kp, (1, n_kv, 64, d), &Device::Cpu).unwrap(), Tensor::from_vec(vp, (1, n_kv, 64, d), &Device::Cpu).unwrap());
        let qs = q.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let strides = Strides { head: q_len * d, row: d };
        let run = |k: &Tensor, v: &Tensor, rows: KeyRows| {
            let mut out = vec![0f32; n_head * q_len * d];
            assert!(attend(&qs, strides, n_head, q_len, k, v, rows, &mut out, strides).unwrap());
            out
        };
        assert_eq!(run(&kp, &vp, KeyRows::Slots(&slots)), run(&k, &v, KeyRows::InOrder));
        let mut out = vec![0f32; n_head * q_len * d];
        assert!(!attend(&qs, strides, n_head, q_len, &kp, &vp, KeyRows::Slots(&[3, 64]), &mut out, strides).unwrap(), "a slot past the buffer is refused");
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        let q = randn((1, 2, 1, 12), 7);
        let k = randn((1, 2, 3, 12), 8);
        assert!(causal_attention(&q, &k, &k).unwrap().is_none(), "head size not a multiple of 8");
        let q16 = randn((1, 2, 1, 64), 9).to_dtype(DType::F16).unwrap();
        let k16 = randn((1, 2, 3, 64), 10).to_dtype(DType::F16).unwrap();
        assert!(causal_attention(&q16, &k16, &k16).unwrap().is_none(), "f16");
    }
}
