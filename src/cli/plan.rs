//! Run files (`--plan FILE.toml`): a study written down once and run as-is. The keys are the
//! subcommand's long flags (`max-new-tokens` or `max_new_tokens`), values are strings, numbers,
//! booleans (a switch given as `true`), or arrays where a flag takes a list or sweeps
//! (`window = [25, 50]` is `--window 25,50`; a repeatable flag such as `prompt` is given once per
//! element). A flag on the command line overrides the file's value for that flag.
//!
//! How: the command line is parsed once to learn which flags it sets, the file's other keys are
//! appended as flags, and the result is parsed again, so a plan is validated by exactly the
//! same rules and messages as typed flags.

use crate::error::LlmbenchError;
use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::path::Path;

/// Parses the command line, expanding `--plan FILE` when the subcommand has one. Clap's own
/// errors (and `--help`) exit through clap; errors in the plan file are input errors.
pub fn parse<C: CommandFactory + FromArgMatches>(argv: Vec<OsString>) -> Result<C> {
    let mut command = C::command();
    // Fills in what introspection reads (how many values each flag takes).
    command.build();
    let has_plan = argv.iter().any(|a| a.to_str().is_some_and(|a| a == "--plan" || a.starts_with("--plan=")));
    let matches = match command.clone().try_get_matches_from(argv.clone()) {
        Ok(matches) => matches,
        // Flags the plan supplies (a required --prompt-file) are missing until it is read.
        Err(e) if has_plan && !matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) => {
            command.clone().ignore_errors(true).get_matches_from(argv.clone())
        }
        Err(e) => exit_with(e),
    };
    let Some((sub, sub_matches)) = matches.subcommand() else {
        return Ok(C::from_arg_matches(&matches).unwrap_or_else(|e| exit_with(e)));
    };
    let plan = sub_matches.try_get_one::<std::path::PathBuf>("plan").ok().flatten().cloned();
    let Some(plan) = plan else {
        return Ok(C::from_arg_matches(&matches).unwrap_or_else(|e| exit_with(e)));
    };
    let Some(sub_command) = command.find_subcommand(sub).cloned() else {
        return Ok(C::from_arg_matches(&matches).unwrap_or_else(|e| exit_with(e)));
    };
    let mut expanded = argv;
    expanded.extend(flags_from_plan(&plan, &sub_command, sub_matches)?);
    let matches = command.try_get_matches_from(expanded).unwrap_or_else(|e| exit_with(e));
    Ok(C::from_arg_matches(&matches).unwrap_or_else(|e| exit_with(e)))
}

/// The plan's keys as flags, leaving out those the command line already sets.
fn flags_from_plan(path: &Path, command: &clap::Command, given: &ArgMatches) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LlmbenchError::invalid(format!("--plan {}: cannot read ({e})", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| LlmbenchError::invalid(format!("--plan {}: not valid TOML ({})", path.display(), one_line(&e))))?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(arg) = command.get_arguments().find(|a| a.get_long() == Some(long.as_str())) else {
            let known: Vec<&str> = command.get_arguments().filter_map(|a| a.get_long()).filter(|l| *l != "plan").collect();
            crate::bail_input!(
                "--plan {}: `{key}` is not a flag of `llmbench {}`; use one of: {}",
                path.display(),
                command.get_name(),
                known.join(", ")
            );
        };
        if long == "plan" {
            crate::bail_input!("--plan {}: a plan cannot name another plan", path.display());
        }
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let flag = format!("--{long}");
        let bad = |what: &str| LlmbenchError::invalid(format!("--plan {}: `{key}` {what}", path.display()));
        let takes_value = arg.get_num_args().is_none_or(|n| n.takes_values());
        match value {
            toml::Value::Boolean(true) if !takes_value => flags.push(flag.into()),
            toml::Value::Boolean(false) if !takes_value => {}
            toml::Value::Boolean(_) if takes_value => return Err(bad("takes a value, not true/false")),
            toml::Value::Array(items) => {
                let items = items.iter().map(scalar).collect::<Option<Vec<String>>>().ok_or_else(|| bad("must be a list of strings or numbers"))?;
                if matches!(arg.get_action(), clap::ArgAction::Append) && arg.get_value_delimiter().is_none() {
                    for item in items {
                        flags.push(flag.clone().into());
                        flags.push(item.into());
                    }
                } else {
                    flags.push(flag.into());
                    flags.push(items.join(",").into());
                }
            }
            other if takes_value => {
                flags.push(flag.into());
                flags.push(scalar(other).ok_or_else(|| bad("must be a string, a number or a list"))?.into());
            }
            _ => return Err(bad("is a switch: write `true` or `false`")),
        }
    }
    Ok(flags)
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Help and version go to stdout as clap prints them; a usage error is one `error:` line on
/// stderr (what was wrong, and the values clap would take) and exit code 2, like every other
/// input error of this program.
fn exit_with(e: clap::Error) -> ! {
    if !e.use_stderr() {
        e.exit();
    }
    let text = e.kind().to_string();
    let rendered = e.render().to_string();
    let lines: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:"))
        .collect();
    let message = lines.join("; ");
    let message = message.strip_prefix("error: ").unwrap_or(if message.is_empty() { &text } else { &message });
    eprintln!("error: {message}; see --help");
    std::process::exit(2);
}
