//! SmolVLM training against PyTorch: `tests/fixtures/smolvlm/make_training_fixtures.py`
//! (transformers 5.24, PyTorch 2.15, CPU, f32) put one batch of two (image, prompt, answer)
//! examples through the tiny random-weight Idefics3 and saved the causal-LM loss on the answers,
//! every parameter's gradient, and the weights after three `torch.optim.AdamW` steps.

use candle_core::{DType, Tensor};
use vitrine_udfs::runtime::source::Hub;
use vitrine_udfs::smolvlm::model::{AnswerExample, SMOLVLM_FILES};
use vitrine_udfs::smolvlm::processor::ProcessedImage;
use vitrine_udfs::smolvlm::train::SmolVlmTraining;
use vitrine_udfs::train::Trainable;

mod common;

use common::{fixture_tensors, placement};

fn training() -> (
    SmolVlmTraining,
    Vec<AnswerExample>,
    std::collections::HashMap<String, Tensor>,
) {
    let dir = common::fixtures().join("smolvlm").join("tiny");
    let source = Hub::new("/nonexistent", true)
        .locate(dir.to_str().unwrap(), SMOLVLM_FILES)
        .unwrap();
    let training = SmolVlmTraining::from_weights(&source, &placement(), None, 0).unwrap();
    let expected = fixture_tensors("smolvlm/expected-train.safetensors");
    let examples = (0..2)
        .map(|i| {
            let ids: Vec<u32> = expected[&format!("input_ids/{i}")]
                .to_dtype(DType::U32)
                .unwrap()
                .to_vec1()
                .unwrap();
            let labels: Vec<i64> = expected[&format!("labels/{i}")].to_vec1().unwrap();
            let pixels = &expected[&format!("pixel_values/{i}")];
            AnswerExample {
                ids,
                answer_from: labels.iter().position(|&l| l != -100).unwrap(),
                image: ProcessedImage {
                    frames: vec![pixels.flatten_all().unwrap().to_vec1().unwrap()],
                    rows: 0,
                    cols: 0,
                },
            }
        })
        .collect();
    (training, examples, expected)
}

fn loss(training: &SmolVlmTraining, examples: &[AnswerExample]) -> Tensor {
    let batch: Vec<&AnswerExample> = examples.iter().collect();
    training.loss(&batch).unwrap()
}

#[test]
fn the_answer_loss_and_every_gradient_equal_pytorchs() {
    let (training, examples, expected) = training();
    let loss = loss(&training, &examples);
    let got = loss.to_scalar::<f32>().unwrap();
    let want = expected["loss"].to_vec1::<f32>().unwrap()[0];
    assert!((got - want).abs() < 1e-5, "loss {got} vs {want}");
    common::assert_gradients_match("tiny", &loss, &training.named_variables(), &expected);
}

#[test]
fn adamw_steps_give_pytorchs_weights() {
    let (training, examples, expected) = training();
    let mut optimizer = common::pytorch_adamw(training.named_variables());
    for _ in 0..3 {
        optimizer
            .backward_step(&loss(&training, &examples))
            .unwrap();
    }
    common::assert_adamw_matches("tiny", &training.named_variables(), &expected);
}
