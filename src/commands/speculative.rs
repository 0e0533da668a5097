//! What `specdec`, `compare --methods specdec:...` and `generate --draft` share: validating the
//! speculative options into a policy and a K schedule, and turning a `--draft` value into a
//! drafter (loading and checking a second model where it names one).

use super::Loaded;
use crate::cli::args::ModelArgs;
use crate::cli::specdec::SpecOptions;
use crate::decode::speculative::{DraftNet, DraftSource, Drafter, Policy, PolicyKind, Schedule, ScheduleKind, SharedModel};
use crate::engine::device::DeviceChoice;
use crate::kv::{self, KvKind};
use crate::models::{self, requantize, source, ModelSpec};
use anyhow::{Context, Result};
use std::sync::{Arc, Mutex};

/// Checks the options that do not depend on the model.
pub fn validate(opts: &SpecOptions, ks: &[usize], temperature: f64, cache: KvKind, policies: &[PolicyKind]) -> Result<()> {
    if let Some(k) = ks.iter().find(|&&k| k == 0) {
        crate::bail_input!("--k {k}: draft at least 1 token per step (K 0 is standard decoding: use --methods standard)");
    }
    if !kv::rolls_back_exactly(cache) {
        crate::bail_input!(
            "--kv-cache {}: speculative decoding rolls rejected drafts back with truncate, which this strategy cannot do \
             exactly; use full, static, paged, int8, int4, mixed or none",
            cache.name()
        );
    }
    if !(opts.tau > 0.0 && opts.tau <= 1.0) {
        crate::bail_input!("--tau {}: the confidence threshold must be in (0, 1]", opts.tau);
    }
    if opts.agree_k == 0 {
        crate::bail_input!("--agree-k 0: accept among at least the 1 most likely token");
    }
    for (flag, v) in [("--typical-eps", opts.typical_eps), ("--typical-delta", opts.typical_delta)] {
        if !(v > 0.0 && v <= 1.0) {
            crate::bail_input!("{flag} {v}: must be in (0, 1]");
        }
    }
    if !(opts.target_acceptance > 0.0 && opts.target_acceptance < 1.0) {
        crate::bail_input!("--target-acceptance {}: must be in (0, 1)", opts.target_acceptance);
    }
    if opts.min_k == 0 || opts.min_k > opts.max_k {
        crate::bail_input!("--min-k {} --max-k {}: need 1 <= min-k <= max-k", opts.min_k, opts.max_k);
    }
    if opts.lookup_ngram == 0 {
        crate::bail_input!("--lookup-ngram 0: match at least 1-token n-grams");
    }
    if temperature > 0.0 && policies.contains(&PolicyKind::Greedy) {
        crate::bail_input!(
            "--policy greedy with --temperature {temperature}: greedy verification needs greedy decoding; \
             for sampling use --policy rejection (lossless)"
        );
    }
    Ok(())
}

/// The policies to run: as given, or greedy (rejection when sampling).
pub fn policies(given: &[PolicyKind], temperature: f64) -> Vec<PolicyKind> {
    if !given.is_empty() {
        return given.to_vec();
    }
    vec![if temperature > 0.0 { PolicyKind::Rejection } else { PolicyKind::Greedy }]
}

pub fn policy(kind: PolicyKind, opts: &SpecOptions) -> Policy {
    match kind {
        PolicyKind::Greedy => Policy::Greedy,
        PolicyKind::Rejection => Policy::Rejection,
        PolicyKind::ConfThreshold => Policy::ConfThreshold { tau: opts.tau },
        PolicyKind::TopkAgree => Policy::TopkAgree { k: opts.agree_k },
        PolicyKind::Typical => Policy::Typical { eps: opts.typical_eps, delta: opts.typical_delta },
    }
}

/// The schedule starting at `k` (an adaptive one clamps the start into its bounds).
pub fn schedule(opts: &SpecOptions, k: usize) -> Schedule {
    let start = match opts.k_schedule {
        ScheduleKind::Fixed => k,
        _ => k.clamp(opts.min_k, opts.max_k),
    };
    let (min, max) = match opts.k_schedule {
        ScheduleKind::Fixed => (k, k),
        _ => (opts.min_k, opts.max_k),
    };
    Schedule { kind: opts.k_schedule, start, min, max, target_acceptance: opts.target_acceptance }
}

/// A draft ready to build strategies from, and what it is (for results).
pub struct PreparedDraft {
    pub source: DraftSource,
    pub drafter: Drafter,
    /// The K values this draft runs: lookup:N fixes K at N.
    pub fixed_k: Option<usize>,
    /// A loaded draft model's description (second models and quant: drafts).
    pub model: Option<ModelSpec>,
}

/// Refuses a `--draft-device` other than the target's (`auto` means the target's).
pub fn check_draft_device(draft_device: Option<&str>, target: &Loaded) -> Result<()> {
    let Some(text) = draft_device else { return Ok(()) };
    let choice: DeviceChoice = text.parse().map_err(|e: String| crate::error::LlmbenchError::invalid(format!("--draft-device {text}: {e}")))?;
    let name = match choice {
        DeviceChoice::Auto => return Ok(()),
        DeviceChoice::Cpu => "cpu".to_string(),
        DeviceChoice::Cuda(i) => format!("cuda:{i}"),
        DeviceChoice::Metal(i) => format!("metal:{i}"),
    };
    if name != target.device_info.name {
        crate::bail_input!(
            "--draft-device {text}: the draft must run on the target's device ({}): the verify pass reads the draft's \
             tokens and both caches roll back together; drop --draft-device",
            target.device_info.name
        );
    }
    Ok(())
}

/// Turns a `--draft` value into a drafter for `target`, loading a second model where named.
pub fn prepare(source: &DraftSource, target: &Loaded, model_args: &ModelArgs, seed: u64, ks: &[usize]) -> Result<PreparedDraft> {
    let n_layers = target.model.model.config().n_layers();
    let window = target.model.model.config().context_window();
    if let Some(&k) = ks.iter().find(|&&k| k >= window) {
        crate::bail_input!("--k {k} is not smaller than the model's context window of {window}: draft fewer tokens");
    }
    let own = |loaded: models::LoadedModel| -> (Drafter, Option<ModelSpec>) {
        let shared: SharedModel = Arc::new(Mutex::new(loaded.model));
        (Drafter::Net(DraftNet::Own(shared)), Some(loaded.spec))
    };
    let (drafter, fixed_k, model) = match source {
        DraftSource::Lookup(n) => (Drafter::Lookup, *n, None),
        DraftSource::SelfDraft => (Drafter::Net(DraftNet::Target { layers: None }), None, None),
        DraftSource::Layers(_) => {
            let layers = source.draft_layers(n_layers).unwrap_or(1);
            if layers >= n_layers {
                crate::bail_input!(
                    "--draft {source}: the model has {n_layers} layers; an early-exit draft keeps fewer (use layers:1 to layers:{})",
                    n_layers - 1
                );
            }
            (Drafter::Net(DraftNet::Target { layers: Some(layers) }), None, None)
        }
        DraftSource::Quant(name) => {
            let format = requantize::parse_format(name)?;
            if model_args.dtype != models::DTypeArg::F32 {
                crate::bail_input!("--draft quant:{name} with --dtype {:?}: a re-quantized draft computes in f32; drop --dtype", model_args.dtype);
            }
            let resolved = source::resolve(&model_args.model, &model_args.source_options())?;
            let loaded = models::load_converted(&resolved, crate::quant::format::WeightFormat::Gguf(format), seed, &target.device)
                .with_context(|| format!("--draft quant:{name}: re-quantizing {}", model_args.model))?;
            let (drafter, spec) = own(loaded);
            (drafter, None, spec)
        }
        DraftSource::Model(id) => {
            let resolved = source::resolve(id, &ModelArgs { model: id.clone(), ..model_args.clone() }.source_options())
                .with_context(|| format!("--draft {id}"))?;
            let loaded = models::load(&resolved, model_args.dtype, seed, &target.device).with_context(|| format!("--draft {id}"))?;
            check_vocabulary(id, &loaded, target)?;
            let (drafter, spec) = own(loaded);
            (drafter, None, spec)
        }
    };
    Ok(PreparedDraft { source: source.clone(), drafter, fixed_k, model })
}

/// A draft must share the target's vocabulary: the same size and the same token strings.
fn check_vocabulary(id: &str, draft: &models::LoadedModel, target: &Loaded) -> Result<()> {
    let (d, t) = (draft.model.config().vocab_size(), target.model.model.config().vocab_size());
    if d != t {
        crate::bail_input!(
            "--draft {id}: its vocabulary has {d} tokens, the target's {t}; a draft must share the target's tokenizer \
             (e.g. distilgpt2 for gpt2, a smaller model of the same family)"
        );
    }
    if !draft.tokenizer.same_vocabulary(&target.model.tokenizer) {
        crate::bail_input!(
            "--draft {id}: its tokenizer ({}) maps tokens to ids differently from the target's ({}); a draft must share \
             the target's vocabulary",
            draft.tokenizer.describe(),
            target.model.tokenizer.describe()
        );
    }
    Ok(())
}
