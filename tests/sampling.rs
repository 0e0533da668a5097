//! A fixed seed gives the same sampled tokens run to run (through the CLI, end to end).

use crate::common::{fixture, llmbench};
use serde_json::Value;

fn sampled_ids(seed: u64) -> Vec<u64> {
    let out = llmbench()
        .args(["generate", "--device", "cpu", "--json", "--ignore-eos", "-n", "24", "--temperature", "1.0", "--top-p", "0.95"])
        .args(["--seed", &seed.to_string(), "--prompt", "The history of the city"])
        .arg("--model")
        .arg(fixture("tiny-llama"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let record: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(record["timings"]["itl_ms"].as_array().unwrap().len(), 23);
    assert!(record["timings"]["ttft_ms"].as_f64().unwrap() > 0.0);
    record["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

#[test]
fn same_seed_same_tokens() {
    let a = sampled_ids(7);
    assert_eq!(a.len(), 24);
    assert_eq!(a, sampled_ids(7));
    assert_ne!(a, sampled_ids(8));
}

/// `--no-weights` builds a real architecture with seeded random weights through the loader.
#[test]
fn no_weights_preset_runs_with_the_preset_architecture() {
    let run = |seed: &str| -> Value {
        let out = llmbench()
            .args(["generate", "--device", "cpu", "--json", "--ignore-eos", "-n", "3", "--prompt", "abc"])
            .args(["--model", "smollm2-135m", "--no-weights", "--seed", seed])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    let a = run("1");
    assert_eq!(a["model"]["architecture"]["num_hidden_layers"], 30);
    assert_eq!(a["model"]["weights_format"], "random (seed 1)");
    assert_eq!(a["prompt_ids"], serde_json::json!([97, 98, 99]));
    // 30 layers x K and V x 3 kv heads x 64 dims x (3 prompt + 2 fed-back tokens) x 4 bytes
    assert_eq!(a["kv_cache_bytes"], 30 * 2 * 3 * 64 * 5 * 4);
    assert_eq!(a["generated_ids"], run("1")["generated_ids"]);
    // The seed reaches the weights: another seed, another model, other tokens.
    assert_ne!(a["generated_ids"], run("2")["generated_ids"]);
}
