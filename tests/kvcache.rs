//! `llmbench kvcache` end to end on the real SmolLM2-135M (GGUF, CPU f32) over real Wikipedia
//! text (tests/fixtures/wiki-excerpt.txt: the first 6.9 kB of wiki.utf8 from the PyPI wheel
//! exllamav2==0.3.2, CC BY-SA): exact bytes for every strategy against the analytic count,
//! bitwise exactness of paged and static, quality bounds measured then fixed with margin,
//! and charts that `plot` redraws byte for byte.

use crate::common::{fixture, llmbench, smollm2_gguf};
use serde_json::Value;
use std::collections::HashMap;

/// SmolLM2-135M: 30 layers, 3 key/value heads of 64 channels, f32 on the CPU.
const LAYERS: u64 = 30;
const KV_HEADS: u64 = 3;
const HEAD_DIM: u64 = 64;
const CONTEXT: u64 = 320;
const NEW: u64 = 8;
const EVAL: u64 = 32;

/// What each lossy strategy may cost against full on the fixture's continuation (32 tokens
/// after 320 of context; budget, window and keep_last 128): |perplexity change| in percent and
/// mean KL(full || strategy) in nats.
///
/// Noise, measured: on one machine the numbers are bitwise the same run to run and with 1 or 2
/// threads (2026-12-02). Across machines they are not: candle's matmuls pick their SIMD kernels
/// at run time (AVX-512 here, AVX2 elsewhere), the summation order moves activations by ~1e-6,
/// and that flips quantization codes near rounding boundaries. Two machines measured
/// (2026-11-23 and 2026-12-02, both in the comments) differ by up to 25% in KL and by up to 9.5
/// points in the perplexity change (int4, over only 32 tokens). So each bound is the larger
/// measurement plus that spread: KL x 1.25 (rounded up), |Δppl| + 3 points for the evicting and
/// 8-bit strategies and + 10 points for the 4- and 2-bit ones whose codes flip. KL, averaged
/// over the whole distribution, is the discriminating check; int8's 1% on real text is
/// asserted on the 252-token passage in smollm2.rs.
const QUALITY_BOUNDS: [(&str, f64, f64); 10] = [
    // strategy, |Δppl| % bound, KL bound    (measured 11-23; 12-02; 12-03 with our CPU kernels,
    // whose decode path rounds differently: bounds re-set to the largest plus the spread)
    ("int8", 6.5, 0.0045),           // -3.43%, 0.0036; -1.71%, 0.0030
    ("int4", 31.5, 0.087),           // +1.17%, 0.0551; +10.67%, 0.0497; +13.84%, 0.0655; 12-05 (an AVX-512 host): +21.28%, 0.0689
    ("mixed", 11.0, 0.0132),         // +0.66%, 0.0105; -0.99%, 0.0096
    ("kivi:4", 13.5, 0.008),         // -3.04%, 0.0064; +0.05%, 0.0051
    ("kivi:2", 44.0, 0.317),         // +33.71%, 0.2533; +30.55%, 0.2475
    ("sinks:4+128", 19.0, 0.168),    // +13.56%, 0.1340; +15.96%, 0.1342
    ("h2o:128", 8.5, 0.063),         // +3.95%, 0.0503; +3.99%, 0.0485; +6.11%, 0.0489
    ("cake:128", 5.8, 0.048),        // -1.22%, 0.0380; +1.17%, 0.0351; +3.43%, 0.0351
    ("chunked:128/32", 36.0, 1.185), // +32.68%, 0.9464; +31.41%, 0.9477
    ("window:128", 161.0, 1.045),    // +149.18%, 0.8360; +147.78%, 0.8330; +154.18%, 0.8380
];

fn run(dir: &std::path::Path) -> HashMap<String, Value> {
    let gguf = smollm2_gguf();
    llmbench()
        .args(["kvcache", "--device", "cpu", "--model", gguf.to_str().unwrap(), "--out"])
        .arg(dir)
        .arg("--prompt-file")
        .arg(fixture("wiki-excerpt.txt"))
        .args(["--context", &CONTEXT.to_string(), "-n", &NEW.to_string(), "--eval-tokens", &EVAL.to_string()])
        .args(["--budget", "128", "--kv-window", "128", "--kv-keep-last", "128", "--kv-chunk", "32"])
        .args(["--kv-residual", "64", "--kv-block-size", "7", "-q"])
        .args(["--strategies", "static,paged,window,sinks,chunked,int8,int4,mixed,kivi:2,kivi:4,h2o,cake"])
        .assert()
        .success();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    crate::compare::validate(&report);
    assert_eq!(report["command"], "kvcache");
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 13, "one case per strategy at the one context");
    for case in cases {
        assert_eq!(case["status"], "ok", "{}", case["params"]["strategy"]);
        let runs = case["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "the default is one measured run");
        assert_eq!(runs[0]["itl_ms"].as_array().unwrap().len(), (NEW - 1) as usize, "every gap kept");
        assert_eq!(runs[0]["prompt_tokens"], CONTEXT);
    }
    cases.iter().map(|c| (c["params"]["strategy"].as_str().unwrap().to_string(), c.clone())).collect()
}

/// What the cache held after the timed run.
fn kv_stats(case: &Value) -> &Value {
    &case["runs"][0]["kv_stats"]
}

/// Bytes per token and head of each format: f32 keys and values; int8 codes + a scale;
/// int4 half a byte a channel + scale and zero point per 32 channels.
fn analytic_bytes() -> Vec<(&'static str, u64)> {
    let heads = LAYERS * KV_HEADS;
    let f32_token = heads * 2 * HEAD_DIM * 4;
    // The generation fed the context and all but the last new token.
    let held = CONTEXT + NEW - 1;
    let (int8, int4) = (HEAD_DIM + 4, HEAD_DIM / 2 + 2 * 8);
    // KIVI (G = 32, R = 64): the prefill of 320 quantized 256 tokens (8 key groups), 71 exact.
    let kivi = |bits: u64| heads * (8 * (HEAD_DIM * 32 * bits / 8 + HEAD_DIM * 8) + 256 * (HEAD_DIM * bits / 8 + 2 * 8) + 71 * HEAD_DIM * 4 * 2);
    vec![
        ("full", f32_token * held),
        // Reserved for the timed generation: the context plus the new tokens.
        ("static", f32_token * (CONTEXT + NEW)),
        // 327 positions in blocks of 7: 47 blocks.
        ("paged:7", f32_token * 47 * 7),
        ("window:128", f32_token * 128),
        ("sinks:4+128", f32_token * 132),
        // 6 chunks of 32 summarised at the prefill (6 tokens), then 128 + 7 exact.
        ("chunked:128/32", f32_token * (6 + 135)),
        ("int8", heads * 2 * int8 * held),
        ("int4", heads * 2 * int4 * held),
        ("mixed", heads * (int8 + int4) * held),
        ("kivi:2", kivi(2)),
        ("kivi:4", kivi(4)),
        ("h2o:128", f32_token * 128),
        // Layers keep different numbers of tokens, 128 on average.
        ("cake:128", f32_token * 128),
    ]
}

#[test]
fn kvcache_on_smollm2_exact_bytes_exactness_and_quality_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let rows = run(dir.path());
    for (strategy, bytes) in analytic_bytes() {
        let row = rows.get(strategy).unwrap_or_else(|| panic!("no row for {strategy}: {:?}", rows.keys()));
        assert_eq!(row["runs"][0]["kv_cache_bytes"].as_u64().unwrap(), bytes, "{strategy}");
    }
    // Lossless strategies: the same distributions bit for bit (KL exactly 0), the same tokens.
    let full_ppl = rows["full"]["quality"]["perplexity"].as_f64().unwrap();
    for lossless in ["static", "paged:7"] {
        let q = &rows[lossless]["quality"];
        assert_eq!(q["perplexity"].as_f64().unwrap(), full_ppl, "{lossless}");
        assert_eq!(q["mean_kl"].as_f64().unwrap(), 0.0, "{lossless}");
        assert_eq!(q["greedy_agreement"].as_f64().unwrap(), 1.0, "{lossless}");
    }
    assert_eq!(kv_stats(&rows["paged:7"])["paged"]["blocks_used"], 47);
    assert_eq!(kv_stats(&rows["paged:7"])["paged"]["wasted_slots"], 2);
    assert_eq!(kv_stats(&rows["static"])["used_bytes"].as_u64().unwrap(), analytic_bytes()[0].1);
    // Evicting strategies evicted (320 + 7 positions, 128 kept) and cost something.
    for evicting in ["window:128", "h2o:128", "cake:128"] {
        assert_eq!(kv_stats(&rows[evicting])["evictions"].as_u64().unwrap(), CONTEXT + NEW - 1 - 128, "{evicting}");
    }
    // Positions consumed minus tokens held: sinks keeps 4 + 128, chunked 6 summaries + 135.
    assert_eq!(kv_stats(&rows["sinks:4+128"])["evictions"].as_u64().unwrap(), CONTEXT + NEW - 1 - 132);
    assert_eq!(kv_stats(&rows["chunked:128/32"])["evictions"].as_u64().unwrap(), CONTEXT + NEW - 1 - 141);
    let mut beyond = Vec::new();
    for (strategy, ppl_bound, kl_bound) in QUALITY_BOUNDS {
        let q = &rows[strategy]["quality"];
        let (delta, kl) = (q["perplexity_delta_pct"].as_f64().unwrap(), q["mean_kl"].as_f64().unwrap());
        eprintln!("{strategy}: ppl {:.4} ({delta:+.2}%), KL {kl:.4}", q["perplexity"].as_f64().unwrap());
        if delta.abs() > ppl_bound || kl > kl_bound {
            beyond.push(format!("{strategy}: perplexity {delta:+.2}% (bound {ppl_bound}%), KL {kl:.4} (bound {kl_bound})"));
        }
        assert!(kl > 0.0, "{strategy} changed nothing");
    }
    assert!(beyond.is_empty(), "beyond their bounds: {beyond:#?}");

    // Charts exist and `plot` redraws them from results.json alone, byte for byte.
    let again = tempfile::tempdir().unwrap();
    llmbench().arg("plot").arg(dir.path()).arg("--out").arg(again.path()).assert().success();
    for chart in ["kv-bytes-vs-context", "tpot-vs-context", "ppl-delta-vs-bytes"] {
        for ext in ["png", "svg"] {
            let name = format!("{chart}.{ext}");
            let (a, b) = (std::fs::read(dir.path().join(&name)).unwrap(), std::fs::read(again.path().join(&name)).unwrap());
            assert!(a == b && !a.is_empty(), "{name}");
        }
    }
    let table = std::fs::read_to_string(dir.path().join("table.md")).unwrap();
    let kivi_row = table.lines().find(|l| l.contains("| kivi:2 ")).unwrap_or_else(|| panic!("{table}"));
    assert!(kivi_row.starts_with("| 320 "), "{kivi_row}");
}
