//! Building blocks shared by the models: the pre-norm transformer encoder of CLIP's and SigLIP's
//! towers, and the layer and RMS normalisations (on the CPU, one kernel of their own for both:
//! [`normalised`]).
//!
//! Every block also trains: built from variables (a `VarMap`), it takes the differentiable path
//! where the fast one has no backward pass (candle's fused layer norm) or would not see the
//! variables change (the fused attention projection).

use crate::attention;
use crate::attention::softmax::{causal_mask, Seen};
use crate::cpu_ops;
use crate::dense::{self, Activation, Parts, Then};
use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};
use rayon::prelude::*;

/// Layer normalisation with weight and bias, as `nn.LayerNorm`.
pub(crate) struct LayerNorm {
    inner: candle_nn::LayerNorm,
}

/// A [`LayerNorm`] of `size` features with weights `weight` and `bias` under `vb`.
pub(crate) fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm {
        inner: candle_nn::layer_norm(size, eps, vb)?,
    })
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (weight, bias) = (self.inner.weight(), self.inner.bias());
        if let Some(out) = normalised(xs, Centring::Mean(bias), weight, self.inner.eps())? {
            return Ok(out);
        }
        if !(xs.track_op() || weight.track_op()) {
            return self.inner.forward(xs);
        }
        // Trained, or with gradients flowing through: candle's fused kernel has no backward
        // pass, so the same formula in steps.
        let dtype = xs.dtype();
        let xs = xs.to_dtype(DType::F32)?;
        let centred = xs.broadcast_sub(&xs.mean_keepdim(D::Minus1)?)?;
        let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(variance + self.inner.eps())?.sqrt()?)?;
        let scaled = normed.to_dtype(dtype)?.broadcast_mul(weight)?;
        match bias {
            Some(bias) => scaled.broadcast_add(bias),
            None => Ok(scaled),
        }
    }
}

/// Root-mean-square normalisation with a weight, as Llama's `RMSNorm`.
pub(crate) struct RmsNorm {
    inner: candle_nn::RmsNorm,
    weight: Tensor,
    eps: f64,
}

/// An [`RmsNorm`] of `size` features with weight `weight` under `vb`.
pub(crate) fn rms_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<RmsNorm> {
    let weight = vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?;
    Ok(RmsNorm {
        inner: candle_nn::RmsNorm::new(weight.clone(), eps),
        weight,
        eps,
    })
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if let Some(out) = normalised(xs, Centring::None, &self.weight, self.eps)? {
            return Ok(out);
        }
        if !(xs.track_op() || self.weight.track_op()) {
            return self.inner.forward(xs);
        }
        // The fused kernel has no backward pass: the formula in steps, in f32.
        let dtype = xs.dtype();
        let xs = xs.to_dtype(DType::F32)?;
        let mean_square = xs.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xs.broadcast_div(&(mean_square + self.eps)?.sqrt()?)?;
        normed.to_dtype(dtype)?.broadcast_mul(&self.weight)
    }
}

/// Which normalisation [`normalised`] computes.
#[derive(Clone, Copy)]
enum Centring<'a> {
    /// Layer normalisation: `(x − mean) / √(variance + eps) · weight (+ bias)`, the variance
    /// about the mean, as PyTorch takes it.
    Mean(Option<&'a Tensor>),
    /// RMS normalisation: `x / √(mean square + eps) · weight`.
    None,
}

/// Each row (the last dimension) of `xs` normalised as `centring` says, times `weight`. `None`
/// unless every tensor is f32 on the CPU with no gradient tracked and `xs` is contiguous, for the
/// caller to compose the operation. candle's kernels sum each row one value at a time and write
/// into a buffer zeroed on one thread first; here each task of the thread pool takes whole rows
/// (about [`cpu_ops::CHUNK`] values), sums them sixteen lanes at a time and writes its part of
/// an output allocated unwritten.
fn normalised(
    xs: &Tensor,
    centring: Centring,
    weight: &Tensor,
    eps: f64,
) -> Result<Option<Tensor>> {
    let (centred, bias) = match centring {
        Centring::Mean(bias) => (true, bias),
        Centring::None => (false, None),
    };
    let tensors = [Some(xs), Some(weight), bias];
    let width = xs.dims().last().copied().unwrap_or(0);
    if !tensors.iter().flatten().all(|t| attention::kernel_takes(t))
        || !xs.is_contiguous()
        || width == 0
        || weight.dims() != [width]
        || bias.is_some_and(|b| b.dims() != [width])
    {
        return Ok(None);
    }
    let weight = weight.contiguous()?;
    let bias = bias.map(Tensor::contiguous).transpose()?;
    let (xs_storage, xs_layout) = xs.storage_and_layout();
    let (weight_storage, weight_layout) = weight.storage_and_layout();
    let bias_storage = bias.as_ref().map(Tensor::storage_and_layout);
    let values = cpu_ops::cpu_f32(&xs_storage, xs_layout, "normalisation")?;
    let weight = cpu_ops::cpu_f32(&weight_storage, weight_layout, "normalisation")?;
    let bias = match &bias_storage {
        Some((storage, layout)) => Some(cpu_ops::cpu_f32(storage, layout, "normalisation")?),
        None => None,
    };
    let (n, eps) = (width as f32, eps as f32);
    let rows_per_task = (cpu_ops::CHUNK / width).max(1);
    let mut out = Box::new_uninit_slice(values.len());
    out.par_chunks_mut(rows_per_task * width)
        .zip(values.par_chunks(rows_per_task * width))
        .for_each(|(out, values)| {
            cpu_ops::widest_simd(
                #[inline(always)]
                || {
                    for (out, x) in out.chunks_exact_mut(width).zip(values.chunks_exact(width)) {
                        if !centred {
                            let inverse = 1.0 / (cpu_ops::dot(x, x) / n + eps).sqrt();
                            for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
                                o.write(v * inverse * w);
                            }
                            continue;
                        }
                        let mean = cpu_ops::sum(x) / n;
                        let variance = cpu_ops::sum_squares_about(x, mean) / n;
                        let inverse = 1.0 / (variance + eps).sqrt();
                        match bias {
                            Some(bias) => {
                                for (((o, &v), &w), &b) in
                                    out.iter_mut().zip(x).zip(weight).zip(bias)
                                {
                                    o.write((v - mean) * inverse * w + b);
                                }
                            }
                            None => {
                                for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
                                    o.write((v - mean) * inverse * w);
                                }
                            }
                        }
                    }
                },
            )
        });
    // SAFETY: the tasks' chunks cover `out`, and each wrote every value of its rows.
    let out = unsafe { out.assume_init() }.into_vec();
    Tensor::from_vec(out, xs.shape(), xs.device()).map(Some)
}

/// A vision tower's patch embedding: a convolution whose stride is its kernel's side, taken as
/// the product of each patch (channels × side × side values, flattened as the kernel is) with
/// the kernel flattened to hidden × that many, stored as an encoder's weights are
/// ([`dense::column_major`]): candle's convolution ran CLIP's at 40–150 GFLOP/s.
pub(crate) struct PatchEmbedding {
    linear: Linear,
    side: usize,
}

impl PatchEmbedding {
    /// The embedding of `side`-pixel patches of `channels` channels into `hidden` values, from
    /// the convolution's `weight` (and `bias`, when `with_bias`) under `vb`.
    pub(crate) fn new(
        vb: VarBuilder,
        channels: usize,
        hidden: usize,
        side: usize,
        with_bias: bool,
    ) -> Result<Self> {
        let kernel = vb.get((hidden, channels, side, side), "weight")?;
        let bias = with_bias.then(|| vb.get(hidden, "bias")).transpose()?;
        let flat = Linear::new(kernel.reshape((hidden, ()))?, bias);
        Ok(Self {
            linear: dense::column_major(flat)?,
            side,
        })
    }

    /// The whole patches of `pixels` (batch × channels × height × width) embedded, row by row
    /// of patches: batch × patches × hidden. As the convolution (no padding), the pixels past
    /// the last whole patch of a row or column are left out: SmolVLM-Instruct's 384-pixel
    /// frames make 27 patches of 14 a side and leave 6. An error when not one patch fits.
    pub(crate) fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = pixels.dims4()?;
        let side = self.side;
        let (rows, columns) = (height / side, width / side);
        if rows == 0 || columns == 0 {
            candle_core::bail!("a {height} × {width} image holds no {side}-pixel patch");
        }
        let pixels = pixels
            .narrow(2, 0, rows * side)?
            .narrow(3, 0, columns * side)?;
        // batch × patch rows × patch columns × channels × side × side, flattened per patch.
        let patches = pixels
            .reshape((batch, channels, rows, side, columns, side))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((batch, rows * columns, channels * side * side))?;
        dense::forward_then(&self.linear, &patches, Then::Nothing)
    }
}

/// The sizes of a pre-norm transformer encoder (CLIP's and SigLIP's towers).
pub(crate) struct EncoderShape {
    pub(crate) hidden: usize,
    pub(crate) intermediate: usize,
    pub(crate) heads: usize,
    pub(crate) layers: usize,
    pub(crate) activation: Activation,
    pub(crate) eps: f64,
}

/// The [`EncoderShape`] of a Hugging Face tower config: CLIP's and SigLIP's configs name these
/// six fields alike (`hidden_size`, `intermediate_size`, `num_attention_heads`,
/// `num_hidden_layers`, `hidden_act`, `layer_norm_eps`).
macro_rules! encoder_shape {
    ($config:expr) => {
        $crate::nn::EncoderShape {
            hidden: $config.hidden_size,
            intermediate: $config.intermediate_size,
            heads: $config.num_attention_heads,
            layers: $config.num_hidden_layers,
            activation: $config.hidden_act,
            eps: $config.layer_norm_eps,
        }
    };
}
pub(crate) use encoder_shape;

/// How the rows of an encoder's input form sequences, as its attention sees them.
#[derive(Clone, Copy)]
enum Sequences<'a> {
    /// batch × length × width, every token attending to every token.
    All,
    /// batch × length × width, each token attending to the tokens up to itself: the rule of
    /// [`Seen::Causal`] (`first_slot`: a zero per sequence), and `mask` (1 × 1 × length ×
    /// length, [`causal_mask`]) for the paths that add one.
    Causal {
        mask: &'a Tensor,
        first_slot: &'a Tensor,
    },
    /// rows × width: sequences packed as this [`attention::Packing`] lays them out, causal
    /// within each.
    PackedCausal(&'a attention::Packing),
}

/// The rows of an encoder's output that its caller keeps: the last layer computes only those
/// (its keys and values still come from every row), the rest of its work being thrown away.
#[derive(Clone, Copy)]
enum Kept<'a> {
    /// Every row.
    Every,
    /// Each sequence's first token, with [`Sequences::All`] (a vision tower's class token).
    FirstToken,
    /// One token a sequence, at these positions within each, with
    /// [`Sequences::PackedCausal`] (a text tower's pooled token), each in a row of the
    /// sequence's own.
    At(&'a [usize]),
}

struct Attention {
    /// The query, key and value projections.
    qkv: Parts<Linear>,
    out: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(vb: VarBuilder, s: &EncoderShape) -> Result<Self> {
        let h = s.hidden;
        let parts = ["q_proj", "k_proj", "v_proj"]
            .iter()
            .map(|name| linear(h, h, vb.pp(name)))
            .collect::<Result<Vec<_>>>()?;
        let qkv = Parts::new(parts)?.column_major()?;
        Ok(Self {
            qkv,
            out: dense::column_major(linear(h, h, vb.pp("out_proj"))?)?,
            heads: s.heads,
            scale: ((h / s.heads) as f64).powf(-0.5),
        })
    }

    /// `residual` plus the attention over `xs` (the normalised residual), at the `kept` rows.
    fn forward(
        &self,
        xs: &Tensor,
        residual: &Tensor,
        sequences: Sequences,
        kept: Kept,
    ) -> Result<Tensor> {
        let qkv = self.qkv.forward(xs)?;
        let (mask, seen) = match (sequences, kept) {
            (Sequences::All, Kept::Every | Kept::FirstToken) => (None, Seen::All),
            (Sequences::Causal { mask, first_slot }, Kept::Every) => (
                Some(mask),
                Seen::Causal {
                    offset: 0,
                    first_slot,
                },
            ),
            (Sequences::PackedCausal(packing), Kept::Every | Kept::At(_)) => {
                let (queries, residual) = match kept {
                    Kept::At(positions) => {
                        let rows: Vec<u32> = positions
                            .iter()
                            .enumerate()
                            .map(|(sequence, &p)| packing.row(sequence, p) as u32)
                            .collect();
                        let rows = Tensor::from_vec(rows, positions.len(), residual.device())?;
                        let residual = residual.index_select(&rows, 0)?;
                        (attention::Queries::At(positions), residual)
                    }
                    _ => (attention::Queries::Every, residual.clone()),
                };
                let context = attention::attend_packed_causal(
                    &qkv, self.heads, packing, queries, self.scale,
                )?;
                return dense::forward_add(&self.out, &context, &residual);
            }
            _ => candle_core::bail!("encoder: kept rows that these sequences do not have"),
        };
        let (batch, len, width) = xs.dims3()?;
        // Heads apart first (free), so that each of q, k, v is one copy.
        let qkv = qkv.reshape((batch, len, 3 * self.heads, width / self.heads))?;
        let split = |i: usize, rows: usize| {
            cpu_ops::contiguous(
                &qkv.narrow(1, 0, rows)?
                    .narrow(2, i * self.heads, self.heads)?
                    .transpose(1, 2)?,
            )
        };
        let queries = match kept {
            Kept::FirstToken => 1,
            _ => len,
        };
        let (q, k, v) = (split(0, queries)?, split(1, len)?, split(2, len)?);
        let context = match attention::attend(&q, &k, &v, self.scale, mask)? {
            Some(context) => context,
            None => attention::attend_composed(&q, &k, &v, self.scale, mask, seen)?,
        };
        let context =
            cpu_ops::contiguous(&context.transpose(1, 2)?)?.reshape((batch, queries, width))?;
        let residual = residual.narrow(1, 0, queries)?;
        dense::forward_add(&self.out, &context, &residual)
    }
}

struct EncoderLayer {
    norm1: LayerNorm,
    attention: Attention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl EncoderLayer {
    fn new(vb: VarBuilder, s: &EncoderShape) -> Result<Self> {
        Ok(Self {
            norm1: layer_norm(s.hidden, s.eps, vb.pp("layer_norm1"))?,
            attention: Attention::new(vb.pp("self_attn"), s)?,
            norm2: layer_norm(s.hidden, s.eps, vb.pp("layer_norm2"))?,
            fc1: dense::column_major(linear(s.hidden, s.intermediate, vb.pp("mlp.fc1"))?)?,
            fc2: dense::column_major(linear(s.intermediate, s.hidden, vb.pp("mlp.fc2"))?)?,
            activation: s.activation,
        })
    }

    /// The layer's output at the `kept` rows of `xs`.
    fn forward(&self, xs: &Tensor, sequences: Sequences, kept: Kept) -> Result<Tensor> {
        let xs = self
            .attention
            .forward(&self.norm1.forward(xs)?, xs, sequences, kept)?;
        dense::mlp_add(
            &self.fc1,
            Then::Activate(self.activation),
            &self.fc2,
            &self.norm2.forward(&xs)?,
            &xs,
        )
    }
}

/// Encoder layers as transformers names them (`layers.N.self_attn.q_proj`, `layer_norm1`,
/// `mlp.fc1`, …), each attention then MLP with pre-norm residuals.
pub(crate) struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// The encoder's layers from `vb`; an error for none, since an encoder's callers keep some
    /// rows of its last layer.
    pub(crate) fn new(vb: VarBuilder, s: &EncoderShape) -> Result<Self> {
        if s.layers == 0 {
            candle_core::bail!("an encoder needs at least one layer");
        }
        let layers = (0..s.layers)
            .map(|i| EncoderLayer::new(vb.pp(format!("layers.{i}")), s))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// The encoder over a batch × length × width input, every token attending to every token.
    pub(crate) fn forward(&self, xs: Tensor) -> Result<Tensor> {
        self.run(xs, Sequences::All, Kept::Every)
    }

    /// [`Encoder::forward`]'s output at each sequence's first token only (batch × width): the
    /// last layer's other rows are not computed (a vision tower's class-token pooling, which
    /// skips nearly a layer's work).
    pub(crate) fn forward_first_token(&self, xs: Tensor) -> Result<Tensor> {
        self.run(xs, Sequences::All, Kept::FirstToken)?.squeeze(1)
    }

    /// The encoder over a batch × length × width input, each token attending to the tokens up
    /// to itself (a text tower; padding after a sequence's end changes none of its tokens).
    pub(crate) fn forward_causal(&self, xs: Tensor) -> Result<Tensor> {
        let (batch, len, _) = xs.dims3()?;
        let device = xs.device();
        let mask = causal_mask(&[0], len, len, 0, device)?;
        let first_slot = Tensor::zeros(batch, DType::U32, device)?;
        let sequences = Sequences::Causal {
            mask: &mask,
            first_slot: &first_slot,
        };
        self.run(xs, sequences, Kept::Every)
    }

    /// The encoder over sequences packed as `packing` lays them out (rows × width), each token
    /// attending to its own sequence up to itself, at one token a sequence (`positions` within
    /// each, in rows of their own): as [`Encoder::forward_causal`] over the sequences padded to
    /// the longest, without computing the padding, the tokens a sequence shares with an
    /// earlier one, nor the last layer's other rows (sequences × width). `None` when the packed
    /// attention does not take `xs` (see [`attention::kernel_takes`]): the caller pads.
    pub(crate) fn forward_packed_causal_at(
        &self,
        xs: Tensor,
        packing: &attention::Packing,
        positions: &[usize],
    ) -> Result<Option<Tensor>> {
        if !attention::kernel_takes(&xs) {
            return Ok(None);
        }
        let sequences = Sequences::PackedCausal(packing);
        self.run(xs, sequences, Kept::At(positions)).map(Some)
    }

    /// Every layer over `xs`, the last one at the `kept` rows only.
    fn run(&self, mut xs: Tensor, sequences: Sequences, kept: Kept) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let kept = if i == last { kept } else { Kept::Every };
            xs = layer.forward(&xs, sequences, kept)?;
        }
        Ok(xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::max_difference;
    use candle_core::Device;
    use candle_nn::{Conv2d, Conv2dConfig};

    #[test]
    fn both_normalisations_match_their_formulas_in_f64() {
        use crate::cpu_ops::sequence_values;
        // A width that fills no whole vector, and a layer's; enough rows for several tasks.
        for (rows, width) in [(3, 37), (1_000, 768)] {
            // Values off centre, where a variance taken as E[x²] − mean² loses digits.
            let x: Vec<f32> = sequence_values(rows * width, 1)
                .iter()
                .map(|v| 40.0 + v)
                .collect();
            let (weight, bias) = (sequence_values(width, 2), sequence_values(width, 3));
            let eps = 1e-6;
            let xs = Tensor::from_vec(x.clone(), (rows, width), &Device::Cpu).unwrap();
            let w = Tensor::from_vec(weight.clone(), width, &Device::Cpu).unwrap();
            let b = Tensor::from_vec(bias.clone(), width, &Device::Cpu).unwrap();
            // (centred, with a bias): layer norms with and without a bias, and RMS.
            for (centred, shifted) in [(true, true), (true, false), (false, false)] {
                let centring = match centred {
                    true => Centring::Mean(shifted.then_some(&b)),
                    false => Centring::None,
                };
                let got = normalised(&xs, centring, &w, eps)
                    .unwrap()
                    .expect("the CPU path takes f32");
                let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                for (r, (got, x)) in got.chunks(width).zip(x.chunks(width)).enumerate() {
                    let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                    let mean = if centred {
                        x.iter().sum::<f64>() / width as f64
                    } else {
                        0.0
                    };
                    let spread = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
                    let inverse = 1.0 / (spread + eps).sqrt();
                    for (i, &g) in got.iter().enumerate() {
                        let shift = if shifted { bias[i] as f64 } else { 0.0 };
                        let want = (x[i] - mean) * inverse * weight[i] as f64 + shift;
                        assert!(
                            (g as f64 - want).abs() < 1e-4,
                            "centred {centred}, bias {shifted}, {width} wide, row {r}, value {i}: \
                             {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_patch_embedding_equals_the_convolution_it_stands_for() {
        let device = Device::Cpu;
        let (channels, hidden, side) = (3, 20, 4);
        for with_bias in [false, true] {
            let kernel = Tensor::randn(0f32, 0.3, (hidden, channels, side, side), &device).unwrap();
            let bias = Tensor::randn(0f32, 1.0, hidden, &device).unwrap();
            let mut weights = std::collections::HashMap::from([("weight".to_string(), kernel)]);
            if with_bias {
                weights.insert("bias".to_string(), bias);
            }
            let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &device);
            let embedding = PatchEmbedding::new(vb, channels, hidden, side, with_bias).unwrap();
            let config = Conv2dConfig {
                stride: side,
                ..Default::default()
            };
            let conv = Conv2d::new(
                weights["weight"].clone(),
                weights.get("bias").cloned(),
                config,
            );
            // Two images of 3 × 5 patches (rows and columns of patches kept apart), whole or
            // with pixels past the last patch, which the convolution leaves out.
            for (height, width) in [(3 * side, 5 * side), (3 * side + 2, 5 * side + side - 1)] {
                let pixels =
                    Tensor::randn(0f32, 1.0, (2, channels, height, width), &device).unwrap();
                let want = conv
                    .forward(&pixels)
                    .unwrap()
                    .flatten_from(2)
                    .unwrap()
                    .transpose(1, 2)
                    .unwrap();
                let got = embedding.forward(&pixels).unwrap();
                assert_eq!(got.dims(), [2, 15, hidden]);
                assert_eq!(got.dims(), want.dims());
                assert!(
                    max_difference(&got, &want) < 1e-5,
                    "bias {with_bias}, {height} × {width}"
                );
            }
            let too_small = Tensor::zeros((1, channels, side - 1, 5 * side), DType::F32, &device);
            assert!(embedding.forward(&too_small.unwrap()).is_err());
        }
    }
}
