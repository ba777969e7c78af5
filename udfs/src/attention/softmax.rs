//! The softmax of attention scores in one operation: `softmax(scores · scale)` over each row's
//! keys, with the keys a row's query does not see (the future, a sequence's left padding)
//! dropped, computed in f32 whatever the scores' type and written in it. Composed of candle's
//! operations this was five passes over the scores (a scaling, a cast to f32, a mask added by
//! a broadcasting kernel, the softmax, a cast back), which took more of a GPU's prefill than
//! the matrix products did; here it is one kernel reading the scores once for each of the
//! maximum, the sum and the result (`softmax.cu`, compiled to PTX by `build.rs` with the `cuda`
//! feature), and the same loop on the CPU. No backward pass: [`scaled_softmax`] is for
//! inference, and the callers compose the differentiable softmax when a gradient is tracked.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType,
};

/// Which keys each row of scores sees.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// Every key (an encoder without a mask).
    All,
    /// Causally, for scores shaped (sequences, …, queries, keys): query `i` sits at slot
    /// `offset + i` and sees the slots up to its own, from its sequence's first slot
    /// (`first_slot`: one u32 per sequence, on the scores' device; the slots before it are
    /// left padding).
    Causal {
        /// Slots filled before these queries' (a key/value cache's length).
        offset: usize,
        /// Each sequence's first slot that is not padding.
        first_slot: &'a Tensor,
    },
}

/// The additive mask that hides what [`Seen::Causal`] hides, for the paths that add one
/// (sequences × 1 × queries × keys): for query `i` of a sequence whose first slot is `first`,
/// f32's lowest value at the slots before `first` and after its own (`offset + i`), 0 at the
/// others. Finite, so that a row that sees no slot averages them all instead of turning NaN.
pub fn causal_mask(
    first_slot: &[u32],
    queries: usize,
    keys: usize,
    offset: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    causal_mask_hiding(first_slot, &[], queries, keys, offset, device)
}

/// [`causal_mask`] that also hides from every query of sequence `s` the slots `hidden[s]`
/// names (a sequence missing from `hidden` hides none): slots of a key/value cache that hold
/// another sequence's tokens, such as drafts a decoder kept for one sequence of a batch and
/// not for the others.
pub fn causal_mask_hiding(
    first_slot: &[u32],
    hidden: &[Vec<usize>],
    queries: usize,
    keys: usize,
    offset: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut values: Vec<f32> = first_slot
        .iter()
        .flat_map(|&first| {
            (0..queries).flat_map(move |i| {
                (0..keys).map(move |j| {
                    if j < first as usize || j > offset + i {
                        f32::MIN
                    } else {
                        0.0
                    }
                })
            })
        })
        .collect();
    for (rows, slots) in values.chunks_mut((queries * keys).max(1)).zip(hidden) {
        for row in rows.chunks_mut(keys.max(1)) {
            for &slot in slots.iter().filter(|&&slot| slot < keys) {
                row[slot] = f32::MIN;
            }
        }
    }
    Tensor::from_vec(values, (first_slot.len(), 1, queries, keys), device)
}

/// `softmax(scores · scale)` over the last dimension of `scores` (…, queries × keys), only
/// over the keys each row sees ([`Seen`]); the others get 0, and a row that sees none averages
/// every key (as adding f32's lowest value to all of its scores would). The result has the
/// scores' shape and type. Not differentiable: an error when a gradient is tracked through
/// `scores`.
pub fn scaled_softmax(scores: &Tensor, scale: f64, seen: Seen) -> Result<Tensor> {
    if scores.track_op() {
        candle_core::bail!("scaled_softmax has no backward pass; compose the softmax instead");
    }
    let scores = scores.contiguous()?;
    let dims = scores.dims();
    let keys = dims.last().copied().unwrap_or(1);
    let rows = scores.elem_count() / keys.max(1);
    match seen {
        Seen::All => scores.apply_op1_no_bwd(&ScaledSoftmax {
            scale: scale as f32,
            keys,
            causal: None,
        }),
        Seen::Causal { offset, first_slot } => {
            let sequences = first_slot.elem_count();
            if dims.len() < 3 || first_slot.dtype() != DType::U32 || dims[0] != sequences {
                candle_core::bail!(
                    "scaled_softmax: causal scores are sequences × … × queries × keys, one \
                     u32 first slot per sequence; got scores {dims:?} and {sequences} {:?} \
                     first slots",
                    first_slot.dtype()
                );
            }
            scores.apply_op2_no_bwd(
                &first_slot.contiguous()?,
                &ScaledSoftmax {
                    scale: scale as f32,
                    keys,
                    causal: Some(Causal {
                        queries: dims[dims.len() - 2],
                        offset,
                        rows_per_sequence: rows / sequences.max(1),
                    }),
                },
            )
        }
    }
}

/// The causal part of [`Seen::Causal`] that travels with the operation.
#[derive(Debug, Clone, Copy)]
struct Causal {
    queries: usize,
    offset: usize,
    rows_per_sequence: usize,
}

/// The operation: one for [`Seen::All`] (`CustomOp1`), with the first slots as its second
/// operand for [`Seen::Causal`] (`CustomOp2`).
struct ScaledSoftmax {
    scale: f32,
    keys: usize,
    causal: Option<Causal>,
}

impl ScaledSoftmax {
    /// The keys `lo..hi` that `row` sees, given each sequence's first slot; `lo >= hi` when none.
    fn seen(&self, row: usize, first_slot: &[u32]) -> (usize, usize) {
        match self.causal {
            None => (0, self.keys),
            Some(c) => (
                first_slot[row / c.rows_per_sequence] as usize,
                self.keys.min(c.offset + row % c.queries + 1),
            ),
        }
    }

    /// The CPU loop over `scores` (rows × keys) as f32.
    fn rows_f32(&self, scores: &[f32], first_slot: &[u32]) -> Vec<f32> {
        let mut out = vec![0f32; scores.len()];
        if self.keys == 0 {
            return out;
        }
        for (row, (x, y)) in scores
            .chunks_exact(self.keys)
            .zip(out.chunks_exact_mut(self.keys))
            .enumerate()
        {
            let (lo, hi) = self.seen(row, first_slot);
            if lo >= hi {
                y.fill(1.0 / self.keys as f32);
                continue;
            }
            let top = x[lo..hi]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v * self.scale));
            let mut sum = 0f32;
            for (o, &v) in y[lo..hi].iter_mut().zip(&x[lo..hi]) {
                *o = (v * self.scale - top).exp();
                sum += *o;
            }
            y[lo..hi].iter_mut().for_each(|o| *o /= sum);
        }
        out
    }

    /// [`ScaledSoftmax::rows_f32`] for scores of another type, converted to f32 and back.
    fn rows_as_f32<T: WithDType>(&self, scores: &[T], first_slot: &[u32]) -> Vec<T> {
        let values: Vec<f32> = scores.iter().map(|x| x.to_f64() as f32).collect();
        self.rows_f32(&values, first_slot)
            .into_iter()
            .map(|v| T::from_f64(f64::from(v)))
            .collect()
    }

    /// The CPU operation on `storage` (contiguous at `layout`) in its own type.
    fn cpu(&self, storage: &CpuStorage, layout: &Layout, first_slot: &[u32]) -> Result<CpuStorage> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("scaled_softmax: the scores must be contiguous");
        };
        Ok(match storage {
            CpuStorage::F32(v) => CpuStorage::F32(self.rows_f32(&v[start..end], first_slot)),
            CpuStorage::BF16(v) => CpuStorage::BF16(self.rows_as_f32(&v[start..end], first_slot)),
            CpuStorage::F16(v) => CpuStorage::F16(self.rows_as_f32(&v[start..end], first_slot)),
            _ => candle_core::bail!("scaled_softmax: f32, bf16 or f16 scores are needed"),
        })
    }

    /// Launches `softmax.cu`'s kernel for the scores' type.
    #[cfg(feature = "cuda")]
    fn cuda(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
        first_slot: Option<&candle_core::cuda_backend::cudarc::driver::CudaView<u32>>,
    ) -> Result<candle_core::CudaStorage> {
        crate::gpu::run(
            &SoftmaxLaunch {
                op: self,
                first_slot,
            },
            storage,
            layout,
        )
    }
}

/// [`ScaledSoftmax`] with its first slots on the GPU, ready to launch.
#[cfg(feature = "cuda")]
struct SoftmaxLaunch<'a> {
    op: &'a ScaledSoftmax,
    first_slot: Option<&'a candle_core::cuda_backend::cudarc::driver::CudaView<'a, u32>>,
}

#[cfg(feature = "cuda")]
impl crate::gpu::FloatKernel for SoftmaxLaunch<'_> {
    fn launch<
        T: candle_core::cuda_backend::CudaDType
            + candle_core::cuda_backend::cudarc::driver::DeviceRepr,
    >(
        &self,
        device: &candle_core::cuda_backend::CudaDevice,
        suffix: &str,
        scores: &candle_core::cuda_backend::cudarc::driver::CudaView<T>,
    ) -> Result<candle_core::cuda_backend::cudarc::driver::CudaSlice<T>> {
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;

        const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/softmax.ptx"));
        let op = self.op;
        // SAFETY: the kernel writes every element.
        let out = unsafe { device.alloc::<T>(scores.len())? };
        let rows = scores.len() / op.keys.max(1);
        if rows == 0 {
            return Ok(out);
        }
        let causal = op.causal.unwrap_or(Causal {
            queries: 1,
            offset: 0,
            rows_per_sequence: 1,
        });
        let (keys, queries, per_sequence, offset) = (
            op.keys as u32,
            causal.queries as u32,
            causal.rows_per_sequence as u32,
            causal.offset as u32,
        );
        let flag = i32::from(op.causal.is_some());
        let null: u64 = 0;
        let name = format!("scaled_softmax_{suffix}");
        let func = device.get_or_load_custom_func(&name, "vitrine_scaled_softmax", PTX)?;
        let mut builder = func.builder();
        builder.arg(scores).arg(&out);
        match self.first_slot {
            Some(slots) => builder.arg(slots),
            None => builder.arg(&null),
        };
        builder
            .arg(&keys)
            .arg(&op.scale)
            .arg(&flag)
            .arg(&queries)
            .arg(&per_sequence)
            .arg(&offset);
        let config = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (crate::gpu::THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: the kernel reads rows × keys scores and, when causal, one first slot per
        // sequence (their count checked by `scaled_softmax`), and writes rows × keys values.
        unsafe { builder.launch(config) }.w()?;
        Ok(out)
    }
}

impl CustomOp1 for ScaledSoftmax {
    fn name(&self) -> &'static str {
        "scaled-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((self.cpu(storage, layout, &[])?, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((self.cuda(storage, layout, None)?, layout.shape().clone()))
    }
}

impl CustomOp2 for ScaledSoftmax {
    fn name(&self) -> &'static str {
        "scaled-softmax-causal"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
        slots: &CpuStorage,
        slots_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::U32(first_slot), Some((start, end))) =
            (slots, slots_layout.contiguous_offsets())
        else {
            candle_core::bail!("scaled_softmax: the first slots must be contiguous u32");
        };
        let out = self.cpu(storage, layout, &first_slot[start..end])?;
        Ok((out, layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
        slots: &candle_core::CudaStorage,
        slots_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::cuda_backend::CudaStorageSlice;
        let (CudaStorageSlice::U32(first_slot), Some((start, end))) =
            (&slots.slice, slots_layout.contiguous_offsets())
        else {
            candle_core::bail!("scaled_softmax: the first slots must be contiguous u32");
        };
        let out = self.cuda(storage, layout, Some(&first_slot.slice(start..end)))?;
        Ok((out, layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::max_difference;
    use candle_core::{Device, Var};

    fn composed(scores: &Tensor, scale: f64, mask: Option<&Tensor>) -> Tensor {
        let scaled = (scores * scale).unwrap();
        let scaled = match mask {
            Some(mask) => scaled.broadcast_add(mask).unwrap(),
            None => scaled,
        };
        candle_nn::ops::softmax_last_dim(&scaled).unwrap()
    }

    #[test]
    fn the_fused_softmax_equals_the_scaled_masked_softmax_composed() {
        let device = Device::Cpu;
        let (heads, queries, keys, offset, scale) = (2, 4, 9, 5, 0.3);
        // No padding; two slots of it; a first slot past the first queries' own slots (those
        // rows see no key and average them all, as the composed mask makes them).
        let first: [u32; 3] = [0, 2, 7];
        let first_slot = Tensor::new(&first, &device).unwrap();
        let scores = Tensor::randn(0f32, 3.0, (3, heads, queries, keys), &device).unwrap();
        let mask = causal_mask(&first, queries, keys, offset, &device).unwrap();
        let want = composed(&scores, scale, Some(&mask));
        let seen = Seen::Causal {
            offset,
            first_slot: &first_slot,
        };
        let got = scaled_softmax(&scores, scale, seen).unwrap();
        assert_eq!(got.dims(), scores.dims());
        assert!(max_difference(&got, &want) < 1e-6);
        let averaged = got.get(2).unwrap().get(0).unwrap().get(0).unwrap();
        let averaged: Vec<f32> = averaged.to_vec1().unwrap();
        assert!(averaged
            .iter()
            .all(|&p| (p - 1.0 / keys as f32).abs() < 1e-7));

        let want = composed(&scores, scale, None);
        let got = scaled_softmax(&scores, scale, Seen::All).unwrap();
        assert!(max_difference(&got, &want) < 1e-6);

        // In bf16 (the GPU's type), computed in f32 and rounded once.
        let half = scores.to_dtype(DType::BF16).unwrap();
        let got = scaled_softmax(&half, scale, seen).unwrap();
        assert_eq!(got.dtype(), DType::BF16);
        let want = composed(&half.to_dtype(DType::F32).unwrap(), scale, Some(&mask));
        let got = got.to_dtype(DType::F32).unwrap();
        assert!(max_difference(&got, &want) < 4e-3);
    }

    #[test]
    fn gradients_and_mismatched_first_slots_are_refused() {
        let device = Device::Cpu;
        let scores = Var::randn(0f32, 1.0, (2, 3, 4), &device).unwrap();
        let err = scaled_softmax(scores.as_tensor(), 1.0, Seen::All).unwrap_err();
        assert!(err.to_string().contains("no backward pass"), "{err}");
        let first_slot = Tensor::new(&[0u32, 0, 0], &device).unwrap();
        let seen = Seen::Causal {
            offset: 0,
            first_slot: &first_slot,
        };
        let err = scaled_softmax(&scores.as_tensor().detach(), 1.0, seen).unwrap_err();
        assert!(
            err.to_string().contains("one u32 first slot per sequence"),
            "{err}"
        );
    }
}
