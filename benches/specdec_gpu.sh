#!/usr/bin/env bash
# specdec on the lent GPU (run by the device tool from the repository root, with the CUDA
# binary carried as dist/llmbench-cuda.gz): TinyLlama-1.1B shapes with random weights (bf16,
# static cache, so single-token steps run as the captured CUDA graph), drafts `self` (the
# acceptance-1 ceiling) and `lookup`, K 1..8; the verify pass row by row (exact) and batched.
# Then a CPU cross-check: greedy tokens of standard and specdec:self decoding in f32 on the CPU
# and the GPU, which must agree with each other within each device and are compared across.
# Results go to $OUT (run directories, plus cross-check.txt).
set -euo pipefail
gunzip -kf dist/llmbench-cuda.gz && chmod +x dist/llmbench-cuda
B=dist/llmbench-cuda
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
common=(specdec --no-weights -m tinyllama-1.1b --dtype bf16 --device cuda --kv-cache static
  --draft self,lookup --k 1-8+1 -n 128 -r 2 --warmup 1 -q)
$B "${common[@]}" --out "$OUT/specdec-tinyllama-h200" > "$OUT/rowwise.txt"
$B "${common[@]}" --batched-verify --out "$OUT/specdec-tinyllama-h200-batched" > "$OUT/batched.txt"
for dev in cpu cuda; do
  for draft in "" "--draft self --k 4"; do
    $B generate --no-weights -m tinyllama-1.1b --device "$dev" --threads 16 -n 32 --json -p "The history of the printing press" $draft \
      | python3 -c "import json,sys; r=json.load(sys.stdin); print('$dev', '${draft:-standard}', r['generated_ids'])"
  done
done | tee "$OUT/cross-check.txt"
cut -c1-200 "$OUT/rowwise.txt" | head -20
cut -c1-200 "$OUT/batched.txt" | head -20
