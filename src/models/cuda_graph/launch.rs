//! How the graph decoder reaches the driver: device addresses of candle tensors, kernel
//! parameters, and the one launch every kernel of the step goes through (programmatic
//! dependent launch).

use candle_core::cuda_backend::cudarc::driver::{sys, CudaFunction, CudaStream, DevicePtr, LaunchConfig};
use candle_core::cuda_backend::CudaStorageSlice;
use candle_core::{Result, Storage, Tensor};
use std::sync::Arc;

/// A kernel parameter for `cuLaunchKernelEx`: the address of its value.
pub(super) fn arg<T>(value: &T) -> *mut std::ffi::c_void {
    value as *const T as *mut std::ffi::c_void
}

pub(super) fn wrap(e: impl std::fmt::Display) -> candle_core::Error {
    candle_core::Error::Msg(format!("cuda graph decoder: {e}"))
}

/// The device address of a contiguous CUDA tensor's first element.
pub(super) fn ptr(t: &Tensor, stream: &Arc<CudaStream>) -> Result<u64> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else { candle_core::bail!("cuda graph decoder: tensor is not on a CUDA device") };
    if !layout.is_contiguous() {
        candle_core::bail!("cuda graph decoder: tensor is not contiguous");
    }
    let base = match &cs.slice {
        CudaStorageSlice::F32(s) => s.device_ptr(stream).0,
        CudaStorageSlice::F16(s) => s.device_ptr(stream).0,
        CudaStorageSlice::BF16(s) => s.device_ptr(stream).0,
        CudaStorageSlice::U32(s) => s.device_ptr(stream).0,
        CudaStorageSlice::U8(s) => s.device_ptr(stream).0,
        CudaStorageSlice::I64(s) => s.device_ptr(stream).0,
        _ => candle_core::bail!("cuda graph decoder: unsupported storage dtype {:?}", t.dtype()),
    };
    Ok(base + (layout.start_offset() * t.dtype().size_in_bytes()) as u64)
}

/// Launches `f` with programmatic dependent launch: it may start while the kernel before it
/// on the stream finishes, and waits for it at its `griddepcontrol.wait` (the kernels'
/// `wait_for_previous`). A capture records this as a programmatic edge of the graph. The
/// gain is the launch latency and the weights' first round trip, hidden behind the previous
/// kernel's tail (results/gpu/NOTES.md).
pub(super) fn launch_after_previous(stream: &CudaStream, f: &CudaFunction, cfg: LaunchConfig, args: &mut [*mut std::ffi::c_void]) -> Result<()> {
    // SAFETY: zeroed is a valid launch attribute (id 0, no value), then set field by field.
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    // SAFETY: `args` points at one value per kernel parameter, in order and of the kernel's
    // types, alive for the call (the driver copies them).
    unsafe { sys::cuLaunchKernelEx(&config, f.cu_function(), args.as_mut_ptr(), std::ptr::null_mut()).result() }.map_err(wrap)
}
