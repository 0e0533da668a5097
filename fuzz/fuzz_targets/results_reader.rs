//! Fuzz target: what `plot` and `diff` do with a file a user hands them, over arbitrary UTF-8:
//! the results reader (schema 2, and schema 1 through the converter), then, for every report
//! it accepts, every exporter and every chart the report's command has (SVG, the cheaper
//! backend; the drawing code is the same for PNG).
#![no_main]

use libfuzzer_sys::fuzz_target;
use llmbench::charts::{self, ImageFormat};
use llmbench::results::export::{exporter, OutputFormat};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(report) = llmbench::results::sink::parse_report(text, Path::new("results.json")) else { return };
    for format in [OutputFormat::Table, OutputFormat::Md, OutputFormat::Csv, OutputFormat::Json, OutputFormat::Jsonl] {
        let _ = exporter(format).render(&report);
    }
    for kind in charts::available(&report) {
        let _ = charts::render(kind, &report, ImageFormat::Svg);
    }
});
