//! `compare`, `plot` and `diff` end to end through the CLI: results that validate against the
//! committed JSON Schema, valid charts that `plot` redraws byte for byte, CSV that parses,
//! Ctrl-C then --resume, --continue-on-error, diff significance, and bad input.

use crate::common::{fixture, llmbench, smollm2_gguf};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results/schema.json")
}

/// Set LLMBENCH_UPDATE_SCHEMA=1 to rewrite results/schema.json after changing the types.
#[test]
fn committed_schema_matches_the_types() {
    let generated = llmbench::results::schema::json_schema();
    if std::env::var_os("LLMBENCH_UPDATE_SCHEMA").is_some() && std::fs::read_to_string(schema_path()).ok().as_ref() != Some(&generated) {
        std::fs::write(schema_path(), &generated).unwrap();
        panic!("rewrote results/schema.json: review and commit it, then run again without LLMBENCH_UPDATE_SCHEMA");
    }
    assert_eq!(std::fs::read_to_string(schema_path()).unwrap(), generated, "run with LLMBENCH_UPDATE_SCHEMA=1");
}

fn compare(args: &[&str], out: &Path) -> assert_cmd::assert::Assert {
    llmbench()
        .args(["compare", "--device", "cpu", "--warmup", "0", "--out"])
        .arg(out)
        .args(args)
        .assert()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn validate(results: &Value) {
    let schema = read_json(&schema_path());
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(results).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

fn check_charts(dir: &Path) -> Vec<String> {
    let mut names = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(entry.path()).unwrap();
        if name.ends_with(".png") {
            let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
            let mut reader = decoder.read_info().unwrap();
            let mut buf = vec![0; reader.output_buffer_size()];
            let info = reader.next_frame(&mut buf).unwrap();
            assert!(info.width >= 900 && info.height >= 500, "{name}");
            assert!(buf.iter().any(|&b| b != 255), "{name} is blank");
            names.push(name);
        } else if name.ends_with(".svg") {
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"), "{name}");
            assert!(text.contains("<text"), "{name} has no labels");
            names.push(name);
        }
    }
    names.sort();
    names
}

/// `plot` on the run in `out` writes `charts` into `redrawn` byte for byte as the run did.
fn assert_plot_redraws(out: &Path, redrawn: &Path, charts: &[String]) {
    llmbench().arg("plot").arg(out).arg("--out").arg(redrawn).assert().success();
    for name in charts {
        assert_eq!(std::fs::read(out.join(name)).unwrap(), std::fs::read(redrawn.join(name)).unwrap(), "{name} differs");
    }
}

#[test]
fn compare_on_the_real_model_writes_valid_results_charts_and_csv() {
    let gguf = smollm2_gguf();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let assert = compare(
        &["--model", gguf.to_str().unwrap(), "-n", "12", "-r", "2", "--methods", "standard,sled,sled:stride"]
            .into_iter()
            .chain(["--window", "6", "--stride", "3", "--prompt", "The capital of France is", "--quality", "-o", "csv"])
            .collect::<Vec<_>>(),
        &out,
    )
    .success();
    let csv = String::from_utf8(assert.get_output().stdout.clone()).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    let col = |name: &str| rows[0].iter().position(|h| *h == name).unwrap();
    assert_eq!(rows[1][col("method")], "standard");
    assert_eq!(rows[2][col("method")], "sled:recompute");
    assert!(rows[1][col("avg_ts")].parse::<f64>().unwrap() > 1.0);
    assert_eq!(rows[1][col("agreement_with_standard")], "1");
    // The others' agreement is computed against standard's tokens, not its own: recount it
    // from the generated ids in results.json (first repetition, position by position).
    assert!(rows[3][col("perplexity")].parse::<f64>().unwrap() > 1.0);

    let results = read_json(&out.join("results.json"));
    validate(&results);
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        assert_eq!(case["runs"].as_array().unwrap().len(), 2);
        let run = &case["runs"][0];
        assert_eq!(run["generated_ids"].as_array().unwrap().len(), 12);
        assert_eq!(run["itl_ms"].as_array().unwrap().len(), 11);
        // The weights alone are resident: at least the file's size.
        assert!(run["peak_rss_bytes"].as_u64().unwrap() >= std::fs::metadata(&gguf).unwrap().len());
    }
    // sled:stride w=6 s=3 fills to exactly 9 tokens of KV; standard holds prompt + 11.
    let kv = |i: usize| cases[i]["runs"][0]["kv_cache_bytes_per_token"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).max().unwrap();
    let per_token = 30 * 2 * 3 * 64 * 4;
    assert_eq!(kv(2), 9 * per_token, "{}", kv(2));
    assert_eq!(kv(1), 0);
    assert_eq!(kv(0), (cases[0]["runs"][0]["prompt_tokens"].as_u64().unwrap() + 11) * per_token);
    // Standard's greedy tokens are each the most likely under the full model; the SLED
    // variants' are not, so their perplexity under it is higher.
    let ppl = |i: usize| cases[i]["quality"]["perplexity"].as_f64().unwrap();
    assert!(ppl(0) < ppl(1) && ppl(0) < ppl(2), "standard {} sled {} stride {}", ppl(0), ppl(1), ppl(2));
    assert_eq!(cases[0]["model"]["file_sha256"], "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
    let first_ids = |case: &Value| -> Vec<u64> {
        let run = case["runs"].as_array().unwrap().iter().find(|r| r["repetition"] == 0).unwrap();
        run["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
    };
    let standard_ids = first_ids(&cases[0]);
    for (i, case) in cases.iter().enumerate().skip(1) {
        let ids = first_ids(case);
        let equal = ids.iter().zip(&standard_ids).filter(|(a, b)| a == b).count();
        let expected = equal as f64 / ids.len().max(standard_ids.len()) as f64;
        let reported = case["quality"]["agreement_with_standard"].as_f64().unwrap();
        assert_eq!(reported, expected, "case {i}");
        assert_eq!(rows[i + 1][col("agreement_with_standard")].parse::<f64>().unwrap(), expected);
    }
    // A 6-token window over 12 new tokens after a 6-token prompt must leave standard's path.
    assert!(cases[1]["quality"]["agreement_with_standard"].as_f64().unwrap() < 1.0, "sled:recompute equal to standard");
    // Text similarity to standard's outputs: 1 and 100 for standard itself, less once the path left.
    assert_eq!(cases[0]["quality"]["rouge_l_vs_standard"].as_f64(), Some(1.0));
    assert!((cases[0]["quality"]["bleu_vs_standard"].as_f64().unwrap() - 100.0).abs() < 1e-9);
    assert!(cases[1]["quality"]["rouge_l_vs_standard"].as_f64().unwrap() < 1.0);
    assert!(cases[1]["quality"]["bleu_vs_standard"].as_f64().unwrap() < 100.0);

    let charts = check_charts(&out);
    assert_eq!(charts.len(), 14, "{charts:?}");
    assert_plot_redraws(&out, &dir.path().join("redrawn"), &charts);
}

#[test]
fn sweeps_on_a_random_weight_model_draw_the_sweep_chart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    compare(
        &["--model", fixture("tiny-llama").to_str().unwrap(), "--no-weights", "-n", "8,16", "-r", "2"]
            .into_iter()
            .chain(["--methods", "standard,sled:stride", "--window", "4,8", "--stride", "4", "--prompt", "abc", "-q"])
            .collect::<Vec<_>>(),
        &out,
    )
    .success();
    let results = read_json(&out.join("results.json"));
    validate(&results);
    // n in {8, 16} x (standard + sled:stride with w in {4, 8}) = 6 cases.
    assert_eq!(results["cases"].as_array().unwrap().len(), 6);
    assert_eq!(results["cases"][0]["model"]["weights_format"], "random (seed 42)");
    let charts = check_charts(&out);
    assert!(charts.contains(&"sweep.png".to_string()) && charts.contains(&"sweep.svg".to_string()));
    let redrawn = dir.path().join("redrawn");
    llmbench().arg("plot").arg(out.join("results.json")).args(["--chart", "sweep", "--format", "svg", "--out"]).arg(&redrawn).assert().success();
    assert_eq!(std::fs::read(out.join("sweep.svg")).unwrap(), std::fs::read(redrawn.join("sweep.svg")).unwrap());
}

fn jsonl_case_ids(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["case_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn interrupted_run_resumes_without_rerunning_finished_cases() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = ["compare", "--device", "cpu", "--warmup", "0", "--model", "smollm2-135m", "--no-weights", "-r", "2"];
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("llmbench"))
        .args(args)
        .args(["-n", "6,7,8,9,10,11", "--methods", "standard", "--prompt", "a", "--prompt", "b", "-q", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while jsonl_case_ids(&out).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no case finished");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let finished = jsonl_case_ids(&out);
    assert!(!finished.is_empty() && finished.len() < 6, "interrupted midway: {finished:?}");
    assert_eq!(status.code(), Some(130));
    validate(&read_json(&out.join("results.json")));

    llmbench()
        .args(args)
        .args(["-n", "6,7,8,9,10,11", "--methods", "standard", "--prompt", "a", "--prompt", "b", "-q", "--resume"])
        .arg(&out)
        .assert()
        .success();
    let all = jsonl_case_ids(&out);
    assert_eq!(&all[..finished.len()], &finished[..], "finished cases kept their lines");
    assert_eq!(all.len(), 6, "each case ran exactly once: {all:?}");
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 6);
    assert_eq!(read_json(&out.join("results.json"))["cases"].as_array().unwrap().len(), 6);
}

#[test]
fn continue_on_error_records_the_failing_case() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // tiny-gpt2 has 128 positions: the 200-token case cannot run.
    let assert = compare(
        &["--model", fixture("tiny-gpt2").to_str().unwrap(), "-n", "8,200", "-r", "1", "--methods", "standard"]
            .into_iter()
            .chain(["--prompt", "hello", "--continue-on-error", "--no-charts"])
            .collect::<Vec<_>>(),
        &out,
    )
    .code(1);
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(stdout.contains("failed:"), "{stdout}");
    let results = read_json(&out.join("results.json"));
    validate(&results);
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0]["status"], "ok");
    assert_eq!(cases[1]["status"], "failed");
    assert!(cases[1]["reason"].as_str().unwrap().contains("context window"), "{}", cases[1]["reason"]);
    // Without the flag the same plan stops with an input error.
    compare(
        &["--model", fixture("tiny-gpt2").to_str().unwrap(), "-n", "8,200", "-r", "1", "--methods", "standard", "--prompt", "hello", "--no-charts"],
        &dir.path().join("run2"),
    )
    .code(2);
}

fn input_error(args: &[&str]) -> String {
    let out = llmbench().args(args).assert().code(2).get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.starts_with("error: ") && !stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = fixture("tiny-gpt2");
    let base = ["compare", "--device", "cpu", "--model", tiny.to_str().unwrap(), "--prompt", "hi"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(extra).copied().collect()
    }
    assert!(input_error(&with(&base, &["--window", "0"])).contains("--window 0"));
    assert!(input_error(&with(&base, &["--methods", "sled:stride", "--window", "10", "--stride", "20"])).contains("--stride 20"));
    assert!(input_error(&with(&base, &["--methods", "standard,beam"])).contains("invalid value 'beam' for '--methods"));
    assert!(input_error(&with(&base, &["--prompts-file", "/no/such/prompts.txt"])).contains("/no/such/prompts.txt"));
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n\n").unwrap();
    assert!(input_error(&with(&base, &["--prompts-file", empty.to_str().unwrap()])).contains("no prompts"));

    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{\"schema_version\": 1, \"cases\": [").unwrap();
    assert!(input_error(&["plot", corrupt.to_str().unwrap()]).contains("corrupt"));
    let future = dir.path().join("future.json");
    std::fs::write(&future, "{\"schema_version\": 99}").unwrap();
    assert!(input_error(&["plot", future.to_str().unwrap()]).contains("schema_version 99"));

    let a = dir.path().join("a");
    let b = dir.path().join("b");
    for (out, n) in [(&a, "4"), (&b, "5")] {
        compare(&["--model", tiny.to_str().unwrap(), "-n", n, "-r", "2", "--methods", "standard", "--prompt", "hi", "--no-charts", "-q"], out)
            .success();
    }
    assert!(input_error(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]).contains("no finished case in common"));
}

#[test]
fn several_models_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let models = format!("{},{}", fixture("tiny-gpt2").display(), fixture("tiny-llama").display());
    let assert = compare(&["--model", &models, "-n", "5", "-r", "2", "--prompt", "Once upon", "--no-charts", "-o", "jsonl"], &out)
        .success();
    let lines: Vec<Value> = String::from_utf8_lossy(&assert.get_output().stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // standard + sled for each model, each model's cases together.
    let families: Vec<&str> = lines.iter().map(|c| c["model"]["family"].as_str().unwrap()).collect();
    assert_eq!(families, ["gpt2", "gpt2", "llama", "llama"]);
    assert!(lines.iter().all(|c| c["quality"]["agreement_with_standard"].as_f64().is_some()));
    assert_eq!(lines[0]["quality"]["agreement_with_standard"], 1.0);
    assert_eq!(lines[2]["quality"]["agreement_with_standard"], 1.0);
}

/// Every committed run directory (written by this or an older llmbench: schema 1 files are
/// converted on reading) is readable: `plot` redraws its charts and table, and `diff` compares
/// it with itself and finds every finished case in common with no significant change.
#[test]
fn plot_and_diff_work_on_every_committed_results_directory() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    let mut checked = vec![];
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let dir = entry.path();
        if !(dir.join("results.json").exists() || dir.join("kvcache.json").exists()) {
            continue;
        }
        let out = tempfile::tempdir().unwrap();
        let plotted = llmbench().arg("plot").arg(&dir).arg("--out").arg(out.path()).assert().success();
        let written = String::from_utf8_lossy(&plotted.get_output().stdout).lines().count();
        // Every command's charts in PNG and SVG, and the table: quantize has one (speed only) or
        // two charts, the others three or more.
        let least = if entry.file_name().to_string_lossy().starts_with("quantize") { 3 } else { 7 };
        assert!(written >= least, "{}: plot wrote {written} files", dir.display());
        let table = std::fs::read_to_string(out.path().join("table.md")).unwrap();
        assert!(table.lines().count() >= 4, "{}: {table}", dir.display());
        let diff = llmbench().arg("diff").arg(&dir).arg(&dir).args(["--fail-on-regression", "0"]).assert().success();
        let report = String::from_utf8_lossy(&diff.get_output().stdout).into_owned();
        let results = llmbench::results::sink::load_report(&dir).unwrap();
        let ok = |c: &&llmbench::results::schema::CaseResult| c.status == llmbench::results::schema::CaseStatus::Ok;
        let timed = results.cases.iter().filter(ok).filter(|c| !c.runs.is_empty()).count();
        let scored = results.cases.iter().filter(ok).filter(|c| c.quality.as_ref().and_then(|q| q.as_sled()).is_some()).count();
        let rows: Vec<&str> = report.lines().skip(1).collect();
        assert_eq!(rows.len(), timed * 5 + scored * 6, "{}: five metrics per timed case, six per TruthfulQA case: {report}", dir.display());
        for row in rows {
            // Itself: no change; a verdict where there are repetitions, "n/a" with one run.
            assert!(row.contains("| +0.00% |") && (row.ends_with("| no") || row.contains("n/a (1 and 1 runs")), "{}: {row}", dir.display());
        }
        checked.push(entry.file_name().to_string_lossy().into_owned());
    }
    checked.sort();
    let expected = [
        "batch-h200-smollm2",
        "batch-h200-tinyllama",
        "compare-combined-smollm2",
        "compare-contrast-smollm2",
        "compare-contrast-tinyllama-h200",
        "compare-queries-smollm2",
        "compare-smollm2-1024",
        "evaluate-smollm2",
        "kvcache-hybrid-smollm2",
        "kvcache-smollm2",
        "quantize-h200",
        "quantize-smollm2",
        "quantize-sparsity-smollm2",
        "sled-truthfulqa-smollm2-h200",
        "sled-window-smollm2",
        "specdec-smollm2",
        "specdec-smollm2-lossy",
        "specdec-tinyllama-h200",
        "specdec-tinyllama-h200-batched",
        "specdec-tinyllama-h200-f32",
        "specdec-tinyllama-h200-generic",
        "specdec-tinyllama-h200-generic-batched",
    ];
    assert_eq!(checked, expected, "every committed run directory is checked");
}

/// A run file's keys are the long flags (lists sweep, arrays of a repeatable flag repeat it,
/// `true` sets a switch), and a flag given on the command line wins over the file.
#[test]
fn a_plan_file_runs_and_the_command_line_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    let model = fixture("tiny-llama");
    std::fs::write(
        &plan,
        format!(
            "model = {:?}\ndevice = \"cpu\"\nwarmup = 0\nrepetitions = 1\nmax_new_tokens = [3, 4]\n\
             methods = [\"standard\", \"sled:stride\"]\nwindow = 4\nstride = 2\nprompt = [\"a b\", \"c d\"]\n\
             quality = true\nno-charts = true\n",
            model.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    llmbench().args(["compare", "-q", "--repetitions", "2", "--plan"]).arg(&plan).arg("--out").arg(&out).assert().success();
    let results = read_json(&out.join("results.json"));
    validate(&results);
    assert_eq!(results["settings"]["repetitions"], 2, "the command line overrides the plan");
    assert_eq!(results["settings"]["warmup"], 0);
    assert_eq!(results["settings"]["command_settings"]["prompts"], serde_json::json!(["a b", "c d"]));
    assert_eq!(results["settings"]["command_settings"]["quality"], true);
    let cases = results["cases"].as_array().unwrap();
    let planned: Vec<(u64, &str)> =
        cases.iter().map(|c| (c["params"]["max_new_tokens"].as_u64().unwrap(), c["params"]["method"].as_str().unwrap())).collect();
    assert_eq!(planned, [(3, "standard"), (3, "sled:stride"), (4, "standard"), (4, "sled:stride")]);
    assert!(cases.iter().all(|c| c["runs"].as_array().unwrap().len() == 4), "2 prompts x 2 repetitions");
    assert!(!out.join("dashboard.png").exists(), "no-charts = true");
}

/// Each committed study's run file expands to the flags its COMMAND.md names.
#[test]
fn committed_run_files_parse_into_their_studies() {
    use llmbench::cli::{Cli, Command};
    let config = |name: &str| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs").join(name).to_str().unwrap().to_string();
    let argv = |args: &[&str]| args.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
    let cli: Cli = llmbench::cli::plan::parse(argv(&["llmbench", "compare", "--plan", &config("compare-smollm2-1024.toml")])).unwrap();
    let Command::Compare(args) = cli.command else { panic!("not compare") };
    assert_eq!(args.generation.max_new_tokens.values, [1024]);
    assert_eq!(args.methods.len(), 3);
    assert_eq!((args.window.values.clone(), args.stride.values.clone()), (vec![50], vec![25]));
    assert_eq!((args.run.repetitions, args.run.warmup, args.run.prompts.len(), args.quality), (2, 1, 2, true));
    let cli: Cli = llmbench::cli::plan::parse(argv(&["llmbench", "kvcache", "--plan", &config("kvcache-smollm2.toml")])).unwrap();
    let Command::Kvcache(args) = cli.command else { panic!("not kvcache") };
    assert_eq!(args.context.values, [512, 1024, 2048, 4096]);
    assert_eq!((args.max_new_tokens, args.eval_tokens), (64, 64));
    assert_eq!(args.strategies.split(',').count(), 13);
    let cli: Cli = llmbench::cli::plan::parse(argv(&["llmbench", "sled", "--plan", &config("sled-window-smollm2.toml")])).unwrap();
    let Command::Sled(args) = cli.command else { panic!("not sled") };
    assert_eq!((args.window.values.clone(), args.stride.is_none(), args.generation.max_new_tokens.values.clone()), (vec![25, 50, 100, 200], true, vec![256]));
    let cli: Cli = llmbench::cli::plan::parse(argv(&["llmbench", "sled", "--plan", &config("sled-truthfulqa-smollm2.toml")])).unwrap();
    let Command::Sled(args) = cli.command else { panic!("not sled") };
    assert_eq!((args.methods.len(), args.variant.len(), args.limit), (2, 3, None));
}

/// A combination the model cannot run is recorded as skipped with its reason, and the sweep
/// goes on: int4's 32-channel groups do not fit the fixture's 16-channel heads, so standard
/// decoding on `--kv-cache int4` is skipped while sled:stride (its own full cache) runs.
#[test]
fn an_unsupported_combination_is_skipped_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let assert = compare(
        &["--model", fixture("tiny-llama").to_str().unwrap(), "-n", "4", "-r", "1", "--methods", "standard,sled:stride"]
            .into_iter()
            .chain(["--window", "4", "--stride", "2", "--kv-cache", "int4", "--prompt", "hi", "--no-charts", "-q"])
            .collect::<Vec<_>>(),
        &out,
    )
    .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).into_owned();
    assert!(stdout.contains("skipped: unsupported: int4: the model's head dim 16"), "{stdout}");
    let results = read_json(&out.join("results.json"));
    validate(&results);
    let cases = results["cases"].as_array().unwrap();
    assert_eq!((cases[0]["status"].as_str(), cases[0]["runs"].as_array().unwrap().len()), (Some("skipped"), 0));
    assert!(cases[0]["reason"].as_str().unwrap().contains("not a multiple of the 32-channel int4 groups"));
    assert_eq!(cases[1]["status"], "ok");
    assert_eq!(cases[1]["runs"].as_array().unwrap().len(), 1);
}

/// generate takes a run file too; its required --prompt may come from the file alone.
#[test]
fn generate_takes_a_plan_file() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("one.toml");
    let model = fixture("tiny-llama");
    std::fs::write(&plan, format!("model = {:?}\ndevice = \"cpu\"\nprompt = \"The river\"\nmax-new-tokens = 5\nignore-eos = true\njson = true\n", model.to_str().unwrap())).unwrap();
    let out = llmbench().args(["generate", "--max-new-tokens", "3", "--plan"]).arg(&plan).assert().success();
    let record: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(record["generated_ids"].as_array().unwrap().len(), 3, "the command line's -n wins");
}

/// `--input word_removal:N` runs every method on the rewritten prompts too: the prompts as
/// written come first (standard decoding on them is the reference), the rewritten ones are kept
/// in the case with their token count and reduction, and agreement is against the prompts as
/// written.
#[test]
fn input_methods_rewrite_the_prompts_and_are_measured_against_the_written_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let prompt = "The quick brown fox jumps over the lazy dog. It was 1999 and the sun rose.";
    compare(
        &["--model", fixture("tiny-llama").to_str().unwrap(), "-n", "6", "-r", "1", "--methods", "standard"]
            .into_iter()
            .chain(["--input", "word_removal:2,none", "--prompt", prompt, "--no-charts"])
            .collect::<Vec<_>>(),
        &out,
    )
    .success();
    let results = read_json(&out.join("results.json"));
    validate(&results);
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert!(cases[0]["params"].get("input").is_none(), "the prompts as written run first");
    assert_eq!(cases[1]["params"]["input"], "word_removal:2");
    let q = &cases[1]["quality"];
    // The(1) quick(2) brown(3) fox(4) jumps(5) over(6) the(7) lazy(8) dog(9) It(10) was(11)
    // and(12) the(13) sun(14) rose(15): the even ones go, 1999 is kept and not counted.
    assert_eq!(q["inputs"][0], "The brown jumps the dog. was 1999 the rose.");
    let written = cases[0]["runs"][0]["prompt_tokens"].as_u64().unwrap();
    let rewritten = cases[1]["runs"][0]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(q["input_tokens"].as_u64().unwrap(), rewritten);
    assert!(rewritten < written, "{rewritten} < {written}");
    assert!((q["input_reduction"].as_f64().unwrap() - (1.0 - rewritten as f64 / written as f64)).abs() < 1e-12);
    assert!(q["agreement_with_standard"].is_number(), "agreement against the written prompts' standard run");
    assert!(cases[0]["quality"].get("input_tokens").is_none());
    // Text similarity to standard decoding's outputs: identical for standard itself.
    assert_eq!(cases[0]["quality"]["rouge_l_vs_standard"], 1.0);
    // BLEU of a text against itself: 100 from four words up, 0 for shorter outputs (sacrebleu).
    let text = cases[0]["runs"][0]["text"].as_str().unwrap();
    let own = llmbench::metrics::bleu::Bleu::default().corpus(&[text], &[text]).score;
    assert_eq!(cases[0]["quality"]["bleu_vs_standard"].as_f64().unwrap(), own);
    let rouge = q["rouge_l_vs_standard"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rouge) && q["bleu_vs_standard"].as_f64().unwrap() <= 100.0);
}

/// lingua and adaptivocab through compare: lingua keeps about half the prompt (counted in the
/// target's tokens, the written prompt's run first), adaptivocab keeps the text and reads it in
/// fewer tokens on the extended model, and every case reports its bits per byte and input time.
#[test]
fn lingua_and_adaptivocab_cases_report_their_tokens_and_costs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let phrases = dir.path().join("phrases.txt");
    std::fs::write(&phrases, "quick brown fox\nlazy dog\n").unwrap();
    let prompt = "The quick brown fox jumps over the lazy dog, and the quick brown fox sleeps.";
    compare(
        &["--model", fixture("tiny-llama").to_str().unwrap(), "-n", "5", "-r", "1", "--methods", "standard", "--prompt", prompt]
            .into_iter()
            .chain(["--input", "none,lingua:0.5,adaptivocab", "--phrases", phrases.to_str().unwrap()])
            .collect::<Vec<_>>(),
        &out,
    )
    .success();
    let results = read_json(&out.join("results.json"));
    validate(&results);
    let cases = results["cases"].as_array().unwrap();
    let inputs: Vec<&str> = cases.iter().map(|c| c["params"]["input"].as_str().unwrap_or("none")).collect();
    assert_eq!(inputs, ["none", "lingua:0.5", "adaptivocab"]);
    let written = cases[0]["runs"][0]["prompt_tokens"].as_u64().unwrap() as f64;
    let lingua = &cases[1]["quality"];
    let kept = lingua["input_tokens"].as_u64().unwrap() as f64;
    assert!(kept < written && lingua["inputs"][0].as_str().unwrap() != prompt, "{kept} of {written}");
    assert!(lingua["input_seconds"].as_f64().unwrap() > 0.0);
    let av = &cases[2]["quality"];
    assert_eq!(av["inputs"][0], prompt, "adaptivocab keeps the text");
    assert!(av["input_tokens"].as_u64().unwrap() < written as u64);
    assert_eq!(av["phrases"], serde_json::json!(["quick brown fox", "lazy dog"]));
    assert!(av["phrase_tokens"].as_u64().unwrap() >= 2);
    assert!(cases[2]["model"]["weights_format"].as_str().unwrap().contains("phrase tokens"));
    for case in cases {
        let bpb = case["quality"]["prompt_bits_per_byte"].as_f64().unwrap();
        assert!(bpb.is_finite() && bpb > 0.0);
    }
    // Same text, different tokens: the bits per byte are comparable and not equal.
    assert_ne!(cases[0]["quality"]["prompt_bits_per_byte"], av["prompt_bits_per_byte"]);

    // The multi-query charts join compare's, and `plot` redraws them byte for byte.
    let charts = check_charts(&out);
    for name in ["time-metrics", "token-metrics", "memory-metrics", "efficiency-metrics", "comprehensive-dashboard", "quality-by-query", "input-output", "performance-dashboard"] {
        assert!(charts.contains(&format!("{name}.png")) && charts.contains(&format!("{name}.svg")), "{name}: {charts:?}");
    }
    let svg = std::fs::read_to_string(out.join("input-output.svg")).unwrap();
    assert!(svg.contains("lingua:0.5") && svg.contains("adaptivocab"), "the cases head the columns");
    assert_plot_redraws(&out, &dir.path().join("redrawn"), &charts);
}

/// `--quick` is seed 002's quick mode (30 new tokens); the built-in prompts carry their query
/// types and keywords, and every case reports its keyword hit rate.
#[test]
fn quick_mode_on_the_built_in_queries_reports_keyword_hits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    compare(
        &["--model", fixture("layer_contrast/tiny-llama-6l").to_str().unwrap(), "--quick", "-r", "1", "--methods", "standard", "--no-charts"],
        &out,
    )
    .success();
    let results = read_json(&out.join("results.json"));
    validate(&results);
    let settings = &results["settings"]["command_settings"];
    assert_eq!(settings["query_types"].as_array().unwrap().len(), 5);
    assert_eq!(settings["keywords"][2][0], "refrigerant");
    let case = &results["cases"][0];
    assert_eq!(case["params"]["max_new_tokens"], 30);
    assert_eq!(case["runs"][0]["generated_tokens"], 30);
    let rate = case["quality"]["keyword_hit_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&rate), "{rate}");
    // Other prompts carry no keywords, so no rate.
    let other = dir.path().join("other");
    compare(&["--model", fixture("tiny-llama").to_str().unwrap(), "-n", "2", "-r", "1", "--methods", "standard", "--prompt", "hi", "--no-charts"], &other).success();
    let results = read_json(&other.join("results.json"));
    assert!(results["cases"][0]["quality"].get("keyword_hit_rate").is_none());
    assert!(results["settings"]["command_settings"].get("keywords").is_none());
}
