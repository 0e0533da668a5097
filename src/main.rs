//! Entry point: parse, set up logging, dispatch, and map errors to exit codes (the only place
//! that exits): 0 ok, 1 a run failed, 2 usage or input error; a closed stdout pipe is not an error.

use llmbench::cli::{Cli, Command};
use llmbench::commands::{self, Outcome};
use llmbench::error;

fn main() {
    let cli: Cli = match llmbench::cli::plan::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            std::process::exit(error::exit_code(&err));
        }
    };
    init_logging(cli.verbose, cli.quiet);
    if cli.quiet {
        // Read by the progress bars, which sit below the point where flags are threaded.
        std::env::set_var("LLMBENCH_QUIET", "1");
    }
    let result = match &cli.command {
        Command::Generate(args) => commands::generate::run(args),
        Command::Chat(args) => commands::chat::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::Kvcache(args) => commands::kvcache::run(args),
        Command::Specdec(args) => commands::specdec::run(args),
        Command::Quantize(args) => commands::quantize::run(args),
        Command::Evaluate(args) => commands::evaluate::run(args),
        Command::Sled(args) => commands::sled::run(args),
        Command::Http(args) => commands::http::run(args),
        Command::Batch(args) => commands::batch::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Diff(args) => commands::diff::run(args),
        Command::Completions(args) => commands::docs::completions(args.shell),
        Command::Man => commands::docs::man(),
    };
    match result {
        Ok(Outcome::Success) => {}
        Ok(Outcome::CasesFailed) => std::process::exit(1),
        Ok(Outcome::Interrupted) => std::process::exit(130),
        Err(err) if is_broken_pipe(&err) => std::process::exit(0),
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            std::process::exit(error::exit_code(&err));
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LLMBENCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("llmbench={level}")));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// The cause chain on one line. candle errors carry a backtrace after their first line when
/// RUST_BACKTRACE is set; a user-facing message keeps only what each cause says.
fn one_line(err: &anyhow::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    for cause in err.chain() {
        let first = error::first_line(cause);
        // A wrapped error's text often repeats in its wrapper's message: say each thing once.
        if !first.is_empty() && !out.last().is_some_and(|prev| prev.contains(&first)) {
            out.push(first);
        }
    }
    out.join(": ")
}
