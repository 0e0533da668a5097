#!/usr/bin/env bash
# Issue 13's measurements in one device call (run through `.ci/gpu-bench decode-session`), in the
# order that matters if the call is cut short. Device calls are rare and at most 600 s, so each
# stage is skipped when the time left (LIMIT, default 560 s of this script) is below its estimate
# (seconds; stage-times.txt records the real ones: session 9's H100 took tables 318, check-default 55,
# the three-setting sweep 87, trace 18, check-rest 42; session 10's H200 tables 252-264,
# check-default 75-121, a two-setting sweep 53, trace 15-22), and everything small
# under $OUT (JSON, text, CSV, SVG; not the sweep's per-run folders) is packed into $PACK after
# every stage, so a call killed at its limit still brings back the stages it finished.
#
#   1. the README's GPU table: llmbench graph against PyTorch's compiled static cache, TinyLlama
#      then SmolLM2 (benches/gpu_vs_pytorch.py; packed after each model)
#   2. the default step's checks: fixtures and random weights
#   3. decode tok/s over two rounds (benches/gpu_gemv_sweep.sh): the default, or settings
#      round-robin with SWEEP_SETTINGS (e.g. "-;LLMBENCH_CUDA_MLP=fused;LLMBENCH_CUDA_MLP=split",
#      ~90 s: sessions 8 and 9 measured those, the default won both times)
#   4. the replayed step's timeline per MLP setting (benches/gpu_trace.sh): the kernels' span of a
#      token, to set against its measured time (the rest is outside the graph)
#   5. the long-prompt, batched and served-draft checks (unchanged code paths)
#   6. the SmolLM2 Q4_1 GGUF (the real file, or its twin: benches/gguf_twin.py): its GPU-vs-CPU
#      rows, then graph against candle's per-op kernels
#   7. where the attention kernel's warps wait (Nsight Compute, benches/gpu_profile.sh STALLS)
#
# CANDIDATE="VAR=value ...[;VAR=value ...]" (settings not yet the default, e.g. LLMBENCH_CUDA_MLP_STAGE_BYTES=49152, or
# "LLMBENCH_CUDA_MLP_DOWN=early;LLMBENCH_CUDA_COMBINE=early;LLMBENCH_CUDA_MLP_DOWN=early
# LLMBENCH_CUDA_COMBINE=early") settles them in the same call: a `choose` stage runs first, the
# sweep of the default against each candidate (two rounds, round-robin, ~27 s a setting), and
# benches/choose_setting.py adopts a candidate only if it decodes TinyLlama's 128 new tokens
# faster in every round (or another row at least 2% faster in every round) and no row (model,
# new tokens) is more than 1% slower on its two-round mean (of several that pass, the fastest on
# TinyLlama's 128 row). The adopted one is exported for every
# later stage (tables, checks, GGUF), and the results' environment (llmbench_env) records it;
# the trace then times the default against every candidate. $OUT/choice.txt says what was
# chosen and why. Where none is adopted, the last candidate runs the random-weight and
# long-prompt checks after the default's (`check-candidate`).
#
# Usage (device tool): R=$OUT; export OUT=/tmp/o PACK=$R/out.tgz; bash .ci/gpu-bench decode-session
# A second call on the same warm machine runs what the first skipped: SKIP="<the stage names it
# finished, as printed>".
set -uo pipefail
LIMIT=${LIMIT:-560}
PACK=${PACK:-$OUT/../decode-session.tgz}
pack() {
  (cd "$OUT" && find . -maxdepth 2 -type f \( -name '*.json' -o -name '*.txt' -o -name '*.csv' -o -name '*.log' -o -name '*.md' -o -name '*.err' -o -name '*.svg' \) -print0 \
    | tar --null -czf "$PACK.tmp" -T - && mv "$PACK.tmp" "$PACK")
}

# stage NAME ESTIMATE_S COMMAND...: runs COMMAND (output teed to $OUT/NAME.txt) if ESTIMATE_S
# seconds are left, then packs.
stage() {
  local name=$1 estimate=$2
  shift 2
  if [[ " ${SKIP:-} " == *" $name "* ]]; then
    echo "== $name: skipped (SKIP)"
    return
  fi
  if [ $((SECONDS + estimate)) -gt "$LIMIT" ]; then
    echo "== $name: skipped ($SECONDS s used, ~$estimate s needed, limit $LIMIT)" | tee -a "$OUT/skipped.txt"
    return
  fi
  local start=$SECONDS
  echo "== $name"
  "$@" 2>&1 | tee "$OUT/$name.txt"
  echo "== $name: $((SECONDS - start)) s" | tee -a "$OUT/stage-times.txt"
  pack
}

tables() {
  for model in tinyllama-1.1b smollm2-135m; do
    python3 benches/gpu_vs_pytorch.py --model "$model" --out "$OUT" --skip-eager
    pack  # a call killed at its limit during the second model still brings the first back
  done
}

gguf_rows() {
  python3 .ci/gpu-check.py gguf
  python3 benches/gpu_vs_pytorch.py --model smollm2-135m --gguf "${SMOLLM2_GGUF:-/tmp/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}" --out "$OUT"
}

choose() {
  # The card's power and clocks every 200 ms while the sweep runs, and each run's end time
  # beside its line (choose-times.txt, nvidia-smi's timestamp format): whether a row that does
  # not move is at the card's power limit (session 13's guess for TinyLlama's 128 row).
  nvidia-smi --query-gpu=timestamp,power.draw,power.limit,clocks.sm,clocks.mem,temperature.gpu \
    --format=csv,noheader -lms 200 > "$OUT/choose-power.csv" 2>/dev/null &
  local smi=$!
  SETTINGS="-;$CANDIDATE" ROUNDS=2 bash benches/gpu_gemv_sweep.sh | while IFS= read -r line; do
    echo "$(date '+%Y/%m/%d %H:%M:%S.%3N') $line" >> "$OUT/choose-times.txt"
    echo "$line"
  done | tee "$OUT/choose-sweep.txt"
  kill "$smi" 2>/dev/null
  python3 benches/choose_setting.py "$CANDIDATE" "$OUT/choose-sweep.txt" | tee "$OUT/choice.txt"
}

mkdir -p "$OUT"
TRACE_SETTINGS=${TRACE_SETTINGS:-}
if [ -n "${CANDIDATE:-}" ]; then
  IFS=';' read -r -a candidates <<< "$CANDIDATE"
  stage choose $((30 + 27 * ${#candidates[@]})) choose
  adopted=$(sed -n 's/^adopt //p' "$OUT/choice.txt" 2>/dev/null)
  if [ -n "$adopted" ]; then
    read -r -a adopted_vars <<< "$adopted"
    export "${adopted_vars[@]}"
    echo "== adopted for the later stages: $adopted"
  else
    # Not adopted: the last candidate (by convention all of them together) still gets the
    # greedy-token and long-prompt checks, after the default's, so that a later call may adopt
    # it on speed alone (session 13's call 2 timed one that no GPU had checked).
    read -r -a checked_vars <<< "${candidates[-1]}"
  fi
  # The default against each candidate: every candidate's variables set empty (empty is the
  # default, gemv_choice.rs), since "-" would inherit an adopted candidate, and each candidate
  # after those empties (env's last assignment wins), or it would inherit the adopted one's.
  baseline=$(for kv in ${CANDIDATE//;/ }; do echo "${kv%%=*}="; done | sort -u | xargs)
  if [ -z "${TRACE_SETTINGS:-}" ]; then
    TRACE_SETTINGS=$baseline
    for c in "${candidates[@]}"; do TRACE_SETTINGS+=";$baseline $c"; done
  fi
  SKIP="${SKIP:-} sweep"  # the choose stage was the sweep
fi
stage tables 250 tables
stage check-default 100 python3 .ci/gpu-check.py fixtures random_weights
if [ -n "${checked_vars+x}" ]; then
  stage check-candidate 120 env "${checked_vars[@]}" python3 .ci/gpu-check.py random_weights long_prompt
fi
stage sweep 50 env SETTINGS="${SWEEP_SETTINGS:--}" ROUNDS=2 bash benches/gpu_gemv_sweep.sh
stage trace 50 env ${TRACE_SETTINGS:+SETTINGS="$TRACE_SETTINGS"} bash benches/gpu_trace.sh
stage check-rest 50 python3 .ci/gpu-check.py long_prompt batched served_draft
stage gguf 100 gguf_rows
stage stalls 70 env STALLS=attn_split MODELS="tinyllama-1.1b smollm2-135m" bash benches/gpu_profile.sh
echo "== done in $SECONDS s"
pack
