//! The graph decode step's CUDA kernels, run on the CPU: `tests/cuda_host/` emulates the CUDA they
//! use (blocks, fibers for threads, barriers, warp shuffles, atomics) and checks every launch of
//! a two-layer model, two steps at a time, in every wiring the host can choose (default: the
//! fused MLP over the transposed down matrix; the fused MLP over the stored one, the split MLP,
//! the streaming gemv, the attention loading its cache after its wait, the MLP issuing its first
//! down loads early) and dtype, and GGUF Q8_0, Q4_0 and Q4_1 and our int8 and int4 weights in
//! an f32 graph, against a double-precision reference, with threads scheduled
//! in a seeded random warp order so that a missing barrier shows, and what the previous launch
//! wrote hidden (NaN) until a launch waits for it (and in L1 lines loaded before the wait after
//! it). CI has no GPU;
//! without this, a kernel change was first run on the lent GPU, in a call worth a session.

use std::path::Path;
use std::process::Command;

#[test]
fn decode_kernels_match_the_reference_in_every_wiring() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("decode_kernels");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    // -U_FORTIFY_SOURCE: the fibers switch stacks with _longjmp, which fortified glibc refuses;
    // -fcf-protection=none: nor may shadow stacks (x86's CET) see it.
    let mut compile = Command::new(&cxx);
    compile.args(["-std=c++20", "-O2", "-U_FORTIFY_SOURCE", "-fno-strict-aliasing", "-Wall", "-Wno-sign-compare", "-Wno-unknown-pragmas"]);
    if cfg!(target_arch = "x86_64") {
        compile.arg("-fcf-protection=none");
    }
    let compiled = compile
        .arg("-I")
        .arg(root.join("tests/cuda_host/include"))
        .arg("-I")
        .arg(root.join("src/models/kernels"))
        .arg("-I")
        .arg(root.join("src/quant/kernels"))
        .arg(root.join("tests/cuda_host/decode_kernels.cpp"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cxx} (a C++20 compiler; set CXX): {e}"));
    assert!(compiled.status.success(), "{cxx} failed on the emulated kernels:\n{}", String::from_utf8_lossy(&compiled.stderr));
    let run = Command::new(&exe).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let failures: Vec<&str> = stdout.lines().filter(|l| l.contains("FAILED") || l.contains("failed") && !l.starts_with("checks:")).collect();
    assert!(run.status.success(), "kernel checks failed:\n{}\n{}", failures.join("\n"), String::from_utf8_lossy(&run.stderr));
    // Every (dtype, shape, wiring) run decode_kernels.cpp's run_all takes, 4 steps each (2 on
    // the tall shape), 13-19 checks a step (the greedy token's and the next step's parameters,
    // which the argmax kernel writes, among them), and 14 of the argmax kernel alone: a harness that stopped checking (a wiring or dtype
    // skipped) must not pass.
    let summary = stdout.lines().last().unwrap_or_default();
    let checks: usize = summary
        .strip_prefix("checks: ")
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary line: {summary}"));
    assert_eq!(checks, 5734, "{summary}");
}
