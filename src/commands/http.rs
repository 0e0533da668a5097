//! `llmbench http`: load levels (request rates x concurrencies) against an OpenAI-compatible
//! server, each recorded as a case as it finishes: one run record per request (TTFT, TPOT,
//! the raw inter-chunk gaps), the level's metrics (src/http/metrics.rs) and the server's own
//! timings where it sends them (llama-server). Everything before the first request (the
//! flags, the endpoint's reachability, the tokenizer, the dataset) is checked first, so bad
//! input exits 2 with no run directory.

use super::{harness, output, prompts, Outcome};
use crate::cli::http::HttpArgs;
use crate::http::client::{self, Endpoint, Timeouts};
use crate::http::dataset::{self, Item};
use crate::http::load::{run_level, Load, Request};
use crate::http::metrics::{level_metrics, output_tokens, Slo};
use crate::http::openai::RequestOptions;
use crate::http::request::RequestRecord;
use crate::http::schedule::{arrivals, ramped, Rate};
use crate::measure::stats::Summary;
use crate::measure::system::Provenance;
use crate::results::schema::{
    CaseParams, CaseResult, CaseStatus, CommandName, CommandSettings, HttpParams, HttpQuality,
    HttpSettings, Quality, Report, RunRecord, Settings,
};
use anyhow::Result;
use std::time::Duration;

/// Output length when neither --max-tokens nor the dataset gives one.
const DEFAULT_MAX_TOKENS: usize = 128;

pub fn run(args: &HttpArgs) -> Result<Outcome> {
    let ep = Endpoint::parse(&args.endpoint).map_err(crate::error::LlmbenchError::invalid)?;
    let rates = args
        .request_rate
        .iter()
        .map(|r| parse_rate(r))
        .collect::<Result<Vec<_>>>()?;
    if !(args.burstiness.is_finite() && args.burstiness > 0.0) {
        crate::bail_input!(
            "--burstiness {}: must be above 0 (1 is a Poisson process)",
            args.burstiness
        );
    }
    if let Some(r) = args.ramp_up {
        if !(r.is_finite() && r > 0.0) {
            crate::bail_input!("--ramp-up {r}: must be a number of seconds above 0");
        }
        if rates.iter().any(|(_, rate)| *rate == Rate::Unlimited) {
            crate::bail_input!("--ramp-up ramps a request rate: give --request-rate a number of requests/s (not inf)");
        }
    }
    if args.num_prompts == 0 {
        crate::bail_input!("--num-prompts 0: send at least 1 request a level");
    }
    if args.duration.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
        crate::bail_input!("--duration: must be a number of seconds above 0");
    }
    for (flag, v) in [
        ("--connect-timeout", args.connect_timeout),
        ("--read-timeout", args.read_timeout),
    ] {
        if !(v.is_finite() && v > 0.0) {
            crate::bail_input!("{flag} {v}: must be a number of seconds above 0");
        }
    }
    if args.max_tokens == Some(0) {
        crate::bail_input!("--max-tokens 0: ask for at least 1 token");
    }
    let slo = parse_slo(args.goodput.as_deref())?;
    let timeouts = Timeouts {
        connect: Duration::from_secs_f64(args.connect_timeout),
        read: Duration::from_secs_f64(args.read_timeout),
    };
    check_reachable(&ep, &args.endpoint, timeouts.connect)?;
    let resolved = crate::models::source::resolve(&args.tokenizer, &Default::default())?;
    let tokenizer = crate::models::load_tokenizer(&resolved)?;
    // A random dataset's prompts are drawn per level below; one here serves the probe.
    let (items, dataset_sha256) =
        dataset::load(&args.dataset, &tokenizer, &prompts::BUILT_IN, args.seed, 1)?;
    let requests = dataset::sample(&items, args.num_prompts, args.seed);
    let warmup = dataset::sample(&items, args.warmup_requests, args.seed.wrapping_add(1));
    let concurrencies: Vec<Option<usize>> = match &args.max_concurrency {
        Some(list) => list.values.iter().map(|&c| Some(c)).collect(),
        None => vec![None],
    };
    let max_tokens = args
        .max_tokens
        .or(requests.first().and_then(|i| i.max_tokens))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let settings = Settings {
        warmup: args.warmup_requests,
        repetitions: 1,
        seed: args.seed,
        temperature: args.temperature as f64,
        top_k: None,
        top_p: None,
        repetition_penalty: 1.0,
        stop_at_eos: args.stop_at_eos,
        dtype: "server".into(),
        cuda_graph: None,
        command_settings: CommandSettings::Http(HttpSettings {
            endpoint: ep.url(""),
            api: args.api,
            served_model: args.served_model.clone(),
            dataset: dataset_label(args),
            dataset_sha256,
            num_prompts: args.num_prompts,
            duration_s: args.duration,
            warmup_requests: args.warmup_requests,
            max_tokens,
            ignore_eos: !args.stop_at_eos,
            burstiness: args.burstiness,
            ramp_up_s: args.ramp_up,
            slo,
            tokenizer: format!("{} ({})", args.tokenizer, tokenizer.describe()),
            busy_poll: args.busy_poll,
            connect_timeout_s: args.connect_timeout,
            read_timeout_s: args.read_timeout,
        }),
    };
    let server = args.served_model.clone().unwrap_or_else(|| ep.url(""));
    let base = RequestOptions {
        api: args.api,
        served_model: args.served_model.clone(),
        max_tokens,
        ignore_eos: !args.stop_at_eos,
        temperature: args.temperature,
        seed: Some(args.seed),
    };
    probe(
        &ep,
        &args.endpoint,
        &base,
        requests.first().map_or("Hello", |i| i.prompt.as_str()),
        timeouts,
    )?;
    let report = Report::new(
        CommandName::Http,
        Provenance::collect("http client", 1),
        settings.clone(),
    );
    let (mut sink, done) = output::open(&args.output, report)?;
    harness::install_interrupt_handler();
    let count = |text: &str| tokenizer.encode(text).map(|ids| ids.len()).unwrap_or(0);
    let mut any_failed = false;
    let levels: Vec<(&str, Rate, Option<usize>)> = rates
        .iter()
        .flat_map(|(t, r)| concurrencies.iter().map(move |c| (t.as_str(), *r, *c)))
        .collect();
    for (level, &(rate_text, rate, concurrency)) in levels.iter().enumerate() {
        if harness::interrupted() {
            eprintln!(
                "stopped: finished levels are in {}; continue with --resume {}",
                sink.dir().display(),
                sink.dir().display()
            );
            return Ok(Outcome::Interrupted);
        }
        let params = CaseParams::Http(HttpParams {
            model: server.clone(),
            request_rate: rate_text.to_string(),
            max_concurrency: concurrency,
            max_new_tokens: max_tokens,
        });
        if done.contains(&params.id(&settings)) {
            continue;
        }
        // Random prompts are drawn anew for every level and its warm-up (from the seed and
        // the level's index): a server that caches prompt prefixes (llama-server's slots,
        // vLLM's prefix cache) would otherwise answer a later level from an earlier one's
        // cache. Dataset files repeat their prompts, as in vLLM's bench.
        let (requests, warmup) = if matches!(args.dataset, dataset::Dataset::Random { .. }) {
            let fresh = |salt: u64, n: usize| -> Result<Vec<Item>> {
                Ok(dataset::load(
                    &args.dataset,
                    &tokenizer,
                    &[],
                    args.seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    n,
                )?
                .0)
            };
            (
                fresh(2 * level as u64 + 2, args.num_prompts)?,
                fresh(2 * level as u64 + 3, args.warmup_requests)?,
            )
        } else {
            (requests.clone(), warmup.clone())
        };
        eprintln!("{}: {} requests", params.label(), requests.len());
        let opts = base.clone();
        let as_request = |item: &Item| Request {
            prompt: item.prompt.clone(),
            max_tokens: args.max_tokens.or(item.max_tokens).unwrap_or(max_tokens),
        };
        // Warm-up: one request at a time, not recorded.
        for item in &warmup {
            let load = Load {
                arrivals: vec![Duration::ZERO],
                max_concurrency: Some(1),
                duration: None,
                busy_poll: false,
            };
            run_level(&ep, &opts, &[as_request(item)], &load, timeouts)?;
        }
        let load = Load {
            arrivals: match args.ramp_up {
                Some(r) => ramped(
                    &arrivals(requests.len(), rate, args.burstiness, args.seed),
                    Duration::from_secs_f64(r),
                ),
                None => arrivals(requests.len(), rate, args.burstiness, args.seed),
            },
            max_concurrency: concurrency,
            duration: args.duration.map(Duration::from_secs_f64),
            busy_poll: args.busy_poll,
        };
        let batch: Vec<Request> = requests.iter().map(as_request).collect();
        let (records, _) = run_level(&ep, &opts, &batch, &load, timeouts)?;
        let case = level_case(params, &settings, &records, &slo, &count);
        any_failed |= case.status == CaseStatus::Failed;
        sink.record(case)?;
    }
    output::finish(&mut sink, &args.output)?;
    Ok(if any_failed {
        Outcome::CasesFailed
    } else {
        Outcome::Success
    })
}

/// One level's case: its requests as runs, the metrics, the server's timings. A level where
/// every request failed is a failed case, with the first failure as its reason.
fn level_case(
    params: CaseParams,
    settings: &Settings,
    records: &[RequestRecord],
    slo: &Slo,
    count: &dyn Fn(&str) -> usize,
) -> CaseResult {
    let metrics = level_metrics(records, slo, count);
    if metrics.completed == 0 {
        let why = records
            .iter()
            .find_map(|r| r.failure.as_ref())
            .map_or("no request was sent".into(), |f| {
                format!("every request failed; the first: {f}")
            });
        return CaseResult::not_run(params, settings, CaseStatus::Failed, why);
    }
    let runs: Vec<RunRecord> = records
        .iter()
        .filter(|r| r.failure.is_none())
        .map(|r| run_record(r, count))
        .collect();
    let timings: Vec<_> = records
        .iter()
        .filter(|r| r.failure.is_none())
        .filter_map(|r| r.server_timings)
        .collect();
    let server_prompt_ms = Summary::of(
        &timings
            .iter()
            .filter_map(|t| t.prompt_ms)
            .collect::<Vec<_>>(),
    );
    let server_per_token_ms = Summary::of(
        &timings
            .iter()
            .filter_map(|t| t.predicted_per_token_ms)
            .collect::<Vec<_>>(),
    );
    // Not harness::summarize: requests under load vary by design, and its warning about the
    // spread across runs (asking for more repetitions) does not apply to a load level.
    let summary = crate::results::schema::CaseSummary::from_runs(&runs);
    let quality = Some(Quality::Http(HttpQuality {
        metrics,
        server_prompt_ms,
        server_per_token_ms,
    }));
    CaseResult {
        case_id: params.id(settings),
        params,
        status: CaseStatus::Ok,
        reason: None,
        model: None,
        runs,
        summary,
        quality,
    }
}

/// A request as a run record: the engine's fields that a server's stream gives (TTFT, TPOT,
/// E2E, every inter-chunk gap, chunk arrival times); memory and cache fields are the client's
/// nothing (0).
fn run_record(r: &RequestRecord, count: &dyn Fn(&str) -> usize) -> RunRecord {
    let (n, _) = output_tokens(r, count);
    let ttft_ms = r.ttft_s().unwrap_or(r.e2e_s) * 1e3;
    let e2e_ms = r.e2e_s * 1e3;
    let decode_s = (e2e_ms - ttft_ms) / 1e3;
    let prompt_tokens = r.usage.map_or(0, |u| u.prompt_tokens as usize);
    RunRecord {
        prompt_index: r.index,
        repetition: 0,
        prompt_tokens,
        generated_tokens: n as usize,
        ttft_ms,
        tpot_ms: if n > 1 {
            (e2e_ms - ttft_ms) / (n - 1) as f64
        } else {
            0.0
        },
        e2e_ms,
        prefill_tokens_per_s: if ttft_ms > 0.0 {
            prompt_tokens as f64 / (ttft_ms / 1e3)
        } else {
            0.0
        },
        decode_tokens_per_s: if n > 1 && decode_s > 0.0 {
            (n - 1) as f64 / decode_s
        } else {
            0.0
        },
        itl_ms: r.chunk_s.windows(2).map(|w| (w[1] - w[0]) * 1e3).collect(),
        samples_ns: r.chunk_s.iter().map(|s| (s * 1e9) as u64).collect(),
        kv_cache_bytes_per_token: vec![],
        kv_cache_bytes: 0,
        kv_stats: None,
        peak_rss_bytes: 0,
        peak_device_memory_bytes: None,
        device_memory_free_bytes: None,
        device_memory_total_bytes: None,
        stop_reason: if r.usage.is_some() {
            "usage".into()
        } else {
            "tokenizer".into()
        },
        generated_ids: vec![],
        text: r.chunk_text.concat(),
        speculative: None,
    }
}

/// `--request-rate` entries: a positive number, or inf.
fn parse_rate(text: &str) -> Result<(String, Rate)> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("inf") {
        return Ok(("inf".into(), Rate::Unlimited));
    }
    match t.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok((t.to_string(), Rate::PerSecond(r))),
        Ok(_) => {
            crate::bail_input!("--request-rate {t}: a rate must be above 0 requests/s (or inf)")
        }
        Err(_) => crate::bail_input!("--request-rate {t}: expected a number of requests/s or inf"),
    }
}

/// `--goodput ttft:MS,tpot:MS,e2el:MS`.
fn parse_slo(text: Option<&str>) -> Result<Slo> {
    let mut slo = Slo::default();
    let Some(text) = text else { return Ok(slo) };
    for part in text.split(',') {
        let (key, value) = part.split_once(':').unwrap_or((part, ""));
        let ms = value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0);
        let Some(ms) = ms else {
            crate::bail_input!(
                "--goodput {text}: `{part}` needs a limit in ms above 0 (ttft:MS,tpot:MS,e2el:MS)"
            )
        };
        match key.trim() {
            "ttft" => slo.ttft_ms = Some(ms),
            "tpot" => slo.tpot_ms = Some(ms),
            "e2el" => slo.e2el_ms = Some(ms),
            other => crate::bail_input!("--goodput {text}: `{other}` is not ttft, tpot or e2el"),
        }
    }
    Ok(slo)
}

fn dataset_label(args: &HttpArgs) -> String {
    match &args.dataset {
        dataset::Dataset::Random { input, output } => format!("random:{input}:{output}"),
        dataset::Dataset::Prompts => "prompts".into(),
        dataset::Dataset::Jsonl(p) => format!("jsonl:{}", p.display()),
        dataset::Dataset::ShareGpt(p) => format!("sharegpt:{}", p.display()),
    }
}

/// One short request before the run directory exists: a server that does not answer like an
/// OpenAI-compatible one (a 404, HTML, JSON without choices) is an input error, not a level
/// of failed requests.
fn probe(
    ep: &Endpoint,
    url: &str,
    opts: &RequestOptions,
    prompt: &str,
    timeouts: Timeouts,
) -> Result<()> {
    let one = [Request {
        prompt: prompt.to_string(),
        max_tokens: 1,
    }];
    let load = Load {
        arrivals: vec![Duration::ZERO],
        max_concurrency: Some(1),
        duration: None,
        busy_poll: false,
    };
    let (records, _) = run_level(ep, opts, &one, &load, timeouts)?;
    match records.first().and_then(|r| r.failure.as_ref()) {
        None => Ok(()),
        Some(f) => crate::bail_input!(
            "--endpoint {url}: a first {} request failed: {f}; is this an OpenAI-compatible server (try --api chat or --api completions)?",
            opts.api.path()
        ),
    }
}

/// A connection to the endpoint before anything else, so that a wrong URL is an input error.
fn check_reachable(ep: &Endpoint, url: &str, timeout: Duration) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(client::connect(ep, timeout)) {
        Ok(_) => Ok(()),
        Err(e) => {
            crate::bail_input!("--endpoint {url}: {e}; is the server running and listening there?")
        }
    }
}
