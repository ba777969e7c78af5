//! Training CLIP: the network over variables, transformers' symmetric contrastive loss, and the
//! weights saved under transformers' names so that the folder loads anywhere a `CLIPModel` does.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};

use super::config::ClipConfig;
use super::model::{l2_normalise, ClipNetwork};
use super::{read_json, ClipEmbedder};
use crate::functions::rows::{self, ImageArgument};
use crate::runtime::placement::Placement;
use crate::train::{
    column, copy_model_files, fit, no_options_left, parameter_count, prepare, split, Skipped,
    Trainable, TrainingJob, TrainingOptions, TrainingSummary,
};
use crate::ModelError;

/// A CLIP network whose every weight is a variable, with the learnt temperature `logit_scale`.
pub struct ClipTraining {
    variables: VarMap,
    network: ClipNetwork,
    logit_scale: Tensor,
    config: ClipConfig,
    device: Device,
}

impl ClipTraining {
    /// A network of `config`'s shape with candle's initial values (training from scratch).
    pub fn new(config: ClipConfig, device: &Device) -> Result<Self, ModelError> {
        let variables = VarMap::new();
        let vb = VarBuilder::from_varmap(&variables, DType::F32, device);
        let network = ClipNetwork::new(vb.clone(), &config)?;
        let logit_scale = vb.get_with_hints(
            (),
            "logit_scale",
            Init::Const(config.logit_scale_init_value),
        )?;
        Ok(Self {
            variables,
            network,
            logit_scale,
            config,
            device: device.clone(),
        })
    }

    /// The network of `config` starting from the weights in `weights` (a `model.safetensors`
    /// holding every weight under transformers' names, `logit_scale` included).
    pub fn from_weights(
        config: ClipConfig,
        weights: &Path,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let mut training = Self::new(config, device)?;
        training
            .variables
            .load(weights)
            .map_err(|e| ModelError::file(weights, e))?;
        Ok(training)
    }

    /// The model's configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Where the variables live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every variable, for an optimizer.
    pub fn variables(&self) -> Vec<Var> {
        self.variables.all_vars()
    }

    /// Every variable by transformers' name of the weight.
    pub fn named_variables(&self) -> BTreeMap<String, Var> {
        let data = self.variables.data().lock().expect("variables lock");
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// transformers' `clip_loss` of a batch of matching pairs: row `i` of `input_ids` (batch ×
    /// length, u32, pooled at `pool_at[i]`) describes image `i` of `pixels` (batch × 3 × side ×
    /// side); the mean of the cross-entropies of texts over images and images over texts.
    pub fn contrastive_loss(
        &self,
        input_ids: &Tensor,
        pool_at: &[u32],
        pixels: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let texts = l2_normalise(&self.network.text_features(input_ids, pool_at)?)?;
        let images = l2_normalise(&self.network.image_features(pixels)?)?;
        let logits_per_text = texts
            .matmul(&images.t()?)?
            .broadcast_mul(&self.logit_scale.exp()?)?;
        let targets = Tensor::arange(0u32, pool_at.len() as u32, &self.device)?;
        let text_loss = candle_nn::loss::cross_entropy(&logits_per_text, &targets)?;
        let image_loss =
            candle_nn::loss::cross_entropy(&logits_per_text.t()?.contiguous()?, &targets)?;
        (text_loss + image_loss)? / 2.0
    }

    /// Writes every weight to `path` (safetensors, transformers' names).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        self.variables
            .save(path)
            .map_err(|e| ModelError::file(path, e))
    }
}

/// One training pair: a text's token ids and an image's pixel values.
pub struct ClipExample {
    ids: Vec<u32>,
    pixels: Vec<f32>,
}

impl Trainable<ClipExample> for ClipTraining {
    fn loss(&self, batch: &[&ClipExample]) -> candle_core::Result<Tensor> {
        let len = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1).max(1);
        let pool_at: Vec<u32> = batch
            .iter()
            .map(|e| self.config.text_config.pool_position(&e.ids))
            .collect();
        // Padding after the pooled token is never attended to (the text mask is causal).
        let ids: Vec<u32> = batch
            .iter()
            .flat_map(|e| e.ids.iter().copied().chain(std::iter::repeat(0)).take(len))
            .collect();
        let ids = Tensor::from_vec(ids, (batch.len(), len), &self.device)?;
        let side = self.config.vision_config.image_size;
        let pixels: Vec<f32> = batch
            .iter()
            .flat_map(|e| e.pixels.iter().copied())
            .collect();
        let pixels = Tensor::from_vec(pixels, (batch.len(), 3, side, side), &self.device)?;
        self.contrastive_loss(&ids, &pool_at, &pixels)
    }

    fn variables(&self) -> BTreeMap<String, Var> {
        self.named_variables()
    }
}

/// The pairs of the job's `image` and `text` columns, preprocessed by `embedder`.
fn examples(
    job: &TrainingJob<'_>,
    embedder: &ClipEmbedder,
) -> Result<(Vec<ClipExample>, Skipped), ModelError> {
    let mut rows: Vec<(String, Option<String>, Option<ImageArgument>)> = Vec::new();
    for batch in &job.rows {
        let column = |name| column(batch, name, "clip", "image and text");
        let texts =
            rows::strings(&column("text")?).map_err(|e| ModelError::Config(e.to_string()))?;
        let images =
            rows::images(&column("image")?).map_err(|e| ModelError::Config(e.to_string()))?;
        for (text, image) in texts.into_iter().zip(images) {
            let name = match &image {
                Some(ImageArgument::Location(path)) => format!("'{path}'"),
                _ => format!("row {}", rows.len() + 1),
            };
            rows.push((name, text, image));
        }
    }
    Ok(prepare(&rows, |(name, text, image)| {
        let (Some(text), Some(image)) = (text, image) else {
            return Err(format!("{name}: NULL image or text"));
        };
        let ids = embedder
            .tokenize(&[text.as_str()])
            .map_err(|e| format!("{name}: {e}"))?
            .pop()
            .unwrap_or_default();
        let rgb = rows::read_image(job.context, image).map_err(|e| format!("{name}: {e}"))?;
        Ok(ClipExample {
            ids,
            pixels: embedder.pixel_values(&rgb),
        })
    }))
}

/// Fine-tunes the job's base CLIP on its (image, text) rows and writes the model folder.
pub fn train(job: TrainingJob<'_>) -> Result<TrainingSummary, ModelError> {
    let mut kind_options = job.options.clone();
    let options = TrainingOptions::take(&mut kind_options)?;
    no_options_left("clip", &kind_options)?;
    let base = job.base.as_ref().ok_or_else(|| {
        ModelError::Config(
            "model_type 'clip' fine-tunes a model: give base = '<folder, hub id or model>'".into(),
        )
    })?;
    let settings = job.context.settings();
    let placement = Placement::parse(&settings.device, "f32")?;
    let embedder = ClipEmbedder::load(base, Placement::cpu())?;
    let (examples, skipped) = examples(&job, &embedder)?;
    let (train, eval) = split(examples, options.eval_fraction, options.seed);
    let config: ClipConfig = read_json(&base.file("config.json"))?;
    if base.weights.extension().is_none_or(|e| e != "safetensors") {
        return Err(ModelError::file(
            &base.weights,
            "training starts from safetensors weights",
        ));
    }
    let network = ClipTraining::from_weights(config, &base.weights, &placement.device)?;
    let (epochs, resumed_after) = fit(
        &network,
        &train,
        &eval,
        &options,
        &job.checkpoints,
        job.progress,
    )?;
    std::fs::create_dir_all(&job.output).map_err(|e| ModelError::io(&job.output, e))?;
    network.save(&job.output.join("model.safetensors"))?;
    copy_model_files(&base.dir, &job.output)?;
    Ok(TrainingSummary {
        options,
        kind_options,
        train_rows: train.len(),
        eval_rows: eval.len(),
        skipped_rows: skipped.count,
        skipped: skipped.reasons,
        parameters: parameter_count(&network.named_variables()),
        epochs,
        resumed_after,
    })
}
