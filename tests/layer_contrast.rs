//! SLED's logits evolution and DoLa against their references on random-weight fixtures
//! (tests/fixtures/layer_contrast/make_goldens.py: DoLa from transformers 4.55.4 itself, SLED
//! op for op as the authors' code computes it): the next-token logits of one position within
//! 1e-4, the layer DoLa picks, and greedy generation token for token; SLED with rate 0 is
//! standard decoding.

use crate::common::{fixture, llmbench, load, stdout_json};
use candle_core::{Device, Tensor};
use llmbench::decode::dola::DolaLayers;
use llmbench::decode::layer_contrast::{contrast_logits, layer_logits, Contrast};
use llmbench::decode::sled_evolution::Evolution;
use llmbench::kv::{self, KvKind};
use std::collections::HashMap;

/// f32 on both sides: the forward passes agree to ~2e-6 (hf_goldens.rs); the contrast adds a
/// softmax and a few sums over 1,000 entries.
const TOLERANCE: f32 = 1e-4;

/// (golden prefix, model directory)
fn models() -> [(&'static str, std::path::PathBuf); 2] {
    [
        ("llama6", fixture("layer_contrast/tiny-llama-6l")),
        ("gpt2", fixture("tiny-gpt2")),
    ]
}

fn goldens() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("layer_contrast/golden.safetensors"), &Device::Cpu)
        .unwrap()
}

fn ints(t: &Tensor) -> Vec<u32> {
    t.to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|i| i as u32)
        .collect()
}

/// Equal within TOLERANCE where finite, and -inf exactly where the golden is.
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if w.is_infinite() {
            assert_eq!(g, w, "{what}: entry {i}");
        } else {
            assert!(
                (g - w).abs() <= TOLERANCE,
                "{what}: entry {i} is {g}, the reference {w}"
            );
        }
    }
}

#[test]
fn evolved_and_contrast_logits_equal_the_references() {
    let golden = goldens();
    for (name, dir) in models() {
        let loaded = load(&dir);
        let model = loaded.model.as_ref();
        let cfg = model.config();
        let n_layers = cfg.n_layers();
        let ids = ints(&golden[&format!("{name}.input_ids")]);
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let run = |layers: &[usize], norm: bool| {
            let mut cache = kv::build(KvKind::Full, n_layers, ids.len());
            layer_logits(model, &input, 0, cache.as_mut(), layers, norm).unwrap()
        };
        let all: Vec<usize> = (0..n_layers).collect();
        let (final_logits, premature) = run(&all, false);
        assert_close(
            &format!("{name} final"),
            &final_logits,
            &golden[&format!("{name}.final")].to_vec1::<f32>().unwrap(),
        );
        for (setting, rate, scale, lower_bound, steps, norm) in [
            ("generation", 2.0, 10, -1000.0, 1, false),
            ("tfqa", 2.5, 75, -100.0, 10, false),
            ("norm", 2.0, 10, -1000.0, 1, true),
            ("zero", 0.0, 10, -1000.0, 1, false),
        ] {
            let premature = if norm {
                run(&all, true).1
            } else {
                premature.clone()
            };
            let evolution = Evolution {
                rate,
                scale,
                lower_bound,
                steps,
            };
            let got = contrast_logits(&Contrast::Sled(evolution), &final_logits, &premature, &all);
            assert_close(
                &format!("{name} sled {setting}"),
                &got,
                &golden[&format!("{name}.sled.{setting}")]
                    .to_vec1::<f32>()
                    .unwrap(),
            );
        }
        for (which, layers) in [("high", DolaLayers::High), ("low", DolaLayers::Low)] {
            let candidates = layers.candidates(n_layers, cfg.tied_embeddings());
            let (_, premature) = run(&candidates, false);
            let (got, chosen) =
                llmbench::decode::dola::contrast(&final_logits, &premature, &candidates);
            assert_close(
                &format!("{name} dola {which}"),
                &got,
                &golden[&format!("{name}.dola.{which}")]
                    .to_vec1::<f32>()
                    .unwrap(),
            );
            assert_eq!(
                chosen as u32,
                ints(&golden[&format!("{name}.dola.{which}.layer")])[0],
                "{name} dola {which}: the chosen layer"
            );
        }
    }
}

fn generated(dir: &std::path::Path, extra: &[&str]) -> Vec<u32> {
    let record = stdout_json(
        llmbench()
            .args([
                "generate",
                "--device",
                "cpu",
                "--json",
                "--ignore-eos",
                "-n",
                "12",
                "--prompt",
                "The history of the city begins with a small harbour",
                "--model",
            ])
            .arg(dir)
            .args(extra),
    );
    record["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn greedy_generation_equals_the_references_and_rate_zero_is_standard() {
    let golden = goldens();
    for (name, dir) in models() {
        let sled = generated(&dir, &["--decoding", "sled-evolution"]);
        assert_eq!(
            sled,
            ints(&golden[&format!("{name}.greedy.sled")]),
            "{name}: SLED greedy tokens"
        );
        let dola = generated(
            &dir,
            &[
                "--decoding",
                "dola",
                "--dola-layers",
                "high",
                "--repetition-penalty",
                "1.2",
            ],
        );
        assert_eq!(
            dola,
            ints(&golden[&format!("{name}.greedy.dola_high")]),
            "{name}: DoLa greedy tokens"
        );
        let standard = generated(&dir, &[]);
        assert_eq!(
            generated(
                &dir,
                &["--decoding", "sled-evolution", "--evolution-rate", "0"]
            ),
            standard,
            "{name}: rate 0"
        );
        assert_ne!(
            sled, standard,
            "{name}: SLED at rate 2 changes nothing here, so the test cannot tell"
        );
    }
}

/// `sled --task truthfulqa` scores every answer of three questions as the SLED authors'
/// scoring does (one uncached pass over prompt and answer in the golden script; here the
/// prompt cached once and rolled back per answer): raw and log-probability sums for standard
/// decoding, SLED with their TruthfulQA settings and DoLa without its filter.
#[test]
fn truthfulqa_answer_scores_equal_the_references() {
    let golden = goldens();
    let out = tempfile::tempdir().unwrap();
    let report = stdout_json(
        llmbench()
            .args([
                "sled",
                "--task",
                "truthfulqa",
                "--device",
                "cpu",
                "-o",
                "json",
                "--bootstrap",
                "10",
                "--dola-layers",
                "high",
            ])
            .args([
                "--evolution-rate",
                "2.5",
                "--evolution-scale",
                "75",
                "--evolution-lower-bound",
                "-100",
                "--evolution-steps",
                "10",
                "--model",
            ])
            .arg(fixture("layer_contrast/tiny-llama-6l"))
            .arg("--data")
            .arg(fixture("layer_contrast/truthfulqa-3.csv"))
            .arg("--out")
            .arg(out.path().join("run")),
    );
    assert_eq!(report["command"], "sled");
    assert_eq!(report["settings"]["command_settings"]["questions"], 3);
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3, "one case per decoding");
    for (case, (prefix, method_name, contrast)) in cases.iter().zip([
        ("standard", "standard", None),
        ("sled", "sled-evolution", Some("rate=2.5 k=75 steps=10 floor=-100")),
        ("dola", "dola", Some("layers=high")),
    ]) {
        assert_eq!(case["params"]["method"], method_name);
        assert_eq!(case["params"]["contrast"].as_str(), contrast);
        let name = method_name;
        let method = &case["quality"]["truthfulqa"];
        for q in 0..3 {
            let question = &case["quality"]["questions"][q];
            let answers: Vec<&serde_json::Value> = question["correct"]
                .as_array()
                .unwrap()
                .iter()
                .chain(question["incorrect"].as_array().unwrap())
                .collect();
            for kind in ["raw", "log_prob"] {
                let want = golden[&format!("tfqa.{prefix}.q{q}.{kind}")]
                    .to_vec1::<f32>()
                    .unwrap();
                assert_eq!(answers.len(), want.len(), "{name} question {q}: answers");
                for (i, (a, w)) in answers.iter().zip(&want).enumerate() {
                    let got = a[kind].as_f64().unwrap();
                    let bound = 1e-4 * (1.0 + w.abs() as f64);
                    assert!(
                        (got - *w as f64).abs() <= bound,
                        "{name} question {q} answer {i} {kind}: {got} vs the reference {w}"
                    );
                }
            }
        }
        let mc2 = method["log_prob"]["mc2"]["mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&mc2), "{name} MC2 {mc2}");
    }
}

/// A model that keeps the trait's defaults for the optional capabilities (per-layer states,
/// final norm): everything else is the fixture's.
struct WithoutLayerStates(Box<dyn llmbench::models::Model>);

impl llmbench::models::Model for WithoutLayerStates {
    fn forward_blocks(
        &self,
        ids: &Tensor,
        start_pos: usize,
        blocks: usize,
        mode: llmbench::models::layers::VerifyAttention,
        cache: &mut dyn llmbench::kv::KvCache,
    ) -> candle_core::Result<Tensor> {
        self.0.forward_blocks(ids, start_pos, blocks, mode, cache)
    }
    fn lm_head(&self, hidden: &Tensor) -> candle_core::Result<Tensor> {
        self.0.lm_head(hidden)
    }
    fn config(&self) -> &llmbench::models::config::ModelConfig {
        self.0.config()
    }
}

/// Layer-contrast decoding on a model without per-layer hidden states is refused as an
/// unsupported combination (skipped in a sweep; exit code 2 when asked for directly), and the
/// same model decodes normally otherwise.
#[test]
fn a_model_without_layer_states_is_refused_clearly() {
    use llmbench::decode::layer_contrast::{contrast_rows, ContrastConfig};
    let loaded = load(&fixture("tiny-llama"));
    let model = WithoutLayerStates(loaded.model);
    let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
    let mut cache = kv::build(KvKind::Full, model.0.config().n_layers(), 16);
    let config = ContrastConfig { contrast: Contrast::Sled(Evolution::default()), premature_layers: None, premature_norm: false };
    let err = contrast_rows(&model, &ids, 0, cache.as_mut(), &config, &[0, 1], 2).unwrap_err();
    assert!(format!("{err:#}").contains("does not expose per-layer hidden states"), "{err:#}");
    assert_eq!(llmbench::error::exit_code(&err), 2);
    // What generate, compare and sled check before a run: the same refusal.
    let err = config.check(&model).unwrap_err();
    assert!(format!("{err:#}").contains("does not expose per-layer hidden states"), "{err:#}");
    assert_eq!(llmbench::error::exit_code(&err), 2);
    assert!(llmbench::models::Model::forward(&model, &ids, 0, cache.as_mut()).is_ok());
}
