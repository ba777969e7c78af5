//! Helpers the fidelity tests share: where the fixtures are, where the models run, and how far
//! two tensors are apart.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use vitrine_udfs::runtime::placement::Placement;
use vitrine_udfs::train::optimizer::{AdamW, AdamWSettings};

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

/// [`placement`]'s device in `dtype`: the half-precision path a GPU takes, also on the CPU
/// (where the functions offer f32 only, the layers run in any precision).
pub fn placement_in(dtype: DType) -> Placement {
    Placement {
        dtype,
        ..placement()
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

/// Asserts that the gradient of `loss` for every variable equals PyTorch's `grad.<name>` in
/// `expected` to 1e-4 relative to the gradient's scale, and that both have the same parameters.
pub fn assert_gradients_match(
    model: &str,
    loss: &Tensor,
    variables: &BTreeMap<String, Var>,
    expected: &HashMap<String, Tensor>,
) {
    let gradients = loss.backward().unwrap();
    let parameters = expected.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(parameters, variables.len(), "{model}: the same parameters");
    let mut worst = (0f32, String::new());
    for (name, variable) in variables {
        let want = &expected[&format!("grad.{name}")];
        let got = gradients
            .get(variable.as_tensor())
            .unwrap_or_else(|| panic!("{model}: no gradient for {name}"));
        let diff = max_abs_diff(got, want) / max_abs(want).max(1.0);
        if diff > worst.0 {
            worst = (diff, name.clone());
        }
    }
    assert!(
        worst.0 < 1e-4,
        "{model}: gradient of {} off by {}",
        worst.1,
        worst.0
    );
}

/// `torch.optim.AdamW(lr=1e-3, weight_decay=0.01)` over `variables`.
pub fn pytorch_adamw(variables: BTreeMap<String, Var>) -> AdamW {
    AdamW::new(
        variables,
        AdamWSettings {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        },
    )
    .unwrap()
}

/// Asserts that `variables` equal PyTorch's `adamw.<name>` in `expected` (after three steps) to
/// 1e-5.
///
/// Adam moves every weight by about the learning rate whatever its gradient's size, so a
/// gradient that is rounding noise (the keys' bias, which softmax ignores, and single elements
/// near zero) moves by a step of either sign. Weights are compared where the gradient is above
/// that noise; elsewhere they may differ by no more than two opposite trajectories of three
/// steps (an early Adam step is at most a few learning rates).
pub fn assert_adamw_matches(
    model: &str,
    variables: &BTreeMap<String, Var>,
    expected: &HashMap<String, Tensor>,
) {
    let mut worst = (0f32, String::new());
    let (mut excluded, mut elements) = (0, 0);
    for (name, variable) in variables {
        let gradient = &expected[&format!("grad.{name}")];
        let after = &expected[&format!("adamw.{name}")];
        let cpu = variable.as_tensor().to_device(&Device::Cpu).unwrap();
        let difference = (cpu - after).unwrap().abs().unwrap();
        if name.ends_with("k_proj.bias") {
            // Zero in exact arithmetic: noise in both, possibly exactly 0 in one.
            assert!(max_abs(gradient) < 1e-6, "{model}: {name}");
            continue;
        }
        // Compared: gradients above the noise, and exact zeros (weight decay alone).
        let magnitude = gradient.abs().unwrap();
        let signal = (magnitude.ge(1e-6).unwrap().to_dtype(DType::F32).unwrap()
            + magnitude.eq(0.0).unwrap().to_dtype(DType::F32).unwrap())
        .unwrap();
        let diff = max_abs(&(&difference * &signal).unwrap());
        let above_noise = signal.sum_all().unwrap().to_scalar::<f32>().unwrap() as usize;
        excluded += signal.elem_count() - above_noise;
        elements += signal.elem_count();
        assert!(
            max_abs(&difference) <= 2.0 * 3.0 * 5.0 * 1e-3,
            "{model}: {name} moved beyond three steps"
        );
        if diff > worst.0 {
            worst = (diff, name.clone());
        }
    }
    assert!(
        excluded * 100 < elements,
        "{model}: {excluded} of {elements} weights have noise gradients"
    );
    assert!(
        worst.0 < 1e-5,
        "{model}: {} off by {} after three steps",
        worst.1,
        worst.0
    );
}
