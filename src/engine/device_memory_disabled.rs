//! Stand-in for `device_memory.rs` in builds without the `cuda` feature: no device memory to
//! report, same signatures.

use candle_core::{Device, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

pub fn reset_peak(_device: &Device) -> Result<()> {
    Ok(())
}

pub fn peak_bytes(_device: &Device) -> Result<Option<u64>> {
    Ok(None)
}

pub fn snapshot(_device: &Device) -> Result<Option<DeviceMemory>> {
    Ok(None)
}
