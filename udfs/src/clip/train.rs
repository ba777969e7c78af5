//! Training CLIP: the network over variables, transformers' symmetric contrastive loss, and the
//! weights saved under transformers' names so that the folder loads anywhere a `CLIPModel` does.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};

use super::config::ClipConfig;
use super::model::{l2_normalise, ClipNetwork};
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
