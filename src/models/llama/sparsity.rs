//! The Llama family under activation sparsity (TEAL, LaRoSA): the calibration pass, building
//! each block's sparse projections from a calibration (`models::sparse_projection`), and what
//! the forward passes ask of them. Kept apart from `llama.rs`, whose forward passes only route
//! each projection through `sparse_site`.

use super::{Llama, Site, SITES};
use crate::models::layers::VerifyAttention;
use crate::models::sparse_projection::{DenseWeights, Select, SparseProjection};
use crate::models::SparsityCounts;
use crate::sparse::calibration::{ActivationStats, Calibration};
use crate::sparse::SparsityMethod;
use candle_core::{DType, Tensor};

impl Llama {
    /// The sparse projections now set (one lock per forward pass).
    pub(super) fn sparse_now(&self) -> Option<SparseBlocks> {
        self.sparse.lock().map_or(None, |s| s.clone())
    }

    /// The four sparse projections of one block under `method`, from `calibration`.
    fn sparse_block(
        &self,
        layer: usize,
        method: SparsityMethod,
        calibration: &Calibration,
        thresholds: &[[f32; 4]],
    ) -> anyhow::Result<[SparseProjection; 4]> {
        let blk = &self.blocks[layer];
        let share = method.share();
        let make = |site: Site| -> anyhow::Result<SparseProjection> {
            let dense = match site {
                Site::AttentionInput => DenseWeights::of_fused(&blk.qkv)?,
                Site::AttentionOutput => DenseWeights::of(&blk.o)?,
                Site::MlpInput => DenseWeights::of_fused(&blk.gate_up)?,
                Site::MlpHidden => DenseWeights::of(&blk.down)?,
            };
            let in_dim = dense.rows.len() / dense.out_dim;
            let (select, rotation) = match method {
                SparsityMethod::Teal(_) => {
                    (Select::Threshold(thresholds[layer][site as usize]), None)
                }
                SparsityMethod::Larosa(_) => {
                    let k = ((1.0 - share) * in_dim as f64).round() as usize;
                    let rotation = match (site.rotated_slot(), &calibration.rotations) {
                        (Some(slot), Some(r)) => Some(r[layer][slot].as_slice()),
                        (Some(_), None) => anyhow::bail!(
                            "LaRoSA needs the calibration's rotations; this calibration has none"
                        ),
                        (None, _) => None,
                    };
                    (Select::TopK(k), rotation)
                }
            };
            SparseProjection::new(dense, select, rotation)
        };
        Ok([
            make(SITES[0])?,
            make(SITES[1])?,
            make(SITES[2])?,
            make(SITES[3])?,
        ])
    }

    /// `Model::calibrate_activations`: full passes through the generic path, recording every
    /// projection input.
    pub(super) fn calibrate(
        &self,
        windows: &[Vec<u32>],
        stats: &mut ActivationStats,
    ) -> candle_core::Result<()> {
        let device = self.norm.weight.device().clone();
        for w in windows {
            let mut cache = crate::kv::build(crate::kv::KvKind::Full, self.blocks.len(), w.len());
            let ids = Tensor::new(w.as_slice(), &device)?.unsqueeze(0)?;
            self.forward_generic(
                &ids,
                0,
                self.blocks.len(),
                VerifyAttention::Batched,
                cache.as_mut(),
                None,
                Some(stats),
            )?;
            stats.tokens += w.len();
        }
        Ok(())
    }
    /// `Model::set_sparsity`.
    pub(super) fn set_sparse(
        &self,
        sparsity: Option<(SparsityMethod, &Calibration)>,
    ) -> anyhow::Result<()> {
        let set = |blocks: Option<SparseBlocks>| -> anyhow::Result<()> {
            *self
                .sparse
                .lock()
                .map_err(|_| anyhow::anyhow!("the sparsity lock was poisoned"))? = blocks;
            Ok(())
        };
        set(None)?;
        // Share 0 zeroes nothing: the dense model, bit for bit.
        let Some((method, calibration)) = sparsity.filter(|(m, _)| m.share() > 0.0) else {
            return Ok(());
        };
        if !self.norm.weight.device().is_cpu() || self.embed.dtype() != DType::F32 {
            crate::bail_input!(
                "--sparsity {method}: the sparse kernels of the model run on the CPU in f32 (the CUDA kernel is measured alone by `.ci/gpu-bench sparse`); use --device cpu and f32 or a quantized format"
            );
        }
        anyhow::ensure!(
            calibration.histograms.len() == self.blocks.len(),
            "the calibration covers {} layers, the model {}",
            calibration.histograms.len(),
            self.blocks.len()
        );
        let thresholds = match method {
            SparsityMethod::Teal(s) => calibration.thresholds(s)?,
            SparsityMethod::Larosa(_) => Vec::new(),
        };
        let blocks = (0..self.blocks.len())
            .map(|l| self.sparse_block(l, method, calibration, &thresholds))
            .collect::<anyhow::Result<Vec<_>>>()?;
        set(Some(std::sync::Arc::new(blocks)))
    }
    /// `Model::sparsity_counts`.
    pub(super) fn sparse_counts(&self) -> Option<SparsityCounts> {
        let blocks = self.sparse_now()?;
        let mut counts = SparsityCounts::default();
        for block in blocks.iter() {
            for (slot, p) in block.iter().enumerate() {
                let (kept, seen) = p.counts();
                counts.kept[slot] += kept;
                counts.seen[slot] += seen;
                counts.bytes += p.bytes() as u64;
            }
        }
        Some(counts)
    }
}

/// Per block, the four projections under activation sparsity.
pub(super) type SparseBlocks = std::sync::Arc<Vec<[SparseProjection; 4]>>;

pub(super) fn sparse_site(
    sparse: &Option<SparseBlocks>,
    layer: usize,
    site: Site,
) -> Option<&SparseProjection> {
    sparse.as_ref().map(|blocks| &blocks[layer][site as usize])
}

/// Records a projection input for calibration, when calibrating.
pub(super) fn observe(
    stats: Option<&mut ActivationStats>,
    layer: usize,
    site: Site,
    x: &Tensor,
) -> candle_core::Result<()> {
    let Some(stats) = stats else { return Ok(()) };
    let width = x.dim(candle_core::D::Minus1)?;
    let rows: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    stats.observe(layer, site, &rows, width)
}
