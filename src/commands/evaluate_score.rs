//! `llmbench evaluate score`: reads hypotheses and references (plain lines or JSONL), computes
//! the asked text metrics for every segment and for the corpus (BLEU and chrF from summed
//! statistics as sacrebleu does, ROUGE as the mean of the segments), and prints a table, JSON or
//! JSONL. No model, no run directory: the output is the answer, as sacrebleu's command line's is.

use super::Outcome;
use crate::cli::evaluate::{ScoreArgs, ScoreFormat, TextMetric};
use crate::metrics::bleu::Bleu;
use crate::metrics::chrf::Chrf;
use crate::metrics::diversity::{self, cosine};
use crate::models::sentence_encoder::SentenceEncoder;
use crate::metrics::rouge::{Rouge, RougeScore, RougeScores};
use crate::metrics::text_tokenize::tokenize_13a;
use crate::results::schema::TextScores;
use anyhow::Result;
use std::collections::BTreeMap;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::Path;

/// n-gram orders of the diversity metrics.
const DIVERSITY_ORDERS: [usize; 4] = [1, 2, 3, 4];
/// seq-rep-n's order (Welleck et al. 2019 report seq-rep-4).
const REPETITION_ORDER: usize = 4;

pub fn run(args: &ScoreArgs) -> Result<Outcome> {
    let hyp_file = read_segments(&args.hypotheses, "hypothesis", "--hypotheses")?;
    let hypotheses = hyp_file.values;
    let references = match &args.references {
        Some(path) => Some(read_segments(path, "reference", "--references")?.values),
        None => hyp_file.references,
    };
    let prompts = match &args.prompts {
        Some(path) => Some(read_segments(path, "prompt", "--prompts")?.values),
        None => hyp_file.prompts,
    };
    for (what, one, other) in [("references", "reference", &references), ("prompts", "prompt", &prompts)] {
        if let Some(o) = other {
            if o.len() != hypotheses.len() {
                crate::bail_input!(
                    "{} has {} segments and the {what} {}: each hypothesis needs one {one}",
                    args.hypotheses.display(),
                    hypotheses.len(),
                    o.len()
                );
            }
        }
    }
    let metrics = chosen_metrics(&args.metrics, references.is_some());
    if let Some(m) = metrics.iter().find(|m| m.needs_references()) {
        if references.is_none() {
            crate::bail_input!(
                "--metrics {} needs references: pass --references FILE, or --hypotheses as JSONL with a `reference` field on every line",
                m.name()
            );
        }
    }
    if metrics.contains(&TextMetric::Coherence) && prompts.is_none() {
        crate::bail_input!(
            "--metrics coherence needs prompts: pass --prompts FILE, or --hypotheses as JSONL with a `prompt` field on every line"
        );
    }
    let hyps: Vec<&str> = hypotheses.iter().map(String::as_str).collect();
    let refs: Vec<&str> = references.iter().flatten().map(String::as_str).collect();
    let mut report = score(&metrics, &hyps, &refs, ScoreOptions { stem: args.stem, lowercase: args.lowercase });
    if metrics.contains(&TextMetric::Coherence) {
        let prompts: Vec<&str> = prompts.iter().flatten().map(String::as_str).collect();
        let encoder = load_encoder(&args.encoder)?;
        add_coherence(&mut report, &coherence(&encoder, &prompts, &hyps)?, &args.encoder);
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        ScoreFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        ScoreFormat::Jsonl => {
            for segment in report["segments"].as_array().into_iter().flatten() {
                writeln!(out, "{}", serde_json::to_string(segment)?)?;
            }
        }
        ScoreFormat::Table => out.write_all(table(&report, &metrics).as_bytes())?,
    }
    Ok(Outcome::Success)
}

/// The asked metrics, or the default set: every reference metric when there are references,
/// then the diversity metrics.
pub(super) fn chosen_metrics(asked: &[TextMetric], have_references: bool) -> Vec<TextMetric> {
    use TextMetric::*;
    if !asked.is_empty() {
        let mut seen = Vec::new();
        for &m in asked {
            if !seen.contains(&m) {
                seen.push(m);
            }
        }
        return seen;
    }
    let reference = [Bleu, Chrf, ChrfPlusPlus, Rouge1, Rouge2, RougeL, RougeLsum];
    let free = [Distinct, Entropy, Repetition, SelfBleu];
    if have_references {
        reference.iter().chain(&free).copied().collect()
    } else {
        free.to_vec()
    }
}

/// A file's segments and, from JSONL, the optional fields every line has.
struct Segments {
    values: Vec<String>,
    references: Option<Vec<String>>,
    prompts: Option<Vec<String>>,
}

/// The segments of a file given to `flag`: its lines, or with a `.jsonl` name the `field` of each
/// JSON line (and the `reference` and `prompt` fields, when every line has one). JSONL that lacks
/// `field`, or a line that is not a JSON object, is an input error naming the line.
fn read_segments(path: &Path, field: &str, flag: &str) -> Result<Segments> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::error::LlmbenchError::invalid(format!("{flag} {}: cannot read it ({e})", path.display())))?;
    if path.extension().is_none_or(|e| e != "jsonl") {
        let mut values: Vec<String> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l).to_string()).collect();
        if text.ends_with('\n') {
            values.pop();
        }
        return Ok(Segments { values, references: None, prompts: None });
    }
    let (mut values, mut refs, mut prompts) = (Vec::new(), Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fail = |why: String| crate::error::LlmbenchError::invalid(format!("{} line {}: {why}", path.display(), i + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| fail(format!("not JSON ({e})")))?;
        let obj = v.as_object().ok_or_else(|| fail("not a JSON object".into()))?;
        let get = |key: &str| {
            obj.get(key).map(|x| x.as_str().map(str::to_string).ok_or_else(|| fail(format!("`{key}` is not a string")))).transpose()
        };
        values.push(get(field)?.ok_or_else(|| fail(format!("no `{field}` field")))?);
        refs.push(get("reference")?);
        prompts.push(get("prompt")?);
    }
    let all = |v: Vec<Option<String>>| (!v.is_empty() && v.iter().all(Option::is_some)).then(|| v.into_iter().flatten().collect());
    Ok(Segments { values, references: all(refs), prompts: all(prompts) })
}

/// The `--encoder` sentence encoder, on the CPU.
pub(super) fn load_encoder(encoder: &str) -> Result<SentenceEncoder> {
    let dir = crate::models::source::model_dir(encoder, "--encoder")?;
    SentenceEncoder::load(&dir, "--encoder", &candle_core::Device::Cpu)
}

/// Coherence: the cosine similarity of each prompt's and output's sentence embeddings.
pub(super) fn coherence(encoder: &SentenceEncoder, prompts: &[&str], hyps: &[&str]) -> Result<Vec<f64>> {
    let (p, h) = (encoder.embed(prompts)?, encoder.embed(hyps)?);
    Ok(p.iter().zip(&h).map(|(a, b)| cosine(a, b)).collect())
}

/// Coherence per segment, and its mean for the corpus, into a `score` report.
pub(super) fn add_coherence(report: &mut Value, sims: &[f64], encoder: &str) {
    let mean = if sims.is_empty() { 0.0 } else { sims.iter().sum::<f64>() / sims.len() as f64 };
    report["corpus"]["coherence"] = json!({"score": mean, "signature": format!("cosine, {encoder}")});
    for (seg, sim) in report["segments"].as_array_mut().into_iter().flatten().zip(sims) {
        seg["coherence"] = json!(sim);
    }
}

/// How reference metrics treat their input (rouge-score's use_stemmer, sacrebleu's --lowercase).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ScoreOptions {
    pub stem: bool,
    pub lowercase: bool,
}

fn rouge_json(s: &RougeScore) -> Value {
    json!({"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure})
}

fn rouge_of(scores: &RougeScores, m: TextMetric) -> &RougeScore {
    match m {
        TextMetric::Rouge1 => &scores.rouge1,
        TextMetric::Rouge2 => &scores.rouge2,
        TextMetric::RougeL => &scores.rouge_l,
        _ => &scores.rouge_lsum,
    }
}

/// Corpus and per-segment scores as JSON: `{"segments_count", "corpus": {metric: ...},
/// "segments": [{metric: ...}]}`.
pub(super) fn score(metrics: &[TextMetric], hyps: &[&str], refs: &[&str], args: ScoreOptions) -> Value {
    let bleu = Bleu {
        lowercase: args.lowercase,
    };
    let chrf = |word_order| Chrf {
        word_order,
        lowercase: args.lowercase,
    };
    let rouge = Rouge { stem: args.stem };
    let rouge_pairs: Vec<RougeScores> = if metrics.iter().any(|m| {
        matches!(
            m,
            TextMetric::Rouge1 | TextMetric::Rouge2 | TextMetric::RougeL | TextMetric::RougeLsum
        )
    }) {
        refs.iter()
            .zip(hyps)
            .map(|(r, h)| rouge.score(r, h))
            .collect()
    } else {
        Vec::new()
    };
    let tokens: Vec<Vec<String>> = hyps.iter().map(|h| tokenize_13a(h)).collect();
    let token_slices: Vec<&[String]> = tokens.iter().map(Vec::as_slice).collect();
    let mut corpus = Map::new();
    let mut segments: Vec<Map<String, Value>> = vec![Map::new(); hyps.len()];
    for &m in metrics {
        let name = m.name().to_string();
        match m {
            TextMetric::Bleu => {
                let c = bleu.corpus(hyps, refs);
                corpus.insert(name.clone(), json!({"score": c.score, "signature": bleu.signature(false, 1), "sentence_signature": bleu.signature(true, 1),
                    "counts": c.counts, "totals": c.totals, "precisions": c.precisions, "brevity_penalty": c.brevity_penalty, "sys_len": c.sys_len, "ref_len": c.ref_len}));
                for (i, seg) in segments.iter_mut().enumerate() {
                    seg.insert(
                        name.clone(),
                        json!(bleu.sentence(hyps[i], &[refs[i]]).score),
                    );
                }
            }
            TextMetric::Chrf | TextMetric::ChrfPlusPlus => {
                let c = chrf(if m == TextMetric::Chrf { 0 } else { 2 });
                corpus.insert(
                    name.clone(),
                    json!({"score": c.corpus(hyps, refs).score, "signature": c.signature(1)}),
                );
                for (i, seg) in segments.iter_mut().enumerate() {
                    seg.insert(name.clone(), json!(c.sentence(hyps[i], refs[i]).score));
                }
            }
            TextMetric::Rouge1
            | TextMetric::Rouge2
            | TextMetric::RougeL
            | TextMetric::RougeLsum => {
                let mean = RougeScore::mean(rouge_pairs.iter().map(|s| *rouge_of(s, m)));
                let mut entry = rouge_json(&mean);
                entry["stemmed"] = json!(args.stem);
                corpus.insert(name.clone(), entry);
                for (seg, s) in segments.iter_mut().zip(&rouge_pairs) {
                    seg.insert(name.clone(), rouge_json(rouge_of(s, m)));
                }
            }
            TextMetric::Distinct | TextMetric::Entropy => {
                let f = if m == TextMetric::Distinct {
                    diversity::distinct_n::<String>
                } else {
                    diversity::ngram_entropy::<String>
                };
                let per_order = |seqs: &[&[String]]| -> Map<String, Value> {
                    DIVERSITY_ORDERS
                        .iter()
                        .map(|&n| (format!("{name}-{n}"), json!(f(seqs, n))))
                        .collect()
                };
                corpus.insert(name.clone(), Value::Object(per_order(&token_slices)));
                for (seg, t) in segments.iter_mut().zip(&token_slices) {
                    seg.insert(
                        name.clone(),
                        Value::Object(per_order(std::slice::from_ref(t))),
                    );
                }
            }
            TextMetric::Repetition => {
                let rates: Vec<f64> = token_slices
                    .iter()
                    .map(|t| diversity::repetition_rate(t, REPETITION_ORDER))
                    .collect();
                let mean = if rates.is_empty() {
                    0.0
                } else {
                    rates.iter().sum::<f64>() / rates.len() as f64
                };
                corpus.insert(name.clone(), json!({"seq-rep-4": mean}));
                for (seg, r) in segments.iter_mut().zip(rates) {
                    seg.insert(name.clone(), json!({"seq-rep-4": r}));
                }
            }
            // Added by add_coherence, which loads the sentence encoder.
            TextMetric::Coherence => {}
            TextMetric::SelfBleu => {
                corpus.insert(name, json!({"score": diversity::self_bleu(hyps), "signature": bleu.signature(true, hyps.len().saturating_sub(1))}));
            }
        }
    }
    json!({"segments_count": hyps.len(), "tokenizer": "13a (sacrebleu) for BLEU, chrF++ words and diversity; rouge-score's for ROUGE",
           "corpus": corpus, "segments": segments})
}

/// A per-sample metric and its mean as the corpus score.
pub(super) fn add_per_sample(scores: &mut TextScores, name: &str, per_sample: &[f64], signature: String) {
    let mean = if per_sample.is_empty() {
        0.0
    } else {
        per_sample.iter().sum::<f64>() / per_sample.len() as f64
    };
    scores.corpus.insert(name.into(), mean);
    scores.signatures.insert(name.into(), signature);
    scores
        .samples
        .resize(scores.samples.len().max(per_sample.len()), BTreeMap::new());
    for (sample, v) in scores.samples.iter_mut().zip(per_sample) {
        sample.insert(name.into(), *v);
    }
}

/// `evaluate score`'s JSON as flat metric names: a `score` as the metric's name, ROUGE's F1 as
/// its name, and per-order parts (`distinct-2`, `seq-rep-4`) by their own names.
pub(super) fn text_scores(report: &Value) -> TextScores {
    fn numbers(name: &str, v: &Value, out: &mut BTreeMap<String, f64>) {
        match v {
            Value::Number(n) => {
                out.insert(name.into(), n.as_f64().unwrap_or(f64::NAN));
            }
            Value::Object(o) if o.contains_key("score") => numbers(name, &o["score"], out),
            Value::Object(o) if o.contains_key("fmeasure") => numbers(name, &o["fmeasure"], out),
            Value::Object(o) => {
                for (k, x) in o.iter().filter(|(_, x)| x.is_number()) {
                    numbers(k, x, out);
                }
            }
            _ => {}
        }
    }
    let mut scores = TextScores::default();
    for (name, v) in report["corpus"].as_object().into_iter().flatten() {
        numbers(name, v, &mut scores.corpus);
        if let Some(sig) = v.get("signature").and_then(Value::as_str) {
            scores.signatures.insert(name.clone(), sig.to_string());
        }
        if v.get("stemmed").and_then(Value::as_bool) == Some(true) {
            scores
                .signatures
                .insert(name.clone(), "rouge-score, stemmed".into());
        }
    }
    for segment in report["segments"].as_array().into_iter().flatten() {
        let mut sample = BTreeMap::new();
        for (name, v) in segment.as_object().into_iter().flatten() {
            numbers(name, v, &mut sample);
        }
        scores.samples.push(sample);
    }
    scores
}

/// metric | corpus score | mean over segments | signature, in the order the metrics were asked.
fn table(report: &Value, metrics: &[TextMetric]) -> String {
    let mut out = format!(
        "{} segments\n\nmetric | corpus | segment mean | signature\n",
        report["segments_count"]
    );
    let segments = report["segments"].as_array().cloned().unwrap_or_default();
    let mean = |key: &str, sub: Option<&str>| -> Option<f64> {
        let vals: Vec<f64> = segments
            .iter()
            .filter_map(|s| match sub {
                Some(k) => s[key][k].as_f64(),
                None => s[key].as_f64(),
            })
            .collect();
        (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
    };
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    for name in metrics.iter().map(|m| m.name()) {
        let v = &report["corpus"][name];
        if let Some(score) = v.get("score").and_then(Value::as_f64) {
            out.push_str(&format!(
                "{name} | {score:.4} | {} | {}\n",
                fmt(mean(name, None)),
                v["signature"].as_str().unwrap_or("")
            ));
        } else if let Some(f) = v.get("fmeasure").and_then(Value::as_f64) {
            let stem = if v["stemmed"].as_bool() == Some(true) {
                "rouge-score, stemmed"
            } else {
                "rouge-score"
            };
            out.push_str(&format!(
                "{name} F1 | {f:.4} | {} | {stem}\n",
                fmt(mean(name, Some("fmeasure")))
            ));
        } else if let Some(parts) = v.as_object() {
            for (sub, x) in parts {
                out.push_str(&format!(
                    "{sub} | {} | {} |\n",
                    fmt(x.as_f64()),
                    fmt(mean(name, Some(sub)))
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_names_every_score() {
        let report = serde_json::json!({
            "corpus": {
                "bleu": {"score": 12.5, "signature": "nrefs:1|case:mixed"},
                "rougeL": {"precision": 0.5, "recall": 0.25, "fmeasure": 0.3, "stemmed": false},
                "distinct": {"distinct-1": 0.9, "distinct-2": 1.0},
                "repetition": {"seq-rep-4": 0.0},
            },
            "segments": [{"bleu": 10.0, "rougeL": {"fmeasure": 0.2}, "distinct": {"distinct-1": 1.0}}],
        });
        let t = text_scores(&report);
        assert_eq!(t.corpus["bleu"], 12.5);
        assert_eq!(t.corpus["rougeL"], 0.3);
        assert_eq!(t.corpus["distinct-2"], 1.0);
        assert_eq!(t.corpus["seq-rep-4"], 0.0);
        assert_eq!(t.signatures["bleu"], "nrefs:1|case:mixed");
        assert_eq!(t.samples[0]["rougeL"], 0.2);
        assert_eq!(t.samples[0]["distinct-1"], 1.0);
    }
}
