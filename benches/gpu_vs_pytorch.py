#!/usr/bin/env python3
"""llmbench against PyTorch + transformers on the same GPU, architecture, dtype and prompt, in one
run (the GPU issue's side-by-side benchmark). Runs on the lent GPU machine, with the CUDA build of
llmbench carried there (see .ci/gpu-bench):

  python3 benches/gpu_vs_pytorch.py --model smollm2-135m --out DIR

Batch 1, greedy, random weights of the real architecture (`--no-weights`; the torch side builds
the same LlamaConfig with random weights: decode speed does not depend on the values), a
128-token prompt, 128 and 1,024 new tokens, bf16. Rows:
  llmbench graph        --kv-cache static: the captured CUDA-graph decode step
  llmbench static       --kv-cache static --no-cuda-graph: preallocated cache, generic per-op path
  llmbench generic      --kv-cache full: candle's per-op path with a growing cache
  pytorch eager         model.generate() with the default dynamic cache
  pytorch static        model.generate(cache_implementation="static"), which transformers compiles
TTFT is the time to the first token (prefill + one sample); decode tok/s excludes it. PyTorch's
are optimum-benchmark's method: decode = (n - 1) / (t(generate n) - t(generate 1)). A device to
device copy of 1 GiB measured in the same run gives the bandwidth that the bytes each decoded
token must read (weights + the KV cache so far) are compared with.

`--llmbench-only` skips PyTorch, `--skip-eager` its eager rows; `--gguf FILE` times a GGUF model of
--model's architecture (graph against candle's per-op quantized kernels, no PyTorch rows).
Writes DIR/<model>.json and prints a table. `--chart A.json B.json --svg OUT.svg` draws the chart.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROMPT_TOKENS = 128
NEW_TOKENS = [128, 1024]
# The architectures of llmbench's presets (src/models/config.rs); checked against the config
# llmbench reports before anything is timed.
ARCHS = {
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                         rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True),
    "tinyllama-1.1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                           num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                           rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False),
}
LLMBENCH_ROWS = [
    ("llmbench graph", ["--kv-cache", "static"], 5),
    ("llmbench static", ["--kv-cache", "static", "--no-cuda-graph"], 2),
    ("llmbench generic", ["--kv-cache", "full"], 2),
]


def sync():
    import torch
    torch.cuda.synchronize()


def copy_bandwidth():
    """Bytes read + written per second by a 1 GiB device-to-device copy (median of 20)."""
    import torch
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda").random_(0, 255)
    dst = torch.empty_like(src)
    times = []
    for _ in range(23):
        sync()
        t = time.perf_counter()
        dst.copy_(src)
        sync()
        times.append(time.perf_counter() - t)
    return 2 * src.numel() / statistics.median(times[3:])


def prompt_text():
    # Byte-level ids with --no-weights (no tokenizer): 128 ASCII characters are 128 tokens.
    text = ("The quick brown fox jumps over the lazy dog. " * 4)[:PROMPT_TOKENS]
    assert len(text) == PROMPT_TOKENS
    return text


def check_architecture(binary, model):
    res = subprocess.run([binary, "generate", "--device", "cpu", "--no-weights", "--model", model, "-n", "1", "--json",
                          "--prompt", "hi"], capture_output=True, text=True, check=True)
    arch = json.loads(res.stdout)["model"]["architecture"]
    for key, want in ARCHS[model].items():
        if key != "max_position_embeddings":
            assert arch.get(key) == want, f"{model}: llmbench's {key} {arch.get(key)} != {want}"


def run_llmbench(binary, model, out_dir, gguf=None):
    """The llmbench rows; with `gguf` (a file), that real model in its own formats (f32
    activations) instead of random bf16 weights of `model`'s architecture."""
    if gguf is None:
        check_architecture(binary, model)
        source = ["--no-weights", "--model", model, "--dtype", "bf16", "--prompt", prompt_text()]
    else:
        source = ["--model", gguf, "--prompt", prompt_text(), "--prompt-tokens", str(PROMPT_TOKENS)]
    rows = []
    for name, extra, reps in LLMBENCH_ROWS:
        run_dir = os.path.join(out_dir, f"{model}-{name.split()[1]}")
        cmd = [binary, "compare", "--device", "cuda", *source,
               "--methods", "standard", "-n", ",".join(map(str, NEW_TOKENS)), "--warmup", "1", "-r", str(reps),
               "--out", run_dir, "--no-charts", "-q", "-o", "json"] + extra
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            print(f"{name}: failed: {res.stderr.strip()[-400:]}", file=sys.stderr)
            continue
        report = json.load(open(os.path.join(run_dir, "results.json")))
        for case in report["cases"]:
            s = case["summary"]
            runs = case["runs"]
            rows.append(dict(impl=name, model=model, new_tokens=case["params"]["max_new_tokens"],
                             prompt_tokens=runs[0]["prompt_tokens"],
                             ttft_ms=s["ttft_ms"]["median"], prefill_tok_s=s["prefill_tokens_per_s"]["median"],
                             decode_tok_s=s["decode_tokens_per_s"]["median"], runs=len(runs),
                             peak_device_memory_bytes=runs[0].get("peak_device_memory_bytes"),
                             cuda_graph=report["settings"].get("cuda_graph"), kv_cache=case["params"]["kv_cache"],
                             # the kernel switches the run had (LLMBENCH_CUDA_*), as its results recorded them
                             llmbench_env={k: v for k, v in report["provenance"].get("llmbench_env", {}).items()
                                           if k.startswith("LLMBENCH_CUDA_")}))
        print(f"{name}: done", file=sys.stderr, flush=True)
    return rows


def run_pytorch(model_name, eager=True):
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**ARCHS[model_name], bos_token_id=None, eos_token_id=None, pad_token_id=0)
    model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    ids = torch.tensor([[ord(c) for c in prompt_text()]], device="cuda")
    rows = []

    def timed(n, reps, **kw):
        out = []
        for _ in range(reps):
            sync()
            t = time.perf_counter()
            with torch.no_grad():
                gen = model.generate(ids, max_new_tokens=n, do_sample=False, **kw)
            sync()
            out.append(time.perf_counter() - t)
            assert gen.shape[1] == PROMPT_TOKENS + n, f"generated {gen.shape[1] - PROMPT_TOKENS} of {n} tokens"
        return statistics.median(out)

    longest = max(NEW_TOKENS)
    impls = [("pytorch static", dict(cache_implementation="static"), 3)] + ([("pytorch eager", {}, 1)] if eager else [])
    for impl, kw, reps in impls:
        if kw:
            # At the longest length first: transformers keeps the static cache it sized then and
            # reuses it for shorter runs, so compilation happens here and not in a timed call.
            timed(longest, 2, **kw)
        else:
            timed(min(NEW_TOKENS), 1)  # eager compiles nothing; one short run loads the kernels
        t1 = timed(1, 3, **kw)
        for n in NEW_TOKENS:
            tn = timed(n, reps if n == longest else 3, **kw)
            rows.append(dict(impl=impl, model=model_name, new_tokens=n, prompt_tokens=PROMPT_TOKENS,
                             ttft_ms=t1 * 1e3, prefill_tok_s=PROMPT_TOKENS / t1, decode_tok_s=(n - 1) / (tn - t1),
                             runs=reps, torch=torch.__version__, transformers=transformers.__version__))
        print(f"{impl}: done", file=sys.stderr, flush=True)
    return rows


def decode_bytes_per_token(model, new_tokens, gguf=None):
    """Bytes one decode step must read: every weight matrix once (the tied head reads the
    embedding matrix again) and the KV cache so far, averaged over the generated tokens. bf16
    weights and cache; for a GGUF file, its tensors' bytes as stored (the tied Q8_0 table read
    once, as the head) and an f32 cache."""
    a = ARCHS[model]
    h, i, layers, v = a["hidden_size"], a["intermediate_size"], a["num_hidden_layers"], a["vocab_size"]
    d = h // a["num_attention_heads"]
    kv = a["num_key_value_heads"] * d
    per_layer = h * (h + 2 * kv) + h * h + 3 * h * i + 2 * h
    mean_context = PROMPT_TOKENS + new_tokens / 2
    if gguf is not None:
        return os.path.getsize(gguf) + layers * 2 * kv * mean_context * 4
    weights = layers * per_layer + v * h + h
    kv_bytes = layers * 2 * kv * mean_context * 2
    return weights * 2 + kv_bytes


def table(rows, bandwidth, gguf=None):
    versus = "vs llmbench static (candle's per-op kernels)" if gguf else "vs pytorch static"
    lines = [f"| model | implementation | new tokens | TTFT ms | prefill tok/s | decode tok/s | {versus} | % of copy bandwidth |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ref = next((x for x in rows if x["impl"] == "pytorch static" and x["model"] == r["model"] and x["new_tokens"] == r["new_tokens"]), None)
        ref = ref or next((x for x in rows if x["impl"] == "llmbench static" and gguf and x["new_tokens"] == r["new_tokens"]), None)
        ratio = f"{r['decode_tok_s'] / ref['decode_tok_s']:.2f}x" if ref else "-"
        pct = 100 * decode_bytes_per_token(r["model"], r["new_tokens"], gguf) * r["decode_tok_s"] / bandwidth
        lines.append(f"| {r['model']} | {r['impl']} | {r['new_tokens']} | {r['ttft_ms']:.2f} | {r['prefill_tok_s']:.0f} | "
                     f"{r['decode_tok_s']:.1f} | {ratio} | {pct:.1f}% |")
    switches = sorted({f"{k}={v}" for r in rows for k, v in r.get("llmbench_env", {}).items()})
    lines.append(f"\nllmbench kernel switches: {' '.join(switches) if switches else 'none (the defaults)'}")
    return "\n".join(lines)


def chart(reports, svg_path):
    """Grouped horizontal bars of decode tok/s, one group per (model, new tokens)."""
    rows = [r for rep in reports for r in rep["rows"]]
    impls = ["llmbench graph", "llmbench static", "llmbench generic", "pytorch static", "pytorch eager"]
    colors = ["#1b6ca8", "#5fa8d3", "#9cc9e6", "#e07b39", "#f2b48a"]
    groups = sorted({(r["model"], r["new_tokens"]) for r in rows})
    top = max(r["decode_tok_s"] for r in rows)
    bar, gap, left, width = 14, 18, 230, 520
    height = 60 + len(groups) * (len(impls) * bar + gap) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" font-family="DejaVu Sans, sans-serif" font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="20" font-size="14">Decode speed, batch 1, bf16, random weights, 128-token prompt ({reports[0]["gpu"]})</text>']
    y = 40
    for model, n in groups:
        out.append(f'<text x="10" y="{y + len(impls) * bar / 2 + 4}">{model}, {n} new tokens</text>')
        for impl, color in zip(impls, colors):
            r = next((x for x in rows if x["impl"] == impl and x["model"] == model and x["new_tokens"] == n), None)
            if r:
                w = width * r["decode_tok_s"] / top
                out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{color}"/>')
                out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar - 4}">{r["decode_tok_s"]:.0f} tok/s</text>')
            y += bar
        y += gap
    for k, (impl, color) in enumerate(zip(impls, colors)):
        out.append(f'<rect x="{10 + k * 150}" y="{height - 25}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{24 + k * 150}" y="{height - 16}">{impl}</text>')
    out.append("</svg>")
    with open(svg_path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=sorted(ARCHS))
    p.add_argument("--binary", default="dist/llmbench-cuda")
    p.add_argument("--out", default="/tmp/gpu-bench")
    p.add_argument("--chart", nargs="*", help="draw the chart from these JSON files instead of running")
    p.add_argument("--svg", default="decode-speed.svg")
    p.add_argument("--gguf", help="time this GGUF file (the architecture of --model) instead of random bf16 weights; no PyTorch rows")
    p.add_argument("--llmbench-only", action="store_true", help="skip the PyTorch rows")
    p.add_argument("--skip-eager", action="store_true", help="skip PyTorch's eager rows (minutes at 1,024 tokens)")
    args = p.parse_args()
    if args.chart:
        chart([json.load(open(f)) for f in args.chart], args.svg)
        return
    import torch
    os.makedirs(args.out, exist_ok=True)
    bandwidth = copy_bandwidth()
    print(f"device-to-device copy: {bandwidth / 1e12:.2f} TB/s", file=sys.stderr, flush=True)
    rows = run_llmbench(args.binary, args.model, args.out, args.gguf)
    if not (args.gguf or args.llmbench_only):
        rows += run_pytorch(args.model, eager=not args.skip_eager)
    name = f"{args.model}-gguf" if args.gguf else args.model
    report = dict(gpu=torch.cuda.get_device_name(), copy_bandwidth_bytes_per_s=bandwidth, model=args.model,
                  prompt_tokens=PROMPT_TOKENS, dtype=os.path.basename(args.gguf) if args.gguf else "bf16", rows=rows,
                  decode_bytes_per_token={n: decode_bytes_per_token(args.model, n, args.gguf) for n in NEW_TOKENS})
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(table(rows, bandwidth, args.gguf))


if __name__ == "__main__":
    main()
