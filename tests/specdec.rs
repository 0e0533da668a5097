//! Speculative decoding: greedy specdec equals standard greedy decoding token for token for
//! every draft source and K (random-weight fixtures with a smaller draft architecture, and the
//! real SmolLM2 GGUF), `self` accepts everything, a rollback leaves a cache bitwise equal to
//! one that never drafted, a vocabulary mismatch is refused. The rejection-sampling
//! distribution test is in src/decode/speculative/verify.rs (pure, on hand-made numbers).
//!
//! tests/fixtures/tiny-{gpt2,llama}-draft hold only a config.json (1 layer, half the width of
//! tiny-gpt2 / tiny-llama, same vocabulary) and a copy of the target's tokenizer.json: with
//! --no-weights both models get seeded random weights.

use crate::common::{fixture, llmbench, load, smollm2_gguf};
use candle_core::{Device, Tensor};
use llmbench::kv::{self, KvKind};
use llmbench::models::layers::VerifyAttention;
use serde_json::Value;
use std::path::Path;

/// Runs `specdec` with `args` into a temporary directory and returns the report.
fn specdec(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let assert = llmbench()
        .args(["specdec", "--device", "cpu", "--warmup", "0", "-r", "1", "--no-charts", "--out"])
        .arg(&out)
        .args(args)
        .assert();
    let output = assert.get_output();
    assert!(output.status.success(), "specdec {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

/// Every case's tokens, per run, beside the baseline's: they must be equal.
fn assert_all_equal_to_baseline(report: &Value, expect_cases: usize) {
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), expect_cases, "cases planned");
    let ids = |c: &Value| -> Vec<Vec<u64>> {
        c["runs"].as_array().unwrap().iter().map(|r| r["generated_ids"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap()).collect()).collect()
    };
    let base = &cases[0];
    assert!(base["params"]["draft"].is_null(), "the baseline runs first");
    let expected = ids(base);
    assert!(expected.iter().all(|g| !g.is_empty()));
    for case in &cases[1..] {
        let label = format!("{} k={}", case["params"]["draft"], case["params"]["k"]);
        assert_eq!(case["status"], "ok", "{label}: {}", case["reason"]);
        assert_eq!(ids(case), expected, "{label}: greedy specdec differs from standard decoding");
        let q = &case["quality"];
        assert_eq!(q["agreement_with_target"], 1.0, "{label}");
        assert!(q["spec_decode_num_draft_tokens"].as_u64().unwrap() > 0 || case["params"]["draft"] == "lookup", "{label}: drafted nothing");
        if case["params"]["draft"] == "self" {
            assert_eq!(q["spec_decode_acceptance_rate"], 1.0, "{label}: self must accept every draft token under greedy");
            let k = case["params"]["k"].as_u64().unwrap() as usize;
            let rates = q["per_position_acceptance_rate"].as_array().unwrap();
            assert_eq!(rates.len(), k, "{label}");
        }
    }
}

const FIXTURE_DRAFTS: &str = "lookup,layers:1,quant:q8_0,self";

fn fixture_case(target: &str, draft_dir: &str) {
    let target = fixture(target);
    let draft = fixture(draft_dir);
    let drafts = format!("{FIXTURE_DRAFTS},{}", draft.display());
    let report = specdec(&[
        "--no-weights",
        "--model",
        target.to_str().unwrap(),
        "--draft",
        &drafts,
        "--k",
        "1,3,8",
        "-n",
        "40",
        "-p",
        "the cat sat on the mat and the cat sat on the",
        "-p",
        "one two three four one two three four one two",
    ]);
    // The baseline, then 5 drafts x 3 K.
    assert_all_equal_to_baseline(&report, 1 + 5 * 3);
}

#[test]
fn greedy_specdec_is_standard_decoding_on_random_gpt2_with_a_smaller_draft() {
    fixture_case("tiny-gpt2", "tiny-gpt2-draft");
}

#[test]
fn greedy_specdec_is_standard_decoding_on_random_llama_with_a_smaller_draft() {
    fixture_case("tiny-llama", "tiny-llama-draft");
}

#[test]
fn greedy_specdec_is_standard_decoding_on_the_real_smollm2() {
    let gguf = smollm2_gguf();
    let gguf = gguf.to_str().unwrap();
    // The second model is the same file loaded again: the only model here that shares
    // SmolLM2's vocabulary.
    let drafts = format!("lookup,layers:8,quant:q4_0,self,{gguf}");
    let report = specdec(&[
        "--model",
        gguf,
        "--draft",
        &drafts,
        "--k",
        "1,3,8",
        "-n",
        "64",
        "-p",
        "Summarize: The quick brown fox jumps over the lazy dog. The dog was not amused by the fox, which kept jumping.",
        "-p",
        "Write a short poem about the sea.",
        "-p",
        "List the first ten prime numbers.",
    ]);
    assert_all_equal_to_baseline(&report, 1 + 5 * 3);
}

#[test]
fn a_draft_with_another_vocabulary_is_refused() {
    let target = fixture("tiny-gpt2");
    // The built-in gpt2 architecture: 50,257 tokens against the fixture's 1,000.
    let out = llmbench()
        .args(["specdec", "--device", "cpu", "--no-weights", "--model", target.to_str().unwrap(), "--draft", "gpt2", "-p", "hi"])
        .assert()
        .get_output()
        .clone();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("vocabulary has 50257 tokens, the target's 1000"), "{stderr}");
}

/// Drafting K tokens and truncating them away leaves the cache exactly as if they had never
/// been fed: the next logits are bitwise equal.
fn rollback_is_exact(model_dir: &Path, kind: KvKind) {
    let loaded = load(model_dir);
    let model = loaded.model.as_ref();
    let n_layers = model.config().n_layers();
    let ids = |t: &[u32]| Tensor::new(t, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let prompt = [5u32, 17, 42, 7, 99, 3];
    let next = [11u32];
    let logits = |drafted: bool| -> Vec<f32> {
        let mut cache = kv::build(kind, n_layers, 64);
        model.forward(&ids(&prompt), 0, cache.as_mut()).unwrap();
        if drafted {
            model.forward_verify(&ids(&[8, 9, 10, 12, 13]), prompt.len(), 5, VerifyAttention::RowByRow, cache.as_mut()).unwrap();
            cache.truncate(prompt.len()).unwrap();
            assert_eq!(cache.seq_len(), prompt.len() * usize::from(kind != KvKind::None));
        }
        let start = cache.seq_len();
        let input: Vec<u32> = prompt.iter().chain(&next).skip(start).copied().collect();
        model.forward(&ids(&input), start, cache.as_mut()).unwrap().squeeze(0).unwrap().to_vec1().unwrap()
    };
    assert_eq!(logits(true), logits(false), "{}: {kind:?} after a rollback", model_dir.display());
}

#[test]
fn rollback_leaves_every_exact_cache_bitwise_equal_to_never_drafting() {
    let exact: Vec<KvKind> = KvKind::ALL.into_iter().filter(|&k| kv::rolls_back_exactly(k)).collect();
    assert_eq!(exact.len(), 7, "{exact:?}");
    // The fixtures' head dim of 16 is below int4's 32-channel groups: those run on SmolLM2 (64).
    for dir in ["tiny-gpt2", "tiny-llama"] {
        for &kind in exact.iter().filter(|&&k| kv::unsupported(k, 16).is_none()) {
            rollback_is_exact(&fixture(dir), kind);
        }
    }
    for &kind in &exact {
        rollback_is_exact(&smollm2_gguf(), kind);
    }
}

#[test]
fn compare_runs_specdec_methods_and_generate_takes_a_draft() {
    let target = fixture("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    llmbench()
        .args(["compare", "--device", "cpu", "--warmup", "0", "-r", "1", "--no-charts", "-n", "20", "--k", "2,4"])
        .args(["--model", target.to_str().unwrap(), "--methods", "standard,specdec:lookup,specdec:self", "-p", "a b c a b c a b"])
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5, "standard + 2 methods x 2 K");
    for case in cases {
        assert_eq!(case["quality"]["agreement_with_standard"], 1.0, "{}", case["params"]);
    }
    let self_run = &cases.iter().find(|c| c["params"]["method"] == "specdec:self").unwrap()["runs"][0]["speculative"];
    assert!(self_run["step_accepted"].as_array().unwrap().iter().zip(self_run["step_drafted"].as_array().unwrap()).all(|(a, d)| a == d));

    let json = |extra: &[&str]| -> Value {
        let out = llmbench()
            .args(["generate", "--device", "cpu", "--json", "-n", "24", "--model", target.to_str().unwrap(), "-p", "x y z x y z x y"])
            .args(extra)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    let plain = json(&[]);
    let drafted = json(&["--draft", "layers:1", "--k", "3"]);
    assert_eq!(plain["generated_ids"], drafted["generated_ids"]);
    assert!(drafted["spec_decode_num_draft_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn plot_redraws_the_committed_specdec_charts_byte_for_byte() {
    let run = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/specdec-smollm2");
    let out = tempfile::tempdir().unwrap();
    llmbench().args(["plot"]).arg(&run).arg("--out").arg(out.path()).assert().success();
    for chart in ["speedup-vs-k", "acceptance-by-position", "time-breakdown"] {
        for ext in ["svg", "png"] {
            let name = format!("{chart}.{ext}");
            let drawn = std::fs::read(out.path().join(&name)).unwrap();
            let committed = std::fs::read(run.join(&name)).unwrap();
            assert!(drawn.len() > 1000, "{name}: nearly empty");
            assert_eq!(drawn, committed, "{name}: redrawn from results.json differs from the committed chart");
        }
    }
    // The speedup chart has a measured and a predicted line per draft source.
    let svg = std::fs::read_to_string(out.path().join("speedup-vs-k.svg")).unwrap();
    for label in ["lookup measured", "lookup predicted", "layers:8 measured", "quant:q2_k predicted"] {
        assert!(svg.contains(label), "speedup-vs-k.svg has no `{label}` line");
    }
}
