//! Subcommands: each turns validated arguments into engine runs and a report.

pub mod generate;
mod setup;

pub use setup::{load_model, Loaded};
