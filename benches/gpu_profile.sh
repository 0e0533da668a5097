#!/usr/bin/env bash
# Per-kernel times of one graph decode step on the lent GPU (run through .ci/gpu-bench profile):
# Nsight Compute on the eager step that precedes the capture (the same kernels the graph
# replays; ncu serialises them, so this is each kernel alone, without the overlap that
# programmatic dependent launch gives inside the graph). Clocks left as found (--clock-control
# none). Prints, per model, the mean time, DRAM bytes and share of peak DRAM throughput of each
# kernel role (qkv, attention, o, gate_up, down, head), with the warps active (achieved
# occupancy), registers a thread and waves a multiprocessor, and writes the raw CSV under $OUT.
set -uo pipefail
BIN=${LLMBENCH:-dist/llmbench-cuda}
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
# 128 byte-level tokens (no tokenizer with --no-weights), as benches/gpu_vs_pytorch.py uses.
PROMPT=$(python3 -c 'print(("The quick brown fox jumps over the lazy dog. " * 4)[:128])')
for model in $([ -z "${STALLS:-}" ] && echo "${MODELS:-smollm2-135m tinyllama-1.1b}"); do  # STALLS alone skips this table
  layers=$("$BIN" generate --device cpu --no-weights --model "$model" -n 1 --json --prompt hi | python3 -c "import json,sys; print(json.load(sys.stdin)['model']['architecture']['num_hidden_layers'])")
  # Four or five kernels a layer (the fused MLP or gate_up + down, by model and
  # LLMBENCH_CUDA_MLP): profile up to five a layer and name each kernel of the first step from
  # the kernel names, in launch order (below).
  count=$((5 * layers + 2))
  "$NCU" --clock-control none -k 'regex:^(embed|gemv|attn_split|mlp_fused)' -c "$count" --csv \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__registers_per_thread,launch__waves_per_multiprocessor \
    "$BIN" generate --device cuda --no-weights --model "$model" --dtype "${DTYPE:-bf16}" --kv-cache static -n 2 \
    --prompt "$PROMPT" > "$OUT/ncu-$model.csv" 2> "$OUT/ncu-$model.err"
  python3 - "$OUT/ncu-$model.csv" "$model" "$layers" <<'PY'
import csv, sys, collections
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
kernels = collections.OrderedDict()
for r in rows:
    kernels.setdefault(r["ID"], {"name": r["Kernel Name"]})[r["Metric Name"]] = float(r["Metric Value"].replace(",", ""))
seq = list(kernels.values())
# One step: embed, then per layer qkv, attention, o, mlp (or gate_up, down), then head: a gemv's
# role follows from what came before it.
named, layers, state = [("embed", seq[0])], int(sys.argv[3]), "qkv"
for k in seq[1:]:
    name = k["name"]
    if state == "qkv" and layers == 0:
        named.append(("head", k))
        break
    if state == "qkv":
        role, state = "qkv", "attention"
    elif state == "attention":
        role, state = "attention", "o"
    elif state == "o":
        role, state = "o", "mlp"
    elif state == "mlp":
        role, state = ("mlp", "qkv") if name.startswith("mlp_fused") else ("gate_up", "down")
    else:
        role, state = "down", "qkv"
    if state == "qkv" and role in ("mlp", "down"):
        layers -= 1
    named.append((role, k))
agg = collections.OrderedDict()
for role, k in named:
    agg.setdefault(role, []).append(k)
total = sum(k["gpu__time_duration.sum"] for _, k in named)
print(f"{sys.argv[2]}: {len(named)} kernels, {total / 1e3:.1f} us of kernel time a step (each alone)")
for role, ks in agg.items():
    t = sum(k["gpu__time_duration.sum"] for k in ks) / len(ks)
    b = sum(k["dram__bytes_read.sum"] for k in ks) / len(ks)
    p = sum(k["dram__throughput.avg.pct_of_peak_sustained_elapsed"] for k in ks) / len(ks)
    occ = sum(k.get("sm__warps_active.avg.pct_of_peak_sustained_active", 0) for k in ks) / len(ks)
    regs, waves = ks[0].get("launch__registers_per_thread", 0), ks[0].get("launch__waves_per_multiprocessor", 0)
    print(f"  {role:9s} x{len(ks):3d}  {t / 1e3:7.2f} us  {b / 1e6:7.2f} MB read  {b / t:6.0f} GB/s  {p:5.1f}% of peak DRAM  "
          f"{occ:4.1f}% warps active  {regs:.0f} regs  {waves:.2f} waves  ({ks[0]['name']})")
PY
done
# PREFILL=N: the kernels of an N-token prefill (per-op path, the first PREFILL_KERNELS launches:
# the embedding and the first layers), summed by kernel name: where prefill time goes.
if [ -n "${PREFILL:-}" ]; then
  for model in ${MODELS:-smollm2-135m tinyllama-1.1b}; do
    PROMPT=$(python3 -c "import sys; n = int(sys.argv[1]); print(('The quick brown fox jumps over the lazy dog. ' * (n // 45 + 1))[:n])" "$PREFILL")
    "$NCU" --clock-control none -c "${PREFILL_KERNELS:-120}" --csv --metrics gpu__time_duration.sum \
      "$BIN" generate --device cuda --no-weights --model "$model" --dtype "${DTYPE:-bf16}" -n 1 --prompt "$PROMPT" \
      > "$OUT/ncu-prefill-$model.csv" 2> "$OUT/ncu-prefill-$model.err"
    python3 - "$OUT/ncu-prefill-$model.csv" "$model" "$PREFILL" <<'PY'
import csv, sys, collections
rows = [r for r in csv.DictReader(l for l in open(sys.argv[1]) if l.startswith('"'))]
by = collections.Counter()
count = collections.Counter()
for r in rows:
    by[r["Kernel Name"][:60]] += float(r["Metric Value"].replace(",", ""))
    count[r["Kernel Name"][:60]] += 1
total = sum(by.values())
print(f"{sys.argv[2]} prefill of {sys.argv[3]} tokens: {len(rows)} kernels, {total / 1e3:.1f} us (each alone)")
for name, t in by.most_common(12):
    print(f"  {t / 1e3:9.1f} us  {100 * t / total:5.1f}%  x{count[name]:3d}  {name}")
PY
  done
fi
# STALLS=REGEX (instead of the table above): Nsight Compute's warp-state and occupancy sections for the first STALLS_COUNT
# (default 4) kernels whose names match REGEX (e.g. attn_split), as text: where a
# latency-bound kernel's warps wait (long scoreboard = global loads, barrier, short scoreboard
# = shared memory, ...) before a change to it is guessed from arithmetic.
if [ -n "${STALLS:-}" ]; then
  for model in ${MODELS:-smollm2-135m tinyllama-1.1b}; do
    "$NCU" --clock-control none -k "regex:${STALLS}" -c "${STALLS_COUNT:-4}" \
      --section WarpStateStats --section Occupancy --section LaunchStats --section SpeedOfLight \
      --metrics 'regex:^smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio$' \
      "$BIN" generate --device cuda --no-weights --model "$model" --dtype "${DTYPE:-bf16}" --kv-cache static -n 2 \
      --prompt "$PROMPT" > "$OUT/ncu-stalls-$model.txt" 2> "$OUT/ncu-stalls-$model.err"
    echo "== $model: $STALLS"
    grep -iE 'attn_split|gemv|mlp_fused|duration|stall|warp cycles|achieved occupancy|registers per|block limit|theoretical occupancy|memory throughput' "$OUT/ncu-stalls-$model.txt" | head -n 200
  done
fi
