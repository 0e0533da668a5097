//! The evaluate pipeline on the real SmolLM2: each format generates through the harness, and
//! its recorded scores are what `evaluate score` (checked against sacrebleu and rouge-score in
//! text_metrics.rs) computes from the recorded outputs, against the references and against
//! the baseline's outputs; the exporters, charts, `plot`, `diff` and `--resume` work on the run.

use crate::common::{fixture, llmbench, smollm2_gguf, stdout_json};
use serde_json::Value;
use std::path::Path;

const DATA: &str = r#"{"prompt": "The capital of France is", "reference": "The capital of France is Paris.", "keywords": ["Paris", "Seine"]}
{"prompt": "At sea level, water boils at a temperature of", "reference": "Water boils at 100 degrees Celsius at sea level.", "keywords": ["100", "Celsius"]}
"#;

/// `evaluate score -o json` of hypotheses against references (plain line files).
fn score(dir: &Path, name: &str, hyps: &[&str], refs: &[&str]) -> Value {
    let (h, r) = (
        dir.join(format!("{name}.hyp.jsonl")),
        dir.join(format!("{name}.ref.jsonl")),
    );
    let lines = |field: &str, v: &[&str]| {
        v.iter()
            .map(|t| serde_json::json!({ field: t }).to_string() + "\n")
            .collect::<String>()
    };
    std::fs::write(&h, lines("hypothesis", hyps)).unwrap();
    std::fs::write(&r, lines("reference", refs)).unwrap();
    stdout_json(
        llmbench()
            .args([
                "evaluate",
                "score",
                "-o",
                "json",
                "--metrics",
                "bleu,chrf,rougeL",
                "--hypotheses",
            ])
            .arg(&h)
            .arg("--references")
            .arg(&r),
    )
}

/// The pipeline on SmolLM2 in f32 and q8_0 over `data`, with the passage as `--text`.
fn pipeline(data: &Path) -> assert_cmd::Command {
    let mut cmd = llmbench();
    cmd.args([
        "evaluate",
        "--device",
        "cpu",
        "--formats",
        "q8_0",
        "-n",
        "12",
        "--warmup",
        "0",
        "-r",
        "2",
        "-q",
    ])
    .args([
        "--metrics",
        "bleu,chrf,rougeL,distinct,repetition,coherence",
        "--model",
    ])
    .arg(smollm2_gguf())
    .arg("--data")
    .arg(data)
    .arg("--text")
    .arg(fixture("smollm2/passage.txt"));
    cmd
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() < 1e-9,
        "{what}: pipeline {a} vs evaluate score {b}"
    );
}

#[test]
fn the_pipeline_scores_each_format_as_evaluate_score_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.jsonl");
    std::fs::write(&data, DATA).unwrap();
    let run = dir.path().join("run");
    let csv = pipeline(&data)
        .args(["-o", "csv", "--out"])
        .arg(&run)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(report["command"], "evaluate");
    let cases = report["cases"].as_array().unwrap();
    let formats: Vec<&str> = cases
        .iter()
        .map(|c| c["params"]["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["f32", "q8_0"]);
    let refs = [
        "The capital of France is Paris.",
        "Water boils at 100 degrees Celsius at sea level.",
    ];
    let outputs = |c: &Value| -> Vec<String> {
        c["quality"]["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_string())
            .collect()
    };
    let baseline = outputs(&cases[0]);
    assert!(
        baseline.iter().any(|o| !o.is_empty())
            && !baseline.iter().any(|o| o.contains("<|im_end|>")),
        "{baseline:?}"
    );
    for c in cases {
        let q = &c["quality"];
        let ours = outputs(c);
        let hyps: Vec<&str> = ours.iter().map(String::as_str).collect();
        let label = c["params"]["format"].as_str().unwrap();
        // Against the references and against the baseline's outputs: evaluate score's numbers.
        let mut parts = vec![("references", refs.to_vec())];
        if label != "f32" {
            parts.push(("fidelity", baseline.iter().map(String::as_str).collect()));
        }
        for (part, against) in parts {
            let expected = score(dir.path(), &format!("{label}-{part}"), &hyps, &against);
            close(
                q[part]["corpus"]["bleu"].as_f64().unwrap(),
                expected["corpus"]["bleu"]["score"].as_f64().unwrap(),
                &format!("{label} {part} bleu"),
            );
            close(
                q[part]["corpus"]["chrf"].as_f64().unwrap(),
                expected["corpus"]["chrf"]["score"].as_f64().unwrap(),
                &format!("{label} {part} chrf"),
            );
            close(
                q[part]["corpus"]["rougeL"].as_f64().unwrap(),
                expected["corpus"]["rougeL"]["fmeasure"].as_f64().unwrap(),
                &format!("{label} {part} rougeL"),
            );
            for i in 0..2 {
                close(
                    q[part]["samples"][i]["bleu"].as_f64().unwrap(),
                    expected["segments"][i]["bleu"].as_f64().unwrap(),
                    &format!("{label} {part} sample {i}"),
                );
            }
            assert!(q[part]["signatures"]["bleu"]
                .as_str()
                .unwrap()
                .starts_with("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp"));
        }
        // Keyword coverage, by hand.
        let keywords = [["paris", "seine"], ["100", "celsius"]];
        let coverage: f64 = hyps
            .iter()
            .zip(&keywords)
            .map(|(h, k)| k.iter().filter(|w| h.to_lowercase().contains(*w)).count() as f64 / 2.0)
            .sum::<f64>()
            / 2.0;
        close(
            q["reference_free"]["corpus"]["keywords"].as_f64().unwrap(),
            coverage,
            &format!("{label} keywords"),
        );
        let coherence = q["reference_free"]["corpus"]["coherence"].as_f64().unwrap();
        assert!(
            coherence > 0.0 && coherence <= 1.0,
            "{label} coherence {coherence}"
        );
        assert!(
            q["reference_free"]["corpus"]["distinct-1"]
                .as_f64()
                .unwrap()
                > 0.0
        );
        // Per-sample latency from the harness: every prompt twice.
        assert_eq!(c["runs"].as_array().unwrap().len(), 4);
        assert!(c["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ttft_ms"].as_f64().unwrap() > 0.0));
        let ppl = q["perplexity"]["token_perplexity"].as_f64().unwrap();
        assert!((5.0..100.0).contains(&ppl), "{label} text perplexity {ppl}");
    }
    // The baseline has no fidelity to itself; a close format's tokens mostly agree with it.
    assert!(cases[0]["quality"]["fidelity"].is_null());
    assert_eq!(cases[0]["quality"]["token_agreement"], 1.0);
    let agreement = cases[1]["quality"]["token_agreement"].as_f64().unwrap();
    assert!(
        agreement > 0.0 && agreement <= 1.0,
        "q8_0 agreement {agreement}"
    );
    // The text's perplexity is `evaluate perplexity`'s rolling windows (that command runs the
    // GGUF's own quantized matmuls, the pipeline's f32 its dequantized weights: within 1%).
    let command = stdout_json(
        llmbench()
            .args([
                "evaluate",
                "perplexity",
                "--device",
                "cpu",
                "--methods",
                "rolling",
                "-o",
                "json",
                "--model",
            ])
            .arg(smollm2_gguf())
            .arg("--text")
            .arg(fixture("smollm2/passage.txt")),
    );
    let expected = command["results"]["rolling"]["scores"]["token_perplexity"]
        .as_f64()
        .unwrap();
    let f32_ppl = cases[0]["quality"]["perplexity"]["token_perplexity"]
        .as_f64()
        .unwrap();
    assert!(
        (f32_ppl / expected - 1.0).abs() < 0.01,
        "f32 passage perplexity {f32_ppl} vs evaluate perplexity {expected}"
    );
    assert_eq!(
        cases[0]["quality"]["perplexity"]["scored_tokens"],
        command["results"]["rolling"]["scores"]["scored_tokens"]
    );

    // CSV: a corpus row and a row per sample for each case, every metric a column.
    let csv = String::from_utf8(csv).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for column in [
        "sample",
        "median_ttft_ms",
        "ref_bleu",
        "fid_rougeL",
        "coherence",
        "keywords",
        "text_token_perplexity",
    ] {
        assert!(header.contains(&column), "no {column} in {header:?}");
    }
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
    // Charts now and redrawn later; diff of the run with itself.
    for chart in [
        "latency-vs-throughput.svg",
        "rougel-by-format.svg",
        "bleu-by-format.svg",
    ] {
        assert!(run.join(chart).is_file(), "{chart}");
    }
    std::fs::remove_file(run.join("bleu-by-format.svg")).unwrap();
    llmbench().arg("plot").arg(&run).assert().success();
    assert!(run.join("bleu-by-format.svg").is_file());
    llmbench()
        .arg("diff")
        .arg(&run)
        .arg(&run)
        .assert()
        .success();
    // --resume: nothing left to run, the same cases.
    pipeline(&data).arg("--resume").arg(&run).assert().success();
    let again: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(again["cases"], report["cases"]);
}

/// A model list runs every entry's formats as cases of one run: `skip_quantize` leaves the
/// source in f32 only, `skip_evaluate` measures speed and size with no scores.
#[test]
fn a_model_list_runs_every_entry_in_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("models.toml");
    let entries = format!(
        "[[model]]\nid = {:?}\nformats = \"q4_0\"\n\n[[model]]\nid = {:?}\nskip_quantize = true\nskip_evaluate = true\n",
        smollm2_gguf().to_str().unwrap(),
        fixture("tiny-llama").to_str().unwrap()
    );
    std::fs::write(&list, entries).unwrap();
    let run = dir.path().join("run");
    llmbench()
        .args([
            "evaluate",
            "--device",
            "cpu",
            "-n",
            "4",
            "--warmup",
            "0",
            "-p",
            "The capital of France is",
            "-q",
            "--no-charts",
        ])
        .args(["--metrics", "rougeL,distinct", "--models"])
        .arg(&list)
        .arg("--out")
        .arg(&run)
        .assert()
        .success();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let formats: Vec<&str> = cases
        .iter()
        .map(|c| c["params"]["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["f32", "q4_0", "f32"]);
    assert!(
        cases[1]["quality"]["fidelity"]["corpus"]["rougeL"].is_number(),
        "q4_0 is scored against the baseline"
    );
    let tiny = &cases[2]["quality"];
    assert!(
        tiny["reference_free"].is_null() && tiny["fidelity"].is_null(),
        "skip_evaluate scored: {tiny}"
    );
    assert!(
        cases[2]["summary"]["decode_tokens_per_s"]["median"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

/// `--task truthfulqa` scores each format's TruthfulQA multiple choice; the source in f32 gets
/// exactly what `sled --task truthfulqa` gives standard decoding (checked against the golden
/// script in layer_contrast.rs), and nothing is generated.
#[test]
fn the_truthfulqa_task_is_sleds_standard_scoring_per_format() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let model = fixture("layer_contrast/tiny-llama-6l");
    let data = fixture("layer_contrast/truthfulqa-3.csv");
    llmbench()
        .args([
            "evaluate",
            "--task",
            "truthfulqa",
            "--device",
            "cpu",
            "--formats",
            "q8_0",
            "-q",
            "--model",
        ])
        .arg(&model)
        .arg("--truthfulqa")
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .assert()
        .success();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert!(
        cases
            .iter()
            .all(|c| c["runs"].as_array().unwrap().is_empty()),
        "nothing is generated"
    );
    let sled = stdout_json(
        llmbench()
            .args([
                "sled",
                "--task",
                "truthfulqa",
                "--device",
                "cpu",
                "--methods",
                "standard",
                "-o",
                "json",
                "--model",
            ])
            .arg(&model)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(dir.path().join("sled")),
    );
    let ours = &cases[0]["quality"]["truthfulqa"];
    assert_eq!(ours["questions"], 3);
    let standard = &sled["cases"][0]["quality"]["truthfulqa"];
    for kind in ["raw", "log_prob"] {
        assert_eq!(ours[kind], standard[kind], "{kind}");
    }
    assert!(
        cases[1]["quality"]["truthfulqa"]["raw"]["mc2"]["mean"].is_number(),
        "q8_0 is scored too"
    );
}
