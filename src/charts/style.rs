//! Chart sizes, palette and the embedded font (DejaVu Sans, so PNG text renders the same on
//! every machine with no system fonts; its license is in fonts/LICENSE-DejaVu.txt).

use plotters::style::{FontStyle, RGBColor};
use std::sync::Once;

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 560;
pub const DASHBOARD_WIDTH: u32 = 1800;
pub const DASHBOARD_HEIGHT: u32 = 1100;
pub const FONT: &str = "sans-serif";
pub const TITLE_SIZE: u32 = 22;
pub const LABEL_SIZE: u32 = 15;
/// Case names under bars are long ("sled:stride w=50 s=25"): a smaller size keeps them apart.
pub const BAR_LABEL_SIZE: u32 = 12;

/// Okabe-Ito colour-blind-safe palette, then six more distinct colours for charts with many
/// series (the kvcache command's 13 strategies), cycled per series.
pub const PALETTE: [RGBColor; 14] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
    RGBColor(136, 34, 85),
    RGBColor(68, 170, 153),
    RGBColor(153, 153, 51),
    RGBColor(102, 51, 0),
    RGBColor(119, 119, 119),
    RGBColor(51, 34, 136),
];

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

static FONT_BYTES: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

/// Registers the embedded font once for the bitmap backend.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            tracing::warn!("could not register the embedded chart font");
        }
    });
}
