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
