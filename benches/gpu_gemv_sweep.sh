#!/usr/bin/env bash
# The graph decode step's two dense gemv kernels side by side on the lent GPU (run through
# .ci/gpu-bench gemv): each setting of LLMBENCH_CUDA_GEMV* (src/models/cuda_graph/gemv_choice.rs)
# decodes the random-weight bf16 models of benches/gpu_vs_pytorch.py (128-token prompt, 128 and
# 1,024 new tokens, -r 3), settings taken round-robin over ROUNDS rounds so that clock drift
# falls on all of them alike. Prints one line per (round, setting, model, new tokens): the
# median decode tok/s (benches/choose_setting.py parses that line: change both together); the
# runs' JSON stays under $OUT/gemv-sweep.
set -uo pipefail
BIN=${LLMBENCH:-dist/llmbench-cuda}
PROMPT=$(python3 -c 'print(("The quick brown fox jumps over the lazy dog. " * 4)[:128])')
# Settings: space-separated VAR=value lists, "-" for the defaults.
SETTINGS=${SETTINGS:-"LLMBENCH_CUDA_GEMV=warp;-"}
IFS=';' read -r -a settings <<< "$SETTINGS"
mkdir -p "$OUT/gemv-sweep"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for setting in "${settings[@]}"; do
    for model in ${MODELS:-tinyllama-1.1b smollm2-135m}; do
      dir="$OUT/gemv-sweep/r$round-$model-$(echo "$setting" | tr ' =' '_-')"
      env_args=()
      [ "$setting" != "-" ] && read -r -a env_args <<< "$setting"
      if ! env "${env_args[@]}" "$BIN" compare --device cuda --no-weights --model "$model" --dtype bf16 --prompt "$PROMPT" \
          --methods standard -n 128,1024 --warmup 1 -r "${REPS:-3}" --kv-cache static --out "$dir" --no-charts -q -o json \
          > /dev/null 2> "$dir.err"; then
        echo "round $round | $setting | $model | failed: $(tail -c 300 "$dir.err")"
        continue
      fi
      python3 - "$dir/results.json" "$round" "$setting" "$model" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for case in report["cases"]:
    s = case["summary"]["decode_tokens_per_s"]
    print(f"round {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {case['params']['max_new_tokens']} new | "
          f"decode {s['median']:.1f} tok/s (min {s['min']:.1f}, max {s['max']:.1f}) | graph {report['settings'].get('cuda_graph')}")
PY
    done
  done
done
