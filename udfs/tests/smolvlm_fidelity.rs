//! SmolVLM against transformers 5.24, on the fixtures in `tests/fixtures/smolvlm`: the image
//! processor (`make_processor_fixtures.py`: tiled, one-tile and no-split configurations of the
//! CLIP fixture images), prompt expansion, image features, logits and greedy generation of the
//! tiny models (`make_model_fixtures.py`), alone and in mixed batches (`make_batch_fixtures.py`).

use candle_core::{Device, Tensor};
use vitrine_udfs::image::decode::decode_rgb;
use vitrine_udfs::smolvlm::processor::{Idefics3ImageProcessor, Idefics3ProcessorConfig};

mod common;

use common::{fixture_tensors, fixtures, max_abs, max_abs_diff, mean_abs_diff, placement};

/// Token ids as transformers saves them (i64, any shape) as `u32`s, in order.
fn token_ids(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|i| i as u32)
        .collect()
}

/// Frames, tile grid and pixel values match transformers: PNG inputs exactly (measured 0.0),
/// JPEG inputs within the decoders' difference (zune-jpeg vs libjpeg-turbo, as for CLIP), which
/// the Lanczos upscaling to the 96-px edge spreads: measured at most 0.086 (11 grey levels at
/// std 0.5), 0.006 on average.
#[test]
fn frames_grid_and_pixels_match_transformers() {
    let expected = fixture_tensors("smolvlm/expected-processor.safetensors");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("smolvlm/expected-processor.json")).unwrap(),
    )
    .unwrap();
    let mut compared = 0;
    for name in ["tiled", "one-tile", "no-split"] {
        let config: Idefics3ProcessorConfig = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("smolvlm/processor-{name}.json")))
                .unwrap(),
        )
        .unwrap();
        let processor = Idefics3ImageProcessor::new(config).unwrap();
        for entry in std::fs::read_dir(fixtures().join("clip/images")).unwrap() {
            let path = entry.unwrap().path();
            let image_name = path.file_name().unwrap().to_string_lossy().into_owned();
            let key = format!("{name}/{image_name}");
            let want = &expected[&key];
            let got = processor.process(&decode_rgb(&std::fs::read(&path).unwrap()).unwrap());
            let grid = &manifest["grids"][&key];
            assert_eq!(
                (got.rows as u64, got.cols as u64),
                (grid[0].as_u64().unwrap(), grid[1].as_u64().unwrap()),
                "{key}: tile grid"
            );
            assert_eq!(got.frames.len(), want.dim(0).unwrap(), "{key}: frames");
            let flat: Vec<f32> = got.frames.concat();
            let got = Tensor::from_vec(flat, want.dims(), &Device::Cpu).unwrap();
            let max = max_abs_diff(&got, want);
            let mean = mean_abs_diff(&got, want);
            println!("{key}: max |Δ| {max:.2e}, mean |Δ| {mean:.2e}");
            let (bound, mean_bound) = if image_name.ends_with(".png") {
                (1e-6, 1e-7)
            } else {
                (0.2, 0.02)
            };
            assert!(
                max <= bound && mean <= mean_bound,
                "{key}: max {max}, mean {mean}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 18);
}

#[test]
fn a_smaller_longest_edge_gives_fewer_tiles() {
    let config = Idefics3ProcessorConfig {
        size: serde_json::from_str(r#"{"longest_edge": 96}"#).unwrap(),
        max_image_size: serde_json::from_str(r#"{"longest_edge": 32}"#).unwrap(),
        ..Default::default()
    };
    let processor = Idefics3ImageProcessor::new(config).unwrap();
    let image = image::RgbImage::from_pixel(160, 120, image::Rgb([10, 20, 30]));
    let full = processor.process(&image);
    assert_eq!((full.rows, full.cols, full.frames.len()), (3, 3, 10));
    let small = processor.with_longest_edge(32).process(&image);
    assert_eq!((small.rows, small.cols, small.frames.len()), (0, 0, 1));
}

#[test]
fn image_tokens_expand_as_transformers_expands_them() {
    use vitrine_udfs::smolvlm::prompt::ImageTokens;
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("smolvlm/expected-processor.json")).unwrap(),
    )
    .unwrap();
    let tokens = ImageTokens::smolvlm(3);
    let expansions = manifest["expansions"].as_object().unwrap();
    assert_eq!(expansions.len(), 4);
    for (grid, want) in expansions {
        let (rows, cols) = grid.split_once('x').unwrap();
        let got = tokens.expand(rows.parse().unwrap(), cols.parse().unwrap());
        assert_eq!(got, want.as_str().unwrap(), "grid {grid}");
    }
    let prompt = vitrine_udfs::smolvlm::prompt::chat_prompt("Describe the garment.");
    assert_eq!(
        prompt,
        "<|im_start|>User:<image>Describe the garment.<end_of_utterance>\nAssistant:"
    );
    let expanded = tokens.expand_prompt(&prompt, &[(1, 2)]).unwrap();
    assert_eq!(
        expanded,
        format!(
            "<|im_start|>User:{}Describe the garment.<end_of_utterance>\nAssistant:",
            expansions["1x2"].as_str().unwrap()
        )
    );
}

/// The tiny fixture model's parts, built from its folder.
struct TinyParts {
    config: serde_json::Value,
    weights: candle_nn::VarBuilder<'static>,
    tower: vitrine_udfs::smolvlm::vision::SiglipVision,
    connector: vitrine_udfs::smolvlm::vision::Connector,
}

/// The parts on the CPU in f32.
fn tiny_parts() -> TinyParts {
    tiny_parts_in(&Device::Cpu, candle_core::DType::F32)
}

/// [`tiny_parts`] on `device` in `dtype`.
fn tiny_parts_in(device: &Device, dtype: candle_core::DType) -> TinyParts {
    use vitrine_udfs::smolvlm::vision::{Connector, SiglipConfig, SiglipVision};

    let dir = fixtures().join("smolvlm/tiny");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vision_config: SiglipConfig =
        serde_json::from_value(config["vision_config"].clone()).unwrap();
    let scale = config["scale_factor"].as_u64().unwrap() as usize;
    let text_width = config["text_config"]["hidden_size"].as_u64().unwrap() as usize;
    // SAFETY: read-only memory map of a fixture no one writes during the tests.
    let weights = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            dtype,
            device,
        )
        .unwrap()
    };
    let tower = SiglipVision::new(weights.pp("model.vision_model"), &vision_config).unwrap();
    let connector = Connector::new(
        weights.pp("model.connector"),
        vision_config.hidden_size,
        text_width,
        scale,
    )
    .unwrap();
    TinyParts {
        config,
        weights,
        tower,
        connector,
    }
}

/// The SigLIP tower and the pixel-shuffle connector of a tiny random-weight Idefics3 give
/// transformers' `get_image_features` for the processor fixture's frames within 1e-4.
#[test]
fn image_features_match_transformers_within_1e_4() {
    let TinyParts {
        tower, connector, ..
    } = tiny_parts();
    let frames = fixture_tensors("smolvlm/expected-processor.safetensors");
    let expected = fixture_tensors("smolvlm/expected-model.safetensors");
    let features: Vec<_> = expected
        .iter()
        .filter(|(k, _)| k.starts_with("features/"))
        .collect();
    assert_eq!(features.len(), 3);
    for (key, want) in features {
        let input = &frames[key.strip_prefix("features/").unwrap()];
        let got = connector.forward(&tower.forward(input).unwrap()).unwrap();
        let diff = max_abs_diff(&got, want);
        println!("{key}: image features max |Δ| {diff:.2e}");
        assert!(diff < 1e-4, "{key}: {diff}");
        let spread = max_abs(want);
        assert!(
            spread > 0.1,
            "{key}: features too small to compare ({spread})"
        );
    }
}

/// The tiny model whole: its parts and its decoder, on one device in one type.
struct TinyModel {
    tower: vitrine_udfs::smolvlm::vision::SiglipVision,
    connector: vitrine_udfs::smolvlm::vision::Connector,
    text: vitrine_udfs::smolvlm::text::TextModel,
    width: usize,
    image_token: u32,
    device: Device,
    dtype: candle_core::DType,
}

impl TinyModel {
    /// The tiny model on `device` in `dtype`.
    fn new(device: &Device, dtype: candle_core::DType) -> Self {
        use vitrine_udfs::smolvlm::text::{LlamaConfig, TextModel};

        let TinyParts {
            config,
            weights,
            tower,
            connector,
        } = tiny_parts_in(device, dtype);
        let text_config: LlamaConfig =
            serde_json::from_value(config["text_config"].clone()).unwrap();
        Self {
            tower,
            connector,
            text: TextModel::new(weights, &text_config, 256, None).unwrap(),
            width: text_config.hidden_size,
            image_token: config["image_token_id"].as_u64().unwrap() as u32,
            device: device.clone(),
            dtype,
        }
    }

    /// The logits (prompt × vocabulary) of the prompt `ids` about an image of `frames` (on the
    /// CPU in f32; moved to the model's device and type), and the cache they leave.
    fn prefill(
        &self,
        ids: &[u32],
        frames: &Tensor,
    ) -> (Tensor, vitrine_udfs::smolvlm::text::KvCache) {
        use vitrine_udfs::smolvlm::text::{KvCache, PadSide};

        let pixels = frames
            .to_device(&self.device)
            .unwrap()
            .to_dtype(self.dtype)
            .unwrap();
        let features = self
            .connector
            .forward(&self.tower.forward(&pixels).unwrap())
            .unwrap()
            .reshape(((), self.width))
            .unwrap();
        let embeds = self
            .text
            .embed_with_images(
                &[ids],
                self.image_token,
                std::slice::from_ref(&features),
                PadSide::Left,
            )
            .unwrap();
        let mut cache = KvCache::default();
        let logits = self.text.forward(&embeds, &mut cache).unwrap();
        (logits.squeeze(0).unwrap(), cache)
    }
}

/// In bf16 (the GPU's precision; on the test device, the CPU by default) the tower, the
/// connector and the decoder take the composed path with its fused softmax and epilogues: the
/// logits stay within bf16's rounding of transformers' f32 ones.
#[test]
fn bf16_logits_stay_within_its_precision_of_transformers() {
    use candle_core::DType;

    let model = TinyModel::new(&common::placement_in(DType::BF16).device, DType::BF16);
    let frames = fixture_tensors("smolvlm/expected-processor.safetensors");
    let expected = fixture_tensors("smolvlm/expected-model.safetensors");
    for key in ["one-tile/square-40.jpg", "tiled/wide-97x31.png"] {
        let ids: Vec<u32> = token_ids(&expected[&format!("input_ids/{key}")]);
        let (logits, _) = model.prefill(&ids, &frames[key]);
        let logits = logits.to_dtype(DType::F32).unwrap();
        let want = &expected[&format!("logits/{key}")];
        let diff = max_abs_diff(&logits, want) / max_abs(want);
        println!("{key} bf16: logits max |Δ| {diff:.2e} of their largest");
        assert!(diff < 0.05, "{key}: bf16 logits differ by {diff}");
    }
}

/// The whole tiny Idefics3: image features merged at the image tokens, the Llama decoder's
/// logits within 1e-4 of transformers', and 32 greedy tokens (decoded with the key/value cache)
/// identical to `generate(do_sample=False)`, for a 1-frame and a 4-frame image.
#[test]
fn logits_and_greedy_tokens_match_transformers() {
    let model = TinyModel::new(&Device::Cpu, candle_core::DType::F32);
    let frames = fixture_tensors("smolvlm/expected-processor.safetensors");
    let expected = fixture_tensors("smolvlm/expected-model.safetensors");
    for key in ["one-tile/square-40.jpg", "tiled/wide-97x31.png"] {
        let ids: Vec<u32> = token_ids(&expected[&format!("input_ids/{key}")]);
        let (logits, mut cache) = model.prefill(&ids, &frames[key]);
        let want = &expected[&format!("logits/{key}")];
        let diff = max_abs_diff(&logits, want);
        println!("{key}: logits max |Δ| {diff:.2e}");
        assert!(diff < 1e-4, "{key}: logits differ by {diff}");

        // The id of the largest logit at the last position.
        let argmax = |logits: &Tensor| -> u32 {
            let vocabulary = logits.dim(candle_core::D::Minus1).unwrap();
            let rows = logits.reshape(((), vocabulary)).unwrap();
            let last = rows.dim(0).unwrap() - 1;
            rows.get(last)
                .unwrap()
                .argmax(0)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let mut generated = vec![argmax(&logits)];
        while generated.len() < 32 {
            let last = Tensor::new(&[*generated.last().unwrap()], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = model
                .text
                .forward(&model.text.embed(&last).unwrap(), &mut cache)
                .unwrap();
            generated.push(argmax(&logits));
        }
        let want: Vec<u32> = token_ids(&expected[&format!("greedy/{key}")]);
        assert_eq!(generated, want, "{key}: greedy tokens");
    }
}

/// The fixture model folder `smolvlm/<name>`, loaded as a user's folder is.
fn tiny_model(name: &str) -> vitrine_udfs::smolvlm::model::SmolVlm {
    use vitrine_udfs::runtime::source::Hub;
    use vitrine_udfs::smolvlm::model::{SmolVlm, SMOLVLM_FILES};

    let dir = fixtures().join("smolvlm").join(name);
    let source = Hub::new("/nonexistent", true)
        .locate(dir.to_str().unwrap(), SMOLVLM_FILES)
        .unwrap();
    SmolVlm::load(&source, placement()).unwrap()
}

/// The whole pipeline from a model folder: transformers' `Idefics3Processor` + `generate` on a
/// chat prompt and a 4-frame photo give the same input ids and the same 32 greedy tokens, also
/// when decoding checks drafts (the fixture is too small to check them by default).
#[test]
fn a_model_folder_generates_what_transformers_generates() {
    let drafted = tiny_model("tiny").with_drafts(4);
    let model = tiny_model("tiny");
    let expected = fixture_tensors("smolvlm/expected-model.safetensors");
    let photo =
        decode_rgb(&std::fs::read(fixtures().join("clip/images/wide-97x31.png")).unwrap()).unwrap();
    let image = model.processor().process(&photo);
    let prompt = vitrine_udfs::smolvlm::prompt::chat_prompt("Describe the garment.");
    assert_eq!(
        model.prompt_ids(&prompt, (image.rows, image.cols)).unwrap(),
        token_ids(&expected["pipeline/input_ids"]),
        "input ids"
    );
    let generated = model.generate(&image, &prompt, 32, false).unwrap();
    assert_eq!(
        generated,
        token_ids(&expected["pipeline/greedy"]),
        "greedy tokens"
    );
    assert_eq!(
        drafted.generate(&image, &prompt, 32, false).unwrap(),
        generated,
        "greedy tokens, drafted"
    );
    assert!(!model.decode(&generated).unwrap().is_empty());
}

/// What sizes a batch under `vitrine.udf.batch_size = auto`: no prompt is longer than the
/// estimate counts, and a photo cut into more tiles costs more memory a row.
#[test]
fn a_batch_cost_counts_every_prompt_token() {
    use vitrine_udfs::smolvlm::prompt::chat_prompt;

    let model = tiny_model("tiny");
    let processor = model.processor();
    assert!(
        processor.most_frames() > 1,
        "the fixture cuts photos into tiles"
    );
    for photo in ["wide-97x31.png", "square-40.jpg", "grey-200x150.jpg"] {
        let path = fixtures().join("clip/images").join(photo);
        let image = processor.process(&decode_rgb(&std::fs::read(path).unwrap()).unwrap());
        for question in [
            "Colour?",
            "Describe the garment, its material and pattern, briefly.",
        ] {
            let ids = model
                .prompt_ids(&chat_prompt(question), (image.rows, image.cols))
                .unwrap();
            let counted = model.question_tokens(question).unwrap();
            assert!(
                ids.len() <= model.most_prompt_tokens(processor, counted),
                "{photo}, {question:?}: {} tokens, {} counted",
                ids.len(),
                model.most_prompt_tokens(processor, counted)
            );
        }
    }
    let one_frame = processor.with_longest_edge(processor.tile());
    assert_eq!(one_frame.most_frames(), 1);
    let (tiled, whole) = (
        model.row_cost(processor, 10, 32),
        model.row_cost(&one_frame, 10, 32),
    );
    assert!(tiled.bytes > whole.bytes, "{tiled:?} against {whole:?}");
    assert!(model.row_cost(processor, 10, 512).bytes > tiled.bytes);
}

/// Batched generation against transformers' (`make_batch_fixtures.py`): three chat prompts of
/// different lengths about photos of different tile counts, for three model shapes (tiled; no
/// splitting with tied embeddings; SmolVLM-Instruct's (2.2B) structure: 45-px frames of 7-px
/// patches, whose 6 × 6 grid leaves 3 pixels out as the 2.2B's 384-px frames of 14-px patches
/// leave 6, scale factor 3, vision heads 72 wide, full attention in the text model).
/// Each row's input ids are the processor's, each row alone gives transformers' 32 greedy tokens, and the left-padded batch gives every row the same
/// tokens again; a batch whose rows stop at different lengths gives each row its own prefix,
/// whether the tokens chosen are read every step or every few. Each row alone and both batches
/// again with drafts checked.
#[test]
fn a_mixed_batch_generates_what_transformers_generates() {
    use vitrine_udfs::smolvlm::model::GenerationRequest;
    use vitrine_udfs::smolvlm::prompt::chat_prompt;
    use vitrine_udfs::smolvlm::sampling::Decoding;

    const LONG: &str =
        "What is the material of this product, and which pattern does it have? Answer briefly.";
    const ROWS: [(&str, &str); 3] = [
        ("wide-97x31.png", "Describe the garment."),
        ("square-40.jpg", LONG),
        ("grey-200x150.jpg", "Colour?"),
    ];
    // tiny-c reads PNGs only: the JPEG decoders of the two sides differ by a few grey levels,
    // and its greedy choices stand closer than that moves them (make_batch_fixtures.py).
    const PNG_ROWS: [(&str, &str); 3] = [
        ("wide-97x31.png", "Describe the garment."),
        ("alpha-64x48.png", LONG),
        ("palette-16.png", "Colour?"),
    ];
    let expected = fixture_tensors("smolvlm/expected-batch.safetensors");
    for (name, rows) in [("tiny", ROWS), ("tiny-b", ROWS), ("tiny-c", PNG_ROWS)] {
        let model = tiny_model(name);
        let drafted = tiny_model(name).with_drafts(4);
        let images: Vec<_> = rows
            .iter()
            .map(|(photo, _)| {
                let path = fixtures().join("clip/images").join(photo);
                model
                    .processor()
                    .process(&decode_rgb(&std::fs::read(path).unwrap()).unwrap())
            })
            .collect();
        let prompts: Vec<String> = rows.iter().map(|(_, q)| chat_prompt(q)).collect();
        let mut lengths = Vec::new();
        for (i, (image, prompt)) in images.iter().zip(&prompts).enumerate() {
            let ids = model.prompt_ids(prompt, (image.rows, image.cols)).unwrap();
            assert_eq!(
                ids,
                token_ids(&expected[&format!("{name}/input_ids/{i}")]),
                "{name} row {i}: ids"
            );
            lengths.push(ids.len());
            let alone = token_ids(&expected[&format!("{name}/single/{i}")]);
            assert_eq!(
                model.generate(image, prompt, 32, false).unwrap(),
                alone,
                "{name} row {i}: alone"
            );
            assert_eq!(
                drafted.generate(image, prompt, 32, false).unwrap(),
                alone,
                "{name} row {i}: alone, drafted"
            );
        }
        assert!(
            lengths.iter().min() < lengths.iter().max(),
            "{name}: the batch must pad"
        );
        let requests: Vec<GenerationRequest> = images
            .iter()
            .zip(&prompts)
            .map(|(image, prompt)| GenerationRequest {
                image,
                prompt,
                max_new_tokens: 32,
                seed: 0,
            })
            .collect();
        let batch = model
            .generate_batch(&requests, Decoding::Greedy, false)
            .unwrap();
        let want = &expected[&format!("{name}/batch")];
        for (i, row) in batch.iter().enumerate() {
            assert_eq!(
                row,
                &token_ids(&want.get(i).unwrap()),
                "{name} row {i}: in the batch"
            );
        }
        assert_eq!(
            drafted
                .generate_batch(&requests, Decoding::Greedy, false)
                .unwrap(),
            batch,
            "{name}: the batch, drafted"
        );
        // Rows leaving the batch early (the longest first, so the cache also drops the padding
        // the others no longer need) leave the others' tokens as they were.
        let limits = [32, 5, 17];
        let requests: Vec<GenerationRequest> = requests
            .into_iter()
            .zip(limits)
            .map(|(r, max_new_tokens)| GenerationRequest {
                max_new_tokens,
                ..r
            })
            .collect();
        let staggered = model
            .generate_batch(&requests, Decoding::Greedy, false)
            .unwrap();
        for (i, (row, limit)) in staggered.iter().zip(limits).enumerate() {
            assert_eq!(
                row.as_slice(),
                &batch[i][..limit],
                "{name} row {i}: stopped at {limit}"
            );
        }
        assert_eq!(
            drafted
                .generate_batch(&requests, Decoding::Greedy, false)
                .unwrap(),
            staggered,
            "{name}: stopped early, drafted"
        );
        // Reading the tokens chosen every fifth step, as on a GPU, changes none of them.
        let model = model.with_steps_per_read(5);
        assert_eq!(
            model
                .generate_batch(&requests, Decoding::Greedy, false)
                .unwrap(),
            staggered,
            "{name}: read every 5 steps"
        );
    }
}
