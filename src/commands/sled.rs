//! `llmbench sled`: the two SLEDs' studies.
//!
//! `--task window`: seed 000's sliding-window study. Standard decoding against sled:recompute
//! and sled:stride (stride W/2 unless given) over the window sweep: it is a compare run with
//! that plan, so it goes through compare itself and writes compare's results, whose charts add
//! the window-study views once two or more windows ran.
//!
//! `--task truthfulqa`: TruthfulQA's multiple choice per decoding (standard, SLED's logits
//! evolution, DoLa; `--variant` adds more settings), each decoding one case of a `sled` report
//! (through the one sink: resumable, charts, table, `diff` question by question).

use super::harness;
use super::{load_model, output, truthfulqa, Outcome};
use crate::cli::args::NumList;
use crate::cli::compare::CompareArgs;
use crate::cli::sled::{SledArgs, SledTask, VariantArgs};
use crate::decode::layer_contrast::ContrastConfig;
use crate::decode::Method;
use crate::measure::system::Provenance;
use crate::results::schema::{
    CaseParams, CaseResult, CommandName, CommandSettings, Quality, Report, SledParams, SledQuality,
    SledSettings,
};
use anyhow::Result;

pub fn run(args: &SledArgs) -> Result<Outcome> {
    match args.task {
        SledTask::Window => run_window(args),
        SledTask::Truthfulqa => run_truthfulqa(args),
    }
}

const WINDOW_METHODS: [Method; 3] = [Method::Standard, Method::SledRecompute, Method::SledStride];
const TRUTHFULQA_METHODS: [Method; 3] = [Method::Standard, Method::SledEvolution, Method::Dola];

/// The flags one task takes that the other does not, for a clear error instead of silence.
fn check_task_flags(args: &SledArgs) -> Result<()> {
    let methods = match args.task {
        SledTask::Window => &WINDOW_METHODS,
        SledTask::Truthfulqa => &TRUTHFULQA_METHODS,
    };
    if let Some(m) = args.methods.iter().find(|m| !methods.contains(m)) {
        let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
        crate::bail_input!(
            "--methods {}: --task {} runs {}",
            m.name(),
            task_name(args.task),
            names.join(", ")
        );
    }
    // Flags of the other task would be ignored without a word: refuse them instead.
    let (given, other): (Vec<&str>, &str) = match args.task {
        SledTask::Window => (
            [
                (!args.variant.is_empty(), "--variant"),
                (args.limit.is_some(), "--limit"),
                (
                    args.data.as_os_str() != crate::cli::sled::DEFAULT_TRUTHFULQA,
                    "--data",
                ),
                (
                    args.bootstrap != crate::cli::sled::DEFAULT_BOOTSTRAP,
                    "--bootstrap",
                ),
            ]
            .into_iter()
            .filter_map(|(set, flag)| set.then_some(flag))
            .collect(),
            "truthfulqa",
        ),
        SledTask::Truthfulqa => (
            [
                (
                    args.window.values != crate::cli::sled::DEFAULT_WINDOWS,
                    "--window",
                ),
                (args.stride.is_some(), "--stride"),
                (args.quality, "--quality"),
                (
                    !args.run.prompts.is_empty() || args.run.prompts_file.is_some(),
                    "--prompt",
                ),
            ]
            .into_iter()
            .filter_map(|(set, flag)| set.then_some(flag))
            .collect(),
            "window",
        ),
    };
    if let Some(flag) = given.first() {
        crate::bail_input!(
            "{flag} is for --task {other}; --task {} does not use it",
            task_name(args.task)
        );
    }
    Ok(())
}

fn task_name(task: SledTask) -> &'static str {
    match task {
        SledTask::Window => "window",
        SledTask::Truthfulqa => "truthfulqa",
    }
}

/// The window study as compare's arguments: the same model, device, generation, run and output
/// flags, the three methods (or those asked) and stride W/2 unless `--stride` is given.
fn run_window(args: &SledArgs) -> Result<Outcome> {
    check_task_flags(args)?;
    let methods = if args.methods.is_empty() {
        WINDOW_METHODS.to_vec()
    } else {
        args.methods.clone()
    };
    let half_window_stride = args.stride.is_none();
    let mut output = args.output.clone();
    if output.out.is_none() && output.resume.is_none() {
        output.out = Some(super::default_out_dir("sled-window"));
    }
    let compare = CompareArgs {
        model: args.model.clone(),
        device: args.device.clone(),
        generation: args.generation.clone(),
        run: args.run.clone(),
        output,
        methods,
        window: args.window.clone(),
        // Unused with half_window_stride; compare's defaults otherwise.
        stride: args.stride.clone().unwrap_or_else(|| NumList::of(25)),
        k: NumList::of(4),
        quality: args.quality,
        input: vec![crate::input::InputMethod::None],
        compressor: None,
        phrases: None,
        phrase_corpus: None,
        quick: false,
        sparsity: Default::default(),
        combine: false,
        contrast: args.contrast.clone(),
        half_window_stride,
    };
    super::compare::run(&compare)
}

/// The decodings scored: `--methods` (default all three) with the shared contrast flags, then
/// each `--variant` with its own.
fn decodings(args: &SledArgs) -> Result<Vec<(Method, Option<ContrastConfig>)>> {
    // Standard decoding is the reference of every paired difference: it runs unless
    // --methods leaves it out.
    let methods = match (args.methods.is_empty(), args.variant.is_empty()) {
        (true, true) => TRUTHFULQA_METHODS.to_vec(),
        (true, false) => vec![Method::Standard],
        (false, _) => args.methods.clone(),
    };
    let mut out = Vec::new();
    for m in methods {
        out.push((
            m,
            if m == Method::Standard {
                None
            } else {
                Some(args.contrast.config(m)?)
            },
        ));
    }
    for text in &args.variant {
        let v = VariantArgs::parse(text)?;
        if !matches!(v.method, Method::SledEvolution | Method::Dola) {
            crate::bail_input!("--variant {text:?}: a variant is sled-evolution or dola with its flags (standard is in --methods)");
        }
        out.push((v.method, Some(v.contrast.config(v.method)?)));
    }
    let labels: Vec<String> = out.iter().map(|(m, c)| label(*m, c.as_ref())).collect();
    if let Some(i) = (1..labels.len()).find(|&i| labels[..i].contains(&labels[i])) {
        crate::bail_input!(
            "--methods/--variant: `{}` is asked for twice; give each decoding once",
            labels[i]
        );
    }
    Ok(out)
}

/// A decoding as its case labels it.
fn label(method: Method, contrast: Option<&ContrastConfig>) -> String {
    SledParams {
        model: String::new(),
        method: method.name().into(),
        contrast: contrast.map(|c| c.label()),
    }
    .label()
}

/// `--resume DIR` continues a run over the same questions only (the paired differences and
/// `diff` compare question by question).
fn check_resume(args: &SledArgs, settings: &SledSettings) -> Result<()> {
    let Some(dir) = &args.output.resume else {
        return Ok(());
    };
    let previous = crate::results::sink::load_report(dir)
        .map_err(|e| e.context(format!("--resume {}", dir.display())))?;
    if let Some(p) = previous.sled_settings() {
        // The path too: it is part of the settings every case id hashes.
        if (
            p.data.as_str(),
            p.data_sha256.as_str(),
            p.questions,
            p.bootstrap_resamples,
        ) != (
            settings.data.as_str(),
            settings.data_sha256.as_str(),
            settings.questions,
            settings.bootstrap_resamples,
        ) {
            crate::bail_input!(
                "--resume {}: it scored {} questions of {} ({} resamples); resume with the same --data, --limit and --bootstrap",
                dir.display(),
                p.questions,
                p.data,
                p.bootstrap_resamples
            );
        }
    }
    Ok(())
}

fn run_truthfulqa(args: &SledArgs) -> Result<Outcome> {
    check_task_flags(args)?;
    if args.bootstrap == 0 {
        crate::bail_input!(
            "--bootstrap 0: the 95% intervals need at least one resample (1000 is usual)"
        );
    }
    let questions = truthfulqa::load_questions(&args.data, "--data", args.limit)?;
    let decodings = decodings(args)?;
    let loaded = load_model(&args.model, &args.device, args.generation.seed)?;
    // Every decoding fits this model before anything is written.
    for (_, contrast) in &decodings {
        if let Some(c) = contrast {
            c.check(loaded.model.model.as_ref())?;
        }
    }
    let sled_settings = SledSettings {
        task: "truthfulqa".into(),
        data: args.data.display().to_string(),
        data_sha256: harness::file_sha256(&args.data)?,
        questions: questions.len(),
        bootstrap_resamples: args.bootstrap,
    };
    check_resume(args, &sled_settings)?;
    // Scoring samples nothing: the sampling flags are not the run's settings (nor its case ids).
    let settings = harness::settings(
        &crate::decode::sampling::SamplingConfig::default(),
        0,
        1,
        false,
        format!("{:?}", args.model.dtype).to_lowercase(),
        None,
        CommandSettings::Sled(sled_settings),
    );
    let report = Report::new(
        CommandName::Sled,
        Provenance::collect(&loaded.device_info.name, loaded.threads),
        settings.clone(),
    );
    let (mut sink, done) = output::open(&args.output, report)?;
    harness::install_interrupt_handler();
    let model_record = harness::model_record(&loaded.model.spec)?;
    let progress = super::progress::bar((decodings.len() * questions.len()) as u64);
    let mut any_failed = false;
    for (method, contrast) in &decodings {
        let params = CaseParams::Sled(SledParams {
            model: loaded.model.spec.id.clone(),
            method: method.name().into(),
            contrast: contrast.as_ref().map(|c| c.label()),
        });
        if done.contains(&params.id(&settings)) {
            progress.inc(questions.len() as u64);
            continue;
        }
        progress.set_message(params.label());
        let scored = truthfulqa::score_questions(
            &loaded.model,
            &loaded.device,
            contrast.as_ref(),
            &questions,
            &mut || {
                progress.inc(1);
                !harness::interrupted()
            },
        );
        let (scored, seconds) = match scored {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(output::interrupted(&sink, &progress)),
            Err(e) if output::goes_on_after(&args.output, &e) => {
                any_failed |= output::record_not_run(&mut sink, params, &settings, &e)?;
                continue;
            }
            Err(e) => return Err(e.context(params.label())),
        };
        let quality = SledQuality {
            truthfulqa: truthfulqa::summarize(&scored, seconds, args.bootstrap),
            questions: scored,
        };
        sink.record(CaseResult::ran(
            params,
            &settings,
            model_record.clone(),
            vec![],
            None,
            Some(Quality::Sled(quality)),
        ))?;
    }
    progress.finish_and_clear();
    output::finish(&mut sink, &args.output)?;
    Ok(if any_failed {
        Outcome::CasesFailed
    } else {
        Outcome::Success
    })
}
