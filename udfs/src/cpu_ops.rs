//! The element-wise steps of the models' layers, faster on the CPU: candle computes GELU and SiLU
//! on one thread and every exponential with libm's scalar `expf`, which made them a third of the
//! vision tower's time (`benches/RESULTS.md`). Here contiguous f32 tensors on the CPU are cut
//! into chunks for the thread pool and use [`exp`], a branch-free exponential the compiler
//! vectorises (8 lanes wide where the processor has AVX2, [`widest_simd`]); anything else (a GPU, half precision) goes to candle's own operation.
//!
//! Each operation has its backward pass, so that models train through them: the derivative
//! runs on the same thread pool.
//!
//! The other CPU kernels share the pieces here: the vectorised sums ([`sum`], [`dot`]), strided
//! copies on the thread pool ([`contiguous`]) and outputs that each task zeroes for itself
//! ([`zeroed`]), where one thread zeroing a whole buffer left the others waiting.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per task: large enough to amortise scheduling, small enough to share out.
pub(crate) const CHUNK: usize = 1 << 14;

/// `e^x` in f32 to a relative error below 3e-7, about 2 ulp (Cody–Waite reduction to |r| ≤ ln2/2, degree-6 polynomial, the
/// power of two put into the exponent bits); inputs are clamped to [-87.3, 88.3], so below it
/// gives about 1e-38 rather than 0, and above it e^88.3 rather than infinity.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.336_54, 88.3);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // The integer n sits in `shifted`'s low mantissa bits (its exponent is ROUND's for every
    // |n| < 2^22): integer steps the loops vectorise, where `n as i32` (a saturating conversion)
    // compiles to one scalar conversion per lane.
    let n = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    f32::from_bits(((n + 127) << 23) as u32) * p
}

/// `f()`, compiled for AVX-512 when the processor has it (16 lanes per instruction), else for
/// AVX2 and FMA when it has them (8 lanes), where the crate's baseline target (x86-64, SSE2)
/// gives 4. The build targets every x86-64, so the element-wise loops are otherwise vectorised
/// for SSE2 only; `f` (a closure marked `#[inline(always)]`, with the loops inside it) is inlined
/// into a function compiled with the wider instruction set and its loops vectorised again. The results are the same bits: no
/// multiplication and addition are fused, since Rust never contracts them.
#[inline(always)]
pub(crate) fn widest_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                // SAFETY: the processor has every feature `avx512` is compiled for.
                return unsafe { avx512(f) };
            }
            // SAFETY: the processor has both features `avx2` is compiled for.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Whether the processor has AVX-512F, which the kernels written with its intrinsics need.
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether the processor is AMD's (its CPUID vendor string is "AuthenticAMD"), asked once per
/// process: in a virtual machine each CPUID instruction is a trip to the hypervisor.
pub(crate) fn is_amd() -> bool {
    static AMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMD.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let vendor = std::arch::x86_64::__cpuid(0);
            [vendor.ebx, vendor.edx, vendor.ecx]
                .iter()
                .flat_map(|word| word.to_le_bytes())
                .eq(*b"AuthenticAMD")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// `values` filled with zeros and handed back as written. For a task of the thread pool that
/// starts its own part of an output allocated unwritten (`Box::new_uninit_slice`): the zeros go
/// in on every thread at once, into the cache the task is about to write, where zeroing the
/// whole buffer as it is allocated ran on one thread while the others waited.
pub(crate) fn zeroed(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for value in values.iter_mut() {
        value.write(0.0);
    }
    // SAFETY: every value was written just above.
    unsafe { written(values) }
}

/// `values` as the f32s a kernel wrote into them.
///
/// # Safety
/// Every value of `values` must have been written.
pub(crate) unsafe fn written(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: initialised, as the caller promised; `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<f32>(), values.len()) }
}

/// Values side by side in a reduction, so that the compiler keeps that many partial results in
/// SIMD registers instead of adding (or comparing) one value at a time: one AVX-512 register
/// (two of AVX2). With 8 the loops that [`widest_simd`] compiles for AVX-512 ran half as wide.
const LANES: usize = 16;

/// `f` folded over `values` from `start`, [`LANES`] partial results at a time, which `f` then
/// folds into one. `f` must be associative and commutative up to rounding (a sum, a maximum).
#[inline(always)]
fn fold_lanes(values: &[f32], start: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [start; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = f(*lane, v);
        }
    }
    let tail = chunks.remainder().iter().fold(start, |a, &v| f(a, v));
    lanes.into_iter().fold(tail, f)
}

/// The sum of `values`, [`LANES`] partial sums at a time. Inlined, so that the caller's
/// [`widest_simd`] covers it.
#[inline(always)]
pub(crate) fn sum(values: &[f32]) -> f32 {
    fold_lanes(values, 0.0, |a, b| a + b)
}

/// `Σ (v − centre)²` over `values`, [`LANES`] partial sums at a time. Inlined, so that the
/// caller's [`widest_simd`] covers it.
#[inline(always)]
pub(crate) fn sum_squares_about(values: &[f32], centre: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += (v - centre) * (v - centre);
        }
    }
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|&v| (v - centre) * (v - centre))
        .sum();
    lanes.into_iter().fold(tail, |a, b| a + b)
}

/// The dot product of `a` and `b` (one length), in four partial sums of [`LANES`] lanes
/// each: the loop vectorises, and the four chains of additions run side by side, where one would
/// make each addition wait for the one before (four cycles: a sixteenth of what a core can do).
/// Each partial sum is its own array: one array of all the lanes compiles to scalar code.
/// Inlined, so that the caller's [`widest_simd`] covers it.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const STEP: usize = 4 * LANES;
    let (mut s0, mut s1, mut s2, mut s3) =
        ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let (a, b) = (a.chunks_exact(STEP), b.chunks_exact(STEP));
    let tail: f32 = a
        .remainder()
        .iter()
        .zip(b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (a, b) in a.zip(b) {
        for (sum, part) in [&mut s0, &mut s1, &mut s2, &mut s3].into_iter().zip(0..4) {
            let range = part * LANES..(part + 1) * LANES;
            for ((lane, x), y) in sum.iter_mut().zip(&a[range.clone()]).zip(&b[range]) {
                *lane += x * y;
            }
        }
    }
    let mut lanes = [0f32; LANES];
    for (i, lane) in lanes.iter_mut().enumerate() {
        *lane = (s0[i] + s1[i]) + (s2[i] + s3[i]);
    }
    lanes.into_iter().fold(tail, |s, l| s + l)
}

/// `row` replaced by `e^(x − max)` of each value, the softmax before its division; answers the
/// sum of the new values. Every step is vectorised: the maximum and the sum in lanes (the sum as
/// the exponentials are written), the exponentials by [`exp`]. Inlined, so that a caller's
/// [`widest_simd`] covers it.
#[inline(always)]
pub(crate) fn exp_in_place(row: &mut [f32]) -> f32 {
    // A plain comparison, one `vmaxps` a vector: `f32::max`'s care for NaN costs two more
    // instructions, and a NaN score makes a NaN row either way.
    let max = fold_lanes(row, f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    let mut lanes = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *v = exp(*v - max);
            *lane += *v;
        }
    }
    let mut sum = 0f32;
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    lanes.into_iter().fold(sum, |a, b| a + b)
}

/// `row` replaced by its softmax.
#[inline(always)]
pub(crate) fn softmax_in_place(row: &mut [f32]) {
    let inverse = 1.0 / exp_in_place(row);
    for v in row.iter_mut() {
        *v *= inverse;
    }
}

/// The tanh approximation of GELU (`gelu_pytorch_tanh`), as candle's `gelu` computes it.
#[inline(always)]
pub(crate) fn gelu_tanh(v: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_TWO_OVER_PI * v * (1.0 + 0.044_715 * v * v);
    // tanh(y) = 1 - 2 / (e^{2y} + 1)
    0.5 * v * (2.0 - 2.0 / (exp(2.0 * y) + 1.0))
}

/// The derivative of [`gelu_tanh`].
#[inline(always)]
fn gelu_tanh_derivative(v: f32) -> f32 {
    const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
    let y = SQRT_TWO_OVER_PI * v * (1.0 + 0.044_715 * v * v);
    let tanh = 1.0 - 2.0 / (exp(2.0 * y) + 1.0);
    0.5 * (1.0 + tanh)
        + 0.5 * v * (1.0 - tanh * tanh) * SQRT_TWO_OVER_PI * (1.0 + 3.0 * 0.044_715 * v * v)
}

#[inline(always)]
fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp(-v))
}

/// SiLU, `v · σ(v)`.
#[inline(always)]
pub(crate) fn silu(v: f32) -> f32 {
    v * sigmoid(v)
}

/// The derivative of [`silu`].
#[inline(always)]
fn silu_derivative(v: f32) -> f32 {
    let s = sigmoid(v);
    s + v * s * (1.0 - s)
}

/// OpenAI's quick GELU, `v · σ(1.702 v)`.
#[inline(always)]
pub(crate) fn quick_gelu(v: f32) -> f32 {
    v * sigmoid(1.702 * v)
}

/// The derivative of [`quick_gelu`].
#[inline(always)]
fn quick_gelu_derivative(v: f32) -> f32 {
    let s = sigmoid(1.702 * v);
    s + 1.702 * v * s * (1.0 - s)
}

/// An element-wise function over the thread pool, with its derivative for the backward pass.
/// Generic over the two functions (not function pointers), so that each operation's loop is
/// compiled with its function inlined and vectorised: a call through a pointer per element
/// kept quick GELU scalar, a tenth of a ViT-B/32 text tower's time (`benches/RESULTS.md`).
struct Map<F, D> {
    name: &'static str,
    f: F,
    derivative: D,
}

/// A function of one f32, as [`Map`] takes it (a function item, so that it inlines).
trait ElementFn: Fn(f32) -> f32 + Copy + Send + Sync + 'static {}

impl<T: Fn(f32) -> f32 + Copy + Send + Sync + 'static> ElementFn for T {}

/// Softmax over the last dimension, one row per task group.
struct SoftmaxLastDim;

/// The f32 values of a contiguous tensor's storage on the CPU; `what` (the calling kernel)
/// names the error when the storage is on another device.
pub(crate) fn cpu_f32<'a>(
    storage: &'a candle_core::Storage,
    layout: &Layout,
    what: &str,
) -> Result<&'a [f32]> {
    let candle_core::Storage::Cpu(cpu) = storage else {
        candle_core::bail!("{what}: a CPU tensor was expected")
    };
    contiguous_f32(cpu, layout)
}

/// The f32 values of a contiguous tensor's CPU storage (a custom operation's argument); an error
/// when the tensor is strided or of another type.
pub(crate) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("cpu_ops: a contiguous tensor is needed".into()))?;
    Ok(&storage.as_slice::<f32>()?[start..end])
}

impl<F, D> CustomOp1 for Map<F, D>
where
    F: ElementFn,
    D: ElementFn,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout)?;
        let mut dst = vec![0f32; src.len()];
        let f = self.f;
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| {
                widest_simd(
                    #[inline(always)]
                    || {
                        for (o, &v) in d.iter_mut().zip(s) {
                            *o = f(v);
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }

    /// `grad · f'(x)`, `f'` on the thread pool.
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let slope = arg.contiguous()?.apply_op1_no_bwd(&Map {
            name: self.name,
            f: self.derivative,
            derivative: self.derivative,
        })?;
        Ok(Some(grad_res.mul(&slope)?))
    }
}

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "softmax-last-dim-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(storage, layout)?;
        let width = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut dst = vec![0f32; src.len()];
        let rows_per_task = (CHUNK / width).max(1) * width;
        dst.par_chunks_mut(rows_per_task)
            .zip(src.par_chunks(rows_per_task))
            .for_each(|(d, s)| {
                widest_simd(
                    #[inline(always)]
                    || {
                        for (d, s) in d.chunks_mut(width).zip(s.chunks(width)) {
                            d.copy_from_slice(s);
                            softmax_in_place(d);
                        }
                    },
                )
            });
        Ok((CpuStorage::F32(dst), layout.shape().clone()))
    }

    /// `s · (g − Σ g·s)` over the last dimension, `s` the softmax.
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(candle_core::D::Minus1)?;
        Ok(Some(res.mul(&grad_res.broadcast_sub(&dot)?)?))
    }
}

/// Whether `xs` can take the CPU path.
fn on_cpu_f32(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

fn map<F, D>(xs: &Tensor, name: &'static str, f: F, derivative: D) -> Result<Tensor>
where
    F: ElementFn,
    D: ElementFn,
{
    xs.contiguous()?.apply_op1(Map {
        name,
        f,
        derivative,
    })
}

/// `t` with its values in order (row-major): `t` itself when they already are; otherwise a
/// copy, made on the thread pool for an f32 tensor on the CPU that no gradient is tracked
/// through ([`InOrder`]), by candle for the others. candle copies a strided tensor on one
/// thread: the heads taken apart before attention and put back together after it were 2 % of
/// a SmolVLM batch's processor time on 2 vCPUs, the other thread waiting meanwhile.
pub(crate) fn contiguous(t: &Tensor) -> Result<Tensor> {
    if t.is_contiguous() {
        Ok(t.clone())
    } else if t.dtype() == DType::F32 && t.device().is_cpu() && !t.track_op() {
        t.apply_op1_no_bwd(&InOrder)
    } else {
        t.contiguous()
    }
}

/// The copy of [`contiguous`]: each task of the pool writes whole rows (the last dimension) of
/// the output, finding each row's first value in the source from its strides.
struct InOrder;

impl CustomOp1 for InOrder {
    fn name(&self) -> &'static str {
        "in-order"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let values = storage.as_slice::<f32>()?;
        let (dims, strides) = (layout.dims(), layout.stride());
        // A row of no values stands as one, so that the chunks have a size (there are none).
        let (outer, width, step) = match (dims.split_last(), strides.last()) {
            (Some((&width, outer)), Some(&step)) => (outer, width.max(1), step),
            _ => (&[][..], 1, 1),
        };
        let start = layout.start_offset();
        let mut out = Box::new_uninit_slice(layout.shape().elem_count());
        let rows_per_task = (CHUNK / width).max(1);
        out.par_chunks_mut(rows_per_task * width)
            .enumerate()
            .for_each(|(task, chunk)| {
                for (i, row) in chunk.chunks_exact_mut(width).enumerate() {
                    // The row's index over the outer dimensions, last one fastest.
                    let (mut index, mut at) = (task * rows_per_task + i, start);
                    for (&dim, &stride) in outer.iter().zip(strides).rev() {
                        at += index % dim * stride;
                        index /= dim;
                    }
                    if step == 1 {
                        for (value, &v) in row.iter_mut().zip(&values[at..at + width]) {
                            value.write(v);
                        }
                    } else {
                        for (j, value) in row.iter_mut().enumerate() {
                            value.write(values[at + j * step]);
                        }
                    }
                }
            });
        // SAFETY: the chunks cover `out`, and each task wrote every value of its own.
        let out = unsafe { out.assume_init() }.into_vec();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(xs) {
        xs.contiguous()?.apply_op1(SoftmaxLastDim)
    } else if xs.track_op() {
        // candle's fused kernel has no backward pass; its composed softmax has.
        candle_nn::ops::softmax(xs, candle_core::D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(xs)
    }
}

/// GELU, tanh approximation.
pub fn gelu_tanh_of(xs: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(xs) {
        map(xs, "gelu-tanh-f32", gelu_tanh, gelu_tanh_derivative)
    } else {
        xs.gelu()
    }
}

/// SiLU, `x · σ(x)`.
pub fn silu_of(xs: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(xs) {
        map(xs, "silu-f32", silu, silu_derivative)
    } else {
        candle_nn::ops::silu(xs)
    }
}

/// OpenAI's quick GELU, `x · σ(1.702 x)`.
pub fn quick_gelu_of(xs: &Tensor) -> Result<Tensor> {
    if on_cpu_f32(xs) {
        map(xs, "quick-gelu-f32", quick_gelu, quick_gelu_derivative)
    } else {
        xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?
    }
}

/// Values in [-1, 1) from a small linear congruential sequence, for the kernels' tests:
/// reproducible, no zeros in patterns that could hide a missed term.
#[cfg(test)]
pub(crate) fn sequence_values(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// The largest absolute difference between two tensors of one shape, for tests comparing a
/// kernel with candle's own operations; NaN when either holds a NaN at any place (so that
/// `difference < bound` fails for a value never written), where a maximum would skip it.
#[cfg(test)]
pub(crate) fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.to_dtype(candle_core::DType::F32))
        .and_then(|d| d.to_vec1::<f32>())
        .expect("tensors of one shape")
        .into_iter()
        .fold(0f32, |worst, d| {
            if worst.is_nan() || d.is_nan() {
                f32::NAN
            } else {
                worst.max(d.abs())
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_strided_copy_puts_every_value_where_candles_does() {
        // Sizes that leave a task's last chunk short and rows wider than one task's share.
        let values = sequence_values(2 * 5 * 3 * 40_000, 7);
        let t = Tensor::from_vec(values, (2, 5, 3, 40_000), &Device::Cpu).unwrap();
        let views = [
            t.transpose(1, 2).unwrap(),
            t.narrow(2, 1, 2).unwrap().transpose(1, 2).unwrap(),
            t.narrow(3, 7, 33).unwrap(),
            t.transpose(2, 3).unwrap().narrow(2, 5, 9).unwrap(),
            t.narrow(0, 1, 1).unwrap().squeeze(0).unwrap().t().unwrap(),
        ];
        for view in views {
            assert!(!view.is_contiguous());
            let ours = contiguous(&view).unwrap();
            assert!(ours.is_contiguous());
            assert_eq!(ours.dims(), view.dims());
            let want: Vec<f32> = view.flatten_all().unwrap().to_vec1().unwrap();
            let got: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
            assert!(want == got, "a {:?} view copied out of order", view.dims());
        }
        let scalar = Tensor::new(3f32, &Device::Cpu).unwrap();
        assert_eq!(
            contiguous(&scalar).unwrap().to_scalar::<f32>().unwrap(),
            3.0
        );
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn the_vendor_is_the_one_the_kernel_names() {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let vendor = info
            .lines()
            .find_map(|line| line.strip_prefix("vendor_id"))
            .and_then(|rest| rest.split(':').nth(1))
            .map(str::trim)
            .expect("/proc/cpuinfo names a vendor_id");
        assert_eq!(is_amd(), vendor == "AuthenticAMD", "{vendor}");
    }

    #[test]
    fn exp_is_within_about_two_ulp_and_saturates() {
        let mut worst = 0f32;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let (got, want) = (exp(x), (x as f64).exp() as f32);
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(exp(f32::MIN) < 1e-37 && exp(f32::MIN) >= 0.0);
        assert!(exp(-1e30).is_finite() && exp(1e30).is_finite());
    }

    #[test]
    fn the_widest_simd_gives_the_baselines_bits() {
        let row: Vec<f32> = (0..1003)
            .map(|i| ((i * 7919) % 2001) as f32 / 50.0 - 20.0)
            .collect();
        let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let (mut plain, mut wide) = (row.clone(), row.clone());
        let plain_sum = exp_in_place(&mut plain);
        let wide_sum = widest_simd(
            #[inline(always)]
            || exp_in_place(&mut wide),
        );
        assert_eq!(plain_sum.to_bits(), wide_sum.to_bits());
        assert_eq!(bits(&plain), bits(&wide));
        // Function items, not pointers: each loop is compiled twice, with `f` inlined.
        #[inline(always)]
        fn mapped(row: &[f32], f: impl Fn(f32) -> f32) -> Vec<u32> {
            row.iter().map(|&v| f(v).to_bits()).collect()
        }
        assert_eq!(
            mapped(&row, gelu_tanh),
            widest_simd(
                #[inline(always)]
                || mapped(&row, gelu_tanh)
            )
        );
        assert_eq!(
            mapped(&row, silu),
            widest_simd(
                #[inline(always)]
                || mapped(&row, silu)
            )
        );
        assert_eq!(
            mapped(&row, quick_gelu),
            widest_simd(
                #[inline(always)]
                || mapped(&row, quick_gelu)
            )
        );
    }

    #[test]
    fn the_cpu_path_matches_candle() {
        let xs = Tensor::randn(0f32, 3.0, (3, 7, 50), &Device::Cpu).unwrap();
        let close = |a: Tensor, b: Tensor| {
            let d = max_difference(&a, &b);
            assert!(d < 2e-6, "{d}");
        };
        close(
            softmax_last_dim(&xs).unwrap(),
            candle_nn::ops::softmax_last_dim(&xs).unwrap(),
        );
        close(gelu_tanh_of(&xs).unwrap(), xs.gelu().unwrap());
        close(silu_of(&xs).unwrap(), candle_nn::ops::silu(&xs).unwrap());
        close(
            quick_gelu_of(&xs).unwrap(),
            (&xs * candle_nn::ops::sigmoid(&(&xs * 1.702).unwrap()).unwrap()).unwrap(),
        );
        // Strided input and a fully masked row.
        let t = xs.transpose(1, 2).unwrap();
        close(
            softmax_last_dim(&t).unwrap(),
            candle_nn::ops::softmax_last_dim(&t.contiguous().unwrap()).unwrap(),
        );
        let masked = Tensor::full(f32::MIN, (2, 4), &Device::Cpu).unwrap();
        let uniform = softmax_last_dim(&masked).unwrap().to_vec2::<f32>().unwrap();
        assert!(uniform.iter().flatten().all(|&w| (w - 0.25).abs() < 1e-6));
    }

    #[test]
    fn gradients_match_candles_own_operations() {
        let var = candle_core::Var::from_tensor(
            &Tensor::randn(0f32, 3.0, (4, 9, 33), &Device::Cpu).unwrap(),
        )
        .unwrap();
        let xs = var.as_tensor();
        let weights = Tensor::randn(0f32, 1.0, (4, 9, 33), &Device::Cpu).unwrap();
        // The gradient of sum(op(x) · w) for both implementations of the op.
        let gradient = |y: Tensor| {
            let loss = (y * &weights).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            grads.get(xs).expect("a gradient for x").clone()
        };
        let cases: [(Tensor, Tensor); 4] = [
            (
                softmax_last_dim(xs).unwrap(),
                // candle's fused softmax has no backward pass; its composed one has.
                candle_nn::ops::softmax(xs, candle_core::D::Minus1).unwrap(),
            ),
            (gelu_tanh_of(xs).unwrap(), xs.gelu().unwrap()),
            (silu_of(xs).unwrap(), candle_nn::ops::silu(xs).unwrap()),
            (
                quick_gelu_of(xs).unwrap(),
                (xs * candle_nn::ops::sigmoid(&(xs * 1.702).unwrap()).unwrap()).unwrap(),
            ),
        ];
        for (i, (ours, candles)) in cases.into_iter().enumerate() {
            let d = (gradient(ours) - gradient(candles))
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-5, "case {i}: {d}");
        }
    }
}
