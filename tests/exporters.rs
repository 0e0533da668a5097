//! Exporter snapshots (Markdown, CSV, JSON) of a real run on a fixture model, with everything
//! that depends on the clock or the machine redacted. Tokens, KV bytes, agreement and
//! perplexity are deterministic and stay in.

use crate::common::{fixture, llmbench};
use llmbench::results::export::{exporter, OutputFormat};
use llmbench::results::schema::Report;
use serde_json::Value;

/// Keys whose values depend on timing or the machine.
const TIMED: [&str; 13] = [
    "ttft_ms",
    "tpot_ms",
    "e2e_ms",
    "itl_ms",
    "samples_ns",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "peak_rss_bytes",
    "avg_ts",
    "stddev_ts",
    "mean_itl_ms",
    "median_itl_ms",
    "p99_itl_ms",
];

fn zero_numbers(v: &mut Value) {
    match v {
        Value::Number(_) => *v = Value::from(0),
        Value::Array(items) => items.iter_mut().for_each(zero_numbers),
        Value::Object(map) => map.iter_mut().filter(|(k, _)| k.as_str() != "n").for_each(|(_, v)| zero_numbers(v)),
        _ => {}
    }
}

fn redact(v: &mut Value) {
    if let Value::Object(map) = v {
        for (k, value) in map.iter_mut() {
            if TIMED.contains(&k.as_str()) || k.ends_with("_ttft_ms") || k.ends_with("_tpot_ms") {
                zero_numbers(value);
            } else {
                redact(value);
            }
        }
    } else if let Value::Array(items) = v {
        items.iter_mut().for_each(redact);
    }
}

fn redacted_report() -> Report {
    redacted(&[
        "compare", "--device", "cpu", "--warmup", "0", "-r", "2", "-n", "6", "--prompt", "The river", "--quality",
        "--methods", "standard,sled,sled:stride", "--window", "4", "--stride", "2",
    ])
}

/// Runs a command on the tiny Llama fixture and returns its report with what depends on the
/// machine, the clock or the checkout path replaced by fixed values.
fn redacted(args: &[&str]) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    llmbench().args(args).args(["--no-charts", "-q", "--model"]).arg(fixture("tiny-llama")).arg("--out").arg(&out).assert().success();
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    json["provenance"] = serde_json::json!({
        "argv": ["llmbench", "compare"], "llmbench_version": "[version]", "git_commit": "[commit]",
        "candle_version": "[candle]", "candle_features": ["cpu"], "device": "cpu", "device_name": "[cpu]",
        "driver": null, "cpu_model": "[cpu]", "cpu_cores": 0, "threads": 0, "ram_bytes": 0, "os": "[os]",
        "hostname": "[host]", "timestamp_utc": "[time]"
    });
    if let Some(settings) = json["settings"]["command_settings"].as_object_mut() {
        if settings.contains_key("prompt_file") {
            settings.insert("prompt_file".into(), "tests/fixtures/wiki-excerpt.txt".into());
        }
    }
    for (i, case) in json["cases"].as_array_mut().unwrap().iter_mut().enumerate() {
        // The id hashes the model path, which depends on where the repository is checked out.
        case["case_id"] = format!("case-{i}").into();
        if case["model"].is_object() {
            case["model"]["id"] = "tests/fixtures/tiny-llama".into();
        }
        case["params"]["model"] = "tests/fixtures/tiny-llama".into();
    }
    redact(&mut json);
    let mut report: Report = serde_json::from_value(json).unwrap();
    with_fixed_timings(&mut report);
    report
}

/// Replaces the redacted (zeroed) timings with fixed values that differ between cases and
/// between runs, and summarises them again, so the snapshots show real ratios against standard
/// ("0.50x [..]") and real spreads ("± 0.71") instead of zeros.
fn with_fixed_timings(report: &mut Report) {
    for (i, case) in report.cases.iter_mut().enumerate() {
        let slower = (i + 1) as f64;
        for (j, run) in case.runs.iter_mut().enumerate() {
            let jitter = j as f64;
            run.tpot_ms = 10.0 * slower + jitter;
            run.ttft_ms = 20.0 * slower + jitter;
            run.itl_ms = vec![run.tpot_ms; run.generated_tokens.saturating_sub(1)];
            run.e2e_ms = run.ttft_ms + run.tpot_ms * run.itl_ms.len() as f64;
            run.decode_tokens_per_s = 1000.0 / run.tpot_ms;
            run.prefill_tokens_per_s = 1000.0 * run.prompt_tokens as f64 / run.ttft_ms;
            run.peak_rss_bytes = (100 << 20) + (j as u64) * (1 << 20);
        }
        case.summary = llmbench::results::schema::CaseSummary::from_runs(&case.runs);
    }
}

#[test]
fn exporters_render_stable_output() {
    let report = redacted_report();
    let render = |f| String::from_utf8(exporter(f).render(&report).unwrap()).unwrap();
    insta::assert_snapshot!("compare_md", render(OutputFormat::Md));
    insta::assert_snapshot!("compare_csv", render(OutputFormat::Csv));
    insta::assert_snapshot!("compare_json", render(OutputFormat::Json));
}

/// kvcache's report through the same exporters: its own columns, the same formats.
#[test]
fn kvcache_report_renders_through_the_same_exporters() {
    let wiki = fixture("wiki-excerpt.txt");
    let report = redacted(&[
        "kvcache", "--device", "cpu", "--context", "24,40", "-n", "4", "--eval-tokens", "8", "-r", "2",
        "--strategies", "full,window:16,int8,paged:5,h2o:30", "--prompt-file", wiki.to_str().unwrap(),
    ]);
    let render = |f| String::from_utf8(exporter(f).render(&report).unwrap()).unwrap();
    insta::assert_snapshot!("kvcache_md", render(OutputFormat::Md));
    insta::assert_snapshot!("kvcache_csv", render(OutputFormat::Csv));
}
