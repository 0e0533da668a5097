// Included by llama_decode.cu after gemv, decode_attention.cuh and grid_arrivals.cuh.

// The QKV projection with the attention as its tail, one launch instead of two
// (LLMBENCH_CUDA_QKV=attention; an experiment not yet measured, NOTES 2026-12-05 sessions 4-5):
// once a block's rows (q, and k, v into the cache) are stored, it counts itself done; blocks
// 0 .. n_head * splits - 1 then wait until every block has (grid_arrivals.cuh) and each runs one
// (head, split) of the attention (attn_split_at), whose inputs are this grid's own stores. The
// host launches it only where the whole grid is resident at once (one wave) and has at least as
// many blocks as (head, split) pairs; SPLIT threads a block, as attn_split_at needs.
#define QKV_ATTN_THREADS SPLIT

template <typename T, int CPL>
__device__ void qkv_attention(const GemvArgs& a) {
  gemv<T, FMT_DENSE, CPL, Dense<T>, true>(a);
  arrive(a.arrivals);
  int splits = (a.params[1] + SPLIT) / SPLIT;  // positions 0 .. params[1]
  if ((int)blockIdx.x < a.n_head * splits) {
    wait_for_arrivals(a.arrivals, gridDim.x);
    int head = blockIdx.x % a.n_head, split = blockIdx.x / a.n_head;
    attn_split_at<T>(static_cast<const T*>(a.out), static_cast<const T*>(a.k_cache), static_cast<const T*>(a.v_cache), a.params,
                     a.attn_out, a.n_head, a.n_kv, a.head_dim, a.capacity, a.inv_sqrt_d, a.attn_splits, head, split);
  }
  trace_end(a.trace);
}
