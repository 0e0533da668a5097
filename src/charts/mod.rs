//! Charts as views over a report: each kind renders to PNG or SVG bytes from results alone,
//! so `llmbench plot` redraws them later, byte for byte. Files are written by the caller.

mod batch;
mod data;
mod draw;
mod evaluate;
mod http;
mod kvcache;
mod quantize;
mod queries;
mod sled;
mod specdec;
mod style;
mod window;

use crate::results::schema::{CommandName, Report, RunRecord};
use anyhow::Result;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// Chart kinds (`plot --chart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ChartKind {
    /// End-to-end latency per case (mean ± std).
    Latency,
    /// Decode tokens/s per case.
    Throughput,
    /// Peak resident memory per case.
    Memory,
    /// Decode tokens/s per GiB of peak resident memory.
    MemoryEfficiency,
    /// Inter-token latency against token position.
    TokenLatency,
    /// KV-cache bytes against token position.
    KvBytes,
    /// All of the above on one page.
    Dashboard,
    /// Decode tokens/s against the swept parameter, one line per method.
    Sweep,
    /// kvcache: bytes held after decoding against context, one line per strategy.
    KvBytesVsContext,
    /// kvcache: median inter-token latency against context, one line per strategy.
    TpotVsContext,
    /// kvcache: perplexity change against bytes at the longest context (Pareto).
    PplDeltaVsBytes,
    /// specdec: measured and predicted speedup against K, per draft source.
    SpeedupVsK,
    /// specdec: acceptance rate by draft position, per case.
    AcceptanceByPosition,
    /// specdec: time per run split into prefill, draft, verify and bookkeeping.
    TimeBreakdown,
    /// quantize: mean KL divergence from the source against bits per weight (Pareto).
    KldVsBits,
    /// quantize: decode tokens/s per weight format.
    DecodeByFormat,
    /// evaluate: end-to-end latency against decode tokens/s, one point per model and format.
    LatencyVsThroughput,
    /// evaluate: ROUGE-L per model and format (against references, else the baseline).
    RougeLByFormat,
    /// evaluate: BLEU per model and format (against references, else the baseline).
    BleuByFormat,
    /// compare with a window sweep (the `sled` study): KV-cache bytes against the window.
    KvBytesVsWindow,
    /// compare with a window sweep: peak memory (device, else RSS) against the window.
    PeakMemoryVsWindow,
    /// compare with a window sweep: decode tokens/s against the window.
    ThroughputVsWindow,
    /// compare with a window sweep: agreement with standard decoding against the window.
    AgreementVsWindow,
    /// compare with a window sweep and --quality: output perplexity against the window.
    PerplexityVsWindow,
    /// sled: TruthfulQA MC1-3 per decoding from log-probabilities, with 95% intervals.
    TruthfulqaMc,
    /// sled: TruthfulQA MC1-3 per decoding from raw values (the SLED authors' score).
    TruthfulqaMcRaw,
    /// sled: wall time per TruthfulQA question per decoding.
    SecondsPerQuestion,
    /// compare with input methods or the built-in queries: TTFT, TPOT and end-to-end latency.
    TimeMetrics,
    /// ... prompt tokens read, input tokens saved, tokens generated.
    TokenMetrics,
    /// ... peak RSS, KV-cache bytes, weight bytes.
    MemoryMetrics,
    /// ... decode and prefill tokens/s, tokens/s per GiB.
    EfficiencyMetrics,
    /// ... nine panels: time, tokens, memory and quality together.
    ComprehensiveDashboard,
    /// ... keyword hit rate and ROUGE-L against standard, per query and case.
    QualityByQuery,
    /// ... each case's input and output per query, as text.
    InputOutput,
    /// ... speed and TTFT against standard, fidelity against speed, keywords against savings.
    PerformanceDashboard,
    /// http: TTFT p50/p90/p99 against the offered rate (or concurrency).
    TtftVsLoad,
    /// http: TPOT p50/p90/p99 against the offered rate (or concurrency).
    TpotVsLoad,
    /// http: output tokens/s against the offered rate (or concurrency).
    ThroughputVsLoad,
    /// http: each load level's TTFT distribution (empirical CDF).
    TtftDistribution,
    /// http: each load level's TPOT distribution (empirical CDF).
    TpotDistribution,
    /// batch: aggregate and per-sequence decode tokens/s against the batch size.
    ThroughputVsBatch,
    /// batch: TTFT percentiles against the batch size.
    TtftVsBatch,
    /// batch: TPOT percentiles against the batch size.
    TpotVsBatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Png,
    Svg,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::Svg => "svg",
        }
    }
}

impl ChartKind {
    pub const ALL: [ChartKind; 43] = [
        ChartKind::Latency,
        ChartKind::Throughput,
        ChartKind::Memory,
        ChartKind::MemoryEfficiency,
        ChartKind::TokenLatency,
        ChartKind::KvBytes,
        ChartKind::Dashboard,
        ChartKind::Sweep,
        ChartKind::KvBytesVsContext,
        ChartKind::TpotVsContext,
        ChartKind::PplDeltaVsBytes,
        ChartKind::SpeedupVsK,
        ChartKind::AcceptanceByPosition,
        ChartKind::TimeBreakdown,
        ChartKind::KldVsBits,
        ChartKind::DecodeByFormat,
        ChartKind::LatencyVsThroughput,
        ChartKind::RougeLByFormat,
        ChartKind::BleuByFormat,
        ChartKind::KvBytesVsWindow,
        ChartKind::PeakMemoryVsWindow,
        ChartKind::ThroughputVsWindow,
        ChartKind::AgreementVsWindow,
        ChartKind::PerplexityVsWindow,
        ChartKind::TruthfulqaMc,
        ChartKind::TruthfulqaMcRaw,
        ChartKind::SecondsPerQuestion,
        ChartKind::TimeMetrics,
        ChartKind::TokenMetrics,
        ChartKind::MemoryMetrics,
        ChartKind::EfficiencyMetrics,
        ChartKind::ComprehensiveDashboard,
        ChartKind::QualityByQuery,
        ChartKind::InputOutput,
        ChartKind::PerformanceDashboard,
        ChartKind::TtftVsLoad,
        ChartKind::TpotVsLoad,
        ChartKind::ThroughputVsLoad,
        ChartKind::TtftDistribution,
        ChartKind::TpotDistribution,
        ChartKind::ThroughputVsBatch,
        ChartKind::TtftVsBatch,
        ChartKind::TpotVsBatch,
    ];

    /// The multi-query comparison's charts (compare runs with input methods or the built-in
    /// queries).
    pub const QUERIES: [ChartKind; 8] = [
        ChartKind::TimeMetrics,
        ChartKind::TokenMetrics,
        ChartKind::MemoryMetrics,
        ChartKind::EfficiencyMetrics,
        ChartKind::ComprehensiveDashboard,
        ChartKind::QualityByQuery,
        ChartKind::InputOutput,
        ChartKind::PerformanceDashboard,
    ];

    /// The charts of kvcache runs.
    pub const KVCACHE: [ChartKind; 3] = [ChartKind::KvBytesVsContext, ChartKind::TpotVsContext, ChartKind::PplDeltaVsBytes];

    /// The charts of quantize runs.
    pub const QUANTIZE: [ChartKind; 2] = [ChartKind::KldVsBits, ChartKind::DecodeByFormat];

    /// The charts of evaluate runs.
    pub const EVALUATE: [ChartKind; 3] = [ChartKind::LatencyVsThroughput, ChartKind::RougeLByFormat, ChartKind::BleuByFormat];

    /// The window study's charts (compare runs over two or more windows).
    pub const WINDOW: [ChartKind; 5] = [
        ChartKind::KvBytesVsWindow,
        ChartKind::PeakMemoryVsWindow,
        ChartKind::ThroughputVsWindow,
        ChartKind::AgreementVsWindow,
        ChartKind::PerplexityVsWindow,
    ];

    /// The charts of sled (TruthfulQA) runs.
    pub const SLED: [ChartKind; 3] = [ChartKind::TruthfulqaMc, ChartKind::TruthfulqaMcRaw, ChartKind::SecondsPerQuestion];

    /// The charts of specdec runs.
    pub const HTTP: [ChartKind; 5] =
        [ChartKind::TtftVsLoad, ChartKind::TpotVsLoad, ChartKind::ThroughputVsLoad, ChartKind::TtftDistribution, ChartKind::TpotDistribution];
    pub const BATCH: [ChartKind; 3] = [ChartKind::ThroughputVsBatch, ChartKind::TtftVsBatch, ChartKind::TpotVsBatch];
    pub const SPECDEC: [ChartKind; 3] = [ChartKind::SpeedupVsK, ChartKind::AcceptanceByPosition, ChartKind::TimeBreakdown];

    pub fn name(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Throughput => "throughput",
            Self::Memory => "memory",
            Self::MemoryEfficiency => "memory-efficiency",
            Self::TokenLatency => "token-latency",
            Self::KvBytes => "kv-bytes",
            Self::Dashboard => "dashboard",
            Self::Sweep => "sweep",
            Self::KvBytesVsContext => "kv-bytes-vs-context",
            Self::TpotVsContext => "tpot-vs-context",
            Self::PplDeltaVsBytes => "ppl-delta-vs-bytes",
            Self::SpeedupVsK => "speedup-vs-k",
            Self::AcceptanceByPosition => "acceptance-by-position",
            Self::TimeBreakdown => "time-breakdown",
            Self::KldVsBits => "kld-vs-bits",
            Self::DecodeByFormat => "decode-by-format",
            Self::LatencyVsThroughput => "latency-vs-throughput",
            Self::RougeLByFormat => "rougel-by-format",
            Self::BleuByFormat => "bleu-by-format",
            Self::KvBytesVsWindow => "kv-bytes-vs-window",
            Self::PeakMemoryVsWindow => "peak-memory-vs-window",
            Self::ThroughputVsWindow => "throughput-vs-window",
            Self::AgreementVsWindow => "agreement-vs-window",
            Self::PerplexityVsWindow => "perplexity-vs-window",
            Self::TruthfulqaMc => "truthfulqa-mc",
            Self::TruthfulqaMcRaw => "truthfulqa-mc-raw",
            Self::SecondsPerQuestion => "seconds-per-question",
            Self::TimeMetrics => "time-metrics",
            Self::TokenMetrics => "token-metrics",
            Self::MemoryMetrics => "memory-metrics",
            Self::EfficiencyMetrics => "efficiency-metrics",
            Self::ComprehensiveDashboard => "comprehensive-dashboard",
            Self::QualityByQuery => "quality-by-query",
            Self::InputOutput => "input-output",
            Self::PerformanceDashboard => "performance-dashboard",
            Self::TtftVsLoad => "ttft-vs-load",
            Self::TpotVsLoad => "tpot-vs-load",
            Self::ThroughputVsLoad => "throughput-vs-load",
            Self::TtftDistribution => "ttft-distribution",
            Self::TpotDistribution => "tpot-distribution",
            Self::ThroughputVsBatch => "throughput-vs-batch",
            Self::TtftVsBatch => "ttft-vs-batch",
            Self::TpotVsBatch => "tpot-vs-batch",
        }
    }

    pub fn file_name(self, format: ImageFormat) -> String {
        format!("{}.{}", self.name(), format.extension())
    }
}

/// The charts a report supports, by its command (for compare, the sweep chart only when a
/// parameter varies; for quantize, the KLD chart only when quality was measured).
pub fn available(report: &Report) -> Vec<ChartKind> {
    match report.command {
        CommandName::Compare => {
            let sweep = data::swept_parameter(report).is_some();
            let mut charts: Vec<ChartKind> = ChartKind::ALL[..8].iter().copied().filter(|k| *k != ChartKind::Sweep || sweep).collect();
            // The window study's charts once two or more windows ran (`llmbench sled`).
            if window::windows(report).len() > 1 {
                let perplexity = window::has_perplexity(report);
                charts.extend(ChartKind::WINDOW.iter().copied().filter(|k| *k != ChartKind::PerplexityVsWindow || perplexity));
            }
            if queries::applies(report) {
                charts.extend(ChartKind::QUERIES);
            }
            charts
        }
        CommandName::Kvcache => ChartKind::KVCACHE.to_vec(),
        CommandName::Sled => ChartKind::SLED.to_vec(),
        CommandName::Specdec => ChartKind::SPECDEC.to_vec(),
        CommandName::Http => ChartKind::HTTP.to_vec(),
        CommandName::Batch => ChartKind::BATCH.to_vec(),
        CommandName::Quantize => {
            // No KLD chart for a speed-only run (--skip-evaluate): it would be an empty frame.
            let evaluated = report.cases.iter().any(|c| c.quality.as_ref().and_then(|q| q.as_quantize()).is_some_and(|q| q.shift.is_some()));
            ChartKind::QUANTIZE.iter().copied().filter(|k| *k != ChartKind::KldVsBits || evaluated).collect()
        }
        CommandName::Evaluate => {
            // --task perplexity generates nothing; a run without reference metrics has no bars.
            let generated = data::ok_cases(report).any(|c| c.summary.is_some());
            ChartKind::EVALUATE
                .iter()
                .copied()
                .filter(|k| match k {
                    ChartKind::LatencyVsThroughput => generated,
                    ChartKind::RougeLByFormat => evaluate::has_metric(report, "rougeL"),
                    _ => evaluate::has_metric(report, "bleu"),
                })
                .collect()
        }
    }
}

/// Renders one chart.
pub fn render(kind: ChartKind, report: &Report, format: ImageFormat) -> Result<Vec<u8>> {
    if ChartKind::KVCACHE.contains(&kind) {
        return kvcache::render(kind, report, format);
    }
    if ChartKind::SPECDEC.contains(&kind) {
        return specdec::render(kind, report, format);
    }
    if ChartKind::HTTP.contains(&kind) {
        return http::render(kind, report, format);
    }
    if ChartKind::BATCH.contains(&kind) {
        return batch::render(kind, report, format);
    }
    if ChartKind::QUANTIZE.contains(&kind) {
        return quantize::render(kind, report, format);
    }
    if ChartKind::EVALUATE.contains(&kind) {
        return evaluate::render(kind, report, format);
    }
    if ChartKind::WINDOW.contains(&kind) {
        return window::render(kind, report, format);
    }
    if ChartKind::SLED.contains(&kind) {
        return sled::render(kind, report, format);
    }
    if ChartKind::QUERIES.contains(&kind) {
        return queries::render(kind, report, format);
    }
    let size = match kind {
        ChartKind::Dashboard => (style::DASHBOARD_WIDTH, style::DASHBOARD_HEIGHT),
        _ => (style::WIDTH, style::HEIGHT),
    };
    render_figure(&ReportChart { kind, report }, size, kind.name(), format)
}

/// Something drawable on any plotters backend (PNG bitmap or SVG).
pub(crate) trait Figure {
    fn draw<B: DrawingBackend>(&self, root: &DrawingArea<B, plotters::coord::Shift>) -> Result<(), DrawingAreaErrorKind<B::ErrorType>>;
}

struct ReportChart<'a> {
    kind: ChartKind,
    report: &'a Report,
}

impl Figure for ReportChart<'_> {
    fn draw<B: DrawingBackend>(&self, root: &DrawingArea<B, plotters::coord::Shift>) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
        draw_kind(self.kind, self.report, root)
    }
}

/// Renders a figure of `(w, h)` pixels to PNG or SVG bytes; `name` is for errors.
pub(crate) fn render_figure(figure: &impl Figure, (w, h): (u32, u32), name: &str, format: ImageFormat) -> Result<Vec<u8>> {
    // Both backends measure text with the font (SVG to lay out labels), so register it first.
    style::register_font();
    match format {
        ImageFormat::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                figure.draw(&root).map_err(|e| anyhow::anyhow!("drawing {name}: {e:?}"))?;
                root.present().map_err(|e| anyhow::anyhow!("drawing {name}: {e:?}"))?;
            }
            Ok(svg.into_bytes())
        }
        ImageFormat::Png => {
            let mut rgb = vec![0u8; (w * h * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
                figure.draw(&root).map_err(|e| anyhow::anyhow!("drawing {name}: {e:?}"))?;
                root.present().map_err(|e| anyhow::anyhow!("drawing {name}: {e:?}"))?;
            }
            encode_png(&rgb, w, h)
        }
    }
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Charts are committed with results: the smallest encoding keeps the repository small
        // (a chart's PNG is a third of the default encoding's size; it takes milliseconds).
        encoder.set_compression(png::Compression::Best);
        encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
    }
    Ok(out)
}

/// How many of `ChartKind::ALL` (the first ones) the dashboard shows.
const DASHBOARD_PANELS: usize = 6;

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

fn draw_kind<B: DrawingBackend>(
    kind: ChartKind,
    report: &Report,
    root: &DrawingArea<B, plotters::coord::Shift>,
) -> Result<(), DrawingAreaErrorKind<B::ErrorType>> {
    root.fill(&WHITE)?;
    match kind {
        ChartKind::Latency => {
            draw::bar_chart(root, "End-to-end latency (mean ± std)", "s", &data::bars(report, |r| r.e2e_ms / 1e3))
        }
        ChartKind::Throughput => draw::bar_chart(
            root,
            "Decode throughput (mean ± std)",
            "tokens/s",
            &data::bars(report, |r| r.decode_tokens_per_s),
        ),
        ChartKind::Memory => draw::bar_chart(
            root,
            "Peak resident memory (mean ± std)",
            "MiB",
            &data::bars(report, |r| r.peak_rss_bytes as f64 / MIB),
        ),
        ChartKind::MemoryEfficiency => draw::bar_chart(
            root,
            "Memory efficiency: decode tokens/s per GiB of peak RSS",
            "tokens/s per GiB",
            &data::bars(report, |r| if r.peak_rss_bytes > 0 { r.decode_tokens_per_s / (r.peak_rss_bytes as f64 / GIB) } else { 0.0 }),
        ),
        ChartKind::TokenLatency => draw::line_chart(
            root,
            "Inter-token latency by position (mean over runs)",
            "generated token",
            "ms",
            &data::position_series(report, |r: &RunRecord| r.itl_ms.clone()),
        ),
        ChartKind::KvBytes => draw::line_chart(
            root,
            "KV-cache size by position (mean over runs)",
            "generated token",
            "MiB",
            &data::position_series(report, |r: &RunRecord| r.kv_cache_bytes_per_token.iter().map(|&b| b as f64 / MIB).collect()),
        ),
        ChartKind::Sweep => {
            let parameter = data::swept_parameter(report).unwrap_or("max_new_tokens");
            draw::line_chart(
                root,
                &format!("Decode throughput against {parameter}"),
                parameter,
                "tokens/s",
                &data::sweep_series(report, parameter),
            )
        }
        // Drawn by kvcache::render; `render` never routes them here.
        ChartKind::KvBytesVsContext | ChartKind::TpotVsContext | ChartKind::PplDeltaVsBytes => Ok(()),
        // Drawn by specdec::render.
        ChartKind::SpeedupVsK | ChartKind::AcceptanceByPosition | ChartKind::TimeBreakdown => Ok(()),
        // Drawn by quantize::render.
        ChartKind::KldVsBits | ChartKind::DecodeByFormat => Ok(()),
        // Drawn by evaluate::render.
        ChartKind::LatencyVsThroughput | ChartKind::RougeLByFormat | ChartKind::BleuByFormat => Ok(()),
        // Drawn by window::render and sled::render.
        ChartKind::KvBytesVsWindow
        | ChartKind::PeakMemoryVsWindow
        | ChartKind::ThroughputVsWindow
        | ChartKind::AgreementVsWindow
        | ChartKind::PerplexityVsWindow
        | ChartKind::TruthfulqaMc
        | ChartKind::TruthfulqaMcRaw
        | ChartKind::SecondsPerQuestion => Ok(()),
        // Drawn by queries::render.
        ChartKind::TimeMetrics
        | ChartKind::TokenMetrics
        | ChartKind::MemoryMetrics
        | ChartKind::EfficiencyMetrics
        | ChartKind::ComprehensiveDashboard
        | ChartKind::QualityByQuery
        | ChartKind::InputOutput
        | ChartKind::PerformanceDashboard => Ok(()),
        // Drawn by http::render.
        ChartKind::TtftVsLoad
        | ChartKind::TpotVsLoad
        | ChartKind::ThroughputVsLoad
        | ChartKind::TtftDistribution
        | ChartKind::TpotDistribution
        | ChartKind::ThroughputVsBatch
        | ChartKind::TtftVsBatch
        | ChartKind::TpotVsBatch => Ok(()),
        ChartKind::Dashboard => {
            let panels = root.split_evenly((2, 3));
            // The six single charts come first in ALL; the dashboard shows them in that order.
            for (panel, &kind) in panels.iter().zip(&ChartKind::ALL[..DASHBOARD_PANELS]) {
                draw_kind(kind, report, panel)?;
            }
            Ok(())
        }
    }
}
