#!/usr/bin/env python3
"""Whether a candidate kernel setting beats the default, from one round-robin sweep.

Reads benches/gpu_gemv_sweep.sh's lines ("round R | SETTING | MODEL | N new | decode X tok/s
...", SETTING "-" for the default; the format is that script's, change both together) and prints one verdict line, "adopt ..." or "keep the
default ...", then the per-row ratios. The rule, chosen to be hard to pass by noise (the
sweep's two rounds of one setting differ by ~1% on one machine, NOTES session 10):

- TinyLlama-1.1B at 128 new tokens (issue 13's headline row) decodes faster with the
  candidate in every round, each round compared with the default's run in that same round;
- and no row (model, new tokens) is more than 1% slower on its mean over the rounds.

Usage: choose_setting.py CANDIDATE SWEEP_OUTPUT
"""
import collections
import re
import sys

LINE = re.compile(r"^round (\d+) \| (.+?) \| (\S+) \| (\d+) new \| decode ([0-9.]+) tok/s")
HEADLINE = ("tinyllama-1.1b", 128)
WORST_SLOWDOWN = 0.99


def parse(lines):
    """{(setting, model, new): {round: tok/s}}"""
    runs = collections.defaultdict(dict)
    for line in lines:
        m = LINE.match(line.strip())
        if m:
            rnd, setting, model, new, tps = m.groups()
            runs[(setting.strip(), model, int(new))][int(rnd)] = float(tps)
    return runs


def verdict(candidate, runs):
    """(adopt, reasons): reasons lists each row's ratio, or what was missing."""
    rows = sorted({(model, new) for (setting, model, new) in runs if setting == "-"})
    if HEADLINE not in rows:
        return False, [f"no default run of {HEADLINE[0]} at {HEADLINE[1]} new tokens in the sweep"]
    reasons, adopt = [], True
    for model, new in rows:
        base, cand = runs[("-", model, new)], runs.get((candidate, model, new), {})
        rounds = sorted(set(base) & set(cand))
        if not rounds or len(rounds) != len(base):
            return False, [f"{model} {new}: the candidate did not run every round the default ran"]
        ratio = sum(cand[r] for r in rounds) / sum(base[r] for r in rounds)
        per_round = ", ".join(f"r{r} {cand[r]:.1f}/{base[r]:.1f}" for r in rounds)
        reasons.append(f"{model} {new} new: {ratio:.4f}x ({per_round})")
        if ratio < WORST_SLOWDOWN:
            adopt = False
            reasons[-1] += f": more than {100 * (1 - WORST_SLOWDOWN):.0f}% slower"
        if (model, new) == HEADLINE and not all(cand[r] > base[r] for r in rounds):
            adopt = False
            reasons[-1] += ": not faster in every round"
    return adopt, reasons


def self_check():
    """The rule on made-up sweeps, run before every verdict: a broken rule stops the call's choice."""
    def sweep(rows):
        return parse(f"round {r} | {s} | {m} | {n} new | decode {t} tok/s (min 0, max 0) | graph true"
                     for r, s, m, n, t in rows)
    c = "X=1"
    base = [(1, "-", "tinyllama-1.1b", 128, 1000.0), (2, "-", "tinyllama-1.1b", 128, 1010.0),
            (1, "-", "smollm2-135m", 1024, 2000.0), (2, "-", "smollm2-135m", 1024, 2000.0)]
    wins = [(1, c, "tinyllama-1.1b", 128, 1020.0), (2, c, "tinyllama-1.1b", 128, 1015.0)]
    assert verdict(c, sweep(base + wins + [(1, c, "smollm2-135m", 1024, 1990.0), (2, c, "smollm2-135m", 1024, 1990.0)]))[0]
    # a round lost on the headline row, a row 1.5% slower, a round missing, no headline row
    assert not verdict(c, sweep(base + wins[:1] + [(2, c, "tinyllama-1.1b", 128, 1009.0)]
                                + [(r, c, "smollm2-135m", 1024, 2000.0) for r in (1, 2)]))[0]
    assert not verdict(c, sweep(base + wins + [(r, c, "smollm2-135m", 1024, 1970.0) for r in (1, 2)]))[0]
    assert not verdict(c, sweep(base + wins + [(1, c, "smollm2-135m", 1024, 2100.0)]))[0]
    assert not verdict(c, sweep(base[2:] + [(r, c, "smollm2-135m", 1024, 2100.0) for r in (1, 2)]))[0]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    self_check()
    candidate = sys.argv[1].strip()
    adopt, reasons = verdict(candidate, parse(open(sys.argv[2])))
    print(f"adopt {candidate}" if adopt else f"keep the default (not {candidate})")
    for r in reasons:
        print("  " + r)


if __name__ == "__main__":
    main()
