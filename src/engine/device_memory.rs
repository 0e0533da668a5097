//! Device memory on CUDA, from the driver: free and total for the whole GPU (`cuMemGetInfo`)
//! and this process's own use from the stream-ordered memory pool that candle allocates from
//! (`cuMemAllocAsync` takes every tensor from the device's default pool). The pool's
//! used-memory high-water mark is reset at the start of each run and read at its end, so the
//! peak is exact and covers allocations freed in between: the GPU analogue of VmHWM.

use candle_core::cuda_backend::cudarc::driver::{result, sys};
use candle_core::{Device, Result};

/// The GPU's memory as the driver reports it, after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMemory {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

fn default_pool(device: &Device) -> Result<Option<sys::CUmemoryPool>> {
    let Device::Cuda(dev) = device else { return Ok(None) };
    let ctx = dev.cuda_stream().context().clone();
    ctx.bind_to_thread().map_err(|e| candle_core::Error::Msg(format!("cuda: {e}")))?;
    let pool = unsafe { result::device::get_default_mem_pool(ctx.cu_device()) }
        .map_err(|e| candle_core::Error::Msg(format!("cuda memory pool: {e}")))?;
    Ok(Some(pool))
}

/// Starts a new peak measurement (the high-water mark drops to what is in use now).
pub fn reset_peak(device: &Device) -> Result<()> {
    if let Some(pool) = default_pool(device)? {
        let mut zero = 0u64;
        unsafe {
            result::mem_pool::set_attribute(pool, sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH, &mut zero as *mut u64 as *mut _)
        }
        .map_err(|e| candle_core::Error::Msg(format!("cuda memory pool: {e}")))?;
    }
    Ok(())
}

/// Peak bytes this process held on the device since `reset_peak`; `None` off CUDA.
pub fn peak_bytes(device: &Device) -> Result<Option<u64>> {
    let Some(pool) = default_pool(device)? else { return Ok(None) };
    let mut high = 0u64;
    unsafe {
        result::mem_pool::get_attribute(pool, sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH, &mut high as *mut u64 as *mut _)
    }
    .map_err(|e| candle_core::Error::Msg(format!("cuda memory pool: {e}")))?;
    Ok(Some(high))
}

/// Free and total device memory now; `None` off CUDA.
pub fn snapshot(device: &Device) -> Result<Option<DeviceMemory>> {
    if !device.is_cuda() {
        return Ok(None);
    }
    default_pool(device)?;
    let (free, total) = result::mem_get_info().map_err(|e| candle_core::Error::Msg(format!("cuda: {e}")))?;
    Ok(Some(DeviceMemory { free_bytes: free as u64, total_bytes: total as u64 }))
}
