//! `llmbench completions SHELL` and `llmbench man`: generated from the clap definitions, so
//! they never drift from the flags (hyperfine ships both).

use super::Outcome;
use crate::cli::Cli;
use anyhow::Result;
use clap::CommandFactory;
use std::io::Write;

pub fn completions(shell: clap_complete::Shell) -> Result<Outcome> {
    let mut stdout = std::io::stdout().lock();
    clap_complete::generate(shell, &mut Cli::command(), "llmbench", &mut stdout);
    stdout.flush()?;
    Ok(Outcome::Success)
}

pub fn man() -> Result<Outcome> {
    let mut stdout = std::io::stdout().lock();
    clap_mangen::Man::new(Cli::command()).render(&mut stdout)?;
    stdout.flush()?;
    Ok(Outcome::Success)
}
