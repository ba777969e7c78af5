//! SmolVLM's image side: the SigLIP vision tower and the pixel-shuffle connector, following
//! transformers' `Idefics3VisionTransformer` and `Idefics3Connector`. Frames are full tiles (the
//! processor never pads a frame), so every patch is attended and positions run 0‥n−1.

use candle_core::{Module, Result, Tensor};
use candle_nn::{embedding, linear_no_bias, Embedding, Linear, VarBuilder};
use serde::Deserialize;

use crate::dense::Activation;
use crate::nn::{encoder_shape, layer_norm, Encoder, LayerNorm, PatchEmbedding};

/// `vision_config` of an `Idefics3Config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SiglipConfig {
    /// Width of the tower.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Frame side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
}

impl Default for SiglipConfig {
    fn default() -> Self {
        Self {
            hidden_size: 1152,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 16,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
        }
    }
}

/// The SigLIP tower: patch embedding with positions, encoder, final layer norm.
pub struct SiglipVision {
    patch_embedding: PatchEmbedding,
    position_embedding: Embedding,
    encoder: Encoder,
    post_norm: LayerNorm,
    patches: usize,
}

impl SiglipVision {
    /// Builds the tower from `model.vision_model.*` weights.
    pub fn new(vb: VarBuilder, c: &SiglipConfig) -> Result<Self> {
        let patches = (c.image_size / c.patch_size).pow(2);
        let shape = encoder_shape!(c);
        Ok(Self {
            patch_embedding: PatchEmbedding::new(
                vb.pp("embeddings.patch_embedding"),
                c.num_channels,
                c.hidden_size,
                c.patch_size,
                true,
            )?,
            position_embedding: embedding(
                patches,
                c.hidden_size,
                vb.pp("embeddings.position_embedding"),
            )?,
            encoder: Encoder::new(vb.pp("encoder"), &shape)?,
            post_norm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("post_layernorm"))?,
            patches,
        })
    }

    /// The last hidden states of `frames` (n × 3 × side × side): n × patches × width.
    pub fn forward(&self, frames: &Tensor) -> Result<Tensor> {
        let patches = self.patch_embedding.forward(frames)?;
        let positions = Tensor::arange(0u32, self.patches as u32, frames.device())?;
        let xs = patches.broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let xs = self.encoder.forward(xs)?;
        self.post_norm.forward(&xs)
    }
}

/// The connector: pixel shuffle by `scale` (n × seq × d → n × seq/s² × d·s²), then a linear
/// projection without bias into the text model's width.
pub struct Connector {
    scale: usize,
    projection: Linear,
}

impl Connector {
    /// Builds it from `model.connector.modality_projection.proj`.
    pub fn new(
        vb: VarBuilder,
        vision_width: usize,
        text_width: usize,
        scale: usize,
    ) -> Result<Self> {
        Ok(Self {
            scale,
            projection: linear_no_bias(
                vision_width * scale * scale,
                text_width,
                vb.pp("modality_projection.proj"),
            )?,
        })
    }

    /// transformers' `pixel_shuffle`: groups each s × s block of patches into one token.
    fn pixel_shuffle(&self, xs: &Tensor) -> Result<Tensor> {
        let (n, seq, d) = xs.dims3()?;
        let side = (seq as f64).sqrt() as usize;
        let s = self.scale;
        xs.reshape((n, side, side / s, d * s))?
            .transpose(1, 2)?
            .reshape((n, side / s, side / s, d * s * s))?
            .transpose(1, 2)?
            .reshape((n, seq / (s * s), d * s * s))
    }

    /// Image tokens for the text model: n × seq/s² × text width.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.projection.forward(&self.pixel_shuffle(xs)?)
    }
}
