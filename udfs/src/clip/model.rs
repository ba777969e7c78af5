//! The CLIP network in candle, following transformers' `modeling_clip.py`.
//!
//! candle-transformers has a CLIP too, but it fixes the activation to quick-GELU, the layer-norm
//! epsilon to 1e-5 and pools text at the highest token id; checkpoints differ on all three, so
//! this module reads them from `config.json` as transformers does. Weight names are
//! transformers' own, so any `CLIPModel` safetensors file loads.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{embedding, linear_no_bias, Embedding, Linear, VarBuilder};

use super::config::{ClipConfig, TextConfig, VisionConfig};
use crate::attention::Packing;
use crate::nn::{encoder_shape, layer_norm, Encoder, LayerNorm, PatchEmbedding};

struct TextTower {
    token_embedding: Embedding,
    position_embedding: Embedding,
    encoder: Encoder,
    final_norm: LayerNorm,
}

impl TextTower {
    fn new(vb: VarBuilder, c: &TextConfig) -> Result<Self> {
        let shape = encoder_shape!(c);
        Ok(Self {
            token_embedding: embedding(
                c.vocab_size,
                c.hidden_size,
                vb.pp("embeddings.token_embedding"),
            )?,
            position_embedding: embedding(
                c.max_position_embeddings,
                c.hidden_size,
                vb.pp("embeddings.position_embedding"),
            )?,
            encoder: Encoder::new(vb.pp("encoder"), &shape)?,
            final_norm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("final_layer_norm"))?,
        })
    }

    /// Hidden states at `pool_at[i]` of each row of `input_ids` (batch × length, u32).
    fn forward(&self, input_ids: &Tensor, pool_at: &[u32]) -> Result<Tensor> {
        let (batch, len) = input_ids.dims2()?;
        let device = input_ids.device();
        let positions = Tensor::arange(0u32, len as u32, device)?;
        let xs = self
            .token_embedding
            .forward(input_ids)?
            .broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let xs = self.encoder.forward_causal(xs)?;
        let xs = self.final_norm.forward(&xs)?;
        let rows: Vec<u32> = pool_at
            .iter()
            .enumerate()
            .map(|(i, &p)| (i * len) as u32 + p)
            .collect();
        let rows = Tensor::from_vec(rows, batch, device)?;
        xs.reshape((batch * len, ()))?.index_select(&rows, 0)
    }

    /// As [`TextTower::forward`] for `sequences` packed one after another, computing neither
    /// padding, nor a token that an earlier sequence of the batch also has at the same place
    /// after the same tokens ([`Packing::sharing_prefixes`]), nor the tokens after a pooled one,
    /// nor the last layer's rows other than the pooled ones (the text mask is causal: none of
    /// these changes a pooled state); `None` when the packed encoder does not run on this
    /// model's device or precision.
    fn forward_packed(&self, sequences: &[Vec<u32>], pool_at: &[u32]) -> Result<Option<Tensor>> {
        let device = self.token_embedding.embeddings().device();
        let pooled: Vec<&[u32]> = sequences
            .iter()
            .zip(pool_at)
            .map(|(s, &p)| &s[..=p as usize])
            .collect();
        let packing = Packing::sharing_prefixes(&pooled);
        let (mut ids, mut positions) = (Vec::new(), Vec::new());
        for (sequence, tokens) in pooled.iter().enumerate() {
            for position in packing.own_positions(sequence) {
                ids.push(tokens[position]);
                positions.push(position as u32);
            }
        }
        let rows = ids.len();
        let xs = self
            .token_embedding
            .forward(&Tensor::from_vec(ids, rows, device)?)?
            .add(
                &self
                    .position_embedding
                    .forward(&Tensor::from_vec(positions, rows, device)?)?,
            )?;
        let last: Vec<usize> = pooled.iter().map(|s| s.len() - 1).collect();
        let Some(xs) = self.encoder.forward_packed_causal_at(xs, &packing, &last)? else {
            return Ok(None);
        };
        self.final_norm.forward(&xs).map(Some)
    }
}

struct VisionTower {
    patch_embedding: PatchEmbedding,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_norm: LayerNorm,
    encoder: Encoder,
    post_norm: LayerNorm,
}

impl VisionTower {
    fn new(vb: VarBuilder, c: &VisionConfig) -> Result<Self> {
        let shape = encoder_shape!(c);
        let positions = (c.image_size / c.patch_size).pow(2) + 1;
        let emb = vb.pp("embeddings");
        Ok(Self {
            patch_embedding: PatchEmbedding::new(
                emb.pp("patch_embedding"),
                c.num_channels,
                c.hidden_size,
                c.patch_size,
                false,
            )?,
            class_embedding: emb.get(c.hidden_size, "class_embedding")?,
            position_embedding: emb.get((positions, c.hidden_size), "position_embedding.weight")?,
            pre_norm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            encoder: Encoder::new(vb.pp("encoder"), &shape)?,
            post_norm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("post_layernorm"))?,
        })
    }

    /// The pooled (class-token) state of each image in `pixels` (batch × 3 × side × side).
    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let batch = pixels.dim(0)?;
        let patches = self.patch_embedding.forward(pixels)?;
        let width = self.class_embedding.dim(0)?;
        let class = self
            .class_embedding
            .reshape((1, 1, width))?
            .expand((batch, 1, width))?;
        let xs = Tensor::cat(&[&class, &patches], 1)?.broadcast_add(&self.position_embedding)?;
        let xs = self.pre_norm.forward(&xs)?;
        self.post_norm
            .forward(&self.encoder.forward_first_token(xs)?)
    }
}

/// A loaded `CLIPModel`: both towers and their projections into the shared space.
pub struct ClipNetwork {
    text: TextTower,
    vision: VisionTower,
    text_projection: Linear,
    visual_projection: Linear,
}

impl ClipNetwork {
    /// Builds the network from weights named as transformers names them.
    pub fn new(vb: VarBuilder, config: &ClipConfig) -> Result<Self> {
        Ok(Self {
            text: TextTower::new(vb.pp("text_model"), &config.text_config)?,
            vision: VisionTower::new(vb.pp("vision_model"), &config.vision_config)?,
            text_projection: linear_no_bias(
                config.text_config.hidden_size,
                config.projection_dim,
                vb.pp("text_projection"),
            )?,
            visual_projection: linear_no_bias(
                config.vision_config.hidden_size,
                config.projection_dim,
                vb.pp("visual_projection"),
            )?,
        })
    }

    /// `get_text_features`: the projected state at each row's pooling position (not normalised).
    pub fn text_features(&self, input_ids: &Tensor, pool_at: &[u32]) -> Result<Tensor> {
        self.text_projection
            .forward(&self.text.forward(input_ids, pool_at)?)
    }

    /// [`ClipNetwork::text_features`] for token sequences of any lengths packed one after
    /// another, so that no padding is computed, nor the tokens that sequences of the batch
    /// share at their beginnings more than once; `None` when the packed encoder does not run on
    /// this model's device or precision (the caller pads) or a sequence is empty. An error when
    /// a pooling position lies outside its sequence.
    pub fn packed_text_features(
        &self,
        sequences: &[Vec<u32>],
        pool_at: &[u32],
    ) -> Result<Option<Tensor>> {
        if sequences.is_empty() || sequences.iter().any(Vec::is_empty) {
            return Ok(None);
        }
        if pool_at.len() != sequences.len()
            || sequences
                .iter()
                .zip(pool_at)
                .any(|(s, &p)| p as usize >= s.len())
        {
            candle_core::bail!("text features: pooling positions {pool_at:?} outside their texts");
        }
        self.text
            .forward_packed(sequences, pool_at)?
            .map(|pooled| self.text_projection.forward(&pooled))
            .transpose()
    }

    /// `get_image_features` (not normalised).
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        self.visual_projection
            .forward(&self.vision.forward(pixels)?)
    }
}

/// Divides each row by its L2 norm, in f32.
pub fn l2_normalise(features: &Tensor) -> Result<Tensor> {
    let features = features.to_dtype(DType::F32)?;
    let norms = features.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    features.broadcast_div(&norms)
}
