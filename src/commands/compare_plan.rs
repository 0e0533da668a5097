//! compare's plan: the cases a run measures, in the order they run (models x lengths x
//! inputs x sparsity x methods x windows x strides x K, or the all_combined study's five parts),
//! each with its params (and so its case id) and what the runner needs to build it.

use crate::cli::compare::CompareArgs;
use crate::decode::{self, Method, MethodParams};
use crate::input::InputMethod;
use crate::kv::KvKind;
use crate::results::schema::{CaseParams, CompareParams};
use crate::sparse::SparsityMethod;

/// One planned case.
pub(super) struct Planned {
    pub(super) params: CaseParams,
    pub(super) compare: CompareParams,
    pub(super) method: Method,
    pub(super) method_params: MethodParams,
    pub(super) input: InputMethod,
    pub(super) sparsity: Option<SparsityMethod>,
    pub(super) kv: KvKind,
    /// Standard decoding on the prompts as written, dense, on the run's cache (the all_combined
    /// study's baseline on the full cache): every case's reference for agreement.
    pub(super) reference: bool,
}

pub(super) fn plan(
    args: &CompareArgs,
    models: &[String],
    methods: &[Method],
    kv_options: &crate::kv::KvOptions,
) -> Vec<Planned> {
    if args.combine {
        return plan_combined(args, models, kv_options);
    }
    let mut out = Vec::new();
    // The prompts as written come first, so standard decoding on them is every case's reference.
    let mut inputs: Vec<InputMethod> = vec![];
    for i in std::iter::once(InputMethod::None)
        .filter(|n| args.input.contains(n))
        .chain(
            args.input
                .iter()
                .copied()
                .filter(|i| *i != InputMethod::None),
        )
    {
        if !inputs.contains(&i) {
            inputs.push(i);
        }
    }
    // The dense model first (the reference), then each --sparsity method.
    let sparsities: Vec<Option<SparsityMethod>> = std::iter::once(None)
        .chain(args.sparsity.sparsity.iter().copied().map(Some))
        .collect();
    for model in models {
        for &n in &args.generation.max_new_tokens.values {
            for (&input, &sparsity) in inputs
                .iter()
                .flat_map(|i| sparsities.iter().map(move |s| (i, s)))
            {
                for &method in methods {
                    let windows: Vec<Option<usize>> = if method.uses_window() {
                        args.window.values.iter().map(|&w| Some(w)).collect()
                    } else {
                        vec![None]
                    };
                    for window in windows {
                        let strides: Vec<Option<usize>> =
                            if method.uses_stride() && args.half_window_stride {
                                vec![window.map(|w| (w / 2).max(1))]
                            } else if method.uses_stride() {
                                args.stride
                                    .values
                                    .iter()
                                    .filter(|&&s| Some(s) <= window)
                                    .map(|&s| Some(s))
                                    .collect()
                            } else {
                                vec![None]
                            };
                        let ks: Vec<Option<usize>> = if method.uses_k() {
                            args.k.values.iter().map(|&k| Some(k)).collect()
                        } else {
                            vec![None]
                        };
                        for (stride, k) in strides
                            .iter()
                            .flat_map(|&s| ks.iter().map(move |&k| (s, k)))
                        {
                            let mut method_params =
                                MethodParams::sled(window.unwrap_or(0), stride.unwrap_or(0));
                            method_params.speculative =
                                k.map(|k| speculative_params(args, k, kv_options));
                            // Checked in `validate`.
                            method_params.contrast = if method.uses_layers() {
                                args.contrast.config(method).ok()
                            } else {
                                None
                            };
                            // The cache each method runs with comes from the strategy itself (one mapping).
                            let kv = match decode::build(method, &method_params) {
                                Ok(strategy) => strategy.cache_kind(args.generation.kv_cache),
                                Err(_) => args.generation.kv_cache,
                            };
                            let compare = CompareParams {
                                model: model.clone(),
                                method: method.name().into(),
                                window,
                                stride,
                                k,
                                contrast: method_params.contrast.as_ref().map(|c| c.label()),
                                input: (input != InputMethod::None).then(|| input.label()),
                                max_new_tokens: n,
                                kv_cache: kv.label(kv_options),
                                sparsity: sparsity.map(|m| m.to_string()),
                                part: None,
                            };
                            out.push(Planned {
                                params: CaseParams::Compare(compare.clone()),
                                reference: compare.is_baseline(),
                                compare,
                                method,
                                method_params,
                                input,
                                sparsity,
                                kv,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// The all_combined study (`--combine`): standard decoding as the baseline (prompts as written,
/// dense, full cache), each part alone, and all three parts stacked. `validate` checked there is
/// one input method, one sparsity method and a cache other than full.
fn plan_combined(
    args: &CompareArgs,
    models: &[String],
    kv_options: &crate::kv::KvOptions,
) -> Vec<Planned> {
    let input = args
        .input
        .iter()
        .copied()
        .find(|i| *i != InputMethod::None)
        .unwrap_or(InputMethod::None);
    let sparsity = args.sparsity.sparsity.first().copied();
    let kv = args.generation.kv_cache;
    let parts: [(&str, InputMethod, Option<SparsityMethod>, KvKind); 5] = [
        ("baseline", InputMethod::None, None, KvKind::Full),
        ("input", input, None, KvKind::Full),
        ("sparsity", InputMethod::None, sparsity, KvKind::Full),
        ("kv", InputMethod::None, None, kv),
        ("all_combined", input, sparsity, kv),
    ];
    let mut out = Vec::new();
    for model in models {
        for &n in &args.generation.max_new_tokens.values {
            for (part, input, sparsity, kv) in parts {
                let compare = CompareParams {
                    model: model.clone(),
                    method: Method::Standard.name().into(),
                    window: None,
                    stride: None,
                    k: None,
                    contrast: None,
                    input: (input != InputMethod::None).then(|| input.label()),
                    max_new_tokens: n,
                    kv_cache: kv.label(kv_options),
                    sparsity: sparsity.map(|m| m.to_string()),
                    part: Some(part.into()),
                };
                let method_params = MethodParams::sled(0, 0);
                out.push(Planned {
                    params: CaseParams::Compare(compare.clone()),
                    reference: compare.is_baseline(),
                    compare,
                    method: Method::Standard,
                    method_params,
                    input,
                    sparsity,
                    kv,
                });
            }
        }
    }
    out
}

/// A speculative method's settings: K fixed, greedy verification (rejection when sampling),
/// the run's cache. The layer count is filled in once the model is loaded.
fn speculative_params(
    args: &CompareArgs,
    k: usize,
    kv_options: &crate::kv::KvOptions,
) -> decode::SpecMethodParams {
    let options = crate::cli::specdec::SpecOptions::default();
    let kind = crate::commands::speculative::policies(&[], args.generation.temperature)[0];
    decode::SpecMethodParams {
        k,
        config: decode::speculative::SpecConfig {
            policy: crate::commands::speculative::policy(kind, &options),
            schedule: crate::commands::speculative::schedule(&options, k),
            lookup_max_ngram: options.lookup_ngram,
            cache: args.generation.kv_cache,
            kv_options: *kv_options,
            verify: options.verify_attention(),
        },
        n_layers: 0,
    }
}
