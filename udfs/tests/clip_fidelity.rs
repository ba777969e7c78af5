//! CLIP against transformers: the fixtures in `tests/fixtures/clip` were written by
//! `make_clip_fixtures.py` (transformers 5.24, PyTorch 2.15, CPU, f32) from two random-weight
//! models of different shapes; these tests load the same folders and compare.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use vitrine_udfs::clip::{ClipEmbedder, CLIP_FILES};
use vitrine_udfs::image::decode::decode_rgb;
use vitrine_udfs::runtime::placement::Placement;
use vitrine_udfs::runtime::source::Hub;

const MODELS: &[&str] = &["tiny-a", "tiny-b"];

mod common;

use common::{fixture_tensors, max_abs, max_abs_diff, mean_abs_diff, placement, placement_in};

fn fixtures() -> PathBuf {
    common::fixtures().join("clip")
}

fn load(model: &str) -> ClipEmbedder {
    load_in(model, placement())
}

fn load_in(model: &str, placement: Placement) -> ClipEmbedder {
    let dir = fixtures().join(model);
    let source = Hub::new("/nonexistent", true)
        .locate(dir.to_str().unwrap(), CLIP_FILES)
        .unwrap();
    ClipEmbedder::load(&source, placement).unwrap()
}

fn expected(model: &str) -> HashMap<String, Tensor> {
    fixture_tensors(&format!("clip/expected-{model}.safetensors"))
}

fn manifest() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
        .unwrap()
}

fn texts() -> Vec<String> {
    manifest()["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn image_names() -> Vec<String> {
    manifest()["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// transformers' pixel values of the fixture photos, each flattened, in `image_names` order.
fn expected_pixels(want: &HashMap<String, Tensor>) -> Vec<Vec<f32>> {
    image_names()
        .iter()
        .map(|n| {
            want[&format!("pixel_values/{n}")]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn token_ids_are_transformers_ids_truncated_to_the_context() {
    for model in MODELS {
        let clip = load(model);
        let want = expected(model);
        let ids = want["input_ids"].to_vec2::<i64>().unwrap();
        let mask = want["attention_mask"].to_vec2::<i64>().unwrap();
        let texts = texts();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let got = clip.tokenize(&refs).unwrap();
        let mut truncated = 0;
        for (i, row) in got.iter().enumerate() {
            let hf: Vec<u32> = ids[i]
                .iter()
                .zip(&mask[i])
                .filter(|(_, m)| **m == 1)
                .map(|(id, _)| *id as u32)
                .collect();
            assert_eq!(row, &hf, "{model}: text {i} ({:?})", texts[i]);
            truncated += usize::from(hf.len() == ids[i].len() && texts[i].len() > 60);
        }
        assert!(
            truncated > 0,
            "{model}: the fixture must hold a text longer than the context"
        );
    }
}

#[test]
fn text_features_match_transformers_within_1e_4() {
    for model in MODELS {
        let clip = load(model);
        let texts = texts();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let ids = clip.tokenize(&refs).unwrap();
        let got = clip.text_features(&ids).unwrap();
        let want = &expected(model)["text_features"];
        let diff = max_abs_diff(&got, want);
        println!("{model}: text features max |Δ| {diff:.2e}");
        assert!(diff < 1e-4, "{model}: text features differ by {diff}");
        // The features are not trivially alike (random weights of a useful scale).
        let spread = max_abs(want);
        assert!(
            spread > 0.1,
            "{model}: features too small to compare ({spread})"
        );
    }
}

/// In bf16 (the GPU's precision; here on the test device, the CPU by default) the encoders take
/// the composed path with its fused softmax and epilogues: their text and image features stay
/// within bf16's rounding of transformers' f32 ones.
#[test]
fn bf16_features_stay_within_its_precision_of_transformers() {
    for model in MODELS {
        let clip = load_in(model, placement_in(DType::BF16));
        let texts = texts();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let ids = clip.tokenize(&refs).unwrap();
        let want = expected(model);
        let got = clip
            .text_features(&ids)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let diff = max_abs_diff(&got, &want["text_features"]) / max_abs(&want["text_features"]);
        println!("{model} bf16: text features max |Δ| {diff:.2e} of their largest");
        assert!(diff < 0.05, "{model}: bf16 text features differ by {diff}");

        let pixels = expected_pixels(&want);
        let got = clip
            .image_features(&pixels)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let want = &want["image_features"];
        let diff = max_abs_diff(&got, want) / max_abs(want);
        println!("{model} bf16: image features max |Δ| {diff:.2e} of their largest");
        assert!(diff < 0.05, "{model}: bf16 image features differ by {diff}");
    }
}

/// The embedding of each of `ids` alone, and its largest difference from the same text's
/// embedding when all of `ids` are one batch.
fn each_alone(clip: &ClipEmbedder, ids: &[Vec<u32>]) -> Vec<(Vec<f32>, f32)> {
    let batch = clip.embed_texts(ids).unwrap();
    ids.iter()
        .zip(&batch)
        .map(|(sequence, in_batch)| {
            let alone = clip.embed_texts(std::slice::from_ref(sequence)).unwrap();
            let diff = alone[0]
                .iter()
                .zip(in_batch)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            (alone.into_iter().next().unwrap(), diff)
        })
        .collect()
}

#[test]
fn a_batch_gives_the_one_by_one_results() {
    for model in MODELS {
        let clip = load(model);
        let texts = texts();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let ids = clip.tokenize(&refs).unwrap();
        for (i, (alone, diff)) in each_alone(&clip, &ids).into_iter().enumerate() {
            assert!(
                diff < 1e-6,
                "{model}: text {i} alone differs from its batch by {diff}"
            );
            let norm: f32 = alone.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{model}: norm {norm}");
        }
        let pixels: Vec<Vec<f32>> = image_names()
            .iter()
            .map(|n| {
                clip.pixel_values(
                    &decode_rgb(&std::fs::read(fixtures().join("images").join(n)).unwrap())
                        .unwrap(),
                )
            })
            .collect();
        let batch = clip.embed_images(&pixels).unwrap();
        for (i, p) in pixels.iter().enumerate() {
            let alone = clip.embed_images(std::slice::from_ref(p)).unwrap();
            let diff = alone[0]
                .iter()
                .zip(&batch[i])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-6,
                "{model}: image {i} alone differs from its batch by {diff}"
            );
        }
    }
}

/// Texts that begin alike (a brand, then a gender…) or repeat share those tokens' rows in a
/// batch; each still gets the embedding it has alone.
#[test]
fn texts_that_begin_alike_embed_as_each_one_alone() {
    let texts = [
        "Nike Men Black Shirt",
        "Nike Men Black Shoes",
        "Nike Men Black Shirt",
        "Nike Women Blue Dress",
        "Nike",
        "Puma Men Black Shirt",
        "Nike Men Black Shirt with a very long description beyond the context",
    ];
    for model in MODELS {
        let clip = load(model);
        let ids = clip.tokenize(&texts).unwrap();
        let packing = vitrine_udfs::attention::Packing::sharing_prefixes(&ids);
        assert!(
            packing.rows() * 3 < packing.tokens() * 2,
            "{model}: {} of {} tokens computed",
            packing.rows(),
            packing.tokens()
        );
        for (i, (_, diff)) in each_alone(&clip, &ids).into_iter().enumerate() {
            assert!(
                diff < 1e-5,
                "{model}: {:?} alone differs from its batch by {diff}",
                texts[i]
            );
        }
    }
}

/// Pixel values: PNGs decode to the same bytes in every decoder, and resizing follows Pillow's
/// integer arithmetic, so they match to float rounding. JPEG decoders may differ by a level
/// or two per pixel (IDCT and chroma upsampling are not standardised), which after
/// normalisation by std ≈ 0.27 is ≈ 0.015 per level. Measured against libjpeg-turbo through
/// Pillow: at most 5 levels (0.071), 0.006 on average.
#[test]
fn pixel_values_match_transformers() {
    for model in MODELS {
        let clip = load(model);
        let want = expected(model);
        for name in image_names() {
            let bytes = std::fs::read(fixtures().join("images").join(&name)).unwrap();
            let got = clip.pixel_values(&decode_rgb(&bytes).unwrap());
            let hf = &want[&format!("pixel_values/{name}")];
            let got = Tensor::from_vec(got, hf.dims(), &Device::Cpu).unwrap();
            let diff = max_abs_diff(&got, hf);
            let mean = mean_abs_diff(&got, hf);
            println!("{model} {name}: max |Δ| {diff:.2e}, mean |Δ| {mean:.2e}");
            let (bound, mean_bound) = if name.ends_with(".png") {
                (1e-6, 1e-7)
            } else {
                (0.08, 0.01)
            };
            assert!(
                diff <= bound,
                "{model} {name}: pixel values differ by {diff} (bound {bound})"
            );
            assert!(
                mean <= mean_bound,
                "{model} {name}: mean difference {mean} (bound {mean_bound})"
            );
        }
    }
}

#[test]
fn image_features_match_transformers_within_1e_4() {
    for model in MODELS {
        let clip = load(model);
        let want = expected(model);
        let pixels = expected_pixels(&want);
        let got = clip.image_features(&pixels).unwrap();
        let diff = max_abs_diff(&got, &want["image_features"]);
        println!("{model}: image features max |Δ| {diff:.2e}");
        assert!(diff < 1e-4, "{model}: image features differ by {diff}");
    }
}

/// The Hugging Face cache layout (`models--org--name/snapshots/<commit>`, `refs/main`) loads the
/// same model as its folder, with the commit as its revision.
#[test]
fn a_model_in_the_hugging_face_cache_loads_by_hub_id() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--acme--tiny-clip");
    let snapshot = repo.join("snapshots").join("5eed0123");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "5eed0123").unwrap();
    for entry in std::fs::read_dir(fixtures().join("tiny-a")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), snapshot.join(entry.file_name())).unwrap();
    }
    let source = Hub::new(cache.path(), true)
        .locate("acme/tiny-clip", CLIP_FILES)
        .unwrap();
    assert_eq!(source.revision, "5eed0123");
    let from_cache = ClipEmbedder::load(&source, placement()).unwrap();
    let from_folder = load("tiny-a");
    let ids = from_folder.tokenize(&["red dress"]).unwrap();
    assert_eq!(
        from_cache.embed_texts(&ids).unwrap(),
        from_folder.embed_texts(&ids).unwrap()
    );
}
