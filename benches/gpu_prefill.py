#!/usr/bin/env python3
"""Prefill on the GPU: llmbench's fused causal attention against candle's masked ops (the same
binary with LLMBENCH_CUDA_ATTENTION=0) and PyTorch + transformers (SDPA), side by side in one
run on the lent GPU machine (see .ci/gpu-bench prefill):

  python3 benches/gpu_prefill.py --model tinyllama-1.1b --out DIR

Batch 1, bf16, random weights of the real architecture, prompts of 128, 512 and 2,000 tokens,
one new token: TTFT (prefill + the first sample), prefill tok/s = prompt tokens / TTFT as both
report it, and the peak device memory of the run (llmbench: the allocator's high-water mark the
run records; PyTorch: max_memory_allocated). The masked path holds the [heads, T, T] f32 scores
of a layer (and their bf16 copy) at once: 2,000 tokens x 32 heads are 512 MB; the fused kernel
holds none. Writes DIR/<model>-prefill.json and prints a table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_vs_pytorch import ARCHS, check_architecture, sync  # noqa: E402

PROMPT_LENGTHS = [128, 512, 2000]
REPS = 5


def prompt(n):
    # Byte-level ids with --no-weights: n ASCII characters are n tokens.
    return ("The quick brown fox jumps over the lazy dog. " * (n // 45 + 1))[:n]


def run_llmbench(binary, model, out_dir):
    check_architecture(binary, model)
    rows = []
    for impl, env in [("llmbench fused", {}), ("llmbench masked", {"LLMBENCH_CUDA_ATTENTION": "0"})]:
        for n in PROMPT_LENGTHS:
            run_dir = os.path.join(out_dir, f"{model}-prefill-{impl.split()[1]}-{n}")
            cmd = [binary, "compare", "--device", "cuda", "--no-weights", "--model", model, "--dtype", "bf16",
                   "--prompt", prompt(n), "--prompt-tokens", str(n), "--methods", "standard", "-n", "1",
                   "--warmup", "1", "-r", str(REPS), "--out", run_dir, "--no-charts", "-q", "-o", "json"]
            res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
            if res.returncode != 0:
                print(f"{impl} {n}: failed: {res.stderr.strip()[-400:]}", file=sys.stderr)
                continue
            case = json.load(open(os.path.join(run_dir, "results.json")))["cases"][0]
            runs = case["runs"]
            assert runs[0]["prompt_tokens"] == n, f"{impl}: {runs[0]['prompt_tokens']} prompt tokens, not {n}"
            rows.append(dict(impl=impl, model=model, prompt_tokens=n, ttft_ms=case["summary"]["ttft_ms"]["median"],
                             prefill_tok_s=case["summary"]["prefill_tokens_per_s"]["median"], runs=len(runs),
                             peak_device_memory_bytes=max(r.get("peak_device_memory_bytes") or 0 for r in runs)))
        print(f"{impl}: done", file=sys.stderr, flush=True)
    return rows


def run_pytorch(model_name):
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**ARCHS[model_name], bos_token_id=None, eos_token_id=None, pad_token_id=0)
    model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    rows = []
    for n in PROMPT_LENGTHS:
        ids = torch.tensor([[ord(c) for c in prompt(n)]], device="cuda")
        times = []
        for rep in range(REPS + 1):  # the first is the warm-up
            torch.cuda.reset_peak_memory_stats()
            sync()
            t = time.perf_counter()
            with torch.no_grad():
                model.generate(ids, max_new_tokens=1, do_sample=False)
            sync()
            if rep > 0:
                times.append(time.perf_counter() - t)
        t1 = statistics.median(times)
        rows.append(dict(impl=f"pytorch {model.config._attn_implementation}", model=model_name, prompt_tokens=n,
                         ttft_ms=t1 * 1e3, prefill_tok_s=n / t1, runs=REPS,
                         peak_device_memory_bytes=torch.cuda.max_memory_allocated(),
                         torch=torch.__version__, transformers=transformers.__version__))
    print("pytorch: done", file=sys.stderr, flush=True)
    del model
    torch.cuda.empty_cache()
    return rows


def table(rows):
    base = {r["prompt_tokens"]: r["ttft_ms"] for r in rows if r["impl"] == "llmbench masked"}
    lines = ["| model | implementation | prompt tokens | TTFT ms | prefill tok/s | vs masked | peak device memory MB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        versus = f"{base[r['prompt_tokens']] / r['ttft_ms']:.2f}x" if r["prompt_tokens"] in base else "-"
        lines.append(f"| {r['model']} | {r['impl']} | {r['prompt_tokens']} | {r['ttft_ms']:.2f} | {r['prefill_tok_s']:,.0f} | "
                     f"{versus} | {r['peak_device_memory_bytes'] / 1e6:,.0f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, choices=sorted(ARCHS))
    ap.add_argument("--binary", default=os.environ.get("LLMBENCH", "dist/llmbench-cuda"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--llmbench-only", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = run_llmbench(args.binary, args.model, args.out)
    if not args.llmbench_only:
        rows += run_pytorch(args.model)
    with open(os.path.join(args.out, f"{args.model}-prefill.json"), "w") as f:
        json.dump(dict(rows=rows), f, indent=1)
    print(table(rows))


if __name__ == "__main__":
    main()
