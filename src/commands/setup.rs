//! What every subcommand does first: threads, device, model source, weights.

use crate::cli::args::{DeviceArgs, ModelArgs};
use crate::engine::device::{set_cpu_threads, DeviceInfo};
use crate::models::vocab_extension::VocabExtension;
use crate::models::{self, source, LoadedModel};
use anyhow::Result;
use candle_core::Device;

/// A model on a device, ready for the engine.
pub struct Loaded {
    pub model: LoadedModel,
    pub device: Device,
    pub device_info: DeviceInfo,
    pub threads: usize,
}

pub fn load_model(model: &ModelArgs, device: &DeviceArgs, seed: u64) -> Result<Loaded> {
    load_model_with(model, device, seed, None)
}

/// `load_model` with phrase tokens added to the vocabulary (`--input adaptivocab`).
pub fn load_model_extended(model: &ModelArgs, device: &DeviceArgs, seed: u64, extension: &VocabExtension) -> Result<Loaded> {
    load_model_with(model, device, seed, Some(extension))
}

fn load_model_with(model: &ModelArgs, device: &DeviceArgs, seed: u64, extension: Option<&VocabExtension>) -> Result<Loaded> {
    let threads = set_cpu_threads(device.threads)?;
    let (dev, device_info) = device.device.open()?;
    let resolved = source::resolve(&model.model, &model.source_options())?;
    let mut loaded = match extension {
        Some(extension) => models::load_extended(&resolved, model.dtype, seed, &dev, extension)?,
        None => models::load(&resolved, model.dtype, seed, &dev)?,
    };
    loaded.model.set_cuda_graph(!device.no_cuda_graph);
    tracing::info!(
        "loaded {} ({}, {}, {}) on {}",
        loaded.spec.id,
        loaded.spec.architecture.family(),
        loaded.spec.weights_format,
        loaded.spec.tokenizer,
        device_info.name
    );
    Ok(Loaded { model: loaded, device: dev, device_info, threads })
}
