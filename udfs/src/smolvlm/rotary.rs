//! The decoder's query and key heads taken out of its fused q/k/v projection and rotated to their
//! positions in one pass on the CPU.
//!
//! Composed of candle's operations this is a strided copy of the heads (batch × length × heads
//! to batch × heads × length), then the rotation into a buffer zeroed first on one thread: two
//! passes over the heads and a memset, each as large as the queries (14 MB a layer for eight
//! 754-token prompts). Here each task of the thread pool writes whole rows of the rotated heads
//! straight from the projection, with candle's arithmetic (`rope`: the two halves of a head,
//! `x₁·cos − x₂·sin` and `x₁·sin + x₂·cos`), so the values are the same to the bit.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_ops::{contiguous_f32, CHUNK};

/// `count` heads from head `first` of `qkv` (batch × length × heads × head size, the heads of
/// q, k and v side by side), each rotated by the tables `cos` and `sin` (length × head size / 2,
/// or batch × length × head size / 2 when sequences sit at different positions): batch × count ×
/// length × head size. f32 tensors on the CPU, contiguous.
pub(super) fn rotated_heads(
    qkv: &Tensor,
    (first, count): (usize, usize),
    cos: &Tensor,
    sin: &Tensor,
) -> Result<Tensor> {
    qkv.apply_op3_no_bwd(cos, sin, &RotatedHeads { first, count })
}

/// The operation of [`rotated_heads`].
struct RotatedHeads {
    first: usize,
    count: usize,
}

impl CustomOp3 for RotatedHeads {
    fn name(&self) -> &'static str {
        "rotated-heads"
    }

    fn cpu_fwd(
        &self,
        qkv: &CpuStorage,
        qkv_layout: &Layout,
        cos: &CpuStorage,
        cos_layout: &Layout,
        sin: &CpuStorage,
        sin_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, length, heads, size) = qkv_layout.shape().dims4()?;
        let half = size / 2;
        let per_sequence = match cos_layout.dims() {
            [t, h] if (*t, *h) == (length, half) => false,
            [b, t, h] if (*b, *t, *h) == (batch, length, half) => true,
            dims => candle_core::bail!(
                "rotated heads: tables of {dims:?} for {batch} sequences of {length} positions"
            ),
        };
        if self.first + self.count > heads
            || size == 0
            || size % 2 != 0
            || sin_layout.dims() != cos_layout.dims()
        {
            candle_core::bail!(
                "rotated heads: heads {}..{} of {heads} of size {size}, or sin unlike cos",
                self.first,
                self.first + self.count
            );
        }
        let (qkv, cos, sin) = (
            contiguous_f32(qkv, qkv_layout)?,
            contiguous_f32(cos, cos_layout)?,
            contiguous_f32(sin, sin_layout)?,
        );
        let (first, count) = (self.first, self.count);
        let rows = batch * count * length;
        let mut out = Box::new_uninit_slice(rows * size);
        // Row `r` of the output is position `r % length` of head `r / length % count` of
        // sequence `r / length / count`.
        let rotate_rows = |start: usize, out: &mut [std::mem::MaybeUninit<f32>]| {
            for (i, row) in out.chunks_exact_mut(size).enumerate() {
                let r = start + i;
                let (position, head, sequence) =
                    (r % length, r / length % count, r / length / count);
                let x =
                    &qkv[((sequence * length + position) * heads + first + head) * size..][..size];
                let table = (if per_sequence { sequence * length } else { 0 } + position) * half;
                let (cos, sin) = (&cos[table..][..half], &sin[table..][..half]);
                let (x1, x2) = x.split_at(half);
                let (out1, out2) = row.split_at_mut(half);
                for i in 0..half {
                    out1[i].write(x1[i] * cos[i] - x2[i] * sin[i]);
                    out2[i].write(x1[i] * sin[i] + x2[i] * cos[i]);
                }
            }
        };
        if rows * size <= CHUNK {
            rotate_rows(0, &mut out);
        } else {
            let rows_per_task = (CHUNK / size).max(1);
            out.par_chunks_mut(rows_per_task * size)
                .enumerate()
                .for_each(|(task, out)| rotate_rows(task * rows_per_task, out));
        }
        // SAFETY: the rows cover `out`, and every value of each row was written.
        let out = unsafe { out.assume_init() }.into_vec();
        Ok((
            CpuStorage::F32(out),
            Shape::from((batch, count, length, size)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::sequence_values;
    use candle_core::Device;

    #[test]
    fn the_heads_come_out_as_the_copy_and_candles_rotation_give_them() {
        // (batch, length): a decoding step, and a prompt long enough to be split into tasks.
        for (batch, length) in [(3, 1), (2, 97)] {
            let (heads, size) = (9 + 2 * 3, 64);
            let qkv = Tensor::from_vec(
                sequence_values(batch * length * heads * size, 11),
                (batch, length, heads, size),
                &Device::Cpu,
            )
            .unwrap();
            let angles = |n: usize, seed| {
                let v: Vec<f32> = sequence_values(n, seed).iter().map(|a| a * 3.0).collect();
                v
            };
            let shared = length * size / 2;
            let tables = [
                (
                    Tensor::from_vec(angles(shared, 3), (length, size / 2), &Device::Cpu),
                    Tensor::from_vec(angles(shared, 4), (length, size / 2), &Device::Cpu),
                ),
                (
                    Tensor::from_vec(
                        angles(batch * shared, 5),
                        (batch, length, size / 2),
                        &Device::Cpu,
                    ),
                    Tensor::from_vec(
                        angles(batch * shared, 6),
                        (batch, length, size / 2),
                        &Device::Cpu,
                    ),
                ),
            ];
            for (cos, sin) in tables {
                let (cos, sin) = (cos.unwrap().cos().unwrap(), sin.unwrap().sin().unwrap());
                for (first, count) in [(0, 9), (9, 3)] {
                    let apart = qkv
                        .narrow(2, first, count)
                        .unwrap()
                        .transpose(1, 2)
                        .unwrap()
                        .contiguous()
                        .unwrap();
                    let want = candle_nn::rotary_emb::rope(&apart, &cos, &sin).unwrap();
                    let got = rotated_heads(&qkv, (first, count), &cos, &sin).unwrap();
                    assert_eq!(got.dims(), want.dims());
                    let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
                    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                    assert!(
                        want == got,
                        "heads {first}..{} of {batch} × {length}, tables {:?}",
                        first + count,
                        cos.dims()
                    );
                }
            }
        }
    }

    #[test]
    fn tables_of_another_length_are_named() {
        let qkv = Tensor::zeros((1, 4, 3, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let table = Tensor::zeros((5, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = rotated_heads(&qkv, (0, 1), &table, &table).unwrap_err();
        assert!(err.to_string().contains("tables of [5, 4]"), "{err}");
        // Heads of no values are refused, not split into rows of none.
        let empty = Tensor::zeros((1, 4, 3, 0), candle_core::DType::F32, &Device::Cpu).unwrap();
        let table = Tensor::zeros((4, 0), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = rotated_heads(&empty, (0, 1), &table, &table).unwrap_err();
        assert!(err.to_string().contains("of size 0"), "{err}");
    }
}
