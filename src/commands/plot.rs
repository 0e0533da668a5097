//! `llmbench plot`: charts and table.md from a results file alone, for any command (the
//! report's `command` field says which charts it has).

use super::output::TABLE_MD;
use super::Outcome;
use crate::charts::{self, ImageFormat};
use crate::cli::plot::PlotArgs;
use crate::results::export::{exporter, OutputFormat};
use crate::results::sink::{load_report, write_atomic};
use anyhow::{Context, Result};

pub fn run(args: &PlotArgs) -> Result<Outcome> {
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None if args.results.is_dir() => args.results.clone(),
        None => args.results.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
    };
    let formats = match args.format {
        Some(f) => vec![f],
        None => vec![ImageFormat::Png, ImageFormat::Svg],
    };
    let report = load_report(&args.results)?;
    let available = charts::available(&report);
    let kinds = match args.chart {
        Some(kind) if !available.contains(&kind) => crate::bail_input!(
            "--chart {}: not a chart of these {} results; available: {}",
            kind.name(),
            report.command.name(),
            available.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
        ),
        Some(kind) => vec![kind],
        None => available,
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for kind in kinds {
        for &format in &formats {
            let path = out_dir.join(kind.file_name(format));
            write_atomic(&path, &charts::render(kind, &report, format)?)?;
            println!("{}", path.display());
        }
    }
    if args.chart.is_none() {
        let table = out_dir.join(TABLE_MD);
        write_atomic(&table, &exporter(OutputFormat::Md).render(&report)?)?;
        println!("{}", table.display());
    }
    Ok(Outcome::Success)
}
