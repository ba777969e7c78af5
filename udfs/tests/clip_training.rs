//! CLIP training against PyTorch: `tests/fixtures/clip/make_training_fixtures.py` (transformers
//! 5.24, PyTorch 2.15, CPU, f32) put one batch through both random-weight fixture models and
//! saved the contrastive loss, every parameter's gradient, and the weights after three
//! `torch.optim.AdamW` steps; these tests train the same folders with candle and Vitrine's
//! AdamW and compare.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use vitrine_udfs::clip::config::ClipConfig;
use vitrine_udfs::clip::train::ClipTraining;
use vitrine_udfs::train::optimizer::{AdamW, AdamWSettings};

mod common;

use common::{fixture_tensors, max_abs, max_abs_diff, placement};

const MODELS: &[&str] = &["tiny-a", "tiny-b"];

struct Batch {
    input_ids: Tensor,
    pool_at: Vec<u32>,
    pixels: Tensor,
    expected: HashMap<String, Tensor>,
}

fn training(model: &str) -> (ClipTraining, Batch) {
    let dir = common::fixtures().join("clip").join(model);
    let config: ClipConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let device = placement().device;
    let training =
        ClipTraining::from_weights(config, &dir.join("model.safetensors"), &device).unwrap();
    let expected = fixture_tensors(&format!("clip/expected-train-{model}.safetensors"));
    let ids = expected["input_ids"].to_dtype(DType::U32).unwrap();
    let pool_at = ids
        .to_vec2::<u32>()
        .unwrap()
        .iter()
        .map(|row| training.config().text_config.pool_position(row))
        .collect();
    let batch = Batch {
        input_ids: ids.to_device(&device).unwrap(),
        pool_at,
        pixels: expected["pixel_values"].to_device(&device).unwrap(),
        expected,
    };
    (training, batch)
}

fn loss(training: &ClipTraining, batch: &Batch) -> Tensor {
    training
        .contrastive_loss(&batch.input_ids, &batch.pool_at, &batch.pixels)
        .unwrap()
}

#[test]
fn the_loss_and_every_gradient_equal_pytorchs() {
    for model in MODELS {
        let (training, batch) = training(model);
        let loss = loss(&training, &batch);
        let got = loss.to_scalar::<f32>().unwrap();
        let want = batch.expected["loss"].to_vec1::<f32>().unwrap()[0];
        assert!((got - want).abs() < 1e-5, "{model}: loss {got} vs {want}");
        let gradients = loss.backward().unwrap();
        let variables = training.named_variables();
        let expected: Vec<&String> = batch
            .expected
            .keys()
            .filter(|k| k.starts_with("grad."))
            .collect();
        assert_eq!(
            expected.len(),
            variables.len(),
            "{model}: the same parameters"
        );
        let mut worst = (0f32, String::new());
        for (name, variable) in &variables {
            let want = &batch.expected[&format!("grad.{name}")];
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
}

#[test]
fn adamw_steps_give_pytorchs_weights() {
    for model in MODELS {
        let (training, batch) = training(model);
        let mut optimizer = AdamW::new(
            training.named_variables(),
            AdamWSettings {
                learning_rate: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
            },
        )
        .unwrap();
        for _ in 0..3 {
            optimizer.backward_step(&loss(&training, &batch)).unwrap();
        }
        // Adam moves every weight by about the learning rate whatever its gradient's size, so a
        // gradient that is rounding noise (the keys' bias, which softmax ignores, and single
        // elements near zero) moves by a step of either sign. Weights are compared where the
        // gradient is above that noise; elsewhere they may differ by no more than two opposite
        // trajectories of three steps (an early Adam step is at most a few learning rates).
        let mut worst = (0f32, String::new());
        let (mut excluded, mut elements) = (0, 0);
        for (name, variable) in training.named_variables() {
            let gradient = &batch.expected[&format!("grad.{name}")];
            let after = &batch.expected[&format!("adamw.{name}")];
            let difference = (variable.as_tensor() - after).unwrap().abs().unwrap();
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
                worst = (diff, name);
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
}
