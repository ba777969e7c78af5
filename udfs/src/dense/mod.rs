//! Linear layers on the CPU with the steps around their matrix product folded into it.
//!
//! candle computes a layer `x·wᵀ + b` as the product into a new tensor, then the bias added into
//! another on one thread; the activation after it and the residual connection around it each
//! write one more. Here the output buffer starts as the bias (or the residual plus the bias), the
//! product accumulates onto it (`gemm` reads the destination), and an activation, or SwiGLU's
//! `silu(gate) · up` over a fused gate and up projection, runs over it on the thread pool while
//! the rows are fresh. The products themselves ([`product`]) read a decoder's weights as loaded
//! (a decoding step's few rows as dot products over them) and an encoder's stored transposed
//! at load ([`column_major`]). Only f32 tensors on the CPU that no gradient is tracked through
//! take this path ([`kernel_takes`]); [`forward_then`] and [`forward_add`] compose
//! candle's steps for the others (a GPU, half precision, training), so a layer calls them
//! either way.
//! The activations the models' MLPs name ([`Activation`]) are defined here with them.

use std::mem::MaybeUninit;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::Linear;
use rayon::prelude::*;
use serde::Deserialize;

use crate::attention::kernel_takes;
use crate::cpu_ops;
use product::{product_into, Layout, Weights};

pub mod epilogue;
mod product;
mod screen;

pub(crate) use screen::ArgmaxScreen;

/// Output values per task of the thread pool in the passes over the output.
const CHUNK: usize = 1 << 14;

/// What follows a layer's product and bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Nothing: the output is `x·wᵀ + b`.
    Nothing,
    /// Each value through an activation.
    Activate(Activation),
    /// SwiGLU over a layer whose rows are the gate projection's, then the up projection's (see
    /// [`stack`]): `silu(gate) · up`, half as wide as the product.
    SwiGlu,
}

/// `then(x · linearᵀ + bias)` over the last dimension of `x`.
pub(crate) fn forward_then(linear: &Linear, x: &Tensor, then: Then) -> Result<Tensor> {
    match fused(x, linear, None, then)? {
        Some(out) => Ok(out),
        None => composed_then(linear, x, then),
    }
}

/// [`forward_then`] off the CPU path: candle's product, then the bias and what follows it in
/// one pass ([`epilogue`]) when no gradient is tracked, else composed of candle's operations.
fn composed_then(linear: &Linear, x: &Tensor, then: Then) -> Result<Tensor> {
    let tracked =
        x.track_op() || linear.weight().track_op() || linear.bias().is_some_and(Tensor::track_op);
    let float = matches!(x.dtype(), DType::F32 | DType::BF16 | DType::F16);
    if !tracked && float {
        let product = Linear::new(linear.weight().clone(), None).forward(x)?;
        let bias = linear.bias();
        return match then {
            Then::Nothing => match bias {
                Some(bias) => epilogue::bias_then(&product, bias, None),
                None => Ok(product),
            },
            Then::Activate(activation) => match bias {
                Some(bias) => epilogue::bias_then(&product, bias, Some(activation)),
                None => activate(activation, &product),
            },
            Then::SwiGlu => match bias {
                Some(bias) => epilogue::swiglu(&epilogue::bias_then(&product, bias, None)?),
                None => epilogue::swiglu(&product),
            },
        };
    }
    let product = over_rows(x, |rows| linear.forward(rows))?;
    match then {
        Then::Nothing => Ok(product),
        Then::Activate(activation) => activate(activation, &product),
        Then::SwiGlu => {
            let half = product.dim(D::Minus1)? / 2;
            cpu_ops::silu_of(&product.narrow(D::Minus1, 0, half)?)?
                * product.narrow(D::Minus1, half, half)?
        }
    }
}

/// `layer(x)` for a layer over the last dimension of `x`, with `x`'s leading dimensions taken
/// as rows of one matrix (rows × inputs) and given back to the result. candle's `Linear` over a
/// batch × length × inputs tensor broadcasts its weight to every batch and multiplies batch by
/// batch; when a gradient is tracked, the backward pass then takes the weight's gradient as one
/// product per batch into a batch × inputs × outputs tensor and sums it over the batches. Over
/// rows it is one product, with the same values (the demo CLIP's training ran ~4 % faster,
/// `benches/RESULTS.md`, 2026-12-05).
pub(crate) fn over_rows(
    x: &Tensor,
    layer: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() <= 2 {
        return layer(x);
    }
    let (leading, inputs) = dims.split_at(dims.len() - 1);
    let out = layer(&x.reshape((leading.iter().product::<usize>(), inputs[0]))?)?;
    let mut shape = leading.to_vec();
    shape.push(out.dim(1)?);
    out.reshape(shape)
}

/// `residual + layer(x)`: a layer inside a residual connection.
pub(crate) fn forward_add<P: MaybePlain>(
    layer: &P,
    x: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    let Some(linear) = layer.plain() else {
        return residual + layer.forward(x)?;
    };
    match fused(x, linear, Some(residual), Then::Nothing)? {
        Some(out) => Ok(out),
        None => residual + composed_then(linear, x, Then::Nothing)?,
    }
}

/// The layers `parts` (one input width) as one whose output is theirs side by side, in order:
/// one product over a wider matrix runs faster than several narrow ones. Biases are kept when
/// every part has one; an error when some have one and others not.
pub(crate) fn stack(parts: &[&Linear]) -> Result<Linear> {
    let weight = Tensor::cat(&parts.iter().map(|p| p.weight()).collect::<Vec<_>>(), 0)?;
    let biases: Vec<&Tensor> = parts.iter().filter_map(|p| p.bias()).collect();
    let bias = match biases.len() {
        0 => None,
        n if n == parts.len() => Some(Tensor::cat(&biases, 0)?),
        _ => candle_core::bail!("layers with and without a bias cannot be stacked"),
    };
    Ok(Linear::new(weight, bias))
}

/// `linear` with its weight stored column-major (the transpose, row-major) when the CPU path
/// takes it ([`kernel_takes`]): for layers that see tens of rows or more per product, an
/// encoder's, whose products gemm then runs without repacking the rows (see [`product`]).
/// Anything else is returned as it is: a GPU's weights, half precision, variables being trained.
/// The layer computes the same values either way, by candle's path too.
pub(crate) fn column_major(linear: Linear) -> Result<Linear> {
    let weight = linear.weight();
    if !kernel_takes(weight) || weight.rank() != 2 {
        return Ok(linear);
    }
    let (outputs, inputs) = weight.dims2()?;
    let transpose = with_values([Operand::Values(weight)], |[values]| {
        Ok(product::transposed(values.expect("held"), outputs, inputs))
    })?;
    let stored = Tensor::from_vec(transpose, (inputs, outputs), &Device::Cpu)?.t()?;
    Ok(Linear::new(stored, linear.bias().cloned()))
}

/// A layer that may stand in a [`Parts`]: one that is a plain [`Linear`] (as loaded) answers it.
pub(crate) trait MaybePlain: Module {
    /// The plain layer, or `None` (one with an adapter, say).
    fn plain(&self) -> Option<&Linear>;
}

impl MaybePlain for Linear {
    fn plain(&self) -> Option<&Linear> {
        Some(self)
    }
}

/// Layers over one input, as the query, key and value projections, or SwiGLU's gate and up
/// projections: [`stack`]ed into one layer when every part is plain and frozen, kept apart when
/// one trains (a stacked copy would not follow its variables as they change) or has an adapter.
pub(crate) enum Parts<P> {
    /// One layer; the parts' output widths.
    Stacked(Linear, Vec<usize>),
    /// The layers as given.
    Apart(Vec<P>),
}

impl<P: MaybePlain> Parts<P> {
    /// `parts`, stacked when they can be.
    pub(crate) fn new(parts: Vec<P>) -> Result<Self> {
        let plain: Option<Vec<&Linear>> = parts.iter().map(MaybePlain::plain).collect();
        match plain {
            Some(plain) if plain.iter().all(|l| !l.weight().track_op()) => {
                let widths = plain
                    .iter()
                    .map(|l| l.weight().dim(0))
                    .collect::<Result<_>>()?;
                Ok(Parts::Stacked(stack(&plain)?, widths))
            }
            _ => Ok(Parts::Apart(parts)),
        }
    }

    /// The parts with a stacked layer's weight stored [`column_major`].
    pub(crate) fn column_major(self) -> Result<Self> {
        Ok(match self {
            Parts::Stacked(linear, widths) => Parts::Stacked(column_major(linear)?, widths),
            apart => apart,
        })
    }

    /// The parts' outputs for `xs` side by side, in order, along the last dimension.
    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Parts::Stacked(linear, _) => forward_then(linear, xs, Then::Nothing),
            Parts::Apart(parts) => Tensor::cat(
                &parts
                    .iter()
                    .map(|p| p.forward(xs))
                    .collect::<Result<Vec<_>>>()?,
                D::Minus1,
            ),
        }
    }

    /// `residual + down(silu(gate(xs)) · up(xs))` over two parts, gate then up: a SwiGLU MLP
    /// inside its residual connection, by [`mlp_add`] when stacked.
    pub(crate) fn swiglu_add<D: MaybePlain>(
        &self,
        down: &D,
        xs: &Tensor,
        residual: &Tensor,
    ) -> Result<Tensor> {
        match self {
            Parts::Stacked(linear, widths) if widths.len() == 2 && widths[0] == widths[1] => {
                mlp_add(linear, Then::SwiGlu, down, xs, residual)
            }
            Parts::Apart(parts) if parts.len() == 2 => {
                let gated = (cpu_ops::silu_of(&parts[0].forward(xs)?)? * parts[1].forward(xs)?)?;
                forward_add(down, &gated, residual)
            }
            _ => candle_core::bail!("SwiGLU takes a gate and an up projection of one width"),
        }
    }
}

/// The CPU path, or `None` when it does not take these tensors or this activation.
fn fused(
    x: &Tensor,
    linear: &Linear,
    residual: Option<&Tensor>,
    then: Then,
) -> Result<Option<Tensor>> {
    let Some(mut dims) = output_dims(x, &[(linear, then)], residual)? else {
        return Ok(None);
    };
    let out = with_values(
        [
            Operand::Values(x),
            Operand::Weight(linear.weight()),
            Operand::values(linear.bias()),
            Operand::values(residual),
        ],
        |[xs, weight, bias, residual]| {
            let (xs, weight) = (xs.expect("held"), weight.expect("held"));
            let layer = Weights::of(weight, bias, linear)?;
            let rows = xs.len() / layer.inputs;
            let mut out = Box::new_uninit_slice(rows * layer.outputs);
            let product = product_into(&mut out, xs, layer, residual);
            if then != Then::SwiGlu {
                finish(then, product, layer.outputs, &mut []);
                // SAFETY: `product_into` wrote every value.
                return Ok(unsafe { out.assume_init() }.into_vec());
            }
            let mut gated = Box::new_uninit_slice(rows * layer.outputs / 2);
            finish(then, product, layer.outputs, &mut gated);
            // SAFETY: `finish` wrote every value of `gated` (SwiGLU).
            Ok(unsafe { gated.assume_init() }.into_vec())
        },
    )?;
    let rows = x.elem_count() / x.dim(D::Minus1)?;
    *dims.last_mut().expect("a last dimension") = out.len() / rows;
    Tensor::from_vec(out, dims, &Device::Cpu).map(Some)
}

/// Rows of a [`mlp_add`] block: the block's hidden values (rows × the MLP's width) stay in the
/// processor's cache between the two products instead of going out to memory.
const BLOCK_ROWS: usize = 1024;

/// `residual + second(then(first(x)))`: a transformer's MLP inside its residual connection, as
/// [`forward_add`]`(second, &`[`forward_then`]`(first, x, then)?, residual)` computes it, but
/// [`BLOCK_ROWS`] rows at a time on the CPU path: the hidden values of a block are produced,
/// activated and consumed while they are in cache, and no tensor as large as the whole hidden
/// layer is ever allocated (8 prompts of 754 tokens make a 74 MB one in SmolVLM).
pub(crate) fn mlp_add<P: MaybePlain>(
    first: &Linear,
    then: Then,
    second: &P,
    x: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    if let Some(out) = mlp_fused(first, then, second.plain(), x, residual)? {
        return Ok(out);
    }
    forward_add(second, &forward_then(first, x, then)?, residual)
}

/// The CPU path of [`mlp_add`], or `None` when it does not take these tensors.
fn mlp_fused(
    first: &Linear,
    then: Then,
    second: Option<&Linear>,
    x: &Tensor,
    residual: &Tensor,
) -> Result<Option<Tensor>> {
    let Some(second) = second else {
        return Ok(None);
    };
    let Some(dims) = output_dims(x, &[(first, then), (second, Then::Nothing)], Some(residual))?
    else {
        return Ok(None);
    };
    let operands = [
        Operand::Values(x),
        Operand::Weight(first.weight()),
        Operand::values(first.bias()),
        Operand::Weight(second.weight()),
        Operand::values(second.bias()),
        Operand::Values(residual),
    ];
    let out = with_values(operands, |[xs, w1, b1, w2, b2, residual]| {
        let (xs, residual) = (xs.expect("held"), residual.expect("held"));
        let one = Weights::of(w1.expect("held"), b1, first)?;
        let two = Weights::of(w2.expect("held"), b2, second)?;
        let rows = xs.len() / one.inputs;
        let mut out = Box::new_uninit_slice(rows * two.outputs);
        let block = BLOCK_ROWS.min(rows);
        let gated_width = if then == Then::SwiGlu { two.inputs } else { 0 };
        let mut hidden = Box::new_uninit_slice(block * one.outputs);
        let mut gated = Box::new_uninit_slice(block * gated_width);
        for start in (0..rows).step_by(block) {
            let n = block.min(rows - start);
            let hidden = product_into(
                &mut hidden[..n * one.outputs],
                &xs[start * one.inputs..][..n * one.inputs],
                one,
                None,
            );
            let gated = finish(then, hidden, one.outputs, &mut gated[..n * gated_width]);
            let middle: &[f32] = if then == Then::SwiGlu { gated } else { hidden };
            let at = start * two.outputs..(start + n) * two.outputs;
            product_into(&mut out[at.clone()], middle, two, Some(&residual[at]));
        }
        // SAFETY: the blocks' products wrote every row of `out`.
        Ok(unsafe { out.assume_init() }.into_vec())
    })?;
    Tensor::from_vec(out, dims, &Device::Cpu).map(Some)
}

/// The output dimensions of `x` through `layers` in turn (each with what follows it), when the
/// CPU path takes them all: f32 on the CPU without gradients, widths that chain, a residual of
/// the last layer's output shape, an activation of this module's and an even width for SwiGLU.
fn output_dims(
    x: &Tensor,
    layers: &[(&Linear, Then)],
    residual: Option<&Tensor>,
) -> Result<Option<Vec<usize>>> {
    let mut dims = x.dims().to_vec();
    let tensors = layers
        .iter()
        .flat_map(|(l, _)| [Some(l.weight()), l.bias()])
        .chain([Some(x), residual]);
    if !tensors.flatten().all(kernel_takes) || x.elem_count() == 0 {
        return Ok(None);
    }
    for (linear, then) in layers {
        let (outputs, inputs) = linear.weight().dims2()?;
        let fits = dims.last() == Some(&inputs)
            && outputs * inputs > 0
            && linear.bias().is_none_or(|b| b.dims() == [outputs])
            && match then {
                Then::Activate(activation) => *activation != Activation::Gelu,
                Then::SwiGlu => outputs % 2 == 0,
                Then::Nothing => true,
            };
        if !fits {
            return Ok(None);
        }
        *dims.last_mut().expect("x has a last dimension") = if *then == Then::SwiGlu {
            outputs / 2
        } else {
            outputs
        };
    }
    Ok((residual.is_none_or(|r| r.dims() == dims.as_slice())).then_some(dims))
}

/// A tensor [`with_values`] lends its values of.
#[derive(Clone, Copy)]
enum Operand<'a> {
    /// None: an absent bias or residual.
    Absent,
    /// Values read row-major: made contiguous first when they are not.
    Values(&'a Tensor),
    /// A layer's weight: lent as it lies when stored column-major ([`Layout::of`]), as the
    /// values of its transpose; otherwise as [`Operand::Values`].
    Weight(&'a Tensor),
}

impl<'a> Operand<'a> {
    /// [`Operand::Values`] of a tensor that may be absent.
    fn values(tensor: Option<&'a Tensor>) -> Self {
        tensor.map_or(Operand::Absent, Operand::Values)
    }
}

/// `f` of the values of `operands`, each borrowed for the call as [`Operand`] says.
fn with_values<const N: usize, R>(
    operands: [Operand; N],
    f: impl FnOnce([Option<&[f32]>; N]) -> Result<R>,
) -> Result<R> {
    let mut held = [const { None }; N];
    for (slot, operand) in held.iter_mut().zip(operands) {
        *slot = match operand {
            Operand::Absent => None,
            Operand::Weight(w) if Layout::of(w) == Layout::ColumnMajor => Some(w.t()?),
            Operand::Weight(t) | Operand::Values(t) => Some(cpu_ops::contiguous(t)?),
        };
    }
    let guards: Vec<_> = held
        .iter()
        .map(|t| t.as_ref().map(Tensor::storage_and_layout))
        .collect();
    let mut slices = [None; N];
    for (slot, guard) in slices.iter_mut().zip(&guards) {
        *slot = match guard {
            Some((storage, layout)) => Some(cpu_ops::cpu_f32(storage, layout, "dense")?),
            None => None,
        };
    }
    f(slices)
}

/// `then` over `product` (rows × `width`) on the thread pool: in place, or for SwiGLU into
/// `gated` (rows × `width` / 2), every value of which it writes and returns (for the others,
/// none: `gated` is then left as it was).
fn finish<'g>(
    then: Then,
    product: &mut [f32],
    width: usize,
    gated: &'g mut [MaybeUninit<f32>],
) -> &'g mut [f32] {
    match then {
        Then::Nothing => &mut [],
        Then::Activate(Activation::QuickGelu) => {
            map_in_place(product, cpu_ops::quick_gelu);
            &mut []
        }
        Then::Activate(Activation::GeluTanh) => {
            map_in_place(product, cpu_ops::gelu_tanh);
            &mut []
        }
        Then::Activate(Activation::Gelu) => unreachable!("refused by output_dims"),
        Then::SwiGlu => {
            let half = width / 2;
            let rows_per_task = (CHUNK / width).max(1);
            gated
                .par_chunks_mut(rows_per_task * half)
                .zip(product.par_chunks(rows_per_task * width))
                .for_each(|(gated, product)| {
                    cpu_ops::widest_simd(
                        #[inline(always)]
                        || {
                            for (g, row) in gated
                                .chunks_exact_mut(half)
                                .zip(product.chunks_exact(width))
                            {
                                let (gate, up) = row.split_at(half);
                                for ((g, &a), &u) in g.iter_mut().zip(gate).zip(up) {
                                    g.write(cpu_ops::silu(a) * u);
                                }
                            }
                        },
                    )
                });
            // SAFETY: the tasks' chunks of `gated` cover it (a row of `product` for each of its
            // rows), and each wrote every value of its own.
            unsafe { cpu_ops::written(gated) }
        }
    }
}

/// The activation between the two MLP layers (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    /// `x · σ(1.702 x)`, OpenAI's CLIP.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// The exact (erf) GELU.
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
}

/// Applies `activation`.
pub(crate) fn activate(activation: Activation, xs: &Tensor) -> Result<Tensor> {
    match activation {
        Activation::QuickGelu => cpu_ops::quick_gelu_of(xs),
        Activation::Gelu => xs.gelu_erf(),
        Activation::GeluTanh => cpu_ops::gelu_tanh_of(xs),
    }
}

/// `f` applied to each of `values` on the thread pool. Generic over `f` (a function item, not
/// a pointer) so that the loop is compiled with it inlined and vectorised, for the widest SIMD
/// the processor has ([`cpu_ops::widest_simd`]).
fn map_in_place(values: &mut [f32], f: impl Fn(f32) -> f32 + Copy + Sync) {
    values.par_chunks_mut(CHUNK).for_each(|chunk| {
        cpu_ops::widest_simd(
            #[inline(always)]
            || {
                for v in chunk {
                    *v = f(*v);
                }
            },
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::max_difference;

    fn layer(outputs: usize, inputs: usize, bias: bool) -> Linear {
        let weight = Tensor::randn(0f32, 0.2, (outputs, inputs), &Device::Cpu).unwrap();
        let bias = bias.then(|| Tensor::randn(0f32, 1.0, outputs, &Device::Cpu).unwrap());
        Linear::new(weight, bias)
    }

    #[test]
    fn the_fused_layer_equals_candles_steps() {
        let x = Tensor::randn(0f32, 1.0, (2, 5, 24), &Device::Cpu).unwrap();
        for bias in [false, true] {
            let linear = layer(10, 24, bias);
            let product = linear.forward(&x).unwrap();
            let residual = Tensor::randn(0f32, 1.0, (2, 5, 10), &Device::Cpu).unwrap();
            let cases = [
                (forward_then(&linear, &x, Then::Nothing), product.clone()),
                (
                    forward_then(&linear, &x, Then::Activate(Activation::GeluTanh)),
                    product.gelu().unwrap(),
                ),
                (
                    forward_then(&linear, &x, Then::Activate(Activation::QuickGelu)),
                    (&product * candle_nn::ops::sigmoid(&(&product * 1.702).unwrap()).unwrap())
                        .unwrap(),
                ),
                (
                    forward_then(&linear, &x, Then::SwiGlu),
                    (candle_nn::ops::silu(&product.narrow(2, 0, 5).unwrap()).unwrap()
                        * product.narrow(2, 5, 5).unwrap())
                    .unwrap(),
                ),
                (
                    forward_add(&linear, &x, &residual),
                    (&residual + &product).unwrap(),
                ),
            ];
            for (i, (fused, steps)) in cases.into_iter().enumerate() {
                let fused = fused.unwrap();
                assert_eq!(fused.dims(), steps.dims(), "case {i}");
                let d = max_difference(&fused, &steps);
                assert!(d < 1e-5, "case {i}, bias {bias}: {d}");
            }
        }
    }

    #[test]
    fn the_mlp_block_by_block_equals_its_layers_one_after_another() {
        // More rows than two blocks, so that the last block is a short one.
        let rows = 2 * BLOCK_ROWS + 3;
        let x = Tensor::randn(0f32, 1.0, (1, rows, 12), &Device::Cpu).unwrap();
        let residual = Tensor::randn(0f32, 1.0, (1, rows, 12), &Device::Cpu).unwrap();
        let cases = [
            (
                layer(20, 12, true),
                Then::Activate(Activation::GeluTanh),
                layer(12, 20, true),
            ),
            (layer(40, 12, false), Then::SwiGlu, layer(12, 20, false)),
        ];
        for (first, then, second) in cases {
            let hidden = first.forward(&x).unwrap();
            let hidden = match then {
                Then::SwiGlu => (candle_nn::ops::silu(&hidden.narrow(2, 0, 20).unwrap()).unwrap()
                    * hidden.narrow(2, 20, 20).unwrap())
                .unwrap(),
                _ => hidden.gelu().unwrap(),
            };
            let want = (&residual + second.forward(&hidden).unwrap()).unwrap();
            let got = mlp_add(&first, then, &second, &x, &residual).unwrap();
            assert_eq!(got.dims(), want.dims());
            let d = max_difference(&got, &want);
            assert!(d < 1e-5, "{then:?}: {d}");
        }
        // A width that does not chain is refused by the CPU path and fails in candle's.
        let (first, second) = (layer(20, 12, true), layer(12, 16, true));
        assert!(mlp_add(&first, Then::Nothing, &second, &x, &residual).is_err());
    }

    #[test]
    fn every_row_count_takes_a_path_that_equals_candles_in_both_layouts() {
        // Row counts around each path's bounds (see `product`); widths with tails after whole
        // vectors and tasks.
        let (outputs, inputs) = (2 * 64 + 5, 2 * 64 + 5);
        let row_major = layer(outputs, inputs, true);
        let stored = column_major(row_major.clone()).unwrap();
        assert!(!stored.weight().is_contiguous(), "stored transposed");
        // Sums of 133 products taken in another order than candle's: a few values a run
        // differ by ~10 units in the last place (1.05e-5 seen); a wrong product is off by ~1.
        let tolerance = 5e-5;
        for rows in [1, 3, 4, 7, 20, 32, 33, 64, 65, 90] {
            let x = Tensor::randn(0f32, 1.0, (rows, inputs), &Device::Cpu).unwrap();
            let residual = Tensor::randn(0f32, 1.0, (rows, outputs), &Device::Cpu).unwrap();
            let want = row_major.forward(&x).unwrap();
            for linear in [&row_major, &stored] {
                let got = forward_then(linear, &x, Then::Nothing).unwrap();
                let d = max_difference(&got, &want);
                assert!(d < tolerance, "{rows} rows: {d}");
                let got = forward_add(linear, &x, &residual).unwrap();
                let want = (&residual + &want).unwrap();
                let d = max_difference(&got, &want);
                assert!(d < tolerance, "{rows} rows, residual: {d}");
            }
            // candle's path (erf GELU is not fused) reads the stored transpose as well.
            let erf = forward_then(&stored, &x, Then::Activate(Activation::Gelu)).unwrap();
            assert!(max_difference(&erf, &want.gelu_erf().unwrap()) < 1e-5);
        }
    }

    #[test]
    fn strided_input_is_read_and_erf_gelu_takes_candles_path() {
        let linear = layer(6, 8, true);
        let x = Tensor::randn(0f32, 1.0, (8, 3), &Device::Cpu)
            .unwrap()
            .t()
            .unwrap();
        let want = linear.forward(&x.contiguous().unwrap()).unwrap();
        let got = forward_then(&linear, &x, Then::Nothing).unwrap();
        assert!(max_difference(&got, &want) < 1e-5);
        let erf = forward_then(&linear, &x, Then::Activate(Activation::Gelu)).unwrap();
        assert!(max_difference(&erf, &want.gelu_erf().unwrap()) < 1e-6);
    }

    #[test]
    fn stacked_layers_give_their_outputs_side_by_side() {
        let (a, b) = (layer(4, 6, true), layer(3, 6, true));
        let x = Tensor::randn(0f32, 1.0, (5, 6), &Device::Cpu).unwrap();
        let stacked = forward_then(&stack(&[&a, &b]).unwrap(), &x, Then::Nothing).unwrap();
        let apart = Tensor::cat(&[a.forward(&x).unwrap(), b.forward(&x).unwrap()], 1).unwrap();
        assert!(max_difference(&stacked, &apart) < 1e-6);
        assert!(stack(&[&a, &layer(3, 6, false)]).is_err());
    }
}
