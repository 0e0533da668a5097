//! `llmbench plot`: charts from a results.json alone.

use super::Outcome;
use crate::charts::{self, ImageFormat};
use crate::cli::plot::PlotArgs;
use crate::charts::kvcache::{self as kv_charts, KvChart};
use crate::results::kvcache::{KvcacheReport, KVCACHE_JSON};
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
    let is_kvcache = if args.results.is_dir() {
        args.results.join(KVCACHE_JSON).exists()
    } else {
        args.results.file_name().is_some_and(|n| n == KVCACHE_JSON)
    };
    if is_kvcache {
        return plot_kvcache(args, &out_dir, &formats);
    }
    let report = load_report(&args.results)?;
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
    for kind in kinds {
        for &format in &formats {
            let path = out_dir.join(kind.file_name(format));
            write_atomic(&path, &charts::render(kind, &report, format)?)?;
            println!("{}", path.display());
        }
    }
    Ok(Outcome::Success)
}

/// A kvcache run: its three charts and its table (`--chart` names compare's charts, so it is
/// refused here).
fn plot_kvcache(args: &PlotArgs, out_dir: &std::path::Path, formats: &[ImageFormat]) -> Result<Outcome> {
    if let Some(kind) = args.chart {
        crate::bail_input!("--chart {}: a kvcache run has its own three charts; drop --chart", kind.name());
    }
    let report = KvcacheReport::load(&args.results)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for chart in KvChart::ALL {
        for &format in formats {
            let path = out_dir.join(chart.file_name(format));
            write_atomic(&path, &kv_charts::render(chart, &report, format)?)?;
            println!("{}", path.display());
        }
    }
    let table = out_dir.join("table.md");
    write_atomic(&table, report.table().as_bytes())?;
    println!("{}", table.display());
    Ok(Outcome::Success)
}
