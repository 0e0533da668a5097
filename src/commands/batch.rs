//! `llmbench batch`: for each batch size B, B sequences of PP random prompt tokens generate TG
//! tokens each on the continuous-batching engine (`engine::batch`), warm-up first, then the
//! measured repetitions; each repetition becomes llama-batched-bench's row and each sequence a
//! run (TTFT, TPOT, every token's time), through the one sink, views and charts.

use super::harness;
use super::{load_model, output, Outcome};
use crate::cli::batch::BatchArgs;
use crate::decode::sampling::SamplingConfig;
use crate::engine::batch::{BatchEngine, BatchLimits, SeqRequest};
use crate::engine::batch_run::{run_to_completion, BatchRun};
use crate::measure::stats::Summary;
use crate::measure::system::Provenance;
use crate::results::schema::{
    BatchParams, BatchQuality, BatchRepetition, BatchSettings, CaseParams, CaseResult, CaseSummary, CommandName, CommandSettings, Quality, Report, RunRecord,
};
use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn run(args: &BatchArgs) -> Result<Outcome> {
    let (pp, tg) = (args.prompt_tokens, args.max_new_tokens);
    if args.batch_size.values.contains(&0) {
        crate::bail_input!("--batch-size {}: every batch size must be at least 1", String::from(args.batch_size.clone()));
    }
    if pp == 0 || tg == 0 {
        crate::bail_input!("--prompt-tokens {pp} --max-new-tokens {tg}: both must be at least 1");
    }
    if args.repetitions == 0 {
        crate::bail_input!("--repetitions 0: measure at least one run");
    }
    if args.kv_block_size == 0 || args.kv_blocks == Some(0) || args.max_step_tokens == Some(0) {
        crate::bail_input!("--kv-block-size, --kv-blocks and --max-step-tokens must be at least 1");
    }
    let loaded = load_model(&args.model, &args.device, args.seed)?;
    let model = loaded.model.model.as_ref();
    let window = model.config().context_window();
    if pp + tg > window {
        crate::bail_input!("--prompt-tokens {pp} + --max-new-tokens {tg} exceeds the model's context window of {window}: lower one of them");
    }
    if !model.has_batch() {
        crate::bail_input!("--model {}: this architecture has no batched forward pass", args.model.model);
    }
    // The last token is never fed: a sequence holds PP + TG - 1 positions at most.
    let blocks_per_seq = (pp + tg - 1).div_ceil(args.kv_block_size);
    if let Some(blocks) = args.kv_blocks.filter(|&b| b < blocks_per_seq) {
        crate::bail_input!(
            "--kv-blocks {blocks}: one sequence of {pp} + {tg} tokens needs {blocks_per_seq} blocks of {}; raise --kv-blocks or lower the tokens",
            args.kv_block_size
        );
    }
    let max_b = args.batch_size.values.iter().copied().max().unwrap_or(1);
    let prompts = random_prompts(args.seed, max_b, pp, model.config().vocab_size());
    let sampling = SamplingConfig { seed: args.seed, ..SamplingConfig::default() };
    // Batched steps never run the captured graph (it covers the one-sequence decode step):
    // recorded as off on CUDA, as the other commands record --no-cuda-graph.
    let cuda_graph = loaded.device_info.name.starts_with("cuda").then_some(false);
    let settings = harness::settings(
        &sampling,
        args.warmup,
        args.repetitions,
        false,
        format!("{:?}", args.model.dtype).to_lowercase(),
        cuda_graph,
        CommandSettings::Batch(BatchSettings {
            prompts: format!("random token ids (seed {})", args.seed),
            kv_block_size: args.kv_block_size,
            kv_blocks: args.kv_blocks,
            max_step_tokens: args.max_step_tokens,
        }),
    );
    let report = Report::new(CommandName::Batch, Provenance::collect(&loaded.device_info.name, loaded.threads), settings.clone());
    let (mut sink, done) = output::open(&args.output, report)?;
    harness::install_interrupt_handler();
    let model_record = harness::model_record(&loaded.model.spec)?;
    let mut any_failed = false;
    for &b in &args.batch_size.values {
        if harness::interrupted() {
            eprintln!("stopped: finished batch sizes are in {}; continue with --resume {}", sink.dir().display(), sink.dir().display());
            return Ok(Outcome::Interrupted);
        }
        let params = CaseParams::Batch(BatchParams { model: args.model.model.clone(), batch_size: b, prompt_tokens: pp, max_new_tokens: tg });
        if done.contains(&params.id(&settings)) {
            continue;
        }
        let limits = BatchLimits {
            max_batch: b,
            max_step_tokens: args.max_step_tokens.unwrap_or(b * pp),
            block_size: args.kv_block_size,
            kv_blocks: args.kv_blocks.unwrap_or(b * blocks_per_seq),
        };
        let requests: Vec<SeqRequest> = prompts[..b]
            .iter()
            .map(|p| SeqRequest { prompt_ids: p.clone(), max_new_tokens: tg, sampling, stop_at_eos: false })
            .collect();
        eprintln!("B={b}: {} warm-up + {} measured runs of {b} x ({pp} + {tg}) tokens", args.warmup, args.repetitions);
        let result = (|| -> Result<Vec<BatchRun>> {
            let mut engine = BatchEngine::new(model, &loaded.device, limits)?;
            for _ in 0..args.warmup {
                run_to_completion(&mut engine, &requests)?;
            }
            let runs = (0..args.repetitions).map(|_| run_to_completion(&mut engine, &requests)).collect::<Result<Vec<_>>>()?;
            Ok(runs)
        })();
        let runs = match result {
            Ok(runs) => runs,
            Err(e) if output::goes_on_after(&args.output, &e) => {
                any_failed |= output::record_not_run(&mut sink, params, &settings, &e)?;
                continue;
            }
            Err(e) => return Err(e.context(format!("batch size {b}"))),
        };
        let mut records: Vec<RunRecord> = Vec::new();
        for (r, run) in runs.iter().enumerate() {
            for (i, g) in run.generations.iter().enumerate() {
                records.push(harness::run_record(&loaded.model, i, r, g)?);
            }
        }
        let quality = batch_quality(&runs, &records, pp, limits.kv_blocks).context("summarizing the batch runs")?;
        // Not `harness::summarize`: its outlier warnings treat runs as independent, and a batch's
        // sequences share every step.
        let summary = CaseSummary::from_runs(&records);
        sink.record(CaseResult::ran(params, &settings, model_record.clone(), records, summary, Some(Quality::Batch(quality))))?;
    }
    output::finish(&mut sink, &args.output)?;
    Ok(if any_failed { Outcome::CasesFailed } else { Outcome::Success })
}

/// B distinct prompts of `len` ids drawn uniformly from the vocabulary (llama-batched-bench
/// feeds token ids without text too); the first B of the largest case serve every smaller one.
fn random_prompts(seed: u64, n: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| (0..len).map(|_| rng.random_range(0..vocab as u32)).collect()).collect()
}

/// llama-batched-bench's row per repetition, and the summaries over repetitions and sequences.
fn batch_quality(runs: &[BatchRun], records: &[RunRecord], pp: usize, kv_blocks: usize) -> Result<BatchQuality> {
    let repetitions: Vec<BatchRepetition> = runs
        .iter()
        .map(|run| {
            let b = run.generations.len();
            let generated: usize = run.generations.iter().map(|g| g.generated_ids.len()).sum();
            let (t_pp, t) = (run.prefill_phase_ns() as f64 / 1e9, run.total_ns() as f64 / 1e9);
            let t_tg = t - t_pp;
            let per_s = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
            BatchRepetition {
                n_kv: b * pp + generated - b,
                t_pp_s: t_pp,
                s_pp: per_s(b * pp, t_pp),
                t_tg_s: t_tg,
                s_tg: per_s(run.decode_phase_tokens(), t_tg),
                t_s: t,
                s: per_s(b * pp + generated, t),
                preemptions: run.preemptions,
                kv_pool_bytes: run.kv_pool_bytes,
                peak_kv_used_bytes: run.peak_kv_used_bytes,
                peak_rss_bytes: run.peak_rss_bytes,
                peak_device_memory_bytes: run.peak_device_memory_bytes,
                steps: run.steps.clone(),
            }
        })
        .collect();
    let over = |f: fn(&BatchRepetition) -> f64| Summary::of(&repetitions.iter().map(f).collect::<Vec<_>>()).context("no repetitions");
    let per_sequence: Vec<f64> = records.iter().filter(|r| r.tpot_ms > 0.0).map(|r| 1e3 / r.tpot_ms).collect();
    Ok(BatchQuality {
        s_pp: over(|r| r.s_pp)?,
        s_tg: over(|r| r.s_tg)?,
        s: over(|r| r.s)?,
        per_sequence_decode_tokens_per_s: Summary::of(&per_sequence),
        kv_blocks,
        peak_kv_blocks_used: repetitions.iter().flat_map(|r| r.steps.iter().map(|s| s.blocks_used)).max().unwrap_or(0),
        repetitions,
    })
}
