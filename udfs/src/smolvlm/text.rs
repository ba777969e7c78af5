//! SmolVLM's text side: a Llama-family decoder (SmolLM2) with a key/value cache, following
//! transformers' `LlamaModel`: RMS norms, rotary positions (rotate-half), grouped-query
//! attention, SwiGLU MLP.

use std::cell::OnceCell;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{embedding, linear_no_bias, Embedding, Linear, VarBuilder};
use serde::Deserialize;

use super::rotary;
use crate::attention;
use crate::attention::softmax::{causal_mask_hiding, Seen};
use crate::cpu_ops;
use crate::dense::{self, Parts};
use crate::nn::{rms_norm, RmsNorm};
use crate::train::lora::{Lora, Projection};

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
    /// The padding token, whose embedding `nn.Embedding(padding_idx=…)` never trains.
    pub pad_token_id: Option<u32>,
}

impl LlamaConfig {
    /// The width of each attention head.
    pub(crate) fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Key and value heads (fewer than the query heads when they are grouped).
    pub(crate) fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The weights a decoding step reads: every layer's projections and the output
    /// projection (the norms' few weights aside).
    pub(crate) fn step_weights(&self) -> usize {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let attention = h * (self.num_attention_heads + 2 * self.kv_heads()) * self.head_dim()
            + self.num_attention_heads * self.head_dim() * h;
        self.num_hidden_layers * (attention + 3 * h * i) + self.vocab_size * h
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
    /// The query, key and value projections, outputs side by side.
    qkv: Parts<Projection>,
    o: Projection,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

/// The bias-free linear layer `name` under `vb`, with `lora`'s adapter when it targets it.
fn projection(
    vb: &VarBuilder,
    name: &str,
    input: usize,
    output: usize,
    lora: Option<&Lora>,
) -> Result<Projection> {
    let vb = vb.pp(name);
    Projection::new(
        &vb.prefix(),
        linear_no_bias(input, output, vb.clone())?,
        lora,
    )
}

impl Attention {
    fn new(vb: VarBuilder, c: &LlamaConfig, lora: Option<&Lora>) -> Result<Self> {
        let (h, hd) = (c.hidden_size, c.head_dim());
        let projection = |name: &str, input, output| projection(&vb, name, input, output, lora);
        Ok(Self {
            qkv: Parts::new(vec![
                projection("q_proj", h, c.num_attention_heads * hd)?,
                projection("k_proj", h, c.kv_heads() * hd)?,
                projection("v_proj", h, c.kv_heads() * hd)?,
            ])?,
            o: projection("o_proj", c.num_attention_heads * hd, h)?,
            heads: c.num_attention_heads,
            kv_heads: c.kv_heads(),
            head_dim: hd,
        })
    }

    /// `residual` plus the attention over `xs` (the normalised residual), at the positions
    /// `rows` names; the keys and values of every position join the cache either way.
    fn forward(
        &self,
        xs: &Tensor,
        residual: &Tensor,
        pass: &Pass,
        cache: &mut Option<LayerCache>,
        (room, rows): (usize, Rows),
    ) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let qkv = self.qkv.forward(xs)?;
        // Heads apart first (free), so that each of q, k, v is one copy.
        let qkv = qkv.reshape((b, t, self.heads + 2 * self.kv_heads, self.head_dim))?;
        let q = pass.positions.rotated_heads(&qkv, (0, self.heads))?;
        let k = pass
            .positions
            .rotated_heads(&qkv, (self.heads, self.kv_heads))?;
        let v = heads_apart(&qkv, (self.heads + self.kv_heads, self.kv_heads))?;
        let (k, v) = LayerCache::append(cache, &k, &v, room)?;
        // The queries kept: every position's, or the last one's (`first` of them skipped).
        let first = rows.first(t);
        let (q, residual) = if first > 0 {
            (
                q.narrow(2, first, t - first)?.contiguous()?,
                residual.narrow(1, first, t - first)?,
            )
        } else {
            (q, residual.clone())
        };
        let scale = (self.head_dim as f64).powf(-0.5);
        // Both read each key head in place for the query heads it serves. Slots hidden past
        // the causal rule (drafts one sequence kept and another did not) need the mask.
        let fused = attention::fuses_softmax(&q, &k) && !attention::kernel_takes(&q);
        let hides = pass.hides_slots();
        let out = if fused && !hides {
            attention::attend_composed(&q, &k, &v, scale, None, pass.seen(first))?
        } else {
            let mask = pass
                .mask()?
                .map(|m| m.narrow(2, first, t - first))
                .transpose()?;
            let seen = if hides { Seen::All } else { pass.seen(first) };
            match attention::attend(&q, &k, &v, scale, mask.as_ref())? {
                Some(out) => out,
                None => attention::attend_composed(&q, &k, &v, scale, mask.as_ref(), seen)?,
            }
        };
        let out = cpu_ops::contiguous(&out.transpose(1, 2)?)?.reshape((
            b,
            t - first,
            self.heads * self.head_dim,
        ))?;
        dense::forward_add(&self.o, &out, &residual)
    }
}

/// The positions of a pass whose outputs a decoder layer computes past its keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// Every position (every layer but the last; the last when every position's logits are
    /// wanted).
    Every,
    /// Each sequence's last position (the last layer of a pass whose next token alone is
    /// wanted: generation pads on the left, so that position is each sequence's last token).
    Last,
}

impl Rows {
    /// How many of a pass's `t` positions come before the first one computed.
    fn first(self, t: usize) -> usize {
        match self {
            Rows::Every => 0,
            Rows::Last => t.saturating_sub(1),
        }
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

    /// The tables at the positions `index` (batch · length, u32, a sequence's positions after
    /// another's): batch × length × head_dim/2 each.
    fn at(&self, index: &Tensor, (b, t): (usize, usize)) -> Result<(Tensor, Tensor)> {
        let pick = |table: &Tensor| -> Result<Tensor> {
            let half = table.dim(1)?;
            table.index_select(index, 0)?.reshape((b, t, half))
        };
        Ok((pick(&self.cos)?, pick(&self.sin)?))
    }
}

/// The rotary tables at the positions of one forward pass's tokens: length × head_dim/2 when
/// every sequence sits at the same positions, batch × length × head_dim/2 otherwise.
struct Positions {
    cos: Tensor,
    sin: Tensor,
}

/// Heads `first..first + count` of `qkv` (batch × length × heads × head size) as batch × count ×
/// length × head size, contiguous.
fn heads_apart(qkv: &Tensor, (first, count): (usize, usize)) -> Result<Tensor> {
    cpu_ops::contiguous(&qkv.narrow(2, first, count)?.transpose(1, 2)?)
}

impl Positions {
    /// [`heads_apart`], each head rotated to its positions: in one pass over the projection on
    /// the CPU ([`rotary::rotated_heads`]), apart and then rotated elsewhere or when trained.
    fn rotated_heads(&self, qkv: &Tensor, heads: (usize, usize)) -> Result<Tensor> {
        let tensors = [qkv, &self.cos, &self.sin];
        if tensors
            .iter()
            .all(|t| attention::kernel_takes(t) && t.is_contiguous())
        {
            return rotary::rotated_heads(qkv, heads, &self.cos, &self.sin);
        }
        self.rotate(&heads_apart(qkv, heads)?)
    }

    fn rotate(&self, x: &Tensor) -> Result<Tensor> {
        if x.track_op() && self.cos.rank() == 2 {
            // Trained: candle's fused kernel has no backward pass; the same rotation in steps.
            return candle_nn::rotary_emb::rope_slow(x, &self.cos, &self.sin);
        }
        candle_nn::rotary_emb::rope(&x.contiguous()?, &self.cos, &self.sin)
    }
}

/// What every layer's attention needs to know about one forward pass: the rotary tables at its
/// tokens' positions and which slots each token sees (causally, from each sequence's first slot
/// after its left padding, less the slots the cache hides from it), as an additive mask, built
/// on first use for the paths that add one (the CPU kernel, training, hidden slots), or as the
/// rule itself for the fused softmax, which then spares building a mask as large as the scores
/// and needs only each sequence's first slot, kept on the device by the cache.
struct Pass {
    positions: Positions,
    /// Left padding of each sequence (its first slot).
    padding: Vec<usize>,
    /// Slots past its padding hidden from each sequence ([`KvCache::keep`]).
    hidden: Vec<Vec<usize>>,
    /// Slots in the cache before this pass's tokens.
    offset: usize,
    /// This pass's tokens per sequence.
    tokens: usize,
    device: Device,
    mask: OnceCell<Option<Tensor>>,
    /// Each sequence's first slot (u32, on the device).
    first_slot: Tensor,
}

impl Pass {
    /// The attention mask of the pass (batch or 1 × 1 × tokens × slots, added to the scores in
    /// f32): causal, and blind to padding and hidden slots. `None` when one new token per
    /// sequence sees every slot.
    fn mask(&self) -> Result<Option<&Tensor>> {
        if let Some(mask) = self.mask.get() {
            return Ok(mask.as_ref());
        }
        let (t, offset) = (self.tokens, self.offset);
        let apart = self.padding.iter().any(|&p| p > 0) || self.hides_slots();
        let mask = if t == 1 && !apart {
            None
        } else {
            // One row for every sequence when all see the same slots.
            let first_slot: Vec<u32> = if apart {
                self.padding.iter().map(|&p| p as u32).collect()
            } else {
                vec![0]
            };
            Some(causal_mask_hiding(
                &first_slot,
                &self.hidden,
                t,
                offset + t,
                offset,
                &self.device,
            )?)
        };
        Ok(self.mask.get_or_init(|| mask).as_ref())
    }

    /// Whether the cache hides slots from some sequence beyond its padding: the causal rule
    /// ([`Pass::seen`]) then does not describe what each query sees, the mask does.
    fn hides_slots(&self) -> bool {
        self.hidden.iter().any(|slots| !slots.is_empty())
    }

    /// The mask's rule for the pass's queries from its `first` on, for the softmax that
    /// applies it itself.
    fn seen(&self, first: usize) -> Seen<'_> {
        Seen::Causal {
            offset: self.offset + first,
            first_slot: &self.first_slot,
        }
    }
}

struct DecoderLayer {
    input_norm: RmsNorm,
    attention: Attention,
    post_norm: RmsNorm,
    /// SwiGLU's gate and up projections.
    gate_up: Parts<Projection>,
    down: Projection,
}

impl DecoderLayer {
    fn new(vb: VarBuilder, c: &LlamaConfig, lora: Option<&Lora>) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let projection = |name: &str, input, output| projection(&vb, name, input, output, lora);
        Ok(Self {
            input_norm: rms_norm(h, c.rms_norm_eps, vb.pp("input_layernorm"))?,
            attention: Attention::new(vb.pp("self_attn"), c, lora)?,
            post_norm: rms_norm(h, c.rms_norm_eps, vb.pp("post_attention_layernorm"))?,
            gate_up: Parts::new(vec![
                projection("mlp.gate_proj", h, i)?,
                projection("mlp.up_proj", h, i)?,
            ])?,
            down: projection("mlp.down_proj", i, h)?,
        })
    }
}

/// The decoder and its output projection.
pub struct TextModel {
    embed: Embedding,
    pad_token: Option<u32>,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    /// The output projection's int8 screen, for greedy choices without every logit
    /// ([`TextModel::screen_output`]).
    screen: Option<dense::ArgmaxScreen>,
    rotary: Rotary,
}

/// One layer's keys and values (batch × key heads × slots × head size) in buffers that may
/// have room for more slots than they hold: a decoding step writes its slot in place instead
/// of copying the whole cache into a new tensor.
pub struct LayerCache {
    keys: Tensor,
    values: Tensor,
    /// Slots filled; the buffers' third dimension is their capacity.
    len: usize,
}

impl LayerCache {
    /// Appends `k` and `v` (batch × key heads × new slots × head size) to `slot`'s cache and
    /// answers views of every slot filled. The first append keeps the tensors given (no copy,
    /// and the gradient of a training step flows through them); an append that does not fit
    /// moves the cache into buffers with `room` more slots, written into in place from then on.
    fn append(
        slot: &mut Option<Self>,
        k: &Tensor,
        v: &Tensor,
        room: usize,
    ) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let Some(cache) = slot.as_mut() else {
            *slot = Some(Self {
                keys: k.clone(),
                values: v.clone(),
                len: t,
            });
            return Ok((k.clone(), v.clone()));
        };
        let filled = cache.len + t;
        if filled > cache.keys.dim(2)? {
            // One copy into a new buffer, which only this cache holds and may write into.
            let grown = |old: &Tensor, new: &Tensor| -> Result<Tensor> {
                let (b, h, _, d) = new.dims4()?;
                let spare = Tensor::zeros((b, h, room, d), new.dtype(), new.device())?;
                Tensor::cat(&[&old.narrow(2, 0, cache.len)?, new, &spare], 2)
            };
            cache.keys = grown(&cache.keys, k)?;
            cache.values = grown(&cache.values, v)?;
        } else {
            cache.keys.slice_set(&k.contiguous()?, 2, cache.len)?;
            cache.values.slice_set(&v.contiguous()?, 2, cache.len)?;
        }
        cache.len = filled;
        Ok((
            cache.keys.narrow(2, 0, filled)?,
            cache.values.narrow(2, 0, filled)?,
        ))
    }
}

/// The key/value cache of a batch of sequences: one entry per layer, each sequence's left
/// padding (slots before its first token, which no query attends to), and the slots past it
/// that hold drafts other sequences kept and it did not ([`KvCache::keep`]), hidden from it.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    padding: Vec<usize>,
    /// Each sequence's hidden slots past its padding, in order.
    hidden: Vec<Vec<usize>>,
    /// Slots a layer's buffers are grown by beyond what they must hold: the tokens still to
    /// come, so that decoding writes them in place.
    room: usize,
    /// Slots already in the cache (padding included).
    pub len: usize,
    /// Each sequence's position for its next one-token pass (u32, on the device): sent on the
    /// first such pass and advanced there after each, so that decoding sends no positions;
    /// forgotten after a longer pass and when the sequences change.
    next_positions: Option<Tensor>,
    /// Each sequence's first slot (u32, on the device), sent once; forgotten when the
    /// sequences change.
    first_slots: Option<Tensor>,
}

impl KvCache {
    /// An empty cache for sequences left-padded by `padding` slots each, which will grow by up
    /// to `room` slots after the prompt (the tokens to generate).
    pub fn padded(padding: Vec<usize>, room: usize) -> Self {
        Self {
            padding,
            room,
            ..Self::default()
        }
    }

    /// Keeps the sequences at `rows` (in that order) and drops the others, along with the
    /// leading slots that are padding for every sequence kept.
    pub fn retain(&mut self, rows: &[usize]) -> Result<()> {
        let padding: Vec<usize> = rows.iter().map(|&r| self.padding[r]).collect();
        let trim = padding.iter().copied().min().unwrap_or(0);
        self.hidden = rows
            .iter()
            .map(|&r| {
                let slots = self.hidden.get(r).map(Vec::as_slice).unwrap_or_default();
                slots.iter().map(|&slot| slot - trim).collect()
            })
            .collect();
        let Some(device) = self
            .layers
            .iter()
            .flatten()
            .next()
            .map(|layer| layer.keys.device().clone())
        else {
            self.padding = padding;
            return Ok(());
        };
        let index = Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            rows.len(),
            &device,
        )?;
        for layer in self.layers.iter_mut().flatten() {
            // The whole buffers are selected (room included), then the common padding cut.
            let keep = |x: &Tensor| -> Result<Tensor> {
                let x = x.contiguous()?.index_select(&index, 0)?;
                if trim == 0 {
                    return Ok(x);
                }
                x.narrow(2, trim, layer.len - trim)?.contiguous()
            };
            (layer.keys, layer.values) = (keep(&layer.keys)?, keep(&layer.values)?);
            layer.len -= trim;
        }
        self.padding = padding.into_iter().map(|p| p - trim).collect();
        self.len -= trim;
        (self.next_positions, self.first_slots) = (None, None);
        Ok(())
    }

    /// Rotary positions of the `t` tokens about to follow in each sequence (batch · t, u32, on
    /// `device`: the slots it sees before them; a padding slot's position does not matter:
    /// nothing attends to it), or `None` when no sequence is padded or hides a slot, all of
    /// them then at the cache's length.
    fn positions(&self, t: usize, device: &Device) -> Result<Option<Tensor>> {
        let skipped =
            |row: usize| self.padding[row] + self.hidden.get(row).map(Vec::len).unwrap_or_default();
        if (0..self.padding.len()).all(|row| skipped(row) == 0) {
            return Ok(None);
        }
        if let (1, Some(next)) = (t, &self.next_positions) {
            return Ok(Some(next.clone()));
        }
        let len = self.len;
        let positions: Vec<u32> = (0..self.padding.len())
            .flat_map(|row| (0..t).map(move |j| (len + j).saturating_sub(skipped(row)) as u32))
            .collect();
        Tensor::from_vec(positions, self.padding.len() * t, device).map(Some)
    }

    /// Each sequence's first slot on `device`.
    fn first_slots(&mut self, device: &Device) -> Result<Tensor> {
        if let Some(first_slots) = &self.first_slots {
            return Ok(first_slots.clone());
        }
        let slots: Vec<u32> = self.padding.iter().map(|&p| p as u32).collect();
        let first_slots = Tensor::from_vec(slots, self.padding.len(), device)?;
        self.first_slots = Some(first_slots.clone());
        Ok(first_slots)
    }

    /// Of the last `of` slots (a pass over a token and its drafts), keeps the first `kept[s]`
    /// for sequence `s` (the drafts a decoder kept): the slots no sequence keeps are forgotten,
    /// and the next pass writes over them; those some other sequence keeps are hidden from `s`
    /// from then on, its later tokens at the positions that follow its kept ones.
    pub fn keep(&mut self, of: usize, kept: &[usize]) -> Result<()> {
        let most = kept.iter().copied().max().unwrap_or(0);
        if kept.len() != self.padding.len()
            || most > of
            || of > self.len
            || self.layers.iter().flatten().any(|layer| layer.len < of)
        {
            candle_core::bail!(
                "a cache of {} slots for {} sequences cannot keep {kept:?} of its last {of}",
                self.len,
                self.padding.len()
            );
        }
        let forgotten = of - most;
        for layer in self.layers.iter_mut().flatten() {
            layer.len -= forgotten;
        }
        self.len -= forgotten;
        self.hidden.resize(kept.len(), Vec::new());
        for (slots, &kept) in self.hidden.iter_mut().zip(kept) {
            slots.extend(self.len - most + kept..self.len);
        }
        self.next_positions = None;
        Ok(())
    }

    /// Counts a pass of `t` tokens at `positions` (from [`KvCache::positions`]) as held.
    fn advance(&mut self, t: usize, positions: Option<Tensor>) -> Result<()> {
        self.len += t;
        self.next_positions = match (t, positions) {
            (1, Some(positions)) => Some(positions.affine(1.0, 1.0)?),
            _ => None,
        };
        Ok(())
    }
}

impl TextModel {
    /// Builds the decoder from `model.text_model.*` and the projection from `lm_head`
    /// (`vb` is the checkpoint's root), with `lora`'s adapters on the layers it targets. A
    /// config with no decoder layers is an error.
    pub fn new(
        vb: VarBuilder,
        c: &LlamaConfig,
        max_positions: usize,
        lora: Option<&Lora>,
    ) -> Result<Self> {
        if c.num_hidden_layers == 0 {
            candle_core::bail!("text_config: num_hidden_layers is 0; a decoder needs a layer");
        }
        let text = vb.pp("model.text_model");
        let embed = embedding(c.vocab_size, c.hidden_size, text.pp("embed_tokens"))?;
        let lm_head = if c.tie_word_embeddings {
            Linear::new(embed.embeddings().clone(), None)
        } else {
            linear_no_bias(c.hidden_size, c.vocab_size, vb.pp("lm_head"))?
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer::new(text.pp(format!("layers.{i}")), c, lora))
            .collect::<Result<_>>()?;
        Ok(Self {
            rotary: Rotary::new(c, max_positions, vb.device(), vb.dtype())?,
            embed,
            pad_token: c.pad_token_id,
            layers,
            norm: rms_norm(c.hidden_size, c.rms_norm_eps, text.pp("norm"))?,
            lm_head,
            screen: None,
        })
    }

    /// Token embeddings of `ids` (batch × length). While trained, the padding token's row gets
    /// no gradient, as with transformers' `padding_idx`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let embeds = self.embed.forward(ids)?;
        match self.pad_token {
            Some(pad) if embeds.track_op() => {
                let is_pad = ids.eq(pad)?.unsqueeze(2)?.broadcast_as(embeds.shape())?;
                is_pad.where_cond(&embeds.detach(), &embeds)
            }
            _ => Ok(embeds),
        }
    }

    /// Logits for `embeds` (batch × length × width) following what `cache` holds, which it then
    /// also holds.
    pub fn forward(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let hidden = self.hidden(embeds, cache, Rows::Every)?;
        dense::forward_then(
            &self.lm_head,
            &self.norm.forward(&hidden)?,
            dense::Then::Nothing,
        )
    }

    /// The last decoder layer's output for `embeds` at the positions `rows` names (batch ×
    /// those positions × width), extending `cache` by every position: the last layer's
    /// queries, attention, output projection and MLP run at those positions only.
    fn hidden(&self, embeds: &Tensor, cache: &mut KvCache, rows: Rows) -> Result<Tensor> {
        let (b, t, _) = embeds.dims3()?;
        let device = embeds.device();
        cache.layers.resize_with(self.layers.len(), || None);
        cache.padding.resize(b, 0);
        cache.hidden.resize(b, Vec::new());
        let index = cache.positions(t, device)?;
        let positions = match &index {
            Some(index) => {
                let (cos, sin) = self.rotary.at(index, (b, t))?;
                Positions { cos, sin }
            }
            None => Positions {
                cos: self.rotary.cos.narrow(0, cache.len, t)?,
                sin: self.rotary.sin.narrow(0, cache.len, t)?,
            },
        };
        let pass = Pass {
            positions,
            padding: cache.padding.clone(),
            hidden: cache.hidden.clone(),
            offset: cache.len,
            tokens: t,
            device: device.clone(),
            mask: OnceCell::new(),
            first_slot: cache.first_slots(device)?,
        };
        let mut xs = embeds.clone();
        let last = self.layers.len() - 1;
        for (i, (layer, slot)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            let rows = if i == last { rows } else { Rows::Every };
            xs = layer.attention.forward(
                &layer.input_norm.forward(&xs)?,
                &xs,
                &pass,
                slot,
                (cache.room, rows),
            )?;
            let h = layer.post_norm.forward(&xs)?;
            xs = layer.gate_up.swiglu_add(&layer.down, &h, &xs)?;
        }
        cache.advance(t, index)?;
        Ok(xs)
    }

    /// Logits of the last position of each sequence only (batch × vocabulary): what decoding
    /// needs, without projecting the whole prompt onto the vocabulary.
    pub fn forward_last(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let last = self.last_state(embeds, cache)?;
        dense::forward_then(&self.lm_head, &last, dense::Then::Nothing)?.squeeze(1)
    }

    /// The argmax of [`TextModel::forward_last`]'s logits (batch, u32): through the output
    /// projection's screen when there is one, which reads a quarter of its bytes and chooses
    /// the same tokens.
    pub fn greedy_last(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.greedy(&self.last_state(embeds, cache)?)?.squeeze(1)
    }

    /// The argmax of the logits at every position of `embeds` (batch × length, u32), each as
    /// [`TextModel::greedy_last`] chooses it: what checking drafts asks.
    pub fn greedy_each(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        self.greedy(
            &self
                .norm
                .forward(&self.hidden(embeds, cache, Rows::Every)?)?,
        )
    }

    /// The index of the largest logit for each of `states` (… × width, normed): through the
    /// screen when there is one.
    fn greedy(&self, states: &Tensor) -> Result<Tensor> {
        match &self.screen {
            Some(screen) => screen.argmax(states),
            None => super::decoding::argmax(&dense::forward_then(
                &self.lm_head,
                states,
                dense::Then::Nothing,
            )?),
        }
    }

    /// The normed state of the last position of `embeds`' sequences (batch × 1 × width),
    /// following what `cache` holds, which it then also holds.
    fn last_state(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let hidden = self.hidden(embeds, cache, Rows::Last)?;
        self.norm.forward(&hidden)
    }

    /// With `on`, makes greedy choices go through an int8 screen of the output projection
    /// ([`dense::ArgmaxScreen`]) where it applies: frozen f32 weights on the CPU, where the
    /// projection is the largest read of a decoding step (the weights must not change after);
    /// without, from every logit.
    pub fn screen_output(&mut self, on: bool) -> Result<()> {
        self.screen = match on {
            true => dense::ArgmaxScreen::new(&self.lm_head)?,
            false => None,
        };
        Ok(())
    }
}

/// Where a batch's shorter prompts get their padding: before their tokens (generation, so
/// that every sequence's next token comes at the same position) or after them (training).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadSide {
    /// Zero rows before the tokens.
    Left,
    /// Zero rows after the tokens.
    Right,
}

impl TextModel {
    /// The input embeddings of a batch of prompts (batch × longest prompt × width): each
    /// prompt's token embeddings with the rows at `image_token` replaced, in order, by the rows
    /// of its image's features (image tokens × width), as Idefics3's `inputs_merger` does, and
    /// zero rows padding the shorter prompts on `side`. One embedding lookup and one gather
    /// build the whole batch, whatever its size: composing it token by token cost a copy per
    /// token, which on a GPU is a kernel launch each (754 for one SmolVLM-256M prompt). An
    /// error naming the prompt whose image tokens and features disagree in number.
    pub fn embed_with_images(
        &self,
        prompts: &[&[u32]],
        image_token: u32,
        features: &[Tensor],
        side: PadSide,
    ) -> Result<Tensor> {
        if prompts.len() != features.len() {
            candle_core::bail!(
                "{} prompts but {} images' features",
                prompts.len(),
                features.len()
            );
        }
        let embeddings = self.embed.embeddings();
        let (width, device) = (embeddings.dim(1)?, embeddings.device());
        let tokens: usize = prompts.iter().map(|p| p.len()).sum();
        let mut feature_rows = Vec::with_capacity(features.len());
        for (i, (prompt, f)) in prompts.iter().zip(features).enumerate() {
            let wanted = prompt.iter().filter(|&&id| id == image_token).count();
            let given = f.dim(0)?;
            if wanted != given {
                candle_core::bail!(
                    "prompt {i} has {wanted} image tokens but its image gives {given} rows of features"
                );
            }
            feature_rows.push(given);
        }
        // One table: every prompt's token embeddings, then every image's features, then a zero
        // row; each slot of the batch picks its row of it.
        let ids = Tensor::from_vec(prompts.concat(), (1, tokens), device)?;
        let mut parts = vec![self.embed(&ids)?.squeeze(0)?];
        parts.extend(features.iter().cloned());
        parts.push(Tensor::zeros((1, width), embeddings.dtype(), device)?);
        let table = Tensor::cat(&parts, 0)?;
        let zero_row = (tokens + feature_rows.iter().sum::<usize>()) as u32;
        let longest = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let mut picks = Vec::with_capacity(prompts.len() * longest);
        let (mut token_row, mut feature_row) = (0u32, tokens as u32);
        for (prompt, count) in prompts.iter().zip(&feature_rows) {
            let pad = longest - prompt.len();
            if side == PadSide::Left {
                picks.extend(std::iter::repeat_n(zero_row, pad));
            }
            let mut next_feature = feature_row;
            for (j, &id) in prompt.iter().enumerate() {
                picks.push(if id == image_token {
                    next_feature += 1;
                    next_feature - 1
                } else {
                    token_row + j as u32
                });
            }
            if side == PadSide::Right {
                picks.extend(std::iter::repeat_n(zero_row, pad));
            }
            token_row += prompt.len() as u32;
            feature_row += *count as u32;
        }
        let picks = Tensor::from_vec(picks, prompts.len() * longest, device)?;
        table
            .index_select(&picks, 0)?
            .reshape((prompts.len(), longest, width))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::max_difference;
    use candle_nn::VarMap;

    /// A one-layer decoder of random weights, 8 wide, 16 tokens.
    fn tiny_text_model() -> TextModel {
        tiny_text_models(&[DType::F32]).remove(0)
    }

    /// Decoders of the same random weights (two layers, 64 wide, grouped-query attention) in
    /// each of `dtypes`; the values' and output projections scaled up from their initial
    /// values so that what each token attends to moves its logits far more than rounding does.
    fn tiny_text_models(dtypes: &[DType]) -> Vec<TextModel> {
        let config: LlamaConfig = serde_json::from_value(serde_json::json!({
            "vocab_size": 16, "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "pad_token_id": null
        }))
        .unwrap();
        let weights = VarMap::new();
        let vb = VarBuilder::from_varmap(&weights, DType::F32, &Device::Cpu);
        TextModel::new(vb, &config, 32, None).unwrap();
        let tensors: std::collections::HashMap<String, Tensor> = weights
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(name, var)| {
                let scale = if name.contains("v_proj") || name.contains("o_proj") {
                    4.0
                } else {
                    1.0
                };
                (name.clone(), (var.as_tensor() * scale).unwrap().detach())
            })
            .collect();
        dtypes
            .iter()
            .map(|&dtype| {
                let vb = VarBuilder::from_tensors(tensors.clone(), dtype, &Device::Cpu);
                TextModel::new(vb, &config, 32, None).unwrap()
            })
            .collect()
    }

    /// Random input embeddings for [`tiny_text_models`]: three prompts of seven positions (3 ×
    /// 7 × 64) and two decoding steps' tokens for them (2 × 3 × 1 × 64).
    fn three_prompts_and_two_steps() -> (Tensor, Tensor) {
        (
            Tensor::randn(0f32, 1.0, (3, 7, 64), &Device::Cpu).unwrap(),
            Tensor::randn(0f32, 1.0, (2, 3, 1, 64), &Device::Cpu).unwrap(),
        )
    }

    /// A left-padded batch through the prefill and two decoding steps, in f32 (the CPU kernel,
    /// under the additive mask) and in bf16 (the fused softmax, under the causal rule alone):
    /// the same logits within bf16's precision at every real position. A rule that let a
    /// query see one slot too many or too few would move them by far more.
    #[test]
    fn the_causal_rule_and_the_mask_give_one_padded_batch_the_same_logits() {
        let models = tiny_text_models(&[DType::F32, DType::BF16]);
        let padding = vec![0usize, 3, 5];
        let (embeds, steps) = three_prompts_and_two_steps();
        let mut logits = Vec::new();
        for (model, dtype) in models.iter().zip([DType::F32, DType::BF16]) {
            let mut cache = KvCache::padded(padding.clone(), 2);
            let mut all = vec![model
                .forward(&embeds.to_dtype(dtype).unwrap(), &mut cache)
                .unwrap()];
            for step in 0..2 {
                let x = steps.get(step).unwrap().to_dtype(dtype).unwrap();
                all.push(model.forward(&x, &mut cache).unwrap());
            }
            let all = Tensor::cat(&all, 1).unwrap().to_dtype(DType::F32).unwrap();
            eprintln!(
                "{dtype:?}: {:?}",
                all.flatten_all()
                    .unwrap()
                    .narrow(0, 40, 4)
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            );
            logits.push(all);
        }
        for (r, &pad) in padding.iter().enumerate() {
            let real = |t: &Tensor| t.get(r).unwrap().narrow(0, pad, 9 - pad).unwrap();
            let (f32_logits, bf16_logits) = (real(&logits[0]), real(&logits[1]));
            let diff = max_difference(&f32_logits, &bf16_logits);
            let size = max_difference(&f32_logits, &f32_logits.zeros_like().unwrap());
            // bf16 against f32 through two layers: up to ~3.3 % of the largest logit seen in
            // a hundred runs; one slot too many seen moved them by ~40 %.
            assert!(
                diff < 0.06 * size.max(1.0),
                "sequence {r}: {diff} of {size}"
            );
        }
    }

    /// `forward_last`, whose last layer computes only each sequence's last position, gives the
    /// logits `forward` gives there and leaves the same cache: a left-padded prefill and two
    /// decoding steps, in f32 (the CPU kernel) and bf16 (the composed path under the causal
    /// rule). A last-layer query at the wrong position, or a cache missing a key, would move
    /// them by far more than the tolerance.
    #[test]
    fn the_last_position_alone_gives_the_logits_of_the_whole_pass() {
        let models = tiny_text_models(&[DType::F32, DType::BF16]);
        let padding = vec![0usize, 2, 4];
        let (embeds, steps) = three_prompts_and_two_steps();
        for (model, (dtype, tolerance)) in
            models.iter().zip([(DType::F32, 1e-5), (DType::BF16, 0.02)])
        {
            let (mut whole, mut last) = (
                KvCache::padded(padding.clone(), 2),
                KvCache::padded(padding.clone(), 2),
            );
            let x = embeds.to_dtype(dtype).unwrap();
            let mut pairs = vec![(
                model
                    .forward(&x, &mut whole)
                    .unwrap()
                    .narrow(1, 6, 1)
                    .unwrap()
                    .squeeze(1)
                    .unwrap(),
                model.forward_last(&x, &mut last).unwrap(),
            )];
            for step in 0..2 {
                let x = steps.get(step).unwrap().to_dtype(dtype).unwrap();
                pairs.push((
                    model.forward(&x, &mut whole).unwrap().squeeze(1).unwrap(),
                    model.forward_last(&x, &mut last).unwrap(),
                ));
            }
            for (i, (whole, last)) in pairs.iter().enumerate() {
                let (whole, last) = (
                    whole.to_dtype(DType::F32).unwrap(),
                    last.to_dtype(DType::F32).unwrap(),
                );
                assert_eq!(last.dims(), &[3, whole.dim(1).unwrap()]);
                let diff = max_difference(&whole, &last);
                let size = max_difference(&whole, &whole.zeros_like().unwrap());
                assert!(
                    diff <= tolerance * size.max(1.0),
                    "{dtype:?}, pass {i}: {diff} of {size}"
                );
            }
        }
    }

    /// A left-padded batch checks three tokens a sequence in one pass and keeps one, three and
    /// two of them ([`KvCache::keep`]), then decodes a step, drops a sequence and decodes
    /// another: each sequence's logits are those of the same sequence decoded alone from its
    /// unpadded prompt and the tokens it kept, in f32 (the CPU kernel) and bf16 (the composed
    /// path under the mask). A slot another sequence kept left visible, or a position counted
    /// from the cache's length, would move them by far more than the tolerance.
    #[test]
    fn drafts_one_sequence_kept_are_hidden_from_the_others() {
        let models = tiny_text_models(&[DType::F32, DType::BF16]);
        let padding = vec![0usize, 3, 5];
        let kept = [1usize, 3, 2];
        let (embeds, steps) = three_prompts_and_two_steps();
        let drafts = Tensor::randn(0f32, 1.0, (3, 3, 64), &Device::Cpu).unwrap();
        for (model, (dtype, tolerance)) in
            models.iter().zip([(DType::F32, 1e-5), (DType::BF16, 0.03)])
        {
            let at = |x: &Tensor| x.to_dtype(dtype).unwrap();
            let mut cache = KvCache::padded(padding.clone(), 4);
            model.forward(&at(&embeds), &mut cache).unwrap();
            model.forward(&at(&drafts), &mut cache).unwrap();
            cache.keep(3, &kept).unwrap();
            let first = model
                .forward(&at(&steps.get(0).unwrap()), &mut cache)
                .unwrap();
            cache.retain(&[2, 1]).unwrap();
            let order = Tensor::new(&[2u32, 1], &Device::Cpu).unwrap();
            let second = steps.get(1).unwrap().index_select(&order, 0).unwrap();
            let second = model.forward(&at(&second), &mut cache).unwrap();
            // Sequence r alone, and its logits after its first and second step.
            let alone = |r: usize, step_count: usize| -> Tensor {
                let row = |x: &Tensor, from: usize, len: usize| {
                    at(&x
                        .get(r)
                        .unwrap()
                        .narrow(0, from, len)
                        .unwrap()
                        .unsqueeze(0)
                        .unwrap())
                };
                let mut parts = vec![
                    row(&embeds, padding[r], 7 - padding[r]),
                    row(&drafts, 0, kept[r]),
                ];
                for step in 0..step_count {
                    parts.push(row(&steps.get(step).unwrap(), 0, 1));
                }
                let x = Tensor::cat(&parts, 1).unwrap();
                let logits = model.forward(&x, &mut KvCache::default()).unwrap();
                let last = logits.dim(1).unwrap() - 1;
                logits.narrow(1, last, 1).unwrap().squeeze(0).unwrap()
            };
            let mut pairs = Vec::new();
            for r in 0..3 {
                pairs.push((first.get(r).unwrap(), alone(r, 1), format!("sequence {r}")));
            }
            for (slot, r) in [2, 1].into_iter().enumerate() {
                let label = format!("sequence {r} after the retain");
                pairs.push((second.get(slot).unwrap(), alone(r, 2), label));
            }
            for (batched, alone, label) in pairs {
                let (batched, alone) = (
                    batched.to_dtype(DType::F32).unwrap(),
                    alone.to_dtype(DType::F32).unwrap(),
                );
                let diff = max_difference(&batched, &alone);
                let size = max_difference(&alone, &alone.zeros_like().unwrap());
                assert!(
                    diff <= tolerance * size.max(1.0),
                    "{dtype:?}, {label}: {diff} of {size}"
                );
            }
        }
        let mut cache = KvCache::padded(padding, 4);
        models[0].forward(&embeds, &mut cache).unwrap();
        let err = cache.keep(3, &[1, 4, 2]).unwrap_err().to_string();
        assert!(err.contains("cannot keep [1, 4, 2] of its last 3"), "{err}");
    }

    #[test]
    fn prompts_merge_with_their_images_and_pad_on_the_side_asked() {
        let text = tiny_text_model();
        let image = 9u32;
        let prompts: [&[u32]; 2] = [&[1, 9, 9, 2], &[3, 9, 4, 9, 9, 5]];
        let features = [
            Tensor::randn(0f32, 1.0, (2, 64), &Device::Cpu).unwrap(),
            Tensor::randn(0f32, 1.0, (3, 64), &Device::Cpu).unwrap(),
        ];
        let row_of = |id: u32| -> Vec<f32> {
            let ids = Tensor::new(&[[id]], &Device::Cpu).unwrap();
            text.embed(&ids)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        for side in [PadSide::Left, PadSide::Right] {
            let merged = text
                .embed_with_images(&prompts, image, &features, side)
                .unwrap();
            assert_eq!(merged.dims(), &[2, 6, 64]);
            for (r, prompt) in prompts.iter().enumerate() {
                let pad = 6 - prompt.len();
                let start = if side == PadSide::Left { pad } else { 0 };
                let rows: Vec<Vec<f32>> = merged.get(r).unwrap().to_vec2().unwrap();
                let mut next_feature = 0;
                for (slot, row) in rows.iter().enumerate() {
                    let want = match slot.checked_sub(start).and_then(|j| prompt.get(j)) {
                        None => vec![0.0; 64],
                        Some(&id) if id == image => {
                            next_feature += 1;
                            features[r]
                                .get(next_feature - 1)
                                .unwrap()
                                .to_vec1()
                                .unwrap()
                        }
                        Some(&id) => row_of(id),
                    };
                    assert_eq!(row, &want, "{side:?} padding, prompt {r}, slot {slot}");
                }
                assert_eq!(next_feature, features[r].dim(0).unwrap());
            }
        }
    }

    #[test]
    fn a_prompt_whose_image_tokens_and_features_disagree_is_named() {
        let text = tiny_text_model();
        let features = [
            Tensor::zeros((1, 64), DType::F32, &Device::Cpu).unwrap(),
            Tensor::zeros((1, 64), DType::F32, &Device::Cpu).unwrap(),
        ];
        let prompts: [&[u32]; 2] = [&[1, 9], &[9, 9]];
        let err = text
            .embed_with_images(&prompts, 9, &features, PadSide::Left)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("prompt 1 has 2 image tokens but its image gives 1"),
            "{err}"
        );
    }
}
