//! The row-wise argmax of a layer's product `x · wᵀ` without reading every weight in f32: what
//! greedy decoding asks of a language model's output projection, the largest single read of a
//! decoding step on the CPU (SmolVLM-256M's is 49,280 × 576 f32, 113 MB of the 538 MB of
//! weights a step reads).
//!
//! At load each weight row is stored once more as int8 codes and one f32 scale (a quarter of
//! the bytes), with a bound on how far a dot product through the codes can be from the one the
//! layer computes. A step reads the codes, keeps as candidates the outputs whose screened value
//! could still be the largest given the bounds (a handful: the largest logit of a trained model
//! stands clear of the rest), and computes only those outputs' products from the f32 weights,
//! as the whole product computes them ([`product::chosen_products`]). The choice is the first
//! largest of those, as candle's argmax over every output picks it, since every output that
//! could be the largest is a candidate.
//!
//! The bound, for an input row `x` (n values) and a weight row `w` whose codes times the scale
//! are `ŵ`, `e = w − ŵ`: |x·ŵ − x·w| ≤ ‖x‖‖e‖ (Cauchy–Schwarz), and a sum of n products taken
//! in f32 in any order is within γ = (n+1)u / (1 − (n+1)u), u = 2⁻²⁴, of Σ|xᵢ||wᵢ| ≤ ‖x‖‖w‖
//! of the exact sum (the one more for the product by the scale). So the screened value and the
//! layer's are within ‖x‖ · (‖e‖ + γ(‖ŵ‖ + ‖w‖)) of each other. The slack stored per row
//! doubles the γ term, which also covers the rounding of the comparisons made in f32 (a few u
//! of values no larger than ‖x‖‖ŵ‖), and adds a thousandth.

use candle_core::{Result, Tensor, D};
use candle_nn::Linear;
use rayon::prelude::*;

use super::product::{chosen_products, skinny_task_rows, skinny_task_sums, Layout};
use super::{forward_then, with_values, Operand, Then};
use crate::attention::kernel_takes;

/// Rows up to which [`ArgmaxScreen::argmax`] screens: a decoding step's, and a drafted pass of
/// eight sequences with up to seven drafts each (8 × 8 rows); the whole product above.
const SCREENED_ROWS: usize = 64;

/// Candidates of a row beyond which the screen gives up and the whole product is taken: a
/// model with no clear favourite (random weights, say), where the screen would only add work.
const MOST_CANDIDATES: usize = 64;

/// Bytes of codes per task of [`ArgmaxScreen::candidates`]: four times the f32 products'
/// tasks. On the 2-vCPU Xeon, SmolVLM-256M's 28 MB of codes took 1.18 ms warm (2.7 ms after
/// 400 MB read elsewhere) in tasks of 256 KB, 1.34 ms (2.9) in tasks of 64 KB.
const SCREEN_TASK_BYTES: usize = 256 * 1024;

/// A layer's weights, and their int8 screen, for [`ArgmaxScreen::argmax`].
pub(crate) struct ArgmaxScreen {
    /// The layer's weight (outputs × inputs, f32 on the CPU, row-major), for the candidates.
    weight: Tensor,
    /// Each weight row as int8 codes (outputs × inputs): the value over the row's scale,
    /// rounded.
    codes: Vec<i8>,
    /// Each row's scale: its largest magnitude over 127.
    scales: Vec<f32>,
    /// Each row's bound on |screened − computed| per unit of ‖x‖ (see the module's doc).
    slack: Vec<f32>,
    inputs: usize,
}

impl ArgmaxScreen {
    /// The screen of `linear`, or `None` where it does not apply: a weight that is not f32 on
    /// the CPU, is being trained (the codes would not follow it), is stored column-major, has
    /// a value that is not finite, or a layer with a bias.
    pub(crate) fn new(linear: &Linear) -> Result<Option<Self>> {
        let weight = linear.weight();
        if !kernel_takes(weight)
            || weight.rank() != 2
            || linear.bias().is_some()
            || Layout::of(weight) != Layout::RowMajor
        {
            return Ok(None);
        }
        let (outputs, inputs) = weight.dims2()?;
        if outputs == 0 || inputs == 0 {
            return Ok(None);
        }
        let rows = with_values([Operand::Values(weight)], |[values]| {
            let values = values.expect("held");
            if !values.iter().all(|v| v.is_finite()) {
                return Ok(None);
            }
            Ok(Some(
                values.par_chunks(inputs).map(quantised).collect::<Vec<_>>(),
            ))
        })?;
        let Some(rows) = rows else {
            return Ok(None);
        };
        let mut codes = Vec::with_capacity(outputs * inputs);
        let (mut scales, mut slack) = (Vec::with_capacity(outputs), Vec::with_capacity(outputs));
        for row in rows {
            codes.extend_from_slice(&row.codes);
            scales.push(row.scale);
            slack.push(row.slack);
        }
        Ok(Some(Self {
            weight: weight.contiguous()?,
            codes,
            scales,
            slack,
            inputs,
        }))
    }

    /// The index of the largest value of each row of `x · weightᵀ` (`x`: … × inputs; the
    /// answer: …, u32), the first of equal largest ones: candle's argmax of the layer's output.
    /// Screened for up to [`SCREENED_ROWS`] rows of f32 on the CPU (a decoding step's), the
    /// whole product otherwise.
    pub(crate) fn argmax(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let rows = x.elem_count() / self.inputs.max(1);
        if dims.last() != Some(&self.inputs) || !kernel_takes(x) || rows > SCREENED_ROWS {
            return self.whole_argmax(x);
        }
        let chosen = with_values(
            [Operand::Values(x), Operand::Values(&self.weight)],
            |[xs, weight]| Ok(self.screened(xs.expect("held"), weight.expect("held"))),
        )?;
        match chosen {
            Some(chosen) => Tensor::from_vec(chosen, &dims[..dims.len() - 1], x.device()),
            None => self.whole_argmax(x),
        }
    }

    /// The argmax from every output's product.
    fn whole_argmax(&self, x: &Tensor) -> Result<Tensor> {
        let layer = Linear::new(self.weight.clone(), None);
        forward_then(&layer, x, Then::Nothing)?.argmax(D::Minus1)
    }

    /// Each row of `xs`'s choice, or `None` when the screen cannot decide it (a value that is
    /// not finite, too many candidates) and the whole product must.
    fn screened(&self, xs: &[f32], weight: &[f32]) -> Option<Vec<u32>> {
        let candidates = self.candidates(xs)?;
        let mut chosen = Vec::with_capacity(candidates.len());
        for (x, candidates) in xs.chunks_exact(self.inputs).zip(candidates) {
            let values = chosen_products(x, weight, self.inputs, &candidates);
            if !values.iter().all(|v| v.is_finite()) {
                return None;
            }
            let mut best = 0;
            for (i, value) in values.iter().enumerate() {
                if *value > values[best] {
                    best = i;
                }
            }
            chosen.push(candidates[best] as u32);
        }
        Some(chosen)
    }

    /// The outputs that may be the largest for each row of `xs` (ascending, from one to
    /// [`MOST_CANDIDATES`]), or `None` as [`ArgmaxScreen::screened`]. One pass over the codes
    /// on the thread pool: each task screens its outputs and keeps those within their bounds of
    /// its own best ([`screen_task`]); the best over all tasks then drops the rest.
    fn candidates(&self, xs: &[f32]) -> Option<Vec<Vec<usize>>> {
        let inputs = self.inputs;
        let rows = xs.len() / inputs;
        let norms: Vec<f32> = xs
            .chunks_exact(inputs)
            .map(|x| {
                let squares: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                (squares.sqrt() * (1.0 + 1e-6)) as f32
            })
            .collect();
        if !norms.iter().all(|n| n.is_finite()) {
            return None;
        }
        let per_task = skinny_task_rows::<i8>(inputs, SCREEN_TASK_BYTES);
        let tasks: Vec<Option<TaskCandidates>> = self
            .codes
            .par_chunks(per_task * inputs)
            .zip(self.scales.par_chunks(per_task))
            .zip(self.slack.par_chunks(per_task))
            .enumerate()
            .map(|(task, ((codes, scales), slack))| {
                let task = Task {
                    first: task * per_task,
                    codes,
                    scales,
                    slack,
                };
                screen_task(task, xs, &norms, inputs)
            })
            .collect();
        let tasks: Vec<TaskCandidates> = tasks.into_iter().collect::<Option<_>>()?;
        let mut floor = vec![f32::NEG_INFINITY; rows];
        for task in &tasks {
            for (floor, task) in floor.iter_mut().zip(&task.floor) {
                *floor = floor.max(*task);
            }
        }
        let mut candidates = vec![Vec::new(); rows];
        for kept in tasks.iter().flat_map(|task| &task.kept) {
            if kept.ceiling >= floor[kept.row] {
                candidates[kept.row].push(kept.output);
            }
        }
        candidates
            .iter()
            .all(|c| !c.is_empty() && c.len() <= MOST_CANDIDATES)
            .then_some(candidates)
    }
}

/// One task of [`ArgmaxScreen::candidates`]: the outputs from `first`, their codes (outputs ×
/// inputs), scales and slack.
struct Task<'a> {
    first: usize,
    codes: &'a [i8],
    scales: &'a [f32],
    slack: &'a [f32],
}

/// What a task of [`ArgmaxScreen::candidates`] found.
struct TaskCandidates {
    /// Each row's floor over the task's outputs: the largest screened value less its bound.
    floor: Vec<f32>,
    /// The outputs whose screened value plus its bound reaches their row's floor, by output.
    kept: Vec<Kept>,
}

/// An output that may be its row's largest.
struct Kept {
    row: usize,
    output: usize,
    /// Its screened value plus its bound.
    ceiling: f32,
}

/// Screens one task's outputs for every row of `xs` (whose norms, rounded up, are `norms`):
/// `None` when a screened value is not finite.
fn screen_task(task: Task, xs: &[f32], norms: &[f32], inputs: usize) -> Option<TaskCandidates> {
    let rows = norms.len();
    let mut values = vec![0f32; task.scales.len() * rows];
    skinny_task_sums(&mut values, xs, task.codes, inputs);
    let mut floor = vec![f32::NEG_INFINITY; rows];
    for ((values, scale), slack) in values
        .chunks_exact_mut(rows)
        .zip(task.scales)
        .zip(task.slack)
    {
        for ((value, floor), norm) in values.iter_mut().zip(&mut floor).zip(norms) {
            *value *= scale;
            *floor = floor.max(*value - norm * slack);
        }
    }
    if !values.iter().all(|v| v.is_finite()) {
        return None;
    }
    let mut kept = Vec::new();
    for (o, (values, slack)) in values.chunks_exact(rows).zip(task.slack).enumerate() {
        for (row, (value, norm)) in values.iter().zip(norms).enumerate() {
            let ceiling = value + norm * slack;
            if ceiling >= floor[row] {
                kept.push(Kept {
                    row,
                    output: task.first + o,
                    ceiling,
                });
            }
        }
    }
    Some(TaskCandidates { floor, kept })
}

/// One weight row's screen.
struct Quantised {
    codes: Vec<i8>,
    scale: f32,
    slack: f32,
}

/// The screen of one weight row (finite values).
fn quantised(row: &[f32]) -> Quantised {
    let largest = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = largest / 127.0;
    let codes: Vec<i8> = row
        .iter()
        .map(|&v| {
            if scale > 0.0 {
                (v / scale).round().clamp(-127.0, 127.0) as i8
            } else {
                0
            }
        })
        .collect();
    let (mut error, mut norm, mut screened_norm) = (0f64, 0f64, 0f64);
    for (&v, &q) in row.iter().zip(&codes) {
        let screened = f64::from(scale) * f64::from(q);
        error += (f64::from(v) - screened).powi(2);
        norm += f64::from(v).powi(2);
        screened_norm += screened.powi(2);
    }
    let u = f64::powi(2.0, -24);
    let terms = (row.len() + 1) as f64;
    let gamma = terms * u / (1.0 - terms * u);
    let slack = (error.sqrt() + 2.0 * gamma * (norm.sqrt() + screened_norm.sqrt())) * 1.001;
    Quantised {
        codes,
        scale,
        // Rounded up into f32.
        slack: (slack as f32).max(f32::MIN_POSITIVE) * (1.0 + f32::EPSILON),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Values from a small linear congruential generator, in (−1, 1).
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn layer(weight: Vec<f32>, outputs: usize, inputs: usize) -> Linear {
        Linear::new(
            Tensor::from_vec(weight, (outputs, inputs), &Device::Cpu).unwrap(),
            None,
        )
    }

    /// candle's argmax of the whole product, the answer the screen must give.
    fn whole(linear: &Linear, x: &Tensor) -> Vec<u32> {
        forward_then(linear, x, Then::Nothing)
            .unwrap()
            .argmax(D::Minus1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn the_screen_chooses_what_the_whole_product_chooses() {
        // Inputs over whole 16-lane steps and a tail; outputs over several tasks and not a
        // whole number of blocks; rows alone and in blocks of four with some left.
        let (outputs, inputs) = (4133, 83);
        let mut weight = noise(outputs * inputs, 1);
        // A favourite row a little ahead of its twin: the screen cannot tell them apart (their
        // codes are equal) and the products must.
        let twin = 3 * inputs;
        let favourite = (outputs - 2) * inputs;
        weight.copy_within(twin..twin + inputs, favourite);
        weight[favourite] += 1e-5;
        // And an exact tie, which the first of the two must win.
        weight.copy_within(twin..twin + inputs, 7 * inputs);
        let linear = layer(weight.clone(), outputs, inputs);
        let screen = ArgmaxScreen::new(&linear)
            .unwrap()
            .expect("an f32 CPU layer");
        for rows in [1, 2, 5, 8] {
            for seed in 0..40 {
                let x = Tensor::from_vec(
                    noise(rows * inputs, 100 + seed),
                    (rows, 1, inputs),
                    &Device::Cpu,
                )
                .unwrap();
                let want = whole(&linear, &x);
                let got: Vec<u32> = screen
                    .argmax(&x)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                assert_eq!(got, want, "{rows} rows, seed {seed}");
            }
            // Rows aligned with the twins' weights: the favourite must win, by 1e-5 · x₀.
            let mut aligned = Vec::new();
            for r in 0..rows {
                let mut x = weight[twin..twin + inputs].to_vec();
                x[0] = 1.0 + r as f32;
                aligned.extend(x);
            }
            let x = Tensor::from_vec(aligned, (rows, inputs), &Device::Cpu).unwrap();
            let got: Vec<u32> = screen.argmax(&x).unwrap().to_vec1().unwrap();
            assert_eq!(got, vec![(outputs - 2) as u32; rows], "{rows} aligned rows");
            assert_eq!(got, whole(&linear, &x));
        }
    }

    #[test]
    fn the_first_of_equal_largest_values_is_chosen() {
        let (outputs, inputs) = (300, 40);
        let mut weight = noise(outputs * inputs, 2);
        // Rows 250 and 120 equal to row 9; x along them, so that the three tie at the top.
        for to in [120, 250] {
            weight.copy_within(9 * inputs..10 * inputs, to * inputs);
        }
        let x = weight[9 * inputs..10 * inputs].to_vec();
        let linear = layer(weight, outputs, inputs);
        let screen = ArgmaxScreen::new(&linear).unwrap().unwrap();
        let x = Tensor::from_vec(x, (1, inputs), &Device::Cpu).unwrap();
        let got: Vec<u32> = screen.argmax(&x).unwrap().to_vec1().unwrap();
        assert_eq!(got, vec![9]);
        assert_eq!(got, whole(&linear, &x));
    }

    #[test]
    fn a_clear_favourite_leaves_a_few_candidates_and_no_favourite_the_whole_product() {
        // A row along x wins by far: the bounds must leave little else (a bound that admitted
        // everything would choose right, and save nothing).
        let (outputs, inputs) = (4000, 64);
        let mut weight = noise(outputs * inputs, 3);
        let x = noise(inputs, 4);
        weight[1234 * inputs..1235 * inputs].copy_from_slice(&x);
        let screen = ArgmaxScreen::new(&layer(weight.clone(), outputs, inputs))
            .unwrap()
            .unwrap();
        assert_eq!(screen.candidates(&x), Some(vec![vec![1234]]));
        assert_eq!(screen.screened(&x, &weight), Some(vec![1234]));
        // Twice as many rows tied for first as a row may keep: the whole product decides.
        let mut tied = weight.clone();
        for o in 0..2 * MOST_CANDIDATES {
            tied.copy_within(1234 * inputs..1235 * inputs, o * inputs);
        }
        let screen = ArgmaxScreen::new(&layer(tied.clone(), outputs, inputs))
            .unwrap()
            .unwrap();
        assert_eq!(screen.screened(&x, &tied), None);
        let x = Tensor::from_vec(x, (1, inputs), &Device::Cpu).unwrap();
        assert_eq!(
            screen.argmax(&x).unwrap().to_vec1::<u32>().unwrap(),
            vec![0]
        );
    }

    #[test]
    fn no_screen_where_the_codes_would_not_follow_or_fit_the_weights() {
        let weight = Tensor::from_vec(noise(12, 5), (3, 4), &Device::Cpu).unwrap();
        let bias = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(ArgmaxScreen::new(&Linear::new(weight.clone(), Some(bias)))
            .unwrap()
            .is_none());
        let trained = candle_core::Var::from_tensor(&weight).unwrap();
        assert!(
            ArgmaxScreen::new(&Linear::new(trained.as_tensor().clone(), None))
                .unwrap()
                .is_none()
        );
        let mut values = noise(12, 6);
        values[5] = f32::INFINITY;
        let infinite = Tensor::from_vec(values, (3, 4), &Device::Cpu).unwrap();
        assert!(ArgmaxScreen::new(&Linear::new(infinite, None))
            .unwrap()
            .is_none());
        assert!(ArgmaxScreen::new(&Linear::new(weight, None))
            .unwrap()
            .is_some());
    }
}
