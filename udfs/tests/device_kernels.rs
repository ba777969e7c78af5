//! The crate's own kernels on the device the tests run on (the CPU, or `$VITRINE_TEST_DEVICE`
//! with a build of feature `cuda`: `benches/gpu/fidelity.sh` runs this binary there), against
//! the same operations composed of candle's on the CPU in f32: the attention's fused softmax
//! and the layers' epilogues (bias and activation, SwiGLU).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{max_abs_diff, placement};
use vitrine_udfs::attention::softmax::{causal_mask, scaled_softmax, Seen};
use vitrine_udfs::attention::{attend, attend_composed};
use vitrine_udfs::dense::epilogue::{bias_then, swiglu};
use vitrine_udfs::dense::Activation;

/// `softmax(scores · scale + mask)` composed on the CPU in f32.
fn composed_softmax(scores: &Tensor, scale: f64, mask: Option<&Tensor>) -> Tensor {
    let scaled = (scores.to_dtype(DType::F32).unwrap() * scale).unwrap();
    let scaled = match mask {
        Some(mask) => scaled.broadcast_add(mask).unwrap(),
        None => scaled,
    };
    candle_nn::ops::softmax_last_dim(&scaled).unwrap()
}

/// Shapes as SmolVLM's prefill and decoding steps and its vision tower give them: keys beyond
/// one pass of the kernel's 256 threads and not a multiple of 32, padded sequences, a first
/// slot past the first queries' own (rows that see nothing and average every key).
#[test]
fn the_fused_softmax_equals_the_composed_one_on_the_test_device() {
    let device = placement().device;
    let first = [0u32, 5, 300];
    let cases = [
        // (heads, queries, keys, offset)
        (3, 7, 700, 693),
        (2, 1, 818, 817),
        (4, 33, 301, 0),
    ];
    for (heads, queries, keys, offset) in cases {
        let scores = Tensor::randn(0f32, 4.0, (3, heads, queries, keys), &Device::Cpu).unwrap();
        let mask = causal_mask(&first, queries, keys, offset, &Device::Cpu).unwrap();
        let first_slot = Tensor::new(&first, &device).unwrap();
        let seen = Seen::Causal {
            offset,
            first_slot: &first_slot,
        };
        for (dtype, tolerance) in [(DType::F32, 1e-6), (DType::BF16, 4e-3)] {
            let on_device = scores.to_dtype(dtype).unwrap().to_device(&device).unwrap();
            let want = composed_softmax(
                &on_device.to_device(&Device::Cpu).unwrap(),
                0.125,
                Some(&mask),
            );
            let got = scaled_softmax(&on_device, 0.125, seen).unwrap();
            assert_eq!(got.dtype(), dtype);
            let got = got.to_dtype(DType::F32).unwrap();
            let diff = max_abs_diff(&got, &want);
            println!("causal {heads}×{queries}×{keys} at {offset}, {dtype:?}: max |Δ| {diff:.2e}");
            assert!(diff < tolerance, "{dtype:?} {queries}×{keys}: {diff}");

            let want = composed_softmax(&on_device.to_device(&Device::Cpu).unwrap(), 0.125, None);
            let got = scaled_softmax(&on_device, 0.125, Seen::All)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            let diff = max_abs_diff(&got, &want);
            assert!(diff < tolerance, "{dtype:?} all {queries}×{keys}: {diff}");
        }
    }
}

/// Grouped-query attention composed on the test device, its softmax the fused one, against
/// the CPU's attention kernel with the equivalent mask.
#[test]
fn composed_attention_under_a_causal_rule_equals_the_cpu_kernel_under_its_mask() {
    let device = placement().device;
    let (b, heads, key_heads, keys, queries, size) = (3, 9, 3, 260, 5, 64);
    let first = [0u32, 17, 100];
    let offset = keys - queries;
    let mask = causal_mask(&first, queries, keys, offset, &Device::Cpu).unwrap();
    let q = Tensor::randn(0f32, 1.0, (b, heads, queries, size), &Device::Cpu).unwrap();
    let k = Tensor::randn(0f32, 1.0, (b, key_heads, keys, size), &Device::Cpu).unwrap();
    let v = Tensor::randn(0f32, 1.0, (b, key_heads, keys, size), &Device::Cpu).unwrap();
    let scale = (size as f64).powf(-0.5);
    let want = attend(&q, &k, &v, scale, Some(&mask)).unwrap().unwrap();
    let first_slot = Tensor::new(&first, &device).unwrap();
    let seen = Seen::Causal {
        offset,
        first_slot: &first_slot,
    };
    let there = |t: &Tensor| t.to_device(&device).unwrap();
    let got = attend_composed(&there(&q), &there(&k), &there(&v), scale, None, seen).unwrap();
    let diff = max_abs_diff(&got, &want);
    println!("attention on {device:?}: max |Δ| {diff:.2e}");
    assert!(diff < 1e-4, "{diff}");
}

/// `activation(x + bias)` composed on the CPU in f32.
fn composed_bias_then(x: &Tensor, bias: &Tensor, activation: Option<Activation>) -> Tensor {
    let x = x.to_dtype(DType::F32).unwrap();
    let sum = x
        .broadcast_add(&bias.to_dtype(DType::F32).unwrap())
        .unwrap();
    match activation {
        None => sum,
        Some(Activation::GeluTanh) => sum.gelu().unwrap(),
        Some(Activation::Gelu) => sum.gelu_erf().unwrap(),
        Some(Activation::QuickGelu) => {
            (&sum * candle_nn::ops::sigmoid(&(&sum * 1.702).unwrap()).unwrap()).unwrap()
        }
    }
}

/// The largest difference relative to `1 + |want|`.
fn relative_difference(got: &Tensor, want: &Tensor) -> f32 {
    let got = got
        .to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let scale = (want.abs().unwrap() + 1.0).unwrap();
    common::max_abs(&((got - want).unwrap() / scale).unwrap())
}

#[test]
fn a_bias_and_activation_in_one_pass_equal_them_composed_on_the_test_device() {
    let device = placement().device;
    let x = Tensor::randn(0f32, 2.0, (3, 37, 300), &Device::Cpu).unwrap();
    let bias = Tensor::randn(0f32, 1.0, 300, &Device::Cpu).unwrap();
    let activations = [
        None,
        Some(Activation::GeluTanh),
        Some(Activation::Gelu),
        Some(Activation::QuickGelu),
    ];
    for (dtype, tolerance) in [(DType::F32, 1e-5), (DType::BF16, 1e-2)] {
        let there = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&device).unwrap();
        let back = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
        for activation in activations {
            let got = bias_then(&there(&x), &there(&bias), activation).unwrap();
            assert_eq!((got.dims(), got.dtype()), (x.dims(), dtype));
            let want = composed_bias_then(&back(&there(&x)), &back(&there(&bias)), activation);
            let diff = relative_difference(&got, &want);
            println!("bias then {activation:?}, {dtype:?}: max relative |Δ| {diff:.2e}");
            assert!(diff < tolerance, "{activation:?} {dtype:?}: {diff}");
        }
        let got = swiglu(&there(&x)).unwrap();
        assert_eq!(got.dims(), &[3, 37, 150]);
        let input = back(&there(&x)).to_dtype(DType::F32).unwrap();
        let gate = input.narrow(2, 0, 150).unwrap();
        let want =
            (candle_nn::ops::silu(&gate).unwrap() * input.narrow(2, 150, 150).unwrap()).unwrap();
        let diff = relative_difference(&got, &want);
        println!("swiglu, {dtype:?}: max relative |Δ| {diff:.2e}");
        assert!(diff < tolerance, "swiglu {dtype:?}: {diff}");
    }
}
