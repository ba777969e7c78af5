//! Linear layers on the CPU with the steps around their matrix product folded into it.
//!
//! candle computes a layer `x·wᵀ + b` as the product into a new tensor, then the bias added into
//! another on one thread; the activation after it and the residual connection around it each
//! write one more. Here the output buffer starts as the bias (or the residual plus the bias), the
//! product accumulates onto it (`gemm` reads the destination), and an activation, or SwiGLU's
//! `silu(gate) · up` over a fused gate and up projection, runs over it on the thread pool while
//! the rows are fresh. Only f32 tensors on the CPU that no gradient is tracked through take this
//! path ([`attention::kernel_takes`]); [`forward_then`] and [`forward_add`] compose candle's
//! steps for the others (a GPU, half precision, training), so a layer calls them either way.

use candle_core::{Device, Module, Result, Storage, Tensor, D};
use candle_nn::Linear;
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::attention::kernel_takes;
use crate::cpu_ops;
use crate::nn::Activation;

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
    if let Some(out) = fused(x, linear, None, then)? {
        return Ok(out);
    }
    let product = linear.forward(x)?;
    match then {
        Then::Nothing => Ok(product),
        Then::Activate(activation) => crate::nn::activate(activation, &product),
        Then::SwiGlu => {
            let half = product.dim(D::Minus1)? / 2;
            cpu_ops::silu_of(&product.narrow(D::Minus1, 0, half)?)?
                * product.narrow(D::Minus1, half, half)?
        }
    }
}

/// `residual + layer(x)`: a layer inside a residual connection.
pub(crate) fn forward_add<P: MaybePlain>(
    layer: &P,
    x: &Tensor,
    residual: &Tensor,
) -> Result<Tensor> {
    if let Some(linear) = layer.plain() {
        if let Some(out) = fused(x, linear, Some(residual), Then::Nothing)? {
            return Ok(out);
        }
    }
    residual + layer.forward(x)?
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

    /// SwiGLU over two parts, gate then up: `silu(gate(xs)) · up(xs)`.
    pub(crate) fn swiglu(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Parts::Stacked(linear, widths) if widths.len() == 2 && widths[0] == widths[1] => {
                forward_then(linear, xs, Then::SwiGlu)
            }
            Parts::Apart(parts) if parts.len() == 2 => {
                cpu_ops::silu_of(&parts[0].forward(xs)?)? * parts[1].forward(xs)?
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
    let weight = linear.weight();
    let bias = linear.bias();
    let tensors = [Some(x), Some(weight), bias, residual];
    if !tensors.iter().flatten().all(|t| kernel_takes(t))
        || matches!(then, Then::Activate(Activation::Gelu))
    {
        return Ok(None);
    }
    let (outputs, inputs) = weight.dims2()?;
    let mut dims = x.dims().to_vec();
    if dims.last() != Some(&inputs) || bias.is_some_and(|b| b.dims() != [outputs]) {
        return Ok(None);
    }
    let rows = x.elem_count() / inputs.max(1);
    *dims.last_mut().expect("x has a last dimension") = outputs;
    if residual.is_some_and(|r| r.dims() != dims.as_slice())
        || (then == Then::SwiGlu && outputs % 2 != 0)
        || rows * outputs * inputs == 0
    {
        return Ok(None);
    }
    let (x, weight) = (x.contiguous()?, weight.contiguous()?);
    let bias = bias.map(Tensor::contiguous).transpose()?;
    let residual = residual.map(Tensor::contiguous).transpose()?;
    let x_guard = x.storage_and_layout();
    let w_guard = weight.storage_and_layout();
    let b_guard = bias.as_ref().map(|b| b.storage_and_layout());
    let r_guard = residual.as_ref().map(|r| r.storage_and_layout());
    let xs = values(&x_guard.0, x_guard.1)?;
    let ws = values(&w_guard.0, w_guard.1)?;
    let bs = match &b_guard {
        Some((storage, layout)) => Some(values(storage, layout)?),
        None => None,
    };
    let rs = match &r_guard {
        Some((storage, layout)) => Some(values(storage, layout)?),
        None => None,
    };

    let rows_per_task = (CHUNK / outputs).max(1);
    let mut out = vec![0f32; rows * outputs];
    let read_out = bs.is_some() || rs.is_some();
    if read_out {
        out.par_chunks_mut(rows_per_task * outputs)
            .enumerate()
            .for_each(|(task, chunk)| {
                for (i, row) in chunk.chunks_exact_mut(outputs).enumerate() {
                    let r = task * rows_per_task + i;
                    match (rs, bs) {
                        (Some(rs), Some(bs)) => {
                            let residual = &rs[r * outputs..][..outputs];
                            for ((o, a), b) in row.iter_mut().zip(residual).zip(bs) {
                                *o = a + b;
                            }
                        }
                        (Some(rs), None) => row.copy_from_slice(&rs[r * outputs..][..outputs]),
                        (None, Some(bs)) => row.copy_from_slice(bs),
                        (None, None) => {}
                    }
                }
            });
    }
    let threads = rayon::current_num_threads();
    // SAFETY: `out` holds rows × outputs values written with row step `outputs`; `xs` holds
    // rows × inputs read with row step `inputs`; `ws` holds outputs × inputs, read as its
    // transpose (inputs × outputs: row step 1, column step `inputs`). The checks above fixed
    // every length, and `out` is a buffer of its own.
    unsafe {
        gemm(
            rows,
            outputs,
            inputs,
            out.as_mut_ptr(),
            1,
            outputs as isize,
            read_out,
            xs.as_ptr(),
            1,
            inputs as isize,
            ws.as_ptr(),
            inputs as isize,
            1,
            1f32,
            1f32,
            false,
            false,
            false,
            if threads > 1 {
                Parallelism::Rayon(threads)
            } else {
                Parallelism::None
            },
        );
    }
    let out = match then {
        Then::Nothing => out,
        Then::Activate(Activation::QuickGelu) => map_in_place(out, cpu_ops::quick_gelu),
        Then::Activate(Activation::GeluTanh) => map_in_place(out, cpu_ops::gelu_tanh),
        Then::Activate(Activation::Gelu) => unreachable!("refused above"),
        Then::SwiGlu => {
            let half = outputs / 2;
            *dims.last_mut().expect("a last dimension") = half;
            let mut gated = vec![0f32; rows * half];
            gated
                .par_chunks_mut(rows_per_task * half)
                .zip(out.par_chunks(rows_per_task * outputs))
                .for_each(|(gated, product)| {
                    for (g, row) in gated
                        .chunks_exact_mut(half)
                        .zip(product.chunks_exact(outputs))
                    {
                        let (gate, up) = row.split_at(half);
                        for ((g, &a), &u) in g.iter_mut().zip(gate).zip(up) {
                            *g = cpu_ops::silu(a) * u;
                        }
                    }
                });
            gated
        }
    };
    Tensor::from_vec(out, dims, &Device::Cpu).map(Some)
}

/// `values` with `f` applied to each on the thread pool. Generic over `f` (a function item, not
/// a pointer) so that the loop is compiled with it inlined and vectorised.
fn map_in_place(mut values: Vec<f32>, f: impl Fn(f32) -> f32 + Copy + Sync) -> Vec<f32> {
    values.par_chunks_mut(CHUNK).for_each(|chunk| {
        for v in chunk {
            *v = f(*v);
        }
    });
    values
}

/// The f32 values of a contiguous CPU tensor's storage.
fn values<'a>(storage: &'a Storage, layout: &candle_core::Layout) -> Result<&'a [f32]> {
    let Storage::Cpu(cpu) = storage else {
        candle_core::bail!("dense: a CPU tensor was expected")
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("dense: not contiguous".into()))?;
    Ok(&cpu.as_slice::<f32>()?[start..end])
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
    fn strided_input_and_erf_gelu_take_candles_path_with_the_same_result() {
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
