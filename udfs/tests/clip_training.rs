//! CLIP training against PyTorch: `tests/fixtures/clip/make_training_fixtures.py` (transformers
//! 5.24, PyTorch 2.15, CPU, f32) put one batch through both random-weight fixture models and
//! saved the contrastive loss, every parameter's gradient, and the weights after three
//! `torch.optim.AdamW` steps, and the loss and gradients with a shopper's query beside each text;
//! these tests train the same folders with candle and Vitrine's AdamW and compare.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use vitrine_udfs::clip::config::ClipConfig;
use vitrine_udfs::clip::train::{
    soft_symmetric_cross_entropy, ClipTraining, ImageBatch, QueryBatch,
};

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
            matches: None,
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
            matches: None,
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

/// Soft targets, worked by hand: row 0's target is split between columns 0 and 1, row 1 has no
/// match and is left out of the rows' mean; column 2 has none and is left out of the columns'.
#[test]
fn soft_targets_spread_over_every_match_and_skip_rows_without_one() {
    let device = placement().device;
    let logits = [[2.0f64, 0.5, -1.0], [0.25, 1.5, 3.0]];
    let matches = [[1.0f64, 1.0, 0.0], [0.0, 0.0, 0.0]];
    let log_softmax = |xs: &[f64]| -> Vec<f64> {
        let total = xs.iter().map(|x| x.exp()).sum::<f64>().ln();
        xs.iter().map(|x| x - total).collect()
    };
    let by_row = -(0.5 * log_softmax(&logits[0])[0] + 0.5 * log_softmax(&logits[0])[1]);
    let column = |j: usize| log_softmax(&[logits[0][j], logits[1][j]])[0];
    let by_column = -(column(0) + column(1)) / 2.0;
    let want = (by_row + by_column) / 2.0;
    let tensor =
        |rows: [[f64; 3]; 2]| Tensor::new(&rows.map(|r| r.map(|x| x as f32)), &device).unwrap();
    let got = soft_symmetric_cross_entropy(&tensor(logits), &tensor(matches))
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
}

/// With each query matching only its own row's text, the soft query–text loss is the hard one.
#[test]
fn queries_matching_their_own_rows_alone_give_clips_loss() {
    let device = placement().device;
    for model in MODELS {
        let (training, batch) = training(model);
        let expected = fixture_tensors(&format!("clip/expected-train-pairs-{model}.safetensors"));
        let (query_ids, query_pool_at) = token_ids(&training, &expected["query_ids"]);
        let rows = batch.pool_at.len();
        let queries = |matches| QueryBatch {
            input_ids: query_ids.to_device(&device).unwrap(),
            pool_at: query_pool_at.clone(),
            rows: (0..rows as u32).collect(),
            matches,
        };
        let loss = |matches| {
            training
                .paired_loss(
                    &batch.input_ids,
                    &batch.pool_at,
                    &batch.pixels,
                    &queries(matches),
                )
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let eye = Tensor::eye(rows, DType::F32, &device).unwrap();
        let (hard, soft) = (loss(None), loss(Some(eye)));
        assert!((soft - hard).abs() < 1e-5, "{model}: {soft} vs {hard}");
        // Rows 0 and 1 answering each other's queries: other targets, another loss.
        let mut pairs = vec![0f32; rows * rows];
        for i in 0..rows {
            pairs[i * rows + i] = 1.0;
        }
        pairs[1] = 1.0;
        pairs[rows] = 1.0;
        let shared = loss(Some(
            Tensor::from_vec(pairs, (rows, rows), &device).unwrap(),
        ));
        assert!(
            (shared - hard).abs() > 1e-4,
            "{model}: shared matches count"
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
