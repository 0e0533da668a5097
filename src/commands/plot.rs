//! `llmbench plot`: charts from a results.json alone.

use super::Outcome;
use crate::charts::{self, ImageFormat};
use crate::cli::plot::PlotArgs;
use crate::results::sink::{load_report, write_atomic};
use anyhow::{Context, Result};

pub fn run(args: &PlotArgs) -> Result<Outcome> {
    let report = load_report(&args.results)?;
    let out_dir = match &args.out {
        Some(dir) => dir.clone(),
        None if args.results.is_dir() => args.results.clone(),
        None => args.results.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let available = charts::available(&report);
    let kinds = match args.chart {
        Some(kind) if !available.contains(&kind) => crate::bail_input!(
            "--chart {}: these results have no swept parameter to plot; available: {}",
            kind.name(),
            available.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
        ),
        Some(kind) => vec![kind],
        None => available,
    };
    let formats = match args.format {
        Some(f) => vec![f],
        None => vec![ImageFormat::Png, ImageFormat::Svg],
    };
    for kind in kinds {
        for &format in &formats {
            let path = out_dir.join(kind.file_name(format));
            write_atomic(&path, &charts::render(kind, &report, format)?)?;
            println!("{}", path.display());
        }
    }
    Ok(Outcome::Success)
}
