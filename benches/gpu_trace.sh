#!/usr/bin/env bash
# The replayed graph decode step's timeline on the lent GPU (run through .ci/gpu-bench trace):
# LLMBENCH_CUDA_TRACE (src/models/cuda_graph/trace.rs) stamps every launch of every replay (first
# block's start, first and last release from the wait on the previous kernel, last block's end)
# and writes the means per launch as CSV under $OUT. Then, per kernel role (qkv, attention, o,
# mlp or gate_up + down, head), the mean duration, and the launch gap: how long after the
# previous kernel's last block ended this one's first block was released. Random bf16 weights,
# 128-token prompt, 128 new tokens, for each setting side by side: SETTINGS as in
# gpu_gemv_sweep.sh (";"-separated, each a space-separated VAR=value list, "-" for the defaults);
# by default the fused MLP over the transposed down matrix (the default), over the stored one,
# and the split one.
set -uo pipefail
BIN=${LLMBENCH:-dist/llmbench-cuda}
PROMPT=$(python3 -c 'print(("The quick brown fox jumps over the lazy dog. " * 4)[:128])')
SETTINGS=${SETTINGS:-"-;LLMBENCH_CUDA_MLP=fused;LLMBENCH_CUDA_MLP=split"}
IFS=';' read -r -a settings <<< "$SETTINGS"
for model in ${MODELS:-tinyllama-1.1b smollm2-135m}; do
  for setting in "${settings[@]}"; do
    csv="$OUT/trace-$model-$(echo "$setting" | tr ' =' '_-').csv"
    env_args=()
    [ "$setting" != "-" ] && read -r -a env_args <<< "$setting"
    env "${env_args[@]}" LLMBENCH_CUDA_TRACE="$csv" "$BIN" generate --device cuda --no-weights --model "$model" \
      --dtype bf16 --kv-cache static -n "${NEW_TOKENS:-128}" --ignore-eos --prompt "$PROMPT" > /dev/null 2> "$csv.err" \
      || { echo "$model $setting: failed: $(tail -c 300 "$csv.err")"; continue; }
    python3 - "$csv" "$model" "$setting" <<'PY'
import collections, csv, sys
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if not l.startswith("#"))]
tail = [l for l in open(sys.argv[1]) if l.startswith("#")]
roles = collections.OrderedDict()
for r in rows:
    roles.setdefault(r["kernel"].split(".")[-1], []).append(r)
print(f"{sys.argv[2]} {sys.argv[3]}: {tail[0][2:].strip() if tail else ''}")
for role, rs in roles.items():
    rs = [r for r in rs if r["duration_us"]]  # launches that never stamped (none should) have empty rows
    if not rs:
        print(f"  {role:9s} recorded nothing")
        continue
    dur = sum(float(r["duration_us"]) for r in rs) / len(rs)
    gaps = [float(r["released_after_previous_end_us"]) for r in rs if r["released_after_previous_end_us"]]
    lead = [float(r["first_release_us"]) - float(r["start_us"]) for r in rs]
    gap = f"{sum(gaps) / len(gaps):6.2f}" if gaps else "     -"
    print(f"  {role:9s} x{len(rs):3d}  duration {dur:7.2f} us  released {gap} us after the previous end  "
          f"started {sum(lead) / len(lead):6.2f} us before its release")
PY
  done
done
