//! Build script (kept under src/ so the top level stays as DESIGN.md fixes it): records the
//! git commit and the candle version for results' provenance and, with the `cuda` feature,
//! compiles our CUDA kernels to PTX with nvcc for CUDA_COMPUTE_CAP (default 90, the H100).

use std::process::Command;

fn main() {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=LLMBENCH_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let candle = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"candle-core\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LLMBENCH_CANDLE_VERSION={candle}");
    for path in [".git/HEAD", ".git/index", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        // The .cu files include headers from all three kernel folders (block_dot.cuh's per-format
        // dot products, float_ops.cuh, llama_decode.cu's own .cuh parts): a directory makes cargo
        // watch every file in it, so an edit to any header rebuilds the PTX (listing headers one
        // by one once left mlp_fused.cuh and decode_attention.cuh unwatched: a stale PTX).
        for dir in ["src/models/kernels", "src/quant/kernels", "src/sparse/kernels"] {
            println!("cargo:rerun-if-changed={dir}");
        }
        compile_ptx("src/models/kernels/llama_decode.cu", "llama_decode.ptx");
        compile_ptx("src/models/kernels/causal_attention.cu", "causal_attention.ptx");
        compile_ptx("src/quant/kernels/int_matvec.cu", "int_matvec.ptx");
        compile_ptx("src/sparse/kernels/sparse_gemv.cu", "sparse_gemv.ptx");
    }
}

/// nvcc -ptx for the GPU the build targets; fails the build with nvcc's message on error.
fn compile_ptx(source: &str, output: &str) {
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let nvcc = match std::env::var("CUDA_ROOT") {
        Ok(root) => format!("{root}/bin/nvcc"),
        Err(_) => "nvcc".into(),
    };
    let out = format!("{}/{output}", std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let status = Command::new(&nvcc)
        .args(["-ptx", "-O3", "-std=c++17", &format!("-arch=sm_{cap}"), "-I", "src/quant/kernels", source, "-o", &out])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {nvcc} for {source}: {e} (set CUDA_ROOT or put nvcc on PATH)"));
    assert!(status.success(), "{nvcc} failed on {source}");
}
