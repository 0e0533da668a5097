//! The bad-input catalogue (listed in the README): every entry is a real command line that
//! must exit with code 2 and exactly one `error:` line on stderr that contains the entry's
//! needle (the flag or file, and what is wrong), never a panic, and never leave a results
//! directory behind. Model-file corruptions are in cli_errors.rs and loaders.rs.

use crate::common::{fixture, llmbench};
use std::path::{Path, PathBuf};

/// The commands that write a run directory, so the check can pass one that must stay absent.
const WRITES_RESULTS: [&str; 6] = ["compare", "kvcache", "specdec", "sled", "quantize", "batch"];

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("empty-prompts.txt", "\n \n"),
            ("empty-text.txt", "   \n"),
            ("no-phrases.txt", "\n# a comment only\n  \n"),
            ("one-token-phrases.txt", "a\n"),
            ("corrupt.json", "{\"schema_version\": 2, \"cases\": ["),
            ("future.json", "{\"schema_version\": 99}"),
            ("not-results.json", "{\"hello\": 1}"),
            ("wrong-shape.json", "{\"schema_version\": 2, \"command\": \"compare\", \"cases\": 3}"),
            ("bad.toml", "window = [1, 2\n"),
            ("unknown-key.toml", "windw = 50\n"),
            ("switch-with-value.toml", "quality = \"yes\"\n"),
            ("nested.toml", "window = [[1], [2]]\n"),
            ("hyps.txt", "a cat\nthe dog\n"),
            ("one-ref.txt", "a cat\n"),
            ("bad.jsonl", "{\"hypothesis\": \"a\"}\n{\"hypothesis\": \"b\"\n"),
            ("no-field.jsonl", "{\"text\": \"a\"}\n"),
            ("pairs.jsonl", "{\"prompt\": \"p\", \"hypothesis\": \"h\"}\n"),
            ("bad-data.jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n"),
            ("no-prompt.jsonl", "{\"reference\": \"r\"}\n"),
            ("some-refs.jsonl", "{\"prompt\": \"a\", \"reference\": \"r\"}\n{\"prompt\": \"b\"}\n"),
            ("bad-keywords.jsonl", "{\"prompt\": \"a\", \"keywords\": \"sky\"}\n"),
            ("no-columns.csv", "Question,Best Answer\nq,a\n"),
            ("bad-models.toml", "[[model]]\nname = \"x\"\n"),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

/// Runs one catalogue entry and checks everything the catalogue promises.
fn check(args: &[String], needle: &str, never: &Path) {
    let mut cmd = llmbench();
    cmd.args(args);
    // evaluate writes one without a subcommand (the pipeline), not with `score` or `perplexity`.
    let writes = WRITES_RESULTS.contains(&args[0].as_str()) || (args[0] == "evaluate" && !["score", "perplexity"].contains(&args[1].as_str()));
    if writes && !args.iter().any(|a| a == "--out" || a == "--resume") {
        cmd.arg("--out").arg(never);
    }
    let out = cmd.assert().get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: exit {:?}, stderr {stderr}", out.status.code());
    assert!(!stderr.contains("panicked"), "{args:?}: panic: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: `{needle}` not in: {stderr}");
    assert!(!never.exists(), "{args:?}: left a results directory");
}

/// A finished run of each command on the fixture models, for diff and --resume mismatches.
fn finished_runs(root: &Path) -> (PathBuf, PathBuf) {
    let tiny = fixture("tiny-llama");
    let compare = root.join("compare-run");
    llmbench()
        .args(["compare", "--device", "cpu", "--warmup", "0", "-r", "1", "-n", "3", "--methods", "standard", "--prompt", "hi"])
        .args(["--no-charts", "-q", "--model"])
        .arg(&tiny)
        .arg("--out")
        .arg(&compare)
        .assert()
        .success();
    let kvcache = root.join("kvcache-run");
    llmbench()
        .args(["kvcache", "--device", "cpu", "--context", "16", "-n", "2", "--eval-tokens", "4", "--strategies", "full,window:8"])
        .args(["--no-charts", "-q", "--model"])
        .arg(&tiny)
        .arg("--prompt-file")
        .arg(fixture("wiki-excerpt.txt"))
        .arg("--out")
        .arg(&kvcache)
        .assert()
        .success();
    (compare, kvcache)
}

#[test]
fn every_bad_input_in_the_catalogue_is_one_clear_line_and_exit_code_2() {
    let files = Files::new();
    let (compare_run, kvcache_run) = finished_runs(files.dir.path());
    let (compare_run, kvcache_run) = (compare_run.to_str().unwrap().to_string(), kvcache_run.to_str().unwrap().to_string());
    let gpt2 = fixture("tiny-gpt2").to_str().unwrap().to_string();
    let llama = fixture("tiny-llama").to_str().unwrap().to_string();
    let wiki = fixture("wiki-excerpt.txt").to_str().unwrap().to_string();
    let tfqa = fixture("layer_contrast/truthfulqa-3.csv").to_str().unwrap().to_string();
    let evaluate = |extra: &[&str]| -> Vec<String> {
        ["evaluate", "--device", "cpu", "--model", &llama, "--metrics", "bleu"].iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let generate = |extra: &[&str]| -> Vec<String> {
        ["generate", "--device", "cpu", "--model", &gpt2, "--prompt", "hi"].iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let compare = |extra: &[&str]| -> Vec<String> {
        ["compare", "--device", "cpu", "--model", &gpt2, "--prompt", "hi", "--no-charts"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let kvcache = |extra: &[&str]| -> Vec<String> {
        // The base flags, each unless the entry sets it itself (clap refuses a flag twice).
        let base = [("--prompt-file", wiki.as_str()), ("--context", "16"), ("--eval-tokens", "4"), ("-n", "2"), ("--strategies", "full,window:8")];
        let mut args: Vec<String> = ["kvcache", "--device", "cpu", "--model", &llama].iter().map(|s| s.to_string()).collect();
        for (flag, value) in base.into_iter().filter(|(flag, _)| !extra.contains(flag)) {
            args.extend([flag.to_string(), value.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let specdec = |extra: &[&str]| -> Vec<String> {
        ["specdec", "--device", "cpu", "--model", &llama, "--prompt", "hi", "--no-charts", "-n", "4"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let quantize = |extra: &[&str]| -> Vec<String> {
        ["quantize", "--device", "cpu", "--model", &llama, "--formats", "f32", "--skip-evaluate", "--eval-context", "64", "--prompt", "hi", "-n", "2"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let plain = |args: &[&str]| -> Vec<String> { args.iter().map(|s| s.to_string()).collect() };
    let batch = |extra: &[&str]| -> Vec<String> {
        ["batch", "--device", "cpu", "--model", &llama, "--no-charts", "--warmup", "0"].iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let serve = |extra: &[&str]| -> Vec<String> { ["serve", "--device", "cpu", "--model", &llama].iter().chain(extra).map(|s| s.to_string()).collect() };
    // A port already taken, for serve's bind error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let catalogue: Vec<(Vec<String>, &str)> = vec![
        // generate
        (plain(&["generate", "--device", "cpu", "--model", "/no/such/model.gguf", "--prompt", "hi"]), "/no/such/model.gguf"),
        (generate(&["--max-new-tokens", "0"]), "--max-new-tokens"),
        (generate(&["--device", "tpu"]), "--device"),
        (generate(&["--kv-cache", "lru"]), "invalid value 'lru' for '--kv-cache"),
        (generate(&["--kv-cache", "window", "--kv-window", "0"]), "--kv-window 0"),
        (generate(&["--kv-cache", "kivi", "--kv-bits", "3"]), "--kv-bits 3"),
        (generate(&["--kv-cache", "kivi", "--kv-group", "6"]), "--kv-group 6"),
        (generate(&["--logits-out", "/tmp/logits.txt"]), "--logits-out"),
        (generate(&["--temperature", "-1"]), "--temperature"),
        (generate(&["--top-p", "1.5"]), "--top-p"),
        (generate(&["-n", "12x"]), "12x"),
        (generate(&["-n", "4", "--decoding", "sled-evolution", "--premature-layers", "0,9"]), "--premature-layers 9: the model has 2 layers"),
        (generate(&["-n", "4", "--decoding", "sled-evolution", "--evolution-scale", "5000"]), "--evolution-scale 5000: use 1 to the vocabulary's 1000 tokens"),
        (generate(&["-n", "4", "--decoding", "sled-evolution", "--evolution-rate", "-1"]), "--evolution-rate -1"),
        (generate(&["-n", "4", "--decoding", "dola", "--dola-layers", "middle"]), "--dola-layers middle"),
        (generate(&["-n", "4", "--decoding", "sled:stride"]), "--decoding sled:stride: generate takes standard, sled-evolution or dola"),
        (plain(&["generate", "--device", "cpu", "--model", "no-such-arch", "--no-weights", "--prompt", "hi"]), "--no-weights needs an architecture"),
        (plain(&["generate", "--config", "/x.json", "--prompt", "hi"]), "--no-weights"),
        // batch
        (batch(&["--batch-size", "0"]), "--batch-size 0"),
        (batch(&["--prompt-tokens", "0"]), "--prompt-tokens 0"),
        (batch(&["--prompt-tokens", "100", "-n", "100"]), "exceeds the model's context window of 128"),
        (batch(&["--prompt-tokens", "8", "-n", "8", "--kv-block-size", "4", "--kv-blocks", "2"]), "--kv-blocks 2: one sequence of 8 + 8 tokens needs 4 blocks"),
        (batch(&["--repetitions", "0"]), "--repetitions 0"),
        (plain(&["batch", "--device", "cpu", "--model", &llama, "--batch-size", "2-1*2"]), "--batch-size"),
        // serve
        (serve(&["--port", &taken_port]), "cannot listen there"),
        (serve(&["--max-batch", "0"]), "--max-batch"),
        (serve(&["--chat-template", "/no/such/template.jinja"]), "--chat-template /no/such/template.jinja"),
        (serve(&["--shutdown-grace=-1"]), "--shutdown-grace -1"),
        (serve(&["--draft", "layers:2"]), "--draft layers:2: serve drafts by prompt lookup only"),
        (serve(&["--draft", "lookup:99"]), "--draft lookup:99: K must be from 1 to 16"),
        // chat
        (plain(&["chat", "--device", "cpu", "--model", &llama, "--message", "hi"]), "has no chat template"),
        (plain(&["chat", "--device", "cpu", "--model", &llama, "--message", "hi", "--chat-template", "/no/such/template.jinja"]), "--chat-template /no/such/template.jinja"),
        (plain(&["chat", "--device", "cpu", "--model", &llama, "--message", " "]), "--message is empty"),
        (plain(&["chat", "--device", "cpu", "--model", &llama, "--message", "hi", "--input", "lingua:2"]), "strictly between 0 and 1"),
        // compare
        (compare(&["--window", "0"]), "--window 0"),
        (compare(&["--input", "word_removal:1"]), "word_removal:1: N must be at least 2"),
        (compare(&["--input", "word_removal:3", "--prompt-tokens", "16"]), "drop --prompt-tokens"),
        (compare(&["--input", "lingua:1.5"]), "strictly between 0 and 1"),
        (compare(&["--input", "none,lingua:0"]), "strictly between 0 and 1"),
        (compare(&["--compressor", "gpt2"]), "--compressor without --input lingua:RATE"),
        (compare(&["--input", "lingua:0.5", "--compressor", "/no/such/compressor.gguf"]), "--compressor /no/such/compressor.gguf"),
        (compare(&["--input", "none,adaptivocab", "--phrases", &files.path("no-phrases.txt")]), "has no phrases; write one phrase per line"),
        (compare(&["--phrases", &files.path("hyps.txt")]), "--phrases / --phrase-corpus without --input adaptivocab"),
        (compare(&["--input", "adaptivocab", "--phrase-corpus", "/no/such/corpus.txt"]), "--phrase-corpus /no/such/corpus.txt"),
        (compare(&["--input", "adaptivocab"]), "--input adaptivocab: phrase tokens are added to Llama-family models"),
        (
            plain(&["compare", "--device", "cpu", "--model", &llama, "--prompt", "hi", "--no-charts", "--input", "none,adaptivocab", "--phrases", &files.path("one-token-phrases.txt")]),
            "none of the 1 phrases spans two or more tokens",
        ),
        (compare(&["--methods", "sled:stride", "--window", "10", "--stride", "20"]), "--stride 20"),
        (compare(&["--methods", "standard,beam"]), "invalid value 'beam' for '--methods"),
        (compare(&["--repetitions", "0"]), "--repetitions 0"),
        (compare(&["--prompts-file", "/no/such/prompts.txt"]), "/no/such/prompts.txt"),
        (compare(&["--prompts-file", &files.path("empty-prompts.txt")]), "no prompts"),
        (compare(&["-n", "1-18446744073709551616*2"]), "18446744073709551616"),
        (compare(&["-n", "64-18446744073709551615*2"]), "context window"),
        (plain(&["compare", "--device", "cpu", "--model", "a,,b", "--prompt", "hi"]), "empty entry"),
        (compare(&["--out", &compare_run]), "already holds results"),
        (compare(&["--resume", "/no/such/run"]), "--resume /no/such/run"),
        (compare(&["--resume", &kvcache_run]), "holds kvcache results, not compare"),
        (compare(&["--plan", "/no/such/plan.toml"]), "--plan /no/such/plan.toml"),
        (compare(&["--plan", &files.path("bad.toml")]), "not valid TOML"),
        (compare(&["--plan", &files.path("unknown-key.toml")]), "`windw` is not a flag of `llmbench compare`"),
        (compare(&["--plan", &files.path("switch-with-value.toml")]), "`quality` is a switch"),
        (compare(&["--plan", &files.path("nested.toml")]), "`window` must be a list of strings or numbers"),
        // specdec
        (specdec(&["--k", "0"]), "--k 0"),
        (specdec(&["--k", "128"]), "--k 128 is not smaller than the model's context window of 128"),
        (specdec(&["--draft-device", "cuda:1"]), "--draft-device cuda:1"),
        (specdec(&["--policy", "medusa"]), "invalid value 'medusa' for '--policy"),
        (specdec(&["--policy", "conf_threshold", "--tau", "0"]), "--tau 0"),
        (specdec(&["--policy", "conf_threshold", "--tau", "1.5"]), "--tau 1.5"),
        (specdec(&["--policy", "typical", "--typical-delta", "2"]), "--typical-delta 2"),
        (specdec(&["--kv-cache", "window"]), "--kv-cache window: speculative decoding rolls rejected drafts back"),
        (specdec(&["--kv-cache", "h2o"]), "--kv-cache h2o"),
        (specdec(&["--temperature", "0.8", "--policy", "greedy"]), "--policy greedy with --temperature 0.8"),
        (specdec(&["--draft", "layers:2"]), "--draft layers:2: the model has 2 layers"),
        (specdec(&["--draft", "quant:q1_x"]), "quant:q1_x: unknown format"),
        (specdec(&["--draft", "lookup:0"]), "lookup:0"),
        (specdec(&["--min-k", "4", "--max-k", "2", "--k-schedule", "heuristic"]), "--min-k 4 --max-k 2"),
        (plain(&["generate", "--device", "cpu", "--model", &llama, "--prompt", "hi", "-n", "4", "--draft", "self", "--kv-cache", "sinks"]), "--kv-cache sinks"),
        (compare(&["--methods", "standard,specdec:lookup", "--k", "0"]), "--k 0"),
        // kvcache
        (kvcache(&["--kv-bits", "3"]), "--kv-bits 3"),
        (kvcache(&["--strategies", "kivi:5"]), "kivi:5"),
        (kvcache(&["--strategies", "full,lru"]), "unknown strategy `lru`"),
        (kvcache(&["--strategies", "int8:4"]), "takes no option"),
        (kvcache(&["--strategies", "window:x"]), "not a whole number"),
        (quantize(&["--sparsity", "teal:1"]), "sparsity 1 is outside [0, 1)"),
        (compare(&["--combine", "--input", "none,word_removal:3", "--kv-cache", "hybrid"]), "--combine stacks one sparsity method"),
        (compare(&["--combine", "--sparsity", "teal:0.4", "--kv-cache", "hybrid"]), "--combine stacks one input method"),
        (compare(&["--combine", "--input", "word_removal:3", "--sparsity", "teal:0.4"]), "--combine stacks a cache that holds less than full"),
        (quantize(&["--sparsity", "larosa:-0.2"]), "sparsity -0.2 is outside [0, 1)"),
        (quantize(&["--sparsity", "cats:0.4"]), "unknown method `cats`"),
        (quantize(&["--sparsity", "teal:0.4", "--calibration", &files.path("hyps.txt")]), "thresholds need; give a longer text"),
        (quantize(&["--sparsity", "teal:0.4", "--calibration", "/nonexistent/cal.txt"]), "--calibration"),
        (["quantize", "--device", "cpu", "--model", &gpt2, "--formats", "f32", "--skip-evaluate", "--eval-context", "64", "--sparsity", "teal:0.4", "--calibration", &wiki].iter().map(|s| s.to_string()).collect(), "implemented for the Llama family"),
        (kvcache(&["--strategies", "hybrid:0"]), "hybrid's budget 0 must exceed its recent window of 32 tokens"),
        (generate(&["--kv-cache", "hybrid", "--budget", "0"]), "--budget 0: the budget must keep at least 2 tokens"),
        (generate(&["--kv-cache", "cake", "--budget", "16"]), "--budget 16: cake keeps the last 32 tokens besides its budget"),
        (kvcache(&["--context", "0"]), "--context 0"),
        (kvcache(&["--eval-tokens", "1"]), "--eval-tokens 1"),
        (kvcache(&["--repetitions", "0"]), "--repetitions 0"),
        (kvcache(&["--budget", "64", "--strategies", "h2o"]), "--budget 64 is larger than every --context (16)"),
        (kvcache(&["--context", "100000"]), "--context 100000"),
        (kvcache(&["--prompt-file", &files.path("empty-text.txt")]), "the file is empty"),
        (
            plain(&["kvcache", "--device", "cpu", "--model", &llama, "--prompt-file", "/no/such/text.txt"]),
            "--prompt-file /no/such/text.txt",
        ),
        // plot, diff, completions
        (plain(&["plot", &files.path("corrupt.json")]), "corrupt"),
        (plain(&["plot", &files.path("future.json")]), "schema_version 99"),
        (plain(&["plot", &files.path("not-results.json")]), "not an llmbench results file"),
        (plain(&["plot", &files.path("wrong-shape.json")]), "does not match the results schema"),
        (plain(&["plot", "/no/such/run"]), "/no/such/run"),
        (plain(&["plot", &kvcache_run, "--chart", "sweep"]), "not a chart of these kvcache results"),
        (plain(&["diff", &compare_run, &kvcache_run]), "the same command"),
        (plain(&["diff", &compare_run, "/no/such/run"]), "/no/such/run"),
        (plain(&["completions", "tcsh"]), "invalid value 'tcsh'"),
        // evaluate score
        (plain(&["evaluate", "score", "--hypotheses", &files.path("bad.jsonl")]), "bad.jsonl line 2: not JSON"),
        (plain(&["evaluate", "score", "--hypotheses", &files.path("no-field.jsonl")]), "no-field.jsonl line 1: no `hypothesis` field"),
        (plain(&["evaluate", "score", "--hypotheses", &files.path("hyps.txt"), "--metrics", "meteor"]), "invalid value 'meteor' for '--metrics"),
        (plain(&["evaluate", "score", "--hypotheses", &files.path("hyps.txt"), "--metrics", "bleu"]), "--metrics bleu needs references"),
        (plain(&["evaluate", "score", "--hypotheses", &files.path("hyps.txt"), "--references", &files.path("one-ref.txt")]), "each hypothesis needs one reference"),
        (plain(&["evaluate", "score", "--hypotheses", "/no/such/hyps.txt"]), "/no/such/hyps.txt"),
        (plain(&["evaluate", "score", "--hypotheses", &files.path("hyps.txt"), "--metrics", "coherence"]), "--metrics coherence needs prompts"),
        (plain(&["evaluate", "score", "--hypotheses", &files.path("pairs.jsonl"), "--metrics", "coherence", "--encoder", &llama]), "not a sentence encoder"),
        (plain(&["evaluate", "perplexity", "--device", "cpu", "--model", &llama, "--text", "/no/such/text.txt"]), "--text /no/such/text.txt"),
        (plain(&["evaluate", "perplexity", "--device", "cpu", "--model", &llama, "--text", &files.path("empty-text.txt")]), "no text to score"),
        (plain(&["evaluate", "perplexity", "--device", "cpu", "--model", &llama, "--text", &wiki, "--window", "1"]), "--window 1"),
        (plain(&["evaluate", "perplexity", "--device", "cpu", "--model", &llama, "--text", &wiki, "--window", "16", "--stride", "32"]), "--stride 32"),
        // evaluate (the pipeline)
        (evaluate(&["--data", &files.path("bad-data.jsonl")]), "bad-data.jsonl line 2: not JSON"),
        (evaluate(&["--data", &files.path("no-prompt.jsonl")]), "no-prompt.jsonl line 1: missing field `prompt`"),
        (evaluate(&["--data", &files.path("bad-keywords.jsonl")]), "bad-keywords.jsonl line 1: invalid type: string \"sky\", expected a sequence"),
        (evaluate(&["--data", &files.path("some-refs.jsonl")]), "prompt 2 does not"),
        (evaluate(&["--data", "/no/such/data.jsonl"]), "--data /no/such/data.jsonl"),
        (evaluate(&["--metrics", "meteor"]), "invalid value 'meteor' for '--metrics"),
        (evaluate(&["--metrics", "coherence", "--encoder", &llama]), "not a sentence encoder"),
        (evaluate(&["--task", "perplexity"]), "--task perplexity needs --text"),
        (evaluate(&["--formats", "q9_9"]), "--formats"),
        (evaluate(&["-n", "0"]), "--max-new-tokens 0"),
        (evaluate(&["--task", "truthfulqa", "--truthfulqa", "/no/such/tq.csv"]), "--truthfulqa /no/such/tq.csv"),
        (plain(&["evaluate", "--device", "cpu", "--models", &files.path("bad-models.toml")]), "bad-models.toml: not a model list"),
        // sled
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &files.path("no-columns.csv")]), "no `Correct Answers` column"),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", "/no/such/TruthfulQA.csv"]), "--data /no/such/TruthfulQA.csv"),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &tfqa, "--limit", "0"]), "--limit 0"),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &tfqa, "--methods", "sled:stride"]), "--methods sled:stride"),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &tfqa, "--variant", "standard"]), "a variant is sled-evolution or dola"),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &tfqa, "--variant", "dola --bogus 1"]), "--variant \"dola --bogus 1\""),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &tfqa, "--bootstrap", "0"]), "--bootstrap 0"),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &tfqa, "--evolution-scale", "5000"]), "--evolution-scale 5000"),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &tfqa, "--premature-layers", "0,9"]), "--premature-layers 9"),
        (plain(&["sled", "--device", "cpu", "--model", &llama, "--window", "0", "--prompt", "hi"]), "--window 0"),
        (plain(&["sled", "--device", "cpu", "--model", &llama, "--methods", "dola", "--prompt", "hi"]), "--methods dola: --task window runs"),
        (plain(&["sled", "--device", "cpu", "--model", &llama, "--variant", "dola", "--prompt", "hi"]), "--variant is for --task truthfulqa"),
        (plain(&["sled", "--device", "cpu", "--model", &llama, "--limit", "3", "--prompt", "hi"]), "--limit is for --task truthfulqa"),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &tfqa, "--window", "8"]), "--window is for --task window"),
        (plain(&["sled", "--task", "truthfulqa", "--device", "cpu", "--model", &llama, "--data", &tfqa, "--methods", "dola", "--variant", "dola"]), "is asked for twice"),
    ];
    assert!(catalogue.len() >= 50, "the README promises the whole catalogue");
    for (i, (args, needle)) in catalogue.iter().enumerate() {
        check(args, needle, &files.dir.path().join(format!("never-{i}")));
    }
}
