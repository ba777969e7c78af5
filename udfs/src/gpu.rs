//! Launching the crate's own CUDA kernels (`src/**/*.cu`, compiled to PTX by `build.rs`) from
//! candle's custom operations: a kernel is written once per element type (`NAME_f32`,
//! `NAME_bf16`, `NAME_f16`) and [`run`] launches the one for the type its first operand holds.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, LaunchConfig};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorageSlice};
use candle_core::{CudaStorage, Layout, Result};

/// Threads per block of the crate's kernels (`THREADS` in the `.cu` files).
pub(crate) const THREADS: u32 = 256;

/// A kernel over a float tensor, launched for its element type.
pub(crate) trait FloatKernel {
    /// Launches the kernel for elements of type `T` over `input` (the first operand, its
    /// elements in order) on `device`; `suffix` ends the kernels' names for that type (`f32`,
    /// `bf16`, `f16`). Answers the output.
    fn launch<T: CudaDType + DeviceRepr>(
        &self,
        device: &CudaDevice,
        suffix: &str,
        input: &CudaView<T>,
    ) -> Result<CudaSlice<T>>;
}

/// `kernel` over `storage`, read contiguously at `layout`: f32, bf16 or f16 elements.
pub(crate) fn run(
    kernel: &impl FloatKernel,
    storage: &CudaStorage,
    layout: &Layout,
) -> Result<CudaStorage> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("the crate's CUDA kernels read contiguous tensors");
    };
    let device = &storage.device;
    let slice = match &storage.slice {
        CudaStorageSlice::F32(s) => {
            CudaStorageSlice::F32(kernel.launch(device, "f32", &s.slice(start..end))?)
        }
        CudaStorageSlice::BF16(s) => {
            CudaStorageSlice::BF16(kernel.launch(device, "bf16", &s.slice(start..end))?)
        }
        CudaStorageSlice::F16(s) => {
            CudaStorageSlice::F16(kernel.launch(device, "f16", &s.slice(start..end))?)
        }
        _ => candle_core::bail!("the crate's CUDA kernels take f32, bf16 or f16 tensors"),
    };
    Ok(CudaStorage {
        slice,
        device: device.clone(),
    })
}

/// A grid of [`THREADS`]-thread blocks for `count` elements, one thread each (the kernels
/// stride over any beyond the grid).
pub(crate) fn elementwise(count: usize) -> LaunchConfig {
    let blocks = count.div_ceil(THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}
