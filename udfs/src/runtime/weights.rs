//! A checkpoint's weights as a [`VarBuilder`]: safetensors files memory-mapped, each tensor read
//! when a layer asks for it.
//!
//! candle's own reader copies a tensor out of the mapping in its stored type and then converts
//! it, on one thread. SmolVLM's checkpoints are stored in bf16 and run in f32 on the CPU, so each
//! weight was written twice into fresh memory, and on a virtual machine that backs its memory
//! at first touch the kernel's zeroing of those pages was half of a load. Here a bf16 tensor
//! wanted in f32 on the CPU is widened straight from the mapping into its f32 buffer on the
//! thread pool; every other case is candle's. The 2.2B's load on the 2-vCPU Xeon, five each:
//! median 21.9 s before, 15.1 after (`benches/RESULTS.md`, 2026-12-05 from 21:40).

use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;

/// Values widened per task of the thread pool.
const CHUNK: usize = 1 << 16;

/// The weights in the safetensors `files`, as `dtype` on `device`.
///
/// # Safety
/// The files are memory-mapped: they must not be truncated or rewritten while the weights are
/// read, as for every safetensors reader.
pub unsafe fn mapped(
    files: &[impl AsRef<Path>],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    // SAFETY: as the caller promised.
    let mapping = unsafe { MmapedSafetensors::multi(files)? };
    Ok(VarBuilder::from_backend(
        Box::new(Widening(mapping)),
        dtype,
        device.clone(),
    ))
}

/// candle's memory-mapped reader, with bf16 widened to f32 on the CPU in parallel.
struct Widening(MmapedSafetensors);

impl SimpleBackend for Widening {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let stored = self.0.get(name)?.shape().to_vec();
        if stored != shape.dims() {
            candle_core::bail!(
                "weight {name}: shape {stored:?} in the file, {:?} expected",
                shape.dims()
            );
        }
        self.get_unchecked(name, dtype, device)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let view = self.0.get(name)?;
        if dtype == DType::F32 && device.is_cpu() && view.dtype() == safetensors::Dtype::BF16 {
            return Tensor::from_vec(widened(view.data()), view.shape(), device);
        }
        self.0.load(name, device)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.get(name).is_ok()
    }
}

/// The f32 values of little-endian bf16 `bytes`: a bf16 is an f32's upper half, so each one is
/// exact.
fn widened(bytes: &[u8]) -> Vec<f32> {
    let mut values = vec![0f32; bytes.len() / 2];
    values
        .par_chunks_mut(CHUNK)
        .zip(bytes.par_chunks(2 * CHUNK))
        .for_each(|(values, bytes)| {
            for (value, pair) in values.iter_mut().zip(bytes.chunks_exact(2)) {
                *value = f32::from_bits(u32::from(u16::from_le_bytes([pair[0], pair[1]])) << 16);
            }
        });
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_weights_widen_to_the_values_candle_converts_them_to() {
        let device = Device::Cpu;
        let values = Tensor::randn(0f32, 3.0, (3, 70_001), &device).unwrap();
        let stored = values.to_dtype(DType::BF16).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.safetensors");
        let tensors = std::collections::HashMap::from([
            ("w".to_string(), stored.clone()),
            ("f".to_string(), values.clone()),
        ]);
        candle_core::safetensors::save(&tensors, &file).unwrap();
        // SAFETY: this test alone writes the file, before it is mapped.
        let vb = unsafe { mapped(&[&file], DType::F32, &device) }.unwrap();
        let got = vb.get((3, 70_001), "w").unwrap();
        assert_eq!(got.dtype(), DType::F32);
        let want = stored.to_dtype(DType::F32).unwrap();
        let same = got
            .eq(&want)
            .unwrap()
            .flatten_all()
            .unwrap()
            .min(0)
            .unwrap();
        assert_eq!(
            same.to_scalar::<u8>().unwrap(),
            1,
            "a widened value differs"
        );
        // Stored f32 goes through candle's reader; a wrong shape is an error naming the weight.
        let f = vb.get((3, 70_001), "f").unwrap();
        assert_eq!(
            f.to_vec2::<f32>().unwrap(),
            values.to_vec2::<f32>().unwrap()
        );
        let wrong = vb.get((70_001, 3), "w").unwrap_err().to_string();
        assert!(wrong.contains("weight w"), "{wrong}");
        assert!(vb.contains_tensor("w") && !vb.contains_tensor("x"));
    }
}
