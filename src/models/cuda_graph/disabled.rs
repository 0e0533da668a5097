//! Stand-in for `cuda.rs` in builds without the `cuda` feature: same types and
//! signatures, and `new` never returns a decoder, so call sites carry no `#[cfg]`.

use super::{DecodeShape, DecodeWeights};
use crate::kv::InPlaceBuffers;
use candle_core::{Device, Result, Tensor};

pub struct GraphDecoder;

impl GraphDecoder {
    pub fn new(_weights: DecodeWeights, _shape: DecodeShape, _device: &Device) -> Result<Option<Self>> {
        Ok(None)
    }
    pub fn step(&self, _token: u32, _pos: usize, _cache: &mut dyn InPlaceBuffers) -> Result<Tensor> {
        candle_core::bail!("the CUDA graph decoder needs a build with --features cuda")
    }
    pub fn step_greedy(&self, _token: u32, _pos: usize, _cache: &mut dyn InPlaceBuffers, _ahead: bool) -> Result<(u32, bool)> {
        candle_core::bail!("the CUDA graph decoder needs a build with --features cuda")
    }
    pub fn supports(&self, _cache: &dyn InPlaceBuffers) -> bool {
        false
    }
}
