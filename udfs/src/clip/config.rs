//! CLIP's `config.json` and `preprocessor_config.json`, as Hugging Face writes them.
//!
//! Every field has transformers' default, so the short configs of older checkpoints load too.

use serde::Deserialize;

pub use crate::dense::Activation;

/// `text_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Context length (77 for CLIP): longer texts are truncated to it.
    pub max_position_embeddings: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// The end-of-text token, where the text is pooled. transformers treats 2 as the legacy
    /// value that means "pool at the highest token id".
    pub eos_token_id: u32,
}

impl TextConfig {
    /// Where transformers pools a sequence: the first end-of-text token, or for configs with
    /// the legacy `eos_token_id = 2`, the highest token id.
    pub fn pool_position(&self, ids: &[u32]) -> u32 {
        let position = if self.eos_token_id == 2 {
            ids.iter()
                .enumerate()
                .fold(
                    (0, 0),
                    |best, (i, &id)| if id > best.1 { (i, id) } else { best },
                )
                .0
        } else {
            ids.iter()
                .position(|&id| id == self.eos_token_id)
                .unwrap_or(0)
        };
        position as u32
    }
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

/// `vision_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// A `CLIPModel`'s `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    /// The text tower.
    #[serde(default)]
    pub text_config: TextConfig,
    /// The vision tower.
    #[serde(default)]
    pub vision_config: VisionConfig,
    /// Width of the shared embedding space (the length of every embedding).
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
    /// `model_type`; must be `clip`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// The starting value of the learnt log temperature of the contrastive loss.
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init_value: f64,
}

fn default_projection_dim() -> usize {
    512
}

fn default_logit_scale() -> f64 {
    2.6592
}

/// Either `224` or `{"shortest_edge": 224}` / `{"height": 224, "width": 224}`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum SizeSpec {
    /// A bare number.
    Square(u32),
    /// The dictionary forms.
    Dict {
        /// Resize so that the shorter side has this length.
        shortest_edge: Option<u32>,
        /// Exact height.
        height: Option<u32>,
        /// Exact width.
        width: Option<u32>,
    },
}

/// A `CLIPImageProcessor`'s `preprocessor_config.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProcessorConfig {
    /// Resize before cropping.
    pub do_resize: bool,
    /// The resize target (for CLIP, the shorter side).
    pub size: SizeSpec,
    /// Pillow's filter number (3 = bicubic).
    pub resample: u32,
    /// Crop the centre.
    pub do_center_crop: bool,
    /// The crop.
    pub crop_size: SizeSpec,
    /// Multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// 1/255.
    pub rescale_factor: f64,
    /// Subtract the mean and divide by the standard deviation.
    pub do_normalize: bool,
    /// Per-channel mean.
    pub image_mean: [f64; 3],
    /// Per-channel standard deviation.
    pub image_std: [f64; 3],
    /// Convert to RGB (compositing transparency onto white) first.
    pub do_convert_rgb: bool,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            do_resize: true,
            size: SizeSpec::Dict {
                shortest_edge: Some(224),
                height: None,
                width: None,
            },
            resample: 3,
            do_center_crop: true,
            crop_size: SizeSpec::Dict {
                shortest_edge: None,
                height: Some(224),
                width: Some(224),
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
            do_convert_rgb: true,
        }
    }
}
