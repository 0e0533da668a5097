#!/usr/bin/env bash
# specdec on the lent GPU (run by the device tool from the repository root, with the CUDA
# binary carried as dist/llmbench-cuda.gz): TinyLlama-1.1B shapes with random weights, drafts
# `self` (the acceptance-1 ceiling) and `lookup`. Runs (name: what), all by default, or those
# named as arguments:
#   graph:          bf16, static cache (single-token steps are the captured CUDA graph), K 1..8,
#                   verify attention row by row
#   graph-batched:  the same with --batched-verify
#   generic:        bf16, --no-cuda-graph (every step on candle's per-op path, the verify pass's
#                   path too), self, K 1,2,4,8: what verifying K + 1 tokens costs against one
#                   decode step on the same path
#   generic-batched: the same with --batched-verify
#   exact-f32:      f32, --no-cuda-graph, self, K 1,4,8: greedy exactness on the GPU
#   cross:          greedy tokens of standard and `--draft self` decoding, f32, CPU and GPU
# Each run leaves results.json and table.md in $OUT/<run dir> (charts: `llmbench plot` here).
set -euo pipefail
gunzip -kf dist/llmbench-cuda.gz && chmod +x dist/llmbench-cuda
B=dist/llmbench-cuda
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv > "$OUT/gpu.txt"
runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(graph graph-batched generic generic-batched exact-f32 cross)
base=(specdec --no-weights -m tinyllama-1.1b --device cuda --kv-cache static -n 128 -r 2 --warmup 1 -q --no-charts)
spec() { # name, then flags
  local name=$1; shift
  $B "${base[@]}" "$@" --out "$OUT/$name" > "$OUT/$name.txt"
  rm -f "$OUT/$name/results.jsonl"
}
for run in "${runs[@]}"; do
  case $run in
    graph) spec specdec-tinyllama-h200 --dtype bf16 --draft self,lookup --k 1-8+1 ;;
    graph-batched) spec specdec-tinyllama-h200-batched --dtype bf16 --draft self,lookup --k 1-8+1 --batched-verify ;;
    generic) spec specdec-tinyllama-h200-generic --dtype bf16 --no-cuda-graph --draft self --k 1,2,4,8 ;;
    generic-batched) spec specdec-tinyllama-h200-generic-batched --dtype bf16 --no-cuda-graph --draft self --k 1,2,4,8 --batched-verify ;;
    exact-f32) spec specdec-tinyllama-h200-f32 --dtype f32 --no-cuda-graph --draft self --k 1,4,8 ;;
    cross)
      for dev in cpu cuda; do
        for draft in "" "--draft self --k 4"; do
          $B generate --no-weights -m tinyllama-1.1b --device "$dev" --threads 16 -n 32 --json -p "The history of the printing press" $draft \
            | python3 -c "import json,sys; r=json.load(sys.stdin); print('$dev', '${draft:-standard}', r['generated_ids'])"
        done
      done > "$OUT/cross-check.txt" ;;
  esac
done
for f in "$OUT"/*.txt; do echo "== $f"; cut -c1-230 "$f"; done
