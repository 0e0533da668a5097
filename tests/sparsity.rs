//! Activation sparsity (TEAL, LaRoSA) through the whole model: share 0 is the dense model bit
//! for bit, a real share changes the logits and zeroes what it says, LaRoSA's folded decode
//! weights give what rotating at run time gives, and `quantize --sparsity` caches its
//! calibration and records the share really zeroed.

use crate::common::{fixture, llmbench, load, max_abs_diff, smollm2_gguf};
use candle_core::{Device, Tensor};
use llmbench::engine::Engine;
use llmbench::kv::{self, KvKind};
use llmbench::models::LoadedModel;
use llmbench::sparse::calibration::{ActivationStats, Calibration};
use llmbench::sparse::SparsityMethod;

/// A calibration over the committed Wikipedia excerpt (windows of 128 tokens).
fn calibrate(loaded: &LoadedModel, moments: bool) -> Calibration {
    let text = std::fs::read_to_string(fixture("wiki-excerpt.txt")).unwrap();
    let ids = loaded.tokenizer.encode(&text).unwrap();
    let windows: Vec<Vec<u32>> = ids
        .chunks(128)
        .filter(|w| w.len() > 1)
        .map(<[u32]>::to_vec)
        .collect();
    let config = loaded.model.config();
    let mut stats = ActivationStats::new(config.n_layers(), config.hidden_size(), moments);
    loaded
        .model
        .calibrate_activations(&windows, &mut stats)
        .unwrap();
    Calibration::from_stats(stats).unwrap()
}

/// Logits of every position of `ids` (one pass), and of the last token decoded alone after a
/// prefill of the others.
fn logits(loaded: &LoadedModel, ids: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let engine = Engine::new(loaded.model.as_ref(), &Device::Cpu);
    let layers = loaded.model.config().n_layers();
    let mut cache = kv::build(KvKind::Full, layers, ids.len());
    let all = engine.teacher_force(cache.as_mut(), ids).unwrap();
    let last_of_pass: Vec<f32> = all.get(ids.len() - 1).unwrap().to_vec1().unwrap();
    let mut cache = kv::build(KvKind::Full, layers, ids.len());
    let n = ids.len();
    let prefix = Tensor::new(&ids[..n - 1], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    loaded.model.forward(&prefix, 0, cache.as_mut()).unwrap();
    let last = Tensor::new(&ids[n - 1..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let decoded: Vec<f32> = loaded
        .model
        .forward(&last, n - 1, cache.as_mut())
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    (last_of_pass, decoded)
}

#[test]
fn share_zero_is_the_dense_model_and_teal_zeroes_what_its_thresholds_say() {
    let loaded = load(&smollm2_gguf());
    let calibration = calibrate(&loaded, false);
    let ids = loaded
        .tokenizer
        .encode("The history of the Roman Empire spans many centuries and")
        .unwrap();
    let dense = logits(&loaded, &ids);
    for zero in [SparsityMethod::Teal(0.0), SparsityMethod::Larosa(0.0)] {
        loaded
            .model
            .set_sparsity(Some((zero, &calibration)))
            .unwrap();
        assert_eq!(
            logits(&loaded, &ids),
            dense,
            "{zero} must be the dense model bit for bit"
        );
        assert!(loaded.model.sparsity_counts().is_none());
    }
    loaded
        .model
        .set_sparsity(Some((SparsityMethod::Teal(0.4), &calibration)))
        .unwrap();
    let (pass, decoded) = logits(&loaded, &ids);
    assert!(
        max_abs_diff(&decoded, &dense.1) > 1e-2,
        "teal:0.4 left the logits unchanged"
    );
    // The pass (masked inputs, the model's Q4_1 kernels) and the decode step (Q8_0 column
    // copies) differ by the copies' rounding only: the same token wins.
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0
    };
    assert_eq!(argmax(&pass), argmax(&decoded));
    // The thresholds come from the calibration text and are applied to other text: the share
    // zeroed lands near the target, not on it.
    let counts = loaded.model.sparsity_counts().unwrap();
    let zeroed =
        1.0 - counts.kept.iter().sum::<u64>() as f64 / counts.seen.iter().sum::<u64>() as f64;
    assert!((zeroed - 0.4).abs() < 0.1, "teal:0.4 zeroed {zeroed}");
    assert!(counts.bytes > 0);
    loaded.model.set_sparsity(None).unwrap();
    assert_eq!(
        logits(&loaded, &ids),
        dense,
        "turning sparsity off restores the dense model"
    );
}

/// LaRoSA decodes with `W Q` on the kept rotated entries; a multi-token pass zeroes the same
/// rotated entries, rotates back (`Q z`) and runs the model's own `W`. Dense f32 weights, so
/// the two differ by f32 rounding alone.
#[test]
fn larosa_folded_weights_give_the_logits_of_rotating_at_run_time() {
    let loaded = load(&fixture("tiny-llama"));
    let calibration = calibrate(&loaded, true);
    let ids: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 1000).collect();
    let dense = logits(&loaded, &ids);
    loaded
        .model
        .set_sparsity(Some((SparsityMethod::Larosa(0.5), &calibration)))
        .unwrap();
    let (runtime, folded) = logits(&loaded, &ids);
    let scale = runtime.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        max_abs_diff(&runtime, &folded) < 1e-4 * scale.max(1.0),
        "folded {:?}.. vs runtime {:?}..",
        &folded[..4],
        &runtime[..4]
    );
    assert!(
        max_abs_diff(&folded, &dense.1) > 1e-3 * scale,
        "larosa:0.5 left the logits unchanged"
    );
    // Top-k is exact: half of every input entry, every token.
    let counts = loaded.model.sparsity_counts().unwrap();
    for (kept, seen) in counts.kept.iter().zip(counts.seen) {
        assert_eq!(*kept * 2, seen, "kept {kept} of {seen}");
    }
}

#[test]
fn quantize_sparsity_caches_its_calibration_and_records_the_share_zeroed() {
    let cache = tempfile::tempdir().unwrap();
    let wiki = fixture("wiki-excerpt.txt");
    let run = |out: &std::path::Path| -> serde_json::Value {
        llmbench()
            .env("LLMBENCH_CACHE", cache.path())
            // The test model is fetched into the usual cache; point the pip source there.
            .args([
                "quantize",
                "--device",
                "cpu",
                "--formats",
                "f32",
                "--sparsity",
                "teal:0.4",
                "--skip-evaluate",
            ])
            .args([
                "--warmup",
                "0",
                "-r",
                "1",
                "-n",
                "4",
                "--prompt",
                "The Eiffel Tower is",
                "--no-charts",
                "-q",
                "--model",
            ])
            .arg(smollm2_gguf())
            .arg("--calibration")
            .arg(&wiki)
            .arg("--out")
            .arg(out)
            .assert()
            .success();
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let first = run(&dir.path().join("a"));
    let second = run(&dir.path().join("b"));
    let sparse = |report: &serde_json::Value| report["cases"][1]["quality"]["sparsity"].clone();
    let (a, b) = (sparse(&first), sparse(&second));
    assert_eq!(first["cases"][1]["params"]["sparsity"], "teal:0.4");
    assert_eq!(
        (
            a["calibration_cached"].as_bool(),
            b["calibration_cached"].as_bool()
        ),
        (Some(false), Some(true)),
        "{a} / {b}"
    );
    // Same thresholds from the cache: the same greedy tokens zero the same entries.
    assert_eq!(a["zeroed_share"], b["zeroed_share"]);
    let overall = a["zeroed_share_overall"].as_f64().unwrap();
    assert!((overall - 0.4).abs() < 0.12, "zeroed {overall}");
    assert!(
        first["cases"][0]["quality"].get("sparsity").is_none(),
        "the dense case has no sparsity record"
    );
    assert_eq!(
        std::fs::read_dir(cache.path().join("sparsity"))
            .unwrap()
            .count(),
        1
    );
}

/// `compare --combine`: the baseline, each part alone and all_combined, each case carrying
/// exactly its parts, and each part saving what it claims (prompt tokens, KV bytes, zeroed
/// projection inputs) against the baseline of the same run.
#[test]
fn compare_combine_runs_each_part_alone_and_all_of_them_stacked() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // A ~90-token prompt (the tiny model covers 128 positions): the hybrid cache's 40 + 32
    // slots must evict.
    let prompt = "Romania elected its members of the European Parliament for the first time on 25 November 2007; the election was initially scheduled for 13 May, but the PM postponed it for domestic political reasons. A referendum on a new voting system was held on the same day.";
    llmbench()
        .env("LLMBENCH_CACHE", cache.path())
        .args(["compare", "--device", "cpu", "--combine", "--input", "none,word_removal:3", "--sparsity", "teal:0.4"])
        .args(["--kv-cache", "hybrid", "--budget", "40", "-n", "8", "--warmup", "0", "-r", "1", "--no-charts", "-q", "--model"])
        .arg(fixture("tiny-llama"))
        .arg("--calibration")
        .arg(fixture("wiki-excerpt.txt"))
        .args(["--prompt", prompt, "--out"])
        .arg(&out)
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let parts: Vec<&str> = cases.iter().map(|c| c["params"]["part"].as_str().unwrap()).collect();
    assert_eq!(parts, ["baseline", "input", "sparsity", "kv", "all_combined"]);
    for c in cases {
        let p = &c["params"];
        let part = p["part"].as_str().unwrap();
        let has = |name: &str| part == name || part == "all_combined";
        assert_eq!(p["input"].as_str().is_some(), has("input"), "{part}: {p}");
        assert_eq!(p["sparsity"].as_str(), has("sparsity").then_some("teal:0.4"), "{part}");
        assert_eq!(p["kv_cache"].as_str().unwrap().starts_with("hybrid"), has("kv"), "{part}: {}", p["kv_cache"]);
        let zeroed = c["quality"]["sparsity"]["zeroed_share_overall"].as_f64();
        assert_eq!(zeroed.is_some_and(|z| z > 0.2), has("sparsity"), "{part}: {zeroed:?}");
    }
    let kv_bytes = |i: usize| cases[i]["summary"]["kv_cache_bytes"]["max"].as_f64().unwrap();
    assert!(kv_bytes(3) < kv_bytes(0) && kv_bytes(4) < kv_bytes(0), "hybrid holds less: {} / {} vs {}", kv_bytes(3), kv_bytes(4), kv_bytes(0));
    let tokens = |i: usize| cases[i]["quality"]["input_tokens"].as_u64().unwrap();
    assert_eq!(tokens(1), tokens(4));
    assert!(cases[1]["quality"]["input_reduction"].as_f64().unwrap() > 0.2);
    assert_eq!(cases[0]["quality"]["agreement_with_standard"].as_f64(), Some(1.0), "the baseline is the reference");
}
