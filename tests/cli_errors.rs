//! Bad input: a one-line error naming the file or flag, exit code 2, never a panic.

use crate::common::{fixture, llmbench, smollm2_gguf};
use std::path::Path;

/// Runs `generate` with `args` and returns stderr, asserting exit code 2 and no panic.
fn fails_with_input_error(args: &[&str]) -> String {
    let out = llmbench().arg("generate").args(["--device", "cpu"]).args(args).assert().code(2).get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn missing_model_file() {
    let err = fails_with_input_error(&["--model", "/no/such/model.gguf", "--prompt", "hi"]);
    assert!(err.contains("/no/such/model.gguf") && err.contains("not found"), "{err}");
}

#[test]
fn truncated_safetensors() {
    let dir = copy_dir(&fixture("tiny-gpt2"));
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails_with_input_error(&["--model", path_str(dir.path()), "--prompt", "hi"]);
    assert!(err.contains("model.safetensors") && err.contains("truncated"), "{err}");
}

#[test]
fn truncated_and_garbage_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.gguf");
    let real = std::fs::read(smollm2_gguf()).unwrap();
    std::fs::write(&truncated, &real[..4 << 20]).unwrap();
    let err = fails_with_input_error(&["--model", path_str(&truncated), "--prompt", "hi"]);
    assert!(err.contains("truncated.gguf") && err.contains("truncated"), "{err}");

    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, (0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect::<Vec<_>>()).unwrap();
    let err = fails_with_input_error(&["--model", path_str(&garbage), "--prompt", "hi"]);
    assert!(err.contains("garbage.gguf") && err.contains("not a complete GGUF"), "{err}");
}

#[test]
fn config_with_unknown_architecture_or_missing_field() {
    let dir = copy_dir(&fixture("tiny-gpt2"));
    let config = dir.path().join("config.json");
    let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();

    let mut unknown = original.clone();
    unknown["model_type"] = "mamba".into();
    unknown["architectures"] = serde_json::json!(["MambaForCausalLM"]);
    std::fs::write(&config, unknown.to_string()).unwrap();
    let err = fails_with_input_error(&["--model", path_str(dir.path()), "--prompt", "hi"]);
    assert!(err.contains("config.json") && err.contains("MambaForCausalLM"), "{err}");

    let mut missing = original.clone();
    missing.as_object_mut().unwrap().remove("n_embd");
    std::fs::write(&config, missing.to_string()).unwrap();
    let err = fails_with_input_error(&["--model", path_str(dir.path()), "--prompt", "hi"]);
    assert!(err.contains("config.json") && err.contains("`n_embd`"), "{err}");
}

#[test]
fn tokenizer_missing() {
    let dir = copy_dir(&fixture("tiny-llama"));
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = fails_with_input_error(&["--model", path_str(dir.path()), "--prompt", "hi"]);
    assert!(err.contains("tokenizer.json"), "{err}");
}

/// A CPU build refuses `--device cuda` with the feature to rebuild with. Compiled out of a
/// CUDA build (where the same request opens the GPU, checked on the lent machine by
/// .ci/gpu-check.py) instead of returning early, so it can never pass without asserting.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_requested_but_not_built() {
    assert!(!candle_core::utils::cuda_is_available(), "a build without the cuda feature reports no CUDA");
    let out = llmbench()
        .args(["generate", "--device", "cuda", "--prompt", "hi", "--model"])
        .arg(fixture("tiny-gpt2"))
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--device cuda") && err.contains("--features cuda"), "{err}");
}

#[test]
fn empty_prompt() {
    let err = fails_with_input_error(&["--model", path_str(&fixture("tiny-gpt2")), "--prompt", "  "]);
    assert!(err.contains("--prompt"), "{err}");
}

#[test]
fn prompt_longer_than_context_window() {
    let long = "word ".repeat(400); // the fixture has 128 positions
    let err = fails_with_input_error(&["--model", path_str(&fixture("tiny-gpt2")), "--prompt", &long]);
    assert!(err.contains("context window of 128"), "{err}");
}

#[test]
fn zero_new_tokens() {
    let err = fails_with_input_error(&["--model", path_str(&fixture("tiny-gpt2")), "--prompt", "hi", "--max-new-tokens", "0"]);
    assert!(err.contains("--max-new-tokens"), "{err}");
}

#[test]
fn pip_package_that_does_not_exist() {
    // A closed local index: pip answers "no matching distribution" without leaving the machine.
    let cache = tempfile::tempdir().unwrap();
    let out = llmbench()
        .env("LLMBENCH_CACHE", cache.path())
        .env("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
        .env("PIP_RETRIES", "0")
        .env("PIP_TIMEOUT", "2")
        .args(["generate", "--device", "cpu", "--prompt", "hi", "--model", "pip:no-such-package-llmbench==1.0"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pip:no-such-package-llmbench") && err.contains("pip could not download"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn logits_out_must_be_npy() {
    let model = fixture("tiny-llama");
    let err = fails_with_input_error(&["--model", path_str(&model), "--prompt", "hi", "--logits-out", "/tmp/x.txt"]);
    assert!(err.contains("--logits-out") && err.contains(".npy"), "{err}");
}

/// End to end through the CLI: `--kv-cache static` writes the same logits as `--kv-cache full`,
/// byte for byte, and `--logits-out` holds one f32 row of vocabulary size per new token.
#[test]
fn static_cache_logits_file_equals_full_cache_file() {
    let model = fixture("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    let run = |kv: &str| {
        let path = dir.path().join(format!("{kv}.npy"));
        llmbench()
            .args(["generate", "--device", "cpu", "--model", path_str(&model), "--prompt", "The history of the river"])
            .args(["-n", "12", "--ignore-eos", "--json", "--kv-cache", kv, "--logits-out", path_str(&path)])
            .assert()
            .success();
        std::fs::read(path).unwrap()
    };
    let (full, fixed) = (run("full"), run("static"));
    assert_eq!(full, fixed);
    let header_len = u16::from_le_bytes([full[8], full[9]]) as usize;
    let header = String::from_utf8_lossy(&full[10..10 + header_len]).into_owned();
    let vocab = crate::common::load(&model).model.config().vocab_size();
    assert!(header.contains(&format!("'shape': (12, {vocab})")), "{header}");
    assert_eq!(full.len(), 10 + header_len + 12 * vocab * 4);
}

#[test]
fn zero_window_and_zero_block_size() {
    let model = fixture("tiny-llama");
    let err = fails_with_input_error(&["--model", path_str(&model), "--prompt", "hi", "--kv-cache", "window", "--kv-window", "0"]);
    assert!(err.contains("--kv-window 0"), "{err}");
    let err = fails_with_input_error(&["--model", path_str(&model), "--prompt", "hi", "--kv-cache", "paged", "--kv-block-size", "0"]);
    assert!(err.contains("--kv-block-size 0"), "{err}");
}

/// `kvcache` refuses bad strategy settings before loading anything or creating --out:
/// bits not in {2, 4, 8}, window 0, a budget larger than the smallest context, unknown
/// strategies, a missing prompt file; exit code 2, one line naming the flag.
#[test]
fn kvcache_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let wiki = fixture("wiki-excerpt.txt");
    let wiki = wiki.to_str().unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["--kv-bits", "3"], "--kv-bits 3"),
        (&["--strategies", "kivi:5"], "kivi:5"),
        (&["--kv-window", "0"], "--kv-window 0"),
        (&["--kv-block-size", "0"], "--kv-block-size 0"),
        (&["--budget", "2000", "--context", "512,1024", "--strategies", "h2o"], "--budget 2000 is larger than every --context (512, 1024)"),
        (&["--strategies", "full,lru"], "unknown strategy `lru`"),
        (&["--prompt-file", "/no/such/text.txt"], "--prompt-file /no/such/text.txt"),
    ];
    let with_text = |args: &[&str]| if args.contains(&"--prompt-file") { vec![] } else { vec!["--prompt-file", wiki] };
    for (args, needle) in cases {
        let assert = llmbench()
            .args(["kvcache", "--device", "cpu", "--model", "/no/such/model.gguf", "--out"])
            .arg(&out)
            .args(with_text(args))
            .args(args)
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(stderr.contains(needle) && !stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    assert!(!out.exists(), "no results directory on bad input");
}
