//! SmolVLM's text side: a Llama-family decoder (SmolLM2) with a key/value cache, following
//! transformers' `LlamaModel`: RMS norms, rotary positions (rotate-half), grouped-query
//! attention, SwiGLU MLP.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{embedding, linear_no_bias, rms_norm, Embedding, Linear, RmsNorm, VarBuilder};
use serde::Deserialize;

/// `rope_parameters` (transformers 5) of a text config.
#[derive(Debug, Clone, Deserialize)]
pub struct RopeParameters {
    /// Base of the rotary frequencies.
    pub rope_theta: f64,
}

/// `text_config` of an `Idefics3Config` (a `LlamaConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of the model.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); the query heads when absent.
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; hidden / heads when absent.
    pub head_dim: Option<usize>,
    /// RMS-norm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base (older configs).
    pub rope_theta: Option<f64>,
    /// Rotary parameters (transformers 5 configs).
    pub rope_parameters: Option<RopeParameters>,
    /// Whether the output projection is the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
}

impl LlamaConfig {
    fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .map(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10_000.0)
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(vb: VarBuilder, c: &LlamaConfig) -> Result<Self> {
        let (h, hd) = (c.hidden_size, c.head_dim());
        Ok(Self {
            q: linear_no_bias(h, c.num_attention_heads * hd, vb.pp("q_proj"))?,
            k: linear_no_bias(h, c.kv_heads() * hd, vb.pp("k_proj"))?,
            v: linear_no_bias(h, c.kv_heads() * hd, vb.pp("v_proj"))?,
            o: linear_no_bias(c.num_attention_heads * hd, h, vb.pp("o_proj"))?,
            heads: c.num_attention_heads,
            kv_heads: c.kv_heads(),
            head_dim: hd,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        rotary: &Rotary,
        offset: usize,
        mask: Option<&Tensor>,
        cache: &mut Option<(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let split = |x: Tensor, heads: usize| {
            x.reshape((b, t, heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = rotary.apply(&split(self.q.forward(xs)?, self.heads)?, offset)?;
        let k = rotary.apply(&split(self.k.forward(xs)?, self.kv_heads)?, offset)?;
        let v = split(self.v.forward(xs)?, self.kv_heads)?;
        let (k, v) = match cache.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        let groups = self.heads / self.kv_heads;
        let repeat = |x: &Tensor| -> Result<Tensor> {
            if groups == 1 {
                return Ok(x.clone());
            }
            let (b, kvh, s, d) = x.dims4()?;
            x.unsqueeze(2)?
                .expand((b, kvh, groups, s, d))?
                .reshape((b, kvh * groups, s, d))
        };
        let (k, v) = (repeat(&k)?, repeat(&v)?);
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let dtype = scores.dtype();
        let weights =
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(dtype)?;
        let out = weights
            .matmul(&v.contiguous()?)?
            .transpose(1, 2)?
            .reshape((b, t, self.heads * self.head_dim))?;
        self.o.forward(&out)
    }
}

/// Rotary position tables (cos, sin: positions × head_dim/2).
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(c: &LlamaConfig, positions: usize, device: &Device, dtype: DType) -> Result<Self> {
        let hd = c.head_dim();
        let theta = c.rope_theta();
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / hd as f64) as f32)
            .collect();
        let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
        let t = Tensor::arange(0u32, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?;
        let freqs = t.matmul(&inv)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }
}

struct DecoderLayer {
    input_norm: RmsNorm,
    attention: Attention,
    post_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl DecoderLayer {
    fn new(vb: VarBuilder, c: &LlamaConfig) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        Ok(Self {
            input_norm: rms_norm(h, c.rms_norm_eps, vb.pp("input_layernorm"))?,
            attention: Attention::new(vb.pp("self_attn"), c)?,
            post_norm: rms_norm(h, c.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
            gate: linear_no_bias(h, i, vb.pp("mlp.gate_proj"))?,
            up: linear_no_bias(h, i, vb.pp("mlp.up_proj"))?,
            down: linear_no_bias(i, h, vb.pp("mlp.down_proj"))?,
        })
    }
}

/// The decoder and its output projection.
pub struct TextModel {
    embed: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rotary: Rotary,
}

/// The key/value cache of one sequence batch: one entry per layer.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Positions already in the cache.
    pub len: usize,
}

impl TextModel {
    /// Builds the decoder from `model.text_model.*` and the projection from `lm_head`
    /// (`vb` is the checkpoint's root).
    pub fn new(vb: VarBuilder, c: &LlamaConfig, max_positions: usize) -> Result<Self> {
        let text = vb.pp("model.text_model");
        let embed = embedding(c.vocab_size, c.hidden_size, text.pp("embed_tokens"))?;
        let lm_head = if c.tie_word_embeddings {
            Linear::new(embed.embeddings().clone(), None)
        } else {
            linear_no_bias(c.hidden_size, c.vocab_size, vb.pp("lm_head"))?
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer::new(text.pp(format!("layers.{i}")), c))
            .collect::<Result<_>>()?;
        Ok(Self {
            rotary: Rotary::new(c, max_positions, vb.device(), vb.dtype())?,
            embed,
            layers,
            norm: rms_norm(c.hidden_size, c.rms_norm_eps, text.pp("norm"))?,
            lm_head,
        })
    }

    /// Token embeddings of `ids` (batch × length).
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed.forward(ids)
    }

    /// Logits for `embeds` (batch × length × width) following what `cache` holds, which it then
    /// also holds.
    pub fn forward(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (_, t, _) = embeds.dims3()?;
        let offset = cache.len;
        cache.layers.resize_with(self.layers.len(), || None);
        let mask = if t > 1 {
            let total = offset + t;
            let values: Vec<f32> = (0..t)
                .flat_map(|i| {
                    (0..total).map(move |j| {
                        if j > offset + i {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            Some(
                Tensor::from_vec(values, (1, 1, t, total), embeds.device())?
                    .to_dtype(embeds.dtype())?,
            )
        } else {
            None
        };
        let mut xs = embeds.clone();
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let attended = layer.attention.forward(
                &layer.input_norm.forward(&xs)?,
                &self.rotary,
                offset,
                mask.as_ref(),
                slot,
            )?;
            xs = (xs + attended)?;
            let h = layer.post_norm.forward(&xs)?;
            let mlp = layer.down.forward(
                &(candle_nn::ops::silu(&layer.gate.forward(&h)?)? * layer.up.forward(&h)?)?,
            )?;
            xs = (xs + mlp)?;
        }
        cache.len += t;
        self.lm_head.forward(&self.norm.forward(&xs)?)
    }
}

/// Replaces the embeddings at `image_token` positions of `ids` (one sequence) by the rows of
/// `image_features` (image tokens × width), in order, as Idefics3's `inputs_merger` does.
pub fn merge_image_features(
    embeds: &Tensor,
    ids: &[u32],
    image_token: u32,
    image_features: &Tensor,
) -> Result<Tensor> {
    let positions: Vec<usize> = ids
        .iter()
        .enumerate()
        .filter(|(_, &id)| id == image_token)
        .map(|(i, _)| i)
        .collect();
    if positions.len() != image_features.dim(0)? {
        candle_core::bail!(
            "the prompt has {} image tokens but the image gives {}",
            positions.len(),
            image_features.dim(0)?
        );
    }
    let rows = embeds.squeeze(0)?;
    let mut parts = Vec::with_capacity(ids.len());
    let mut next = 0;
    for (i, _) in ids.iter().enumerate() {
        if positions.get(next) == Some(&i) {
            parts.push(image_features.narrow(0, next, 1)?);
            next += 1;
        } else {
            parts.push(rows.narrow(0, i, 1)?);
        }
    }
    Tensor::cat(&parts, 0)?.unsqueeze(0)
}

/// The id with the highest logit in the last position of `logits` (batch 1).
pub fn argmax_last(logits: &Tensor) -> Result<u32> {
    let (_, t, _) = logits.dims3()?;
    logits
        .narrow(1, t - 1, 1)?
        .squeeze(0)?
        .squeeze(0)?
        .argmax(D::Minus1)?
        .to_scalar::<u32>()
}
