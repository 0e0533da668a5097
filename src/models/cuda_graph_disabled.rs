//! Stand-in for `cuda_graph.rs` in builds without the `cuda` feature: same types and
//! signatures, and `new` never returns a decoder, so call sites carry no `#[cfg]`.

use crate::kv::StaticCache;
use candle_core::{Device, Result, Tensor};

#[allow(dead_code)] // read by the CUDA build's twin only
pub struct LayerWeights {
    pub input_norm: Tensor,
    pub qkv: Tensor,
    pub o: Tensor,
    pub post_norm: Tensor,
    pub gate_up: Tensor,
    pub down: Tensor,
}

#[allow(dead_code)]
pub struct DecodeWeights {
    pub embed: Tensor,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Tensor,
    pub head: Tensor,
    pub cos: Tensor,
    pub sin: Tensor,
}

#[allow(dead_code)]
#[derive(Debug, Clone, Copy)]
pub struct DecodeShape {
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub eps: f32,
    pub interleaved: bool,
}

pub struct GraphDecoder;

impl GraphDecoder {
    pub fn new(_weights: DecodeWeights, _shape: DecodeShape, _device: &Device) -> Result<Option<Self>> {
        Ok(None)
    }
    pub fn step(&self, _token: u32, _pos: usize, _cache: &mut StaticCache) -> Result<Tensor> {
        candle_core::bail!("the CUDA graph decoder needs a build with --features cuda")
    }
    pub fn supports(&self, _cache: &StaticCache) -> bool {
        false
    }
}
