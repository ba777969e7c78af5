//! CLIP training against PyTorch: `tests/fixtures/clip/make_training_fixtures.py` (transformers
//! 5.24, PyTorch 2.15, CPU, f32) put one batch through both random-weight fixture models and
//! saved the contrastive loss, every parameter's gradient, and the weights after three
//! `torch.optim.AdamW` steps, and the loss and gradients with a shopper's query beside each text;
//! these tests train the same folders with candle and Vitrine's AdamW and compare.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use vitrine_udfs::clip::config::ClipConfig;
use vitrine_udfs::clip::train::{ClipTraining, ImageBatch, QueryBatch};

mod common;

use common::{fixture_tensors, placement};

const MODELS: &[&str] = &["tiny-a", "tiny-b"];

struct Batch {
    input_ids: Tensor,
    pool_at: Vec<u32>,
    pixels: Tensor,
    expected: HashMap<String, Tensor>,
}

/// A fixture's token ids as u32, and where each row is pooled.
fn token_ids(training: &ClipTraining, ids: &Tensor) -> (Tensor, Vec<u32>) {
    let ids = ids.to_dtype(DType::U32).unwrap();
    let pool_at = ids
        .to_vec2::<u32>()
        .unwrap()
        .iter()
        .map(|row| training.config().text_config.pool_position(row))
        .collect();
    (ids, pool_at)
}

fn training(model: &str) -> (ClipTraining, Batch) {
    let dir = common::fixtures().join("clip").join(model);
    let config: ClipConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let device = placement().device;
    let training =
        ClipTraining::from_weights(config, &dir.join("model.safetensors"), &device).unwrap();
    let expected = fixture_tensors(&format!("clip/expected-train-{model}.safetensors"));
    let (ids, pool_at) = token_ids(&training, &expected["input_ids"]);
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
        common::assert_gradients_match(model, &loss, &training.named_variables(), &batch.expected);
    }
}

#[test]
fn the_loss_with_queries_beside_the_texts_and_its_gradients_equal_pytorchs() {
    for model in MODELS {
        let (training, batch) = training(model);
        let expected = fixture_tensors(&format!("clip/expected-train-pairs-{model}.safetensors"));
        let (ids, pool_at) = token_ids(&training, &expected["query_ids"]);
        let queries = QueryBatch {
            rows: (0..pool_at.len() as u32).collect(),
            input_ids: ids.to_device(&placement().device).unwrap(),
            pool_at,
        };
        let loss = training
            .paired_loss(&batch.input_ids, &batch.pool_at, &batch.pixels, &queries)
            .unwrap();
        let got = loss.to_scalar::<f32>().unwrap();
        let want = expected["loss"].to_vec1::<f32>().unwrap()[0];
        assert!((got - want).abs() < 1e-5, "{model}: loss {got} vs {want}");
        let plain = batch.expected["loss"].to_vec1::<f32>().unwrap()[0];
        assert!((got - plain).abs() > 1e-2, "{model}: the queries count");
        common::assert_gradients_match(model, &loss, &training.named_variables(), &expected);
    }
}

/// A batch where only some texts have a photo and only some a query: the loss is the mean of
/// the image–text loss of the rows with photos, as a batch of those alone gives it, and the
/// query–text loss of the rows with queries, as a batch of queries alone gives it.
#[test]
fn texts_without_a_photo_are_learnt_from_their_queries_alone() {
    let device = placement().device;
    let select = |t: &Tensor, rows: &[u32]| {
        t.index_select(&Tensor::new(rows, &device).unwrap(), 0)
            .unwrap()
    };
    for model in MODELS {
        let (training, batch) = training(model);
        let expected = fixture_tensors(&format!("clip/expected-train-pairs-{model}.safetensors"));
        let (query_ids, query_pool_at) = token_ids(&training, &expected["query_ids"]);
        let query_ids = query_ids.to_device(&device).unwrap();
        let rows = batch.pool_at.len() as u32;
        assert!(rows >= 4, "{model}: the fixture batch has {rows} rows");
        let pictured: Vec<u32> = (0..rows).filter(|r| r % 2 == 0).collect();
        let asked: Vec<u32> = (0..rows).filter(|r| r % 3 != 0).collect();
        let images = ImageBatch {
            pixels: select(&batch.pixels, &pictured),
            rows: pictured.clone(),
        };
        let queries = QueryBatch {
            input_ids: select(&query_ids, &asked),
            pool_at: asked.iter().map(|r| query_pool_at[*r as usize]).collect(),
            rows: asked.clone(),
        };
        let scalar = |t: Tensor| t.to_scalar::<f32>().unwrap();
        let mixed = scalar(
            training
                .mixed_loss(
                    &batch.input_ids,
                    &batch.pool_at,
                    Some(&images),
                    Some(&queries),
                )
                .unwrap(),
        );
        let pool = |rows: &[u32]| -> Vec<u32> {
            rows.iter().map(|r| batch.pool_at[*r as usize]).collect()
        };
        let image_part = scalar(
            training
                .contrastive_loss(
                    &select(&batch.input_ids, &pictured),
                    &pool(&pictured),
                    &images.pixels,
                )
                .unwrap(),
        );
        let renumbered = QueryBatch {
            rows: (0..asked.len() as u32).collect(),
            ..queries
        };
        let query_part = scalar(
            training
                .mixed_loss(
                    &select(&batch.input_ids, &asked),
                    &pool(&asked),
                    None,
                    Some(&renumbered),
                )
                .unwrap(),
        );
        let want = (image_part + query_part) / 2.0;
        assert!(
            (mixed - want).abs() < 1e-5,
            "{model}: {mixed} vs ({image_part} + {query_part}) / 2"
        );
        assert!(
            training
                .mixed_loss(&batch.input_ids, &batch.pool_at, None, None)
                .is_err(),
            "{model}: a batch with neither photos nor queries"
        );
    }
}

#[test]
fn adamw_steps_give_pytorchs_weights() {
    for model in MODELS {
        let (training, batch) = training(model);
        let mut optimizer = common::pytorch_adamw(training.named_variables());
        for _ in 0..3 {
            optimizer.backward_step(&loss(&training, &batch)).unwrap();
        }
        common::assert_adamw_matches(model, &training.named_variables(), &batch.expected);
    }
}
