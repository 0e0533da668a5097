//! Progress bars on stderr, hidden when stderr is not a terminal (scripts, CI) or with -q.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub fn bar(total: u64) -> ProgressBar {
    let quiet = std::env::var_os("LLMBENCH_QUIET").is_some();
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} runs, ETA {eta}  {msg}") {
        bar.set_style(style);
    }
    bar
}

/// A line on stderr above the bar (unless -q), e.g. one finished case.
pub fn note(bar: &ProgressBar, line: &str) {
    if std::env::var_os("LLMBENCH_QUIET").is_none() {
        bar.suspend(|| eprintln!("{line}"));
    }
}
