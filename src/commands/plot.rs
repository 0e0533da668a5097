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
    let first = &args.results[0];
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None if args.results.len() > 1 => crate::bail_input!("plot with {} runs: say where the overlaid charts go with --out DIR", args.results.len()),
        None if first.is_dir() => first.clone(),
        None => first.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
    };
    let formats = match args.format {
        Some(f) => vec![f],
        None => vec![ImageFormat::Png, ImageFormat::Svg],
    };
    let mut report = load_report(first)?;
    for path in &args.results[1..] {
        let other = load_report(path)?;
        if other.command != report.command {
            crate::bail_input!(
                "{}: a {} run cannot be drawn with {}, a {} run; overlay runs of one command",
                path.display(),
                other.command.name(),
                first.display(),
                report.command.name()
            );
        }
        report.cases.extend(other.cases);
    }
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
