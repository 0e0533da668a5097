//! `llmbench specdec`: standard decoding (the baseline) and every (draft, policy, K) case on
//! the same prompts, through the harness, recorded as each finishes; then the metrics of
//! `results::speculative` (acceptance, cost ratio, measured and predicted speedup) and the
//! output's quality (agreement with the baseline, perplexity under the target).

use super::harness::{self, CaseSpec};
use super::speculative::{self as spec, PreparedDraft};
use super::{load_model, output, prompts, Outcome};
use crate::cli::specdec::SpecdecArgs;
use crate::decode::speculative::{self as speculative, SpecConfig};
use crate::decode::{DecodeStrategy, Standard};
use crate::engine::{Engine, GenerateRequest};
use crate::measure::system::Provenance;
use crate::results::schema::{
    CaseParams, CaseResult, CaseStatus, CommandName, CommandSettings, Quality, Report, RunRecord, SpecdecParams,
    SpecdecSettings,
};
use crate::results::speculative::{quality, OutputQuality};
use anyhow::Result;

/// One planned case: the baseline (`draft` None) or a draft with a policy and K.
struct Planned<'d> {
    params: CaseParams,
    draft: Option<&'d PreparedDraft>,
    policy: Option<crate::decode::speculative::Policy>,
    k: usize,
}

pub fn run(args: &SpecdecArgs) -> Result<Outcome> {
    let sampling = args.generation.sampling();
    sampling.validate()?;
    let max_new_tokens = args.generation.max_new_tokens.single("--max-new-tokens")?;
    if max_new_tokens == 0 {
        crate::bail_input!("--max-new-tokens 0: generate at least 1 token");
    }
    if args.run.repetitions == 0 {
        crate::bail_input!("--repetitions 0: measure at least one run");
    }
    if args.draft.is_empty() {
        crate::bail_input!("--draft is empty: name at least one draft source");
    }
    let policies = spec::policies(&args.policy, sampling.temperature);
    spec::validate(&args.options, &args.k.values, sampling.temperature, args.generation.kv_cache, &policies)?;
    let kv_options = args.generation.kv_options()?;
    let prompt_texts = prompts::load(&args.run.prompts, args.run.prompts_file.as_deref())?;

    let loaded = load_model(&args.model, &args.device, sampling.seed)?;
    spec::check_draft_device(args.options.draft_device.as_deref(), &loaded)?;
    let drafts = args
        .draft
        .iter()
        .map(|d| spec::prepare(d, &loaded, &args.model, sampling.seed, &args.k.values))
        .collect::<Result<Vec<_>>>()?;
    let prompt_ids = prompts::token_ids(&loaded.model.tokenizer, &prompt_texts, args.run.prompt_tokens)?;
    let engine = Engine::new(loaded.model.model.as_ref(), &loaded.device);
    for prompt in &prompt_ids {
        engine.validate(&GenerateRequest { prompt_ids: prompt, max_new_tokens, sampling, stop_at_eos: args.run.stop_at_eos })?;
    }

    let cuda_graph = loaded.device_info.name.starts_with("cuda").then_some(!args.device.no_cuda_graph);
    let settings = harness::settings(
        &sampling,
        args.run.warmup,
        args.run.repetitions,
        args.run.stop_at_eos,
        format!("{:?}", args.model.dtype).to_lowercase(),
        cuda_graph,
        CommandSettings::Specdec(SpecdecSettings {
            prompts: prompt_texts.clone(),
            k_schedule: format!("{:?}", args.options.k_schedule).to_lowercase(),
            min_k: args.options.min_k,
            max_k: args.options.max_k,
            target_acceptance: args.options.target_acceptance,
            lookup_max_ngram: args.options.lookup_ngram,
            batched_verify: args.options.batched_verify,
            draft_models: drafts
                .iter()
                .filter_map(|d| Some(format!("{}: {} ({})", d.source, d.model.as_ref()?.id, d.model.as_ref()?.weights_format)))
                .collect(),
        }),
    );
    let kv_label = args.generation.kv_cache.label(&kv_options);
    let model_id = args.model.model.clone();
    let case_params = |draft: Option<&PreparedDraft>, policy: Option<speculative::Policy>, k: Option<usize>| {
        CaseParams::Specdec(SpecdecParams {
            model: model_id.clone(),
            draft: draft.map(|d| d.source.to_string()),
            policy: policy.map(|p| p.label()),
            lossy: policy.is_some_and(|p| !p.kind().is_lossless()),
            k,
            max_new_tokens,
            kv_cache: kv_label.clone(),
        })
    };
    let mut plan = vec![Planned { params: case_params(None, None, None), draft: None, policy: None, k: 0 }];
    for draft in &drafts {
        for &kind in &policies {
            let policy = spec::policy(kind, &args.options);
            let ks = draft.fixed_k.map_or(args.k.values.clone(), |k| vec![k]);
            for k in ks {
                plan.push(Planned { params: case_params(Some(draft), Some(policy), Some(k)), draft: Some(draft), policy: Some(policy), k });
            }
        }
    }

    let report = Report::new(CommandName::Specdec, Provenance::collect(&loaded.device_info.name, loaded.threads), settings.clone());
    let (mut sink, done) = output::open(&args.output, report)?;
    harness::install_interrupt_handler();
    let runs_per_case = args.run.warmup + args.run.repetitions * prompt_texts.len();
    let progress = super::progress::bar((plan.len() * runs_per_case) as u64);
    let model_record = harness::model_record(&loaded.model.spec)?;
    let mut baseline: Option<Vec<RunRecord>> = sink
        .report()
        .cases
        .iter()
        .find(|c| c.status == CaseStatus::Ok && c.params.as_specdec().is_some_and(|p| p.draft.is_none()))
        .map(|c| c.runs.clone());
    let mut any_failed = false;
    for p in &plan {
        let id = p.params.id(&settings);
        if done.contains(&id) {
            progress.inc(runs_per_case as u64);
            continue;
        }
        progress.set_message(p.params.label());
        let spec_case = CaseSpec {
            prompts: &prompt_ids,
            max_new_tokens,
            sampling,
            stop_at_eos: args.run.stop_at_eos,
            warmup: args.run.warmup,
            repetitions: args.run.repetitions,
            kv: args.generation.kv_cache,
            kv_options,
        };
        let mut strategy: Box<dyn DecodeStrategy> = match (p.draft, p.policy) {
            (Some(draft), Some(policy)) => speculative::build(
                &draft.drafter,
                &SpecConfig {
                    policy,
                    schedule: spec::schedule(&args.options, p.k),
                    lookup_max_ngram: args.options.lookup_ngram,
                    cache: args.generation.kv_cache,
                    kv_options,
                    verify: args.options.verify_attention(),
                },
            ),
            _ => Box::new(Standard),
        };
        let runs = match harness::run_case(&loaded.model, &engine, strategy.as_mut(), &spec_case, &mut || progress.inc(1)) {
            Ok(Some(runs)) => runs,
            Ok(None) => return Ok(output::interrupted(&sink, &progress)),
            Err(e) if output::goes_on_after(&args.output, &e) => {
                any_failed |= output::record_not_run(&mut sink, p.params.clone(), &settings, &e)?;
                continue;
            }
            Err(e) => return Err(e.context(p.params.label())),
        };
        if p.draft.is_none() {
            baseline = Some(runs.clone());
        }
        let output_quality = output_quality(&engine, &prompt_ids, &runs, baseline.as_deref(), sampling.temperature == 0.0)?;
        let lossless = p.policy.is_none_or(|pol| pol.kind().is_lossless());
        let k = p.draft.map(|_| p.k);
        let summary = harness::summarize(&p.params.label(), &runs);
        let quality = Some(Quality::Specdec(quality(&runs, baseline.as_deref(), k, lossless, output_quality)));
        let case = CaseResult::ran(p.params.clone(), &settings, model_record.clone(), runs, summary, quality);
        sink.record(case)?;
    }
    progress.finish_and_clear();
    output::finish(&mut sink, &args.output)?;
    Ok(if any_failed { Outcome::CasesFailed } else { Outcome::Success })
}

/// Agreement with the baseline's tokens (greedy runs only: sampled runs differ by design) and
/// perplexity of the output under the target with a full cache.
fn output_quality(
    engine: &Engine,
    prompts: &[Vec<u32>],
    runs: &[RunRecord],
    baseline: Option<&[RunRecord]>,
    greedy: bool,
) -> Result<OutputQuality> {
    let ours = harness::first_repetition(runs);
    let per_prompt = ours.iter().zip(prompts).map(|(g, p)| harness::perplexity(engine, p, g)).collect::<Result<Vec<f64>>>()?;
    let perplexity = (!per_prompt.is_empty()).then(|| per_prompt.iter().sum::<f64>() / per_prompt.len() as f64);
    let (agreement_with_target, first_divergence) = match (baseline, greedy) {
        (Some(base), true) => harness::agreement(&ours, &harness::first_repetition(base)),
        _ => (None, vec![]),
    };
    Ok(OutputQuality { agreement_with_target, first_divergence, perplexity })
}
