//! CLIP: text and image embeddings in one space, from a Hugging Face `CLIPModel` folder.
//!
//! [`ClipEmbedder`] bundles the network ([`model`]), the tokenizer (`tokenizer.json`, truncated to
//! the model's context as transformers does) and the image processor ([`preprocess`]), and turns
//! batches of texts or preprocessed images into L2-normalised embeddings.

pub mod config;
pub mod functions;
pub mod model;
pub mod preprocess;
pub mod train;

use std::path::Path;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use tokenizers::{Tokenizer, TruncationParams};

use self::config::{ClipConfig, ProcessorConfig};
use self::model::{l2_normalise, ClipNetwork};
use self::preprocess::ImageProcessor;
use crate::attention;
use crate::context::{FunctionContext, LoadedModel};
use crate::kind::{ModelKind, SqlFunction};
use crate::runtime::batching::{layer_peak_bytes, one_batch_at_a_time, RowCost};
use crate::runtime::placement::Placement;
use crate::runtime::pool::on_pool;
use crate::runtime::source::ModelSource;
use crate::train::{TrainingJob, TrainingSummary};
use crate::ModelError;

/// The batches beyond which CLIP ViT-B/32 stopped gaining on an H200 in bf16: texts a second
/// rose to 1,024 rows (20,663), photos a second peaked at 256 (1,834, then 1,483 at 1,024;
/// `benches/RESULTS.md`).
const BEST_GPU_TEXT_ROWS: usize = 1024;
const BEST_GPU_IMAGE_ROWS: usize = 256;

/// The files a CLIP folder must hold besides its weights.
pub const CLIP_FILES: &[&str] = &["config.json", "tokenizer.json", "preprocessor_config.json"];

/// The CLIP model kind: `vitrine.model.clip`, `clip_text_embed` and `clip_image_embed`.
pub struct ClipKind;

impl ModelKind for ClipKind {
    fn name(&self) -> &'static str {
        <ClipEmbedder as LoadedModel>::KIND
    }

    fn default_model(&self) -> Option<&'static str> {
        Some(<ClipEmbedder as LoadedModel>::DEFAULT_MODEL)
    }

    fn files(&self) -> &'static [&'static str] {
        <ClipEmbedder as LoadedModel>::FILES
    }

    fn functions(&self, context: &std::sync::Arc<FunctionContext>) -> Vec<SqlFunction> {
        use datafusion::logical_expr::ScalarUDF;
        vec![
            SqlFunction {
                udf: ScalarUDF::new_from_impl(functions::ClipTextEmbed::new(context.clone())),
                runs_model: true,
            },
            SqlFunction {
                udf: ScalarUDF::new_from_impl(functions::ClipImageEmbed::new(context.clone())),
                runs_model: true,
            },
        ]
    }

    fn text_embedding_function(&self) -> Option<&'static str> {
        Some("clip_text_embed")
    }

    fn image_embedding_function(&self) -> Option<&'static str> {
        Some("clip_image_embed")
    }

    fn train(&self, job: TrainingJob<'_>) -> Result<TrainingSummary, ModelError> {
        train::train(job)
    }
}

impl LoadedModel for ClipEmbedder {
    const KIND: &'static str = "clip";
    const DEFAULT_MODEL: &'static str = "openai/clip-vit-base-patch32";
    const FILES: &'static [&'static str] = CLIP_FILES;

    fn load(source: &ModelSource, placement: Placement) -> Result<Self, ModelError> {
        ClipEmbedder::load(source, placement)
    }
}

/// A loaded CLIP model with its tokenizer and image processor.
pub struct ClipEmbedder {
    network: ClipNetwork,
    tokenizer: Tokenizer,
    processor: ImageProcessor,
    config: ClipConfig,
    placement: Placement,
    source: ModelSource,
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::file(path, e))
}

impl ClipEmbedder {
    /// Loads the model in `source` onto `placement`.
    pub fn load(source: &ModelSource, placement: Placement) -> Result<Self, ModelError> {
        let config_path = source.file("config.json");
        let config: ClipConfig = read_json(&config_path)?;
        if let Some(kind) = config.model_type.as_deref().filter(|k| *k != "clip") {
            return Err(ModelError::file(
                &config_path,
                format!("model_type is '{kind}', not a CLIP model"),
            ));
        }
        let processor_path = source.file("preprocessor_config.json");
        let processor = ImageProcessor::new(&read_json::<ProcessorConfig>(&processor_path)?)
            .map_err(|e| ModelError::file(&processor_path, e))?;
        let side = config.vision_config.image_size as u32;
        if processor.output_size() != Some((side, side)) {
            return Err(ModelError::file(
                &processor_path,
                format!(
                    "images come out {:?} but the model takes {side}×{side}",
                    processor.output_size()
                ),
            ));
        }
        let tokenizer_path = source.file("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| ModelError::file(&tokenizer_path, e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.text_config.max_position_embeddings,
                ..Default::default()
            }))
            .map_err(|e| ModelError::file(&tokenizer_path, e))?;
        tokenizer.with_padding(None);
        let vb = if source
            .weights
            .extension()
            .is_some_and(|e| e == "safetensors")
        {
            // SAFETY: the file is memory-mapped read-only; like every safetensors reader we
            // assume it is not truncated or rewritten while the process runs.
            unsafe {
                crate::runtime::weights::mapped(
                    std::slice::from_ref(&source.weights),
                    placement.dtype,
                    &placement.device,
                )?
            }
        } else {
            VarBuilder::from_pth(&source.weights, placement.dtype, &placement.device)?
        };
        let network =
            ClipNetwork::new(vb, &config).map_err(|e| ModelError::file(&source.weights, e))?;
        Ok(Self {
            network,
            tokenizer,
            processor,
            config,
            placement,
            source: source.clone(),
        })
    }

    /// The length of every embedding (`projection_dim`).
    pub fn dimension(&self) -> usize {
        self.config.projection_dim
    }

    /// Where the model's files came from.
    pub fn source(&self) -> &ModelSource {
        &self.source
    }

    /// Where the model runs.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The image processor.
    pub fn processor(&self) -> &ImageProcessor {
        &self.processor
    }

    /// What a batch of texts costs on the device by its rows (each up to the model's context).
    pub fn text_row_cost(&self) -> RowCost {
        let t = &self.config.text_config;
        RowCost {
            bytes: layer_peak_bytes(
                t.max_position_embeddings,
                t.num_attention_heads,
                t.hidden_size,
                t.intermediate_size,
                self.placement.dtype.size_in_bytes(),
            ),
            fixed: 0,
            best_rows: BEST_GPU_TEXT_ROWS,
        }
    }

    /// What a batch of photos costs on the device by its rows.
    pub fn image_row_cost(&self) -> RowCost {
        let v = &self.config.vision_config;
        let element = self.placement.dtype.size_in_bytes();
        // The photo's pixels as handed over (f32) and in the model's precision.
        let pixels = 3 * v.image_size * v.image_size * (4 + element);
        let encoder = layer_peak_bytes(
            (v.image_size / v.patch_size).pow(2) + 1,
            v.num_attention_heads,
            v.hidden_size,
            v.intermediate_size,
            element,
        );
        RowCost {
            bytes: encoder + pixels as u64,
            fixed: 0,
            best_rows: BEST_GPU_IMAGE_ROWS,
        }
    }

    /// Token ids of each text, with the special tokens, truncated to the model's context.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, ModelError> {
        texts
            .iter()
            .map(|t| {
                self.tokenizer
                    .encode(*t, true)
                    .map(|e| e.get_ids().to_vec())
                    .map_err(|e| ModelError::Tokenizer(e.to_string()))
            })
            .collect()
    }

    /// The order in which to cut `sequences` into batches: where batches run packed (f32 on
    /// the CPU), by their tokens, so that texts that begin alike or repeat fall in one batch
    /// and compute those tokens once; elsewhere by length, so that a batch pads little.
    pub fn batch_order(&self, sequences: &[Vec<u32>]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        if attention::kernel_runs_on(&self.placement.device, self.placement.dtype) {
            order.sort_by(|&a, &b| sequences[a].cmp(&sequences[b]));
        } else {
            order.sort_by_key(|&k| sequences[k].len());
        }
        order
    }

    /// `get_text_features` for token sequences run as one batch (not normalised): packed one
    /// after another where the model runs in f32 on the CPU, so that a batch costs its tokens
    /// and not its size times its longest text (`benches/RESULTS.md`), the tokens that texts
    /// share at their beginnings computed once; padded elsewhere.
    pub fn text_features(&self, sequences: &[Vec<u32>]) -> Result<Tensor, ModelError> {
        one_batch_at_a_time(&self.placement.device, || {
            on_pool(|| self.text_features_here(sequences))
        })
    }

    /// [`ClipEmbedder::text_features`] on the calling thread.
    fn text_features_here(&self, sequences: &[Vec<u32>]) -> Result<Tensor, ModelError> {
        let pool_at: Vec<u32> = sequences
            .iter()
            .map(|s| self.config.text_config.pool_position(s))
            .collect();
        if let Some(features) = self.network.packed_text_features(sequences, &pool_at)? {
            return Ok(features);
        }
        let len = sequences.iter().map(Vec::len).max().unwrap_or(0).max(1);
        // Padding after the pooled token is never attended to (the text mask is causal).
        let ids: Vec<u32> = sequences
            .iter()
            .flat_map(|s| s.iter().copied().chain(std::iter::repeat(0)).take(len))
            .collect();
        let ids = Tensor::from_vec(ids, (sequences.len(), len), &self.placement.device)?;
        Ok(self.network.text_features(&ids, &pool_at)?)
    }

    /// Preprocessed pixel values of an image (3 × side × side, channels first).
    pub fn pixel_values(&self, image: &RgbImage) -> Vec<f32> {
        self.processor.pixel_values(image)
    }

    /// `get_image_features` for preprocessed images run as one batch (not normalised).
    pub fn image_features(&self, pixels: &[Vec<f32>]) -> Result<Tensor, ModelError> {
        let side = self.config.vision_config.image_size;
        let flat: Vec<f32> = pixels.iter().flatten().copied().collect();
        let batch = Tensor::from_vec(flat, (pixels.len(), 3, side, side), &self.placement.device)?
            .to_dtype(self.placement.dtype)?;
        Ok(one_batch_at_a_time(&self.placement.device, || {
            on_pool(|| self.network.image_features(&batch))
        })?)
    }

    /// L2-normalised text embeddings, one batch.
    pub fn embed_texts(&self, sequences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        rows(&l2_normalise(&self.text_features(sequences)?)?)
    }

    /// L2-normalised image embeddings, one batch.
    pub fn embed_images(&self, pixels: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        rows(&l2_normalise(&self.image_features(pixels)?)?)
    }
}

fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>, ModelError> {
    Ok(t.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}
