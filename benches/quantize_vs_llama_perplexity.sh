#!/usr/bin/env bash
# llama.cpp loads what `llmbench quantize --save` writes, and its llama-perplexity agrees with
# ours on the same text: for each saved GGUF (q8_0 and q4_0 by default), llama-perplexity with
# the run's window (-c) and window count (--chunks) on the run's eval text, next to the
# perplexity our results.json recorded for that format. Writes RUN_DIR/llama-perplexity.md.
#
#   benches/quantize_vs_llama_perplexity.sh RUN_DIR SAVE_DIR [FORMAT ...]
#   THREADS=2 LLAMA_CPP_DIR=~/.cache/llmbench/llama.cpp
#
# llama.cpp is built as benches/cpu_vs_llama_cpp.sh builds it (../shared/LLAMA-CPP.md) and
# reused; run that script once first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:?usage: $0 RUN_DIR SAVE_DIR [FORMAT ...]}
SAVE=${2:?usage: $0 RUN_DIR SAVE_DIR [FORMAT ...]}
shift 2
if [ $# -eq 0 ]; then FORMATS=(q8_0 q4_0); else FORMATS=("$@"); fi
THREADS=${THREADS:-2}
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-$HOME/.cache/llmbench/llama.cpp}
PERPLEXITY=$LLAMA_CPP_DIR/build/bin/llama-perplexity
if [ ! -x "$PERPLEXITY" ]; then
  echo "no $PERPLEXITY: build llama.cpp first (benches/cpu_vs_llama_cpp.sh builds it, or ../shared/LLAMA-CPP.md)" >&2
  exit 2
fi
read -r EVAL CTX CHUNKS < <(python3 -c "
import json, sys
s = json.load(open('$RUN/results.json'))['settings']['command_settings']
print(s['eval_file'], s['context_tokens'], s['chunks'])")
case "$EVAL" in
  pip:exllamav2==0.3.2:*) TEXT=$(find "${LLMBENCH_CACHE:-$HOME/.cache/llmbench}/pip-data" -path '*exllamav2-0.3.2*' -name "$(basename "$EVAL")" | head -1) ;;
  *) TEXT=$EVAL ;;
esac
OUT="$RUN/llama-perplexity.md"
{
  echo "| format | llama-perplexity PPL | llmbench PPL | difference |"
  echo "|---|---:|---:|---:|"
} >"$OUT"
for f in "${FORMATS[@]}"; do
  gguf=$(find "$SAVE" -name "*.$f.gguf" | head -1)
  log="$RUN/llama-perplexity-$f.log"
  "$PERPLEXITY" -m "$gguf" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" >"$log" 2>&1
  theirs=$(grep -o 'Final estimate: PPL = [0-9.]*' "$log" | awk '{print $5}')
  python3 - "$RUN/results.json" "$f" "$theirs" >>"$OUT" <<'PY'
import json, sys
report, fmt, theirs = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3])
ours = next(c["quality"]["shift"]["perplexity"] for c in report["cases"] if c["params"]["format"] == fmt)
print(f"| {fmt} | {theirs:.4f} | {ours:.4f} | {(ours / theirs - 1) * 100:+.2f}% |")
PY
done
echo "" >>"$OUT"
echo "llama-perplexity -c $CTX --chunks $CHUNKS -t $THREADS on $(basename "$TEXT"), files written by llmbench quantize --save." >>"$OUT"
cat "$OUT"
