#!/usr/bin/env bash
# `llmbench http` against llama.cpp's llama-server serving the default model (SmolLM2-135M-Instruct
# Q4_1 GGUF) on 127.0.0.1: the committed results/http-llama-server/ runs (a concurrency sweep
# 1, 2, 4, 8 and a Poisson rate sweep), then the ignored integration test against the same binary.
# llama-server comes from LLMBENCH_LLAMA_SERVER, else it is built once into ~/.cache/llmbench/
# llama.cpp from the PyPI source package as ../shared/LLAMA-CPP.md describes (8-10 minutes on
# 2 cores). Server and client share this machine: -t 2 for the server, one core's worth of
# client (a current-thread runtime).
#   bash benches/http_llama_server.sh [OUT_DIR]   (default results/http-llama-server)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/http-llama-server}
if [ -z "${LLMBENCH_LLAMA_SERVER:-}" ]; then
  source benches/llama_cpp.sh
  build_llama_cpp llama-server
  export LLMBENCH_LLAMA_SERVER=$LLAMA_CPP_DIR/build/bin/llama-server
fi
cargo build --release --locked -q
BIN=target/release/llmbench
# The default model's GGUF, fetched through llmbench's own pip source.
GGUF=$(find ~/.cache/llmbench/pip -name 'SmolLM2-135M-Instruct.Q4_1.gguf' | head -n 1)
[ -f "$GGUF" ] || { echo "the SmolLM2 GGUF is not in ~/.cache/llmbench/pip: run llmbench once (it fetches it)" >&2; exit 2; }
PORT=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$LLMBENCH_LLAMA_SERVER" -m "$GGUF" --host 127.0.0.1 --port "$PORT" -t 2 -c 8192 -np 8 --no-webui > /tmp/llama-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 1 600); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health')" 2>/dev/null && break
  sleep 0.2
done
"$LLMBENCH_LLAMA_SERVER" --version 2>&1 | head -n 2 > "$OUT.llama-server-version.txt" || true
# Each sweep its own seed: llama-server keeps the prompts it has seen (its slots and a host-memory
# prompt cache), so a second run with the same random prompts would be answered from that cache.
COMMON=(--endpoint "http://127.0.0.1:$PORT" --tokenizer "$GGUF" --dataset random:128:64 --num-prompts 32 --warmup-requests 2)
rm -rf "$OUT/concurrency" "$OUT/poisson"
mkdir -p "$OUT"
"$BIN" http "${COMMON[@]}" --seed 0 --max-concurrency 1,2,4,8 --out "$OUT/concurrency"
"$BIN" http "${COMMON[@]}" --seed 1 --request-rate 0.5,1,2,4 --burstiness 1 --out "$OUT/poisson"
mv "$OUT.llama-server-version.txt" "$OUT/llama-server-version.txt"
kill $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT
cargo test --locked --test main http_llama_server -- --ignored
