//! Helpers the fidelity tests share: where the fixtures are, where the models run, and how far
//! two tensors are apart.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use vitrine_udfs::runtime::placement::Placement;

/// The tensors of a safetensors file under `tests/fixtures`, on the CPU.
pub fn fixture_tensors(relative: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(relative), &Device::Cpu).unwrap()
}

/// Where the whole-model tests run, in f32: the CPU, or `$VITRINE_TEST_DEVICE` (`cuda`, with a
/// build of feature `cuda`) to check the GPU path against the same fixtures.
pub fn placement() -> Placement {
    match std::env::var("VITRINE_TEST_DEVICE") {
        Ok(device) => Placement::parse(&device, "f32").expect("VITRINE_TEST_DEVICE"),
        Err(_) => Placement::cpu(),
    }
}

/// The repository's `tests/fixtures` folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// The largest absolute value of `t`.
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `a - b` on the CPU (a model under test may have run on the GPU).
fn difference(a: &Tensor, b: &Tensor) -> Tensor {
    assert_eq!(a.dims(), b.dims());
    let cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
    (cpu(a) - cpu(b)).unwrap()
}

/// The largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&difference(a, b))
}

/// The mean absolute difference between two tensors of one shape.
pub fn mean_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    difference(a, b)
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
