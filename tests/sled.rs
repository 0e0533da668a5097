//! SLED decoding: with a window that covers the whole sequence both variants are standard
//! decoding; with a smaller one the cache stays bounded by window + stride.

use crate::common::{fixture, llmbench, load};
use candle_core::Device;
use llmbench::decode::sampling::SamplingConfig;
use llmbench::decode::{self, Method, MethodParams};
use llmbench::engine::{Engine, GenerateRequest, Generation};
use llmbench::kv::{self, KvKind};

const NEW_TOKENS: usize = 40;

fn run(name: &str, method: Method, params: &MethodParams) -> Generation {
    let loaded = load(&fixture(name));
    let engine = Engine::new(loaded.model.as_ref(), &Device::Cpu);
    let prompt = [11, 22, 33, 44, 55];
    let mut strategy = decode::build(method, params).unwrap();
    let mut cache = kv::build(strategy.cache_kind(KvKind::Full), loaded.model.config().n_layers(), 4096);
    let request =
        GenerateRequest { prompt_ids: &prompt, max_new_tokens: NEW_TOKENS, sampling: SamplingConfig::default(), stop_at_eos: false };
    engine.generate_with(strategy.as_mut(), cache.as_mut(), &request, &mut |_| {}).unwrap()
}

#[test]
fn sled_with_a_covering_window_is_standard_decoding() {
    for name in ["tiny-gpt2", "tiny-llama"] {
        let covering = MethodParams::sled(100, 10);
        let standard = run(name, Method::Standard, &covering).generated_ids;
        assert_eq!(run(name, Method::SledRecompute, &covering).generated_ids, standard, "{name} sled:recompute");
        assert_eq!(run(name, Method::SledStride, &covering).generated_ids, standard, "{name} sled:stride");
    }
}

#[test]
fn sled_with_a_short_window_forgets_and_stays_bounded() {
    let params = MethodParams::sled(8, 4);
    let standard = run("tiny-llama", Method::Standard, &params);
    let stride = run("tiny-llama", Method::SledStride, &params);
    let recompute = run("tiny-llama", Method::SledRecompute, &params);
    // 2 layers x K and V x 2 kv heads x 16 dims x 4 bytes per token.
    let per_token = 2 * 2 * 2 * 16 * 4;
    let max_kv = |g: &Generation| g.events.iter().map(|e| e.kv_cache_bytes).max().unwrap();
    // The cache fills to window + stride tokens before the window is re-encoded.
    assert_eq!(max_kv(&stride), 12 * per_token, "{}", max_kv(&stride));
    assert_eq!(max_kv(&standard), (5 + NEW_TOKENS - 1) as u64 * per_token);
    assert_eq!(max_kv(&recompute), 0);
    assert_ne!(recompute.generated_ids, standard.generated_ids, "a short window changes the output");
}

/// `llmbench sled` (the window study): standard decoding once, both sliding-window variants at
/// every window with stride W/2, written as compare's results with the window charts; sled's
/// KV bytes stop growing at the window while standard's grow with every token.
#[test]
fn the_window_study_runs_compare_over_the_windows_with_half_window_strides() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    llmbench()
        .args(["sled", "--device", "cpu", "--no-weights", "-n", "24", "-r", "1", "--warmup", "0", "--window", "4,8"])
        .args(["--prompt", "abc", "--quality", "-q", "--model"])
        .arg(fixture("tiny-llama"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(report["command"], "compare");
    let cases = report["cases"].as_array().unwrap();
    let planned: Vec<(String, Option<u64>, Option<u64>)> = cases
        .iter()
        .map(|c| (c["params"]["method"].as_str().unwrap().to_string(), c["params"]["window"].as_u64(), c["params"]["stride"].as_u64()))
        .collect();
    let p = |m: &str, w: Option<u64>, s: Option<u64>| (m.to_string(), w, s);
    assert_eq!(
        planned,
        [p("standard", None, None), p("sled:recompute", Some(4), None), p("sled:recompute", Some(8), None), p("sled:stride", Some(4), Some(2)), p("sled:stride", Some(8), Some(4))]
    );
    let kv = |i: usize| -> Vec<u64> {
        cases[i]["runs"][0]["kv_cache_bytes_per_token"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
    };
    let (standard, stride8) = (kv(0), kv(4));
    assert!(standard.windows(2).all(|w| w[1] > w[0]), "standard grows with every token: {standard:?}");
    // sled:stride w=8 s=4 holds at most window + stride = 12 tokens, however long the run.
    let per_token = standard[1] - standard[0];
    assert_eq!(*stride8.iter().max().unwrap(), 12 * per_token, "{stride8:?}");
    for chart in ["kv-bytes-vs-window", "peak-memory-vs-window", "throughput-vs-window", "agreement-vs-window", "perplexity-vs-window", "kv-bytes"] {
        for ext in ["png", "svg"] {
            let path = out.join(format!("{chart}.{ext}"));
            assert!(std::fs::metadata(&path).map(|m| m.len() > 1000).unwrap_or(false), "{} missing", path.display());
        }
    }
}

/// `sled --task truthfulqa` writes a sled report through the sink: one case per decoding
/// (`--variant` adds settings), per-question scores whose MC means are the summary's, the
/// charts, `--resume` that scores only what is missing, and `diff` question by question.
#[test]
fn truthfulqa_runs_through_the_sink_and_resumes_and_diffs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tqa");
    let base = |cmd: &mut assert_cmd::Command| {
        cmd.args(["sled", "--task", "truthfulqa", "--device", "cpu", "--bootstrap", "50", "-q", "--model"])
            .arg(fixture("layer_contrast/tiny-llama-6l"))
            .arg("--data")
            .arg(fixture("layer_contrast/truthfulqa-3.csv"));
    };
    let mut first = llmbench();
    base(&mut first);
    first.args(["--methods", "standard"]).arg("--out").arg(&out).assert().success();
    let mut second = llmbench();
    base(&mut second);
    second
        .args(["--methods", "standard", "--variant", "sled-evolution --evolution-rate 2.5", "--variant", "dola --dola-layers low"])
        .arg("--resume")
        .arg(&out)
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(report["command"], "sled");
    let labels: Vec<String> = report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["params"]["method"].as_str().unwrap(), c["params"]["contrast"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(labels, ["standard -", "sled-evolution rate=2.5 k=10 steps=1 floor=-1000", "dola layers=low"]);
    // The standard case ran once: resume kept it (the JSONL has one line per case).
    let lines = std::fs::read_to_string(out.join("results.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 3);
    for case in report["cases"].as_array().unwrap() {
        let q = &case["quality"];
        let questions = q["questions"].as_array().unwrap();
        assert_eq!(questions.len(), 3);
        // MC3 of each question from its stored scores; their mean is the summary's.
        let mc3: Vec<f64> = questions
            .iter()
            .map(|s| {
                let get = |a: &serde_json::Value| a["log_prob"].as_f64().unwrap();
                let max_false = s["incorrect"].as_array().unwrap().iter().map(get).fold(f64::NEG_INFINITY, f64::max);
                let correct: Vec<f64> = s["correct"].as_array().unwrap().iter().map(get).collect();
                correct.iter().filter(|&&x| x > max_false).count() as f64 / correct.len() as f64
            })
            .collect();
        let mean = mc3.iter().sum::<f64>() / 3.0;
        assert!((q["truthfulqa"]["log_prob"]["mc3"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
        let ci = q["truthfulqa"]["log_prob"]["mc3"]["ci95"].as_array().unwrap();
        assert!(ci[0].as_f64().unwrap() <= mean && mean <= ci[1].as_f64().unwrap());
    }
    for chart in ["truthfulqa-mc", "truthfulqa-mc-raw", "seconds-per-question"] {
        assert!(out.join(format!("{chart}.png")).exists() && out.join(format!("{chart}.svg")).exists(), "{chart}");
    }
    // The table's paired differences: the mean per-question difference is the difference of
    // the means (same questions), and each interval holds its mean.
    let mut csv = llmbench();
    base(&mut csv);
    let csv = csv.args(["--methods", "standard", "--variant", "sled-evolution --evolution-rate 2.5", "--variant", "dola --dola-layers low", "-o", "csv"]).arg("--resume").arg(&out).assert().success();
    let csv = String::from_utf8_lossy(&csv.get_output().stdout).into_owned();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    let col = |name: &str| rows[0].iter().position(|h| *h == name).unwrap();
    let num = |r: &Vec<&str>, name: &str| r[col(name)].parse::<f64>().unwrap();
    let standard_log_prob = rows.iter().find(|r| r[col("method")] == "standard" && r[col("score")] == "log_prob").unwrap();
    for r in rows.iter().skip(1).filter(|r| r[col("method")] != "standard" && r[col("score")] == "log_prob") {
        for mc in ["mc1", "mc2", "mc3"] {
            let d = num(r, &format!("d_{mc}_vs_standard"));
            assert!((d - (num(r, mc) - num(standard_log_prob, mc))).abs() < 1e-12, "{mc}: {csv}");
            assert!(num(r, &format!("d_{mc}_ci95_low")) <= d && d <= num(r, &format!("d_{mc}_ci95_high")), "{csv}");
        }
    }
    // Resuming with other questions is refused: the paired differences need the same ones.
    let mut other = llmbench();
    base(&mut other);
    let refused = other.args(["--methods", "standard", "--limit", "2"]).arg("--resume").arg(&out).assert().code(2);
    assert!(String::from_utf8_lossy(&refused.get_output().stderr).contains("resume with the same --data, --limit"));
    // diff of two runs over different questions is refused too.
    let fewer = dir.path().join("fewer");
    let mut two = llmbench();
    base(&mut two);
    two.args(["--methods", "standard", "--limit", "2"]).arg("--out").arg(&fewer).assert().success();
    llmbench().arg("diff").arg(&out).arg(&fewer).assert().code(2);
    let diff = llmbench().arg("diff").arg(&out).arg(&out).assert().success();
    let text = String::from_utf8_lossy(&diff.get_output().stdout).into_owned();
    // Six TruthfulQA metrics per case, each one unchanged against itself.
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 3 * 6, "{text}");
    assert!(rows.iter().all(|r| r.contains("| TQA MC") && r.contains("| +0.00% |") && r.ends_with("| no")), "{text}");
}
