//! `llmbench diff` on a real run: against itself (nothing significant) and against a copy
//! whose timings are ten times the real median (a significant regression, exit code 1).
//!
//! The slow side is derived from the real run rather than measured (an earlier version ran
//! with 1 thread against 2): CI machines are noisy enough that a real 1-vs-2-thread slowdown
//! was not always significant, and a test of diff's statistics must not depend on the
//! machine's cores. The test has its own
//! binary (cargo runs test binaries one after another), after a warm-up run: inside the main
//! binary, parallel tests made the runs' spread so wide (decode tok/s +-100%) that even a 3x
//! slowdown was not significant.

#[allow(dead_code)]
mod common;

use common::{llmbench, smollm2_gguf};
use serde_json::Value;

const SLOWDOWN: f64 = 10.0;

/// Every run of the slow copy takes `SLOWDOWN` times the real runs' median: the slow side has
/// no spread of its own, so the verdict depends on the real run's spread alone.
fn slowed(report: &mut Value) {
    for case in report["cases"].as_array_mut().unwrap() {
        let runs = case["runs"].as_array_mut().unwrap();
        for (field, factor) in [
            ("ttft_ms", SLOWDOWN),
            ("tpot_ms", SLOWDOWN),
            ("e2e_ms", SLOWDOWN),
            ("prefill_tokens_per_s", 1.0 / SLOWDOWN),
            ("decode_tokens_per_s", 1.0 / SLOWDOWN),
        ] {
            let mut values: Vec<f64> = runs.iter().map(|r| r[field].as_f64().unwrap()).collect();
            values.sort_by(f64::total_cmp);
            let median = values[values.len() / 2];
            for run in runs.iter_mut() {
                run[field] = Value::from(median * factor);
            }
        }
    }
}

#[test]
fn diff_against_itself_and_against_a_slowed_run() {
    let gguf = smollm2_gguf();
    let dir = tempfile::tempdir().unwrap();
    let fast = dir.path().join("fast");
    llmbench()
        .args(["compare", "--device", "cpu", "--warmup", "1", "--out"])
        .arg(&fast)
        .args(["--model", gguf.to_str().unwrap(), "-n", "16", "-r", "8", "--methods", "standard"])
        .args(["--prompt", "The history of Rome", "--no-charts", "-q"])
        .assert()
        .success();
    let same = llmbench().arg("diff").arg(&fast).arg(&fast).args(["--fail-on-regression", "1"]).assert().success();
    let text = String::from_utf8_lossy(&same.get_output().stdout).into_owned();
    assert!(text.contains("decode tok/s") && !text.contains("yes"), "{text}");
    // Against itself every metric's change is exactly zero.
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{text}");
    assert!(rows.iter().all(|r| r.contains("| +0.00% |")), "{text}");

    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(fast.join("results.json")).unwrap()).unwrap();
    slowed(&mut report);
    let slow = dir.path().join("slow.json");
    std::fs::write(&slow, serde_json::to_string(&report).unwrap()).unwrap();

    let slowed = llmbench().arg("diff").arg(&fast).arg(&slow).args(["--fail-on-regression", "10"]).assert().code(1);
    let text = String::from_utf8_lossy(&slowed.get_output().stdout).into_owned();
    // TTFT is one sample a run and the first (cold) run is an outlier, so only the per-token
    // metrics, averaged over every token of a run, are required to be significant.
    for metric in ["| decode tok/s |", "| TPOT ms |"] {
        let line = text.lines().find(|l| l.contains(metric)).unwrap();
        assert!(line.contains("yes (worse)"), "{metric}: {text}");
    }
    // Decode speed falls to a tenth of the median, against the mean: the change diff prints is
    // exactly that, to its two decimals.
    let decode = text.lines().find(|l| l.contains("| decode tok/s |")).unwrap();
    let samples: Vec<f64> =
        report_runs(&fast).iter().map(|r| r["decode_tokens_per_s"].as_f64().unwrap()).collect();
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let expected = (sorted[sorted.len() / 2] / SLOWDOWN) / (samples.iter().sum::<f64>() / samples.len() as f64) - 1.0;
    let printed: f64 = decode.split('|').nth(4).unwrap().trim().trim_end_matches('%').parse().unwrap();
    assert!((printed - expected * 100.0).abs() <= 0.005 + 1e-9, "printed {printed}%, expected {:.4}%: {decode}", expected * 100.0);
    let stderr = String::from_utf8_lossy(&slowed.get_output().stderr).into_owned();
    assert!(stderr.contains("--fail-on-regression 10"), "{stderr}");
}

/// The runs of the one case of a compare run directory.
fn report_runs(dir: &std::path::Path) -> Vec<Value> {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    report["cases"][0]["runs"].as_array().unwrap().clone()
}
