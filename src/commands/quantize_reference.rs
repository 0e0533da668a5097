//! quantize's reference: the token windows llama-perplexity scores, the f32 reference's
//! log-probability rows for each (kept on disk, out of every format's RSS), and each format's
//! distribution shift against them (`metrics::quantization`).

use crate::engine::Engine;
use crate::kv::{self, KvKind};
use crate::metrics::quantization::{compare_token, DistributionShift, TokenComparison};
use crate::models::gguf::GgufFile;
use crate::models::source::{ModelFiles, ResolvedModel};
use anyhow::{Context, Result};
use std::io::{Read, Seek, Write};

/// The token windows llama-perplexity scores: `chunks` consecutive windows of `ctx` tokens,
/// the first token of each replaced by BOS when the model adds one.
pub(super) fn windows(ids: &[u32], ctx: usize, chunks: usize, bos: Option<u32>) -> Vec<Vec<u32>> {
    ids.chunks_exact(ctx)
        .take(chunks)
        .map(|w| {
            let mut w = w.to_vec();
            if let Some(b) = bos {
                w[0] = b;
            }
            w
        })
        .collect()
}

/// Log-probability rows of the scored positions of one window: positions `ctx / 2 .. ctx - 1`
/// (row j predicts token j + 1), as llama-perplexity scores them.
pub(super) fn scored_rows(
    engine: &Engine,
    n_layers: usize,
    window: &[u32],
) -> Result<Vec<Vec<f32>>> {
    let ctx = window.len();
    let mut cache = kv::build(KvKind::Full, n_layers, ctx);
    let logits = engine.teacher_force(cache.as_mut(), window)?;
    let first = ctx / 2;
    let scored = logits.narrow(0, first, ctx - 1 - first)?;
    Ok(candle_nn::ops::log_softmax(&scored, candle_core::D::Minus1)?.to_vec2()?)
}

/// The reference's scored rows for every window, on disk (f32, window after window): 16
/// windows of SmolLM2 are 800 MB, which would otherwise sit in every format's peak RSS.
pub(super) struct ReferenceRows {
    file: std::fs::File,
    vocab: usize,
    rows_per_window: usize,
}

impl ReferenceRows {
    pub(super) fn write(
        engine: &Engine,
        n_layers: usize,
        windows: &[Vec<u32>],
        vocab: usize,
    ) -> Result<Self> {
        let mut file = tempfile::tempfile()
            .context("creating a temporary file for the reference distributions")?;
        let mut rows_per_window = 0;
        for w in windows {
            let rows = scored_rows(engine, n_layers, w)?;
            rows_per_window = rows.len();
            let mut bytes = Vec::with_capacity(rows.len() * vocab * 4);
            for row in &rows {
                bytes.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            }
            file.write_all(&bytes)
                .context("writing the reference distributions")?;
        }
        Ok(Self {
            file,
            vocab,
            rows_per_window,
        })
    }

    pub(super) fn window(&mut self, index: usize) -> Result<Vec<Vec<f32>>> {
        let row_bytes = self.vocab * 4;
        self.file.seek(std::io::SeekFrom::Start(
            (index * self.rows_per_window * row_bytes) as u64,
        ))?;
        let mut bytes = vec![0u8; self.rows_per_window * row_bytes];
        self.file
            .read_exact(&mut bytes)
            .context("reading the reference distributions")?;
        Ok(bytes
            .chunks_exact(row_bytes)
            .map(|row| {
                row.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            })
            .collect())
    }
}

/// Every scored token of every window compared with the reference.
pub(super) fn distribution_shift(
    engine: &Engine,
    n_layers: usize,
    windows: &[Vec<u32>],
    reference: &mut ReferenceRows,
) -> Result<DistributionShift> {
    let mut tokens: Vec<TokenComparison> = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let ours = scored_rows(engine, n_layers, w)?;
        let base = reference.window(i)?;
        let first = w.len() / 2;
        for (j, (b, o)) in base.iter().zip(&ours).enumerate() {
            tokens.push(compare_token(b, o, w[first + j + 1]));
        }
    }
    DistributionShift::of(&tokens).context("no tokens were scored")
}

/// The reference's rows compared with themselves: its perplexity, and zeros.
pub(super) fn reference_shift(
    windows: &[Vec<u32>],
    reference: &mut ReferenceRows,
) -> Result<DistributionShift> {
    let mut tokens = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let first = w.len() / 2;
        for (j, row) in reference.window(i)?.iter().enumerate() {
            tokens.push(compare_token(row, row, w[first + j + 1]));
        }
    }
    DistributionShift::of(&tokens).context("no tokens were scored")
}

/// Whether the GGUF source's vocabulary adds BOS (`tokenizer.ggml.add_bos_token`); other
/// sources score windows as tokenized.
pub(super) fn adds_bos(resolved: &ResolvedModel) -> Result<bool> {
    let ModelFiles::Gguf(path) = &resolved.files else {
        return Ok(false);
    };
    let file = GgufFile::open(path)?;
    Ok(matches!(
        file.metadata("tokenizer.ggml.add_bos_token"),
        Some(candle_core::quantized::gguf_file::Value::Bool(true))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_whole_and_start_with_bos() {
        let ids: Vec<u32> = (10..30).collect();
        let w = windows(&ids, 8, 5, Some(1));
        assert_eq!(w.len(), 2);
        assert_eq!(w[1], [1, 19, 20, 21, 22, 23, 24, 25]);
        assert_eq!(windows(&ids, 8, 1, None)[0][0], 10);
    }
}
