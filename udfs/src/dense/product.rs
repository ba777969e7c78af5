//! The products `x · wᵀ` of [`super`]'s CPU path, for weights in either of two layouts.
//!
//! Weights stored as loaded (outputs × inputs, row-major) suit a decoder, whose steps multiply a
//! few rows: those go to dot products over the weight rows as they lie ([`skinny_product`]), more
//! to the gemm crate, one thread per range of outputs ([`gemm_product`]). An encoder multiplies
//! tens of rows or more per call (a CLIP text is about 20 tokens, a photo 50 patches, a SigLIP
//! tile 1024), and for it the weights are stored transposed once at load
//! ([`super::column_major`]): gemm then reads `x` as it lies (as the left operand, row-major, it
//! would be repacked) and packs only the weights, and only for products of more than 48 rows
//! (its single-thread threshold); where the processor has AVX-512, [`panel_product`] takes them
//! instead, reading the weights' columns in panels of 64 (copied side by side first for many
//! rows), for a few rows everywhere and for any number on AMD's processors (see
//! [`ColumnMajor::for_rows`]).

use std::mem::MaybeUninit;

use candle_core::{Result, Tensor};
use candle_nn::Linear;
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use super::CHUNK;
use crate::cpu_ops;

/// How a layer's weight (outputs × inputs) lies in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// Output by output: each output's weights side by side, as checkpoints store them.
    RowMajor,
    /// Input by input (the transpose stored row-major): each input's weights side by side.
    ColumnMajor,
}

impl Layout {
    /// The layout `weight`'s values are read in: column-major when it is a 2-D tensor stored
    /// so (see [`super::column_major`]); row-major otherwise (made contiguous first when it is
    /// neither).
    pub(super) fn of(weight: &Tensor) -> Self {
        let layout = weight.layout();
        if weight.rank() == 2 && !layout.is_contiguous() && layout.is_fortran_contiguous() {
            Layout::ColumnMajor
        } else {
            Layout::RowMajor
        }
    }
}

/// Rows and columns of one tile of [`transposed`]: a tile's rows and its transpose's stay in
/// the first-level cache while it is copied.
const TILE: usize = 32;

/// The transpose of `values` (`rows` × `columns`, row-major), row-major: tile by tile on the
/// thread pool, each task writing [`TILE`] rows of the transpose. candle's strided copy takes
/// one index computation per value, which made CLIP's load four times as long.
pub(super) fn transposed(values: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    assert_eq!(
        values.len(),
        rows * columns,
        "dense: a matrix of another size"
    );
    let mut out = vec![0f32; values.len()];
    out.par_chunks_mut(TILE * rows.max(1))
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * TILE;
            let width = out.len() / rows.max(1);
            for r0 in (0..rows).step_by(TILE) {
                for c in 0..width {
                    for r in r0..(r0 + TILE).min(rows) {
                        out[c * rows + r] = values[r * columns + first + c];
                    }
                }
            }
        });
    out
}

/// A layer's weight and bias as slices.
#[derive(Clone, Copy)]
pub(super) struct Weights<'a> {
    weight: &'a [f32],
    layout: Layout,
    bias: Option<&'a [f32]>,
    pub(super) outputs: usize,
    pub(super) inputs: usize,
}

impl<'a> Weights<'a> {
    /// `linear`'s values: `weight` as [`Layout::of`] reads it, and `bias`.
    pub(super) fn of(weight: &'a [f32], bias: Option<&'a [f32]>, linear: &Linear) -> Result<Self> {
        let (outputs, inputs) = linear.weight().dims2()?;
        Ok(Self {
            weight,
            layout: Layout::of(linear.weight()),
            bias,
            outputs,
            inputs,
        })
    }
}

/// `out` (rows × outputs) = `residual` (when given) + bias (when the layer has one) + `x` (rows ×
/// inputs) · weightᵀ: the starting values written on the thread pool, then one product that
/// accumulates onto them (or writes, when there are none). `out` need not hold values before
/// (a buffer is never zeroed only to be written over: on 2 vCPUs that memset ran on one thread
/// while the other waited); the values written are returned, every one of them.
pub(super) fn product_into<'o>(
    out: &'o mut [MaybeUninit<f32>],
    x: &[f32],
    layer: Weights,
    residual: Option<&[f32]>,
) -> &'o mut [f32] {
    let Weights {
        weight,
        layout,
        bias,
        outputs,
        inputs,
    } = layer;
    let rows = out.len() / outputs;
    assert!(
        out.len() == rows * outputs
            && x.len() == rows * inputs
            && weight.len() == outputs * inputs
            && bias.is_none_or(|b| b.len() == outputs)
            && residual.is_none_or(|r| r.len() == out.len()),
        "dense: a {rows} × {inputs} by {inputs} × {outputs} product outside its buffers"
    );
    let rows_per_task = (CHUNK / outputs).max(1);
    let read_out = bias.is_some() || residual.is_some();
    if read_out {
        out.par_chunks_mut(rows_per_task * outputs)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * rows_per_task * outputs;
                let residual = residual.map(|r| &r[first..][..chunk.len()]);
                for (i, row) in chunk.chunks_exact_mut(outputs).enumerate() {
                    let residual = residual.map(|r| &r[i * outputs..][..outputs]);
                    match (residual, bias) {
                        (Some(r), Some(b)) => {
                            for ((o, r), b) in row.iter_mut().zip(r).zip(b) {
                                o.write(r + b);
                            }
                        }
                        (Some(start), None) | (None, Some(start)) => {
                            for (o, &v) in row.iter_mut().zip(start) {
                                o.write(v);
                            }
                        }
                        (None, None) => {}
                    }
                }
            });
    }
    match layout {
        Layout::RowMajor if rows <= SKINNY_ROWS => skinny_product(out, x, weight, inputs, read_out),
        Layout::RowMajor => gemm_product(out, x, (weight, layout), inputs, read_out),
        Layout::ColumnMajor => ColumnMajor::for_rows(rows).run(out, x, weight, inputs, read_out),
    }
    // SAFETY: each kernel writes every value of `out` (each output of each row is one task's,
    // and every task runs).
    unsafe { cpu_ops::written(out) }
}

/// The two kernels for a product over a column-major weight (an encoder's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnMajor {
    /// [`panel_product`]: AVX-512 registers over panels of 64 weight columns.
    Panels,
    /// [`gemm_product`]: gemm's microkernels, the work split by outputs.
    Gemm,
}

impl ColumnMajor {
    /// The kernel for `rows` rows where the processor has AVX-512: the panels up to
    /// [`PANEL_ROWS`] (gemm spends most of such a product setting up); above it, the panels on
    /// AMD's processors and gemm on the others. On the 2-core AMD EPYC (Zen 4, whose 512-bit
    /// multiply-adds take two passes) the panels ran CLIP's products at 197–217 GFLOP/s
    /// against gemm's 135–198 (`benches/RESULTS.md`, 2026-12-04); on a 2-vCPU Xeon the same day,
    /// alternating builds, CLIP's photos at batch 8 went through them at 19–23 a second against
    /// 24–31 through gemm, and texts at 102–108 against 114–153. Timed on one warm 384 × 768 →
    /// 768 product there, both ran at ~310 GFLOP/s, so a race at load picked either at random:
    /// the vendor is the better guide. Gemm without AVX-512.
    fn for_rows(rows: usize) -> Self {
        if cpu_ops::has_avx512() && (rows <= PANEL_ROWS || cpu_ops::is_amd()) {
            ColumnMajor::Panels
        } else {
            ColumnMajor::Gemm
        }
    }

    /// `out` = (`out` when `add` +) `x` · weight, for `weight_t` (inputs × outputs, row-major).
    /// When `add`, every value of `out` must have been written.
    fn run(
        self,
        out: &mut [MaybeUninit<f32>],
        x: &[f32],
        weight_t: &[f32],
        inputs: usize,
        add: bool,
    ) {
        match self {
            #[cfg(target_arch = "x86_64")]
            ColumnMajor::Panels => panel_product(out, x, weight_t, inputs, add),
            _ => gemm_product(out, x, (weight_t, Layout::ColumnMajor), inputs, add),
        }
    }
}

/// A matrix as gemm reads it: its first value, and the steps between its columns and between
/// its rows.
#[derive(Clone, Copy)]
struct Steps {
    first: *const f32,
    column_step: usize,
    row_step: usize,
}

/// The matrix from `first` with these steps.
fn steps(first: *const f32, column_step: usize, row_step: usize) -> Steps {
    Steps {
        first,
        column_step,
        row_step,
    }
}

/// `dst` (m × n) = `a` (m × k) · `b` (k × n), added to `dst`'s values when `add`, by gemm on
/// the calling thread.
///
/// # Safety
/// Every value that `m`, `n`, `k` and the steps reach must lie inside the buffers of `dst`,
/// `a` and `b`; `dst` must alias neither input, nor be written by anything else meanwhile.
unsafe fn gemm_into((m, n, k): (usize, usize, usize), dst: Steps, add: bool, a: Steps, b: Steps) {
    // SAFETY: as the caller promised.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.first.cast_mut(),
            dst.column_step as isize,
            dst.row_step as isize,
            add,
            a.first,
            a.column_step as isize,
            a.row_step as isize,
            b.first,
            b.column_step as isize,
            b.row_step as isize,
            1f32,
            1f32,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// `out` (rows × outputs) = `x` (rows × inputs) · weightᵀ, added to `out`'s values when `add`,
/// for a weight (outputs × inputs) stored in either layout, as the transposed product outᵀ =
/// weight · xᵀ: each thread of the pool takes its own range of outputs (a multiple of 16 wide,
/// gemm's register width, but the last) with one-thread gemm, which reads `x` as a right operand
/// with unit row step in place and writes outᵀ column-major, which is `out`. A column-major
/// weight is a column-major left operand, read in place up to 48 rows (above, gemm copies it
/// into its packed layout: 15 % of CLIP's texts at batch 8 on the 2-vCPU Xeon); a row-major one
/// is packed at every call. Split by gemm itself (`Parallelism::Rayon`), 50 rows into CLIP's
/// 3,072 outputs ran at 98 GFLOP/s on the 2-core Xeon, split by outputs at 218; SmolVLM-256M's
/// decoder products (30 layers, weights from memory) took 145 ms for 72 rows on the 2-vCPU Xeon,
/// 185 for 144 and 579 for 754, split by outputs 87, 139 and 548 (`benches/RESULTS.md`,
/// 2026-12-05).
fn gemm_product(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    (weight, layout): (&[f32], Layout),
    inputs: usize,
    add: bool,
) {
    let (rows, outputs) = (x.len() / inputs, weight.len() / inputs);
    assert!(
        out.len() == rows * outputs,
        "dense: an output of another size"
    );
    let threads = rayon::current_num_threads();
    let per_thread = outputs.div_ceil(threads).div_ceil(16).max(1) * 16;
    let out_at = SharedOut(out.as_mut_ptr().cast());
    (0..outputs.div_ceil(per_thread))
        .into_par_iter()
        .for_each(|part| {
            let first = part * per_thread;
            let width = per_thread.min(outputs - first);
            // The weight's outputs first..first + width as gemm's left operand (width × inputs):
            // row-major, from its row `first` (row step `inputs`, column step 1); column-major
            // (inputs × outputs stored row-major), from its column `first` (row step 1, column
            // step `outputs`).
            let (at, column_step, row_step) = match layout {
                Layout::RowMajor => (first * inputs, 1, inputs),
                Layout::ColumnMajor => (first, outputs, 1),
            };
            // SAFETY: `out` holds rows × outputs values; this task writes only the columns
            // first..first + width of each row (destination: width × rows, row step 1, column
            // step `outputs`), which no other task writes. The left operand stays within the
            // weight's outputs × inputs values (above); `x` holds rows × inputs, the right
            // operand inputs × rows (row step 1, column step `inputs`).
            unsafe {
                gemm_into(
                    (width, rows, inputs),
                    steps(out_at.get().add(first), outputs, 1),
                    add,
                    steps(weight.as_ptr().add(at), column_step, row_step),
                    steps(x.as_ptr(), inputs, 1),
                );
            }
        });
}

/// The output buffer of a product whose tasks write disjoint parts of it through a pointer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: the tasks given a `SharedOut` write disjoint elements (see each use), and the buffer
// outlives them (they end within the borrow it was taken from).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The buffer's first element. A method, so that closures capture the whole `SharedOut`
    /// (which is `Sync`) rather than its pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows up to which [`panel_product`] sums over the inputs [`PANEL_DEPTH`] at a time, every
/// block of rows reading the pass's weights from the first-level cache; above it each block of
/// rows sums over [`PANEL_DEEP_DEPTH`] inputs at once, its sums staying in the registers, and
/// the weights come from the second-level cache. On the 2-core Xeon, 20 rows into 2048 outputs
/// ran at 151 GFLOP/s in passes and 99 by gemm.
const PANEL_ROWS: usize = 32;

/// Inputs per pass of [`panel_product`] above [`PANEL_ROWS`]: a task's weights for a pass (768
/// × 64 values, 192 KiB, side by side) stay in the second-level cache while every block of rows
/// takes them. On the 2-core EPYC (2026-12-04; 225 GFLOP/s of f32
/// multiply-adds at most), 400 to 1,600 rows into CLIP's and SmolVLM's layers ran at 203–212
/// GFLOP/s in passes of 768, 181–195 in passes of 256 or 512, and at 186–207 for 3,072 inputs
/// in one pass (whose 64 weight columns, 768 KiB, 3 KiB apart, no longer stay in the cache);
/// gemm (split by outputs) ran them at 135–186.
const PANEL_DEEP_DEPTH: usize = 768;

/// Rows per task of [`panel_product`] above [`PANEL_ROWS`]: a task is one panel of outputs for
/// this many rows, so that two threads share nine panels (SmolVLM's 576 outputs) evenly; a
/// thread's consecutive tasks take the same panel, whose weights stay in its cache.
const PANEL_TASK_ROWS: usize = 32 * PANEL_BLOCK;

/// Outputs per task of [`panel_product`]: four AVX-512 registers.
const PANEL_OUTPUTS: usize = 64;

/// Inputs per pass of [`panel_product`] over a task's outputs: the weights read in a pass
/// (`PANEL_DEPTH` × `PANEL_OUTPUTS` values, 32 KiB) stay in the core's first-level cache while
/// every block of rows takes them.
const PANEL_DEPTH: usize = 128;

/// Most rows of `x` in one block of [`Pass::panel`]: its sums take `PANEL_BLOCK` × 4 registers
/// of the 32, the weights 4 more.
const PANEL_BLOCK: usize = 6;

/// `out` (rows × outputs) = `x` (rows × inputs) · weightᵀ, added to `out`'s values when `add`,
/// for a weight stored column-major (`weight_t`: inputs × outputs, row-major): each task of the
/// pool takes [`PANEL_OUTPUTS`] outputs of up to [`PANEL_TASK_ROWS`] rows and sums over the
/// inputs in blocks of up to [`PANEL_BLOCK`] rows, [`PANEL_DEEP_DEPTH`] inputs at a time or,
/// for a few rows, [`PANEL_DEPTH`] (see [`PANEL_ROWS`]). The processor must have AVX-512F
/// ([`cpu_ops::has_avx512`]).
#[cfg(target_arch = "x86_64")]
fn panel_product(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    weight_t: &[f32],
    inputs: usize,
    add: bool,
) {
    let (rows, outputs) = (x.len() / inputs, weight_t.len() / inputs);
    assert!(
        out.len() == rows * outputs && cpu_ops::has_avx512(),
        "dense: panels of another size, or without AVX-512"
    );
    // Above PANEL_ROWS: deep passes over tasks of PANEL_TASK_ROWS rows, each task's weight
    // columns copied side by side first (below).
    let deep = rows > PANEL_ROWS;
    let (depth, task_rows) = if deep {
        (PANEL_DEEP_DEPTH, PANEL_TASK_ROWS)
    } else {
        (PANEL_DEPTH, rows.max(1))
    };
    let parts = rows.div_ceil(task_rows).max(1);
    let out_at = SharedOut(out.as_mut_ptr().cast());
    (0..outputs.div_ceil(PANEL_OUTPUTS) * parts)
        .into_par_iter()
        .for_each_init(
            || (None, Vec::new()),
            |(packed_panel, packed), task| {
                let (panel, part) = (task / parts, task % parts);
                let first = panel * PANEL_OUTPUTS;
                let width = PANEL_OUTPUTS.min(outputs - first);
                let part_rows = part * task_rows..((part + 1) * task_rows).min(rows);
                let x = &x[part_rows.start * inputs..part_rows.end * inputs];
                // Above PANEL_ROWS the task's weight columns are first copied side by side (a
                // 192th of the task's work): read in place, each input's 64 weights lie a layer's
                // outputs apart (12 KiB for 3,072 outputs). On the 2-vCPU Xeon (2026-12-05) the
                // copy took CLIP's 768 → 3,072 products from 103–166 GFLOP/s to 234–250, and its
                // 3,072 → 768 ones from 209–282 to 234–256. A thread's next task mostly takes the
                // same panel for the next rows, and keeps the copy.
                let (weights, weight_step) = if deep {
                    if *packed_panel != Some(panel) {
                        packed.clear();
                        for row in weight_t.chunks_exact(outputs) {
                            packed.extend_from_slice(&row[first..first + width]);
                        }
                        *packed_panel = Some(panel);
                    }
                    (&packed[..], width)
                } else {
                    (&weight_t[first..], outputs)
                };
                for start in (0..inputs).step_by(depth) {
                    let depth = start..(start + depth).min(inputs);
                    let onto = add || start > 0;
                    // SAFETY: the processor has AVX-512F (asserted); this task writes only the
                    // columns first..first + width of the rows `part_rows` of `out`, which no other
                    // task writes (from the first of them on, `out` holds the rest of its rows,
                    // `outputs` apart, and `first + width` ≤ `outputs`); `weights` holds inputs
                    // rows of at least `width` values, `weight_step` apart, the last one's `width`
                    // included; every read of `x` stays within those rows × inputs.
                    unsafe {
                        let out = out_at.get().add(part_rows.start * outputs + first);
                        let pass = Pass {
                            out,
                            out_step: outputs,
                            x,
                            inputs,
                            weights,
                            weight_step,
                            depth,
                            onto,
                        };
                        pass.columns(width);
                    }
                }
            },
        );
}

/// One pass of [`panel_product`] over a task's columns: the sums over the inputs `depth` of
/// every row of `x`, added to `out`'s values when `onto`, written over them otherwise.
/// Column `c` of the task is `out`'s column `c` (rows `out_step` apart) and the weights of input
/// `k` for it are `weights[k · weight_step + c]`.
#[cfg(target_arch = "x86_64")]
struct Pass<'a> {
    out: *mut f32,
    out_step: usize,
    x: &'a [f32],
    inputs: usize,
    weights: &'a [f32],
    weight_step: usize,
    depth: std::ops::Range<usize>,
    onto: bool,
}

#[cfg(target_arch = "x86_64")]
impl Pass<'_> {
    /// The pass over the columns `0..width`: 64 at a time, then 16, then the last few one by
    /// one.
    ///
    /// # Safety
    /// The processor must have AVX-512F; `out` must hold rows × `out_step` values from its
    /// first of which no other thread touches the columns `0..width` while this runs, `width`
    /// ≤ `out_step`; `weights` must hold `weight_step` values for every input before the
    /// last and `width` for the last; `depth` must lie within `0..inputs`.
    #[target_feature(enable = "avx512f")]
    unsafe fn columns(&self, width: usize) {
        let rows = self.x.len() / self.inputs;
        let mut column = 0;
        // SAFETY (both loops): the processor has AVX-512F and the columns lie within
        // 0..width, as the caller promised.
        while column + 64 <= width {
            unsafe { self.row_blocks::<4>(column) };
            column += 64;
        }
        while column + 16 <= width {
            unsafe { self.row_blocks::<1>(column) };
            column += 16;
        }
        for column in column..width {
            for row in 0..rows {
                let x = &self.x[row * self.inputs..][..self.inputs];
                // SAFETY: row < rows and column < width ≤ out_step: within `out`.
                let value = unsafe { &mut *self.out.add(row * self.out_step + column) };
                let sum = self
                    .depth
                    .clone()
                    .map(|k| x[k] * self.weights[k * self.weight_step + column])
                    .sum::<f32>();
                *value = if self.onto { *value + sum } else { sum };
            }
        }
    }

    /// The pass over `J` × 16 outputs from `column`, for every row in blocks of at most
    /// [`PANEL_BLOCK`] rows of sizes that differ by one at most (8 rows are two blocks of 4,
    /// not one of 6 and one of 2).
    ///
    /// # Safety
    /// As [`Pass::columns`], for the columns `column..column + 16·J`.
    #[target_feature(enable = "avx512f")]
    unsafe fn row_blocks<const J: usize>(&self, column: usize) {
        let rows = self.x.len() / self.inputs;
        let blocks = rows.div_ceil(PANEL_BLOCK);
        let mut row = 0;
        for block in 0..blocks {
            let n = rows / blocks + usize::from(block < rows % blocks);
            // SAFETY: row + n ≤ rows; the rest as the caller promised.
            unsafe {
                match n {
                    1 => self.panel::<1, J>(row, column),
                    2 => self.panel::<2, J>(row, column),
                    3 => self.panel::<3, J>(row, column),
                    4 => self.panel::<4, J>(row, column),
                    5 => self.panel::<5, J>(row, column),
                    _ => self.panel::<PANEL_BLOCK, J>(row, column),
                }
            }
            row += n;
        }
    }

    /// The sums of rows `row..row + R` for the `J` × 16 outputs from `column`: R × J registers
    /// of sums; each input loads J vectors of weights (side by side in the stored transpose)
    /// and broadcasts one value of each row, for R × J fused multiply-adds.
    ///
    /// # Safety
    /// As [`Pass::row_blocks`], and `row + R` must not pass the rows.
    #[target_feature(enable = "avx512f")]
    unsafe fn panel<const R: usize, const J: usize>(&self, row: usize, column: usize) {
        use std::arch::x86_64::{
            __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
            _mm512_storeu_ps,
        };
        let at = |r: usize, j: usize| (row + r) * self.out_step + column + 16 * j;
        let mut sums: [[__m512; J]; R] = [[_mm512_setzero_ps(); J]; R];
        if self.onto {
            for (r, sums) in sums.iter_mut().enumerate() {
                for (j, sum) in sums.iter_mut().enumerate() {
                    // SAFETY: row + r < rows and column + 16·j + 16 ≤ width ≤ out_step:
                    // within `out`.
                    *sum = unsafe { _mm512_loadu_ps(self.out.add(at(r, j))) };
                }
            }
        }
        let (x, stored) = (self.x.as_ptr(), self.weights.as_ptr());
        for k in self.depth.clone() {
            let mut weights: [__m512; J] = [_mm512_setzero_ps(); J];
            for (j, w) in weights.iter_mut().enumerate() {
                // SAFETY: k < inputs and column + 16·j + 16 ≤ width: within `weights`.
                *w = unsafe { _mm512_loadu_ps(stored.add(k * self.weight_step + column + 16 * j)) };
            }
            for (r, sums) in sums.iter_mut().enumerate() {
                // SAFETY: row + r < rows and k < inputs: within `x`.
                let value = _mm512_set1_ps(unsafe { *x.add((row + r) * self.inputs + k) });
                for (sum, w) in sums.iter_mut().zip(weights) {
                    *sum = _mm512_fmadd_ps(w, value, *sum);
                }
            }
        }
        for (r, sums) in sums.into_iter().enumerate() {
            for (j, sum) in sums.into_iter().enumerate() {
                // SAFETY: as for the loads above.
                unsafe { _mm512_storeu_ps(self.out.add(at(r, j)), sum) };
            }
        }
    }
}

/// Rows up to which [`product_into`] takes [`skinny_product`] for row-major weights: a decoding
/// step's batch of up to 24 sequences, or a few sequences' drafts. Above it gemm's packed
/// microkernels win; below it they spend most of the time setting up and packing (or, for one
/// row, run a one-thread product). SmolVLM-256M's decoder products on the 2-vCPU Xeon
/// (`benches/RESULTS.md`, 2026-12-05), dot products against gemm split by outputs: 24 rows 57
/// against 60 ms, 32 rows 69 against 64, 64 rows 128 against 82. (Measured while CLIP's towers
/// still took this path, one text per batch on the 2-core Xeon: 22–24 texts/s through gemm, 54
/// through the dot products in AVX-512 blocks.)
const SKINNY_ROWS: usize = 24;

/// Bytes of weights read per task of [`skinny_sums`] (in whole blocks of [`BLOCK`] weight rows):
/// 64 KB. With 64 f32 weight rows a task, SmolVLM-256M's attention output (576 × 576) and MLP
/// down projection (576 × 1,536) made 9 tasks for two threads, and one thread read while the
/// other waited: 1,536 inputs took 176 µs a call on the 2-core Xeon, 112 µs in tasks of this size.
const SKINNY_TASK_BYTES: usize = 64 * 1024;

/// `out` (rows × outputs) = `x` (rows × inputs) · weightᵀ, added to `out`'s values when `add`:
/// the product of a few rows (a decoding step) over row-major weights, by [`skinny_sums`]; no
/// copy of the weights is made.
/// When `add`, every value of `out` must have been written.
fn skinny_product(
    out: &mut [MaybeUninit<f32>],
    x: &[f32],
    weight: &[f32],
    inputs: usize,
    add: bool,
) {
    let rows = x.len() / inputs;
    let outputs = weight.len() / inputs;
    // The products come out output by output (outputs × rows) and are then put in place.
    let mut by_output = vec![0f32; outputs * rows];
    skinny_sums(&mut by_output, x, weight, inputs);
    for (r, row) in out.chunks_exact_mut(outputs).enumerate() {
        for (o, sums) in row.iter_mut().zip(by_output.chunks_exact(rows)) {
            // SAFETY: when `add`, the caller wrote every value of `out` (above).
            let start = if add { unsafe { o.assume_init() } } else { 0.0 };
            o.write(start + sums[r]);
        }
    }
}

/// A weight value as the skinny products read it: an f32, or a code that stands for one
/// ([`super::screen`]'s int8), widened to f32 as it is read.
pub(super) trait Element: Copy + Send + Sync {
    /// The value as an f32.
    fn widen(self) -> f32;

    /// The dot product of `x` and `w` (one length), summed in f32 lanes; inlined, so that a
    /// caller's [`cpu_ops::widest_simd`] covers it.
    fn dot(x: &[f32], w: &[Self]) -> f32;

    /// Sixteen values from `p`, widened to one AVX-512 register of f32.
    ///
    /// # Safety
    /// The processor must have AVX-512F; sixteen values must be readable from `p`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;
}

impl Element for f32 {
    fn widen(self) -> f32 {
        self
    }

    #[inline(always)]
    fn dot(x: &[f32], w: &[f32]) -> f32 {
        cpu_ops::dot(x, w)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const f32) -> std::arch::x86_64::__m512 {
        // SAFETY: sixteen values are readable from `p`, as the caller promised.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }
}

impl Element for i8 {
    fn widen(self) -> f32 {
        self as f32
    }

    #[inline(always)]
    fn dot(x: &[f32], w: &[i8]) -> f32 {
        const LANES: usize = 16;
        let mut lanes = [0f32; LANES];
        let (xs, ws) = (x.chunks_exact(LANES), w.chunks_exact(LANES));
        let tail: f32 = xs
            .remainder()
            .iter()
            .zip(ws.remainder())
            .map(|(x, &w)| x * w as f32)
            .sum();
        for (x, w) in xs.zip(ws) {
            for ((lane, x), &w) in lanes.iter_mut().zip(x).zip(w) {
                *lane += x * w as f32;
            }
        }
        lanes.iter().sum::<f32>() + tail
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const i8) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::{
            __m128i, _mm512_cvtepi32_ps, _mm512_cvtepi8_epi32, _mm_loadu_si128,
        };
        // SAFETY: sixteen bytes are readable from `p`, as the caller promised.
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i))) }
    }
}

/// `sums` (outputs × rows) = the dot products of each weight row (row-major `weight`, widened
/// from its [`Element`]s) with each row of `x` (rows × inputs): each weight row is read from
/// memory once, on one of the pool's threads, in tasks of about [`SKINNY_TASK_BYTES`]
/// ([`skinny_task_sums`]).
pub(super) fn skinny_sums<E: Element>(sums: &mut [f32], x: &[f32], weight: &[E], inputs: usize) {
    let rows = x.len() / inputs;
    let per_task = skinny_task_rows::<E>(inputs, SKINNY_TASK_BYTES);
    sums.par_chunks_mut(per_task * rows)
        .zip(weight.par_chunks(per_task * inputs))
        .for_each(|(sums, weights)| skinny_task_sums(sums, x, weights, inputs));
}

/// Weight rows of `inputs` [`Element`]s of type `E` in a task of about `bytes` for
/// [`skinny_task_sums`]: whole blocks of [`BLOCK`] rows, one at least.
pub(super) fn skinny_task_rows<E: Element>(inputs: usize, bytes: usize) -> usize {
    (bytes / std::mem::size_of::<E>() / inputs.max(1) / BLOCK).max(1) * BLOCK
}

/// One task of [`skinny_sums`], on the calling thread: the dot products of `weights` (a whole
/// number of rows) with every row of `x`, each weight row's taken while it is in cache, four
/// weight rows at a time by up to four rows where the processor has AVX-512
/// ([`blocks_avx512`]), one by one ([`Element::dot`]) elsewhere.
pub(super) fn skinny_task_sums<E: Element>(
    sums: &mut [f32],
    x: &[f32],
    weights: &[E],
    inputs: usize,
) {
    let rows = x.len() / inputs;
    cpu_ops::widest_simd(
        #[inline(always)]
        || {
            // The weight rows the AVX-512 blocks took (none without AVX-512); the rest one by
            // one.
            #[cfg(target_arch = "x86_64")]
            let done = if cpu_ops::has_avx512() {
                // SAFETY: the processor has AVX-512F; the slices are `rows` × `inputs` and a
                // whole number of weight rows, as `blocks_avx512` takes.
                unsafe { blocks_avx512(sums, x, weights, inputs) }
            } else {
                0
            };
            #[cfg(not(target_arch = "x86_64"))]
            let done = 0;
            for (sums, w) in sums
                .chunks_exact_mut(rows)
                .zip(weights.chunks_exact(inputs))
                .skip(done)
            {
                for (sum, x) in sums.iter_mut().zip(x.chunks_exact(inputs)) {
                    *sum = E::dot(x, w);
                }
            }
        },
    )
}

/// The dot products of `x` (one row of `inputs` values) with the weight rows `chosen` (row-major
/// `weight`), in `chosen`'s order, each computed as [`skinny_product`] computes it over the whole
/// matrix: the rows are copied side by side, padded with zero rows to whole blocks of
/// [`BLOCK`], which take the same kernel in the same order of additions as there. (Over the whole
/// matrix the last `outputs % BLOCK` rows go one by one instead, and may round differently.)
pub(super) fn chosen_products(
    x: &[f32],
    weight: &[f32],
    inputs: usize,
    chosen: &[usize],
) -> Vec<f32> {
    let padded = chosen.len().div_ceil(BLOCK) * BLOCK;
    let mut rows = vec![0f32; padded * inputs];
    for (row, &c) in rows.chunks_exact_mut(inputs).zip(chosen) {
        row.copy_from_slice(&weight[c * inputs..][..inputs]);
    }
    let mut out = vec![0f32; padded];
    skinny_sums(&mut out, x, &rows, inputs);
    out.truncate(chosen.len());
    out
}

/// Weight rows and rows of `x` in one block of [`blocks_avx512`].
const BLOCK: usize = 4;

/// The products of [`skinny_sums`]'s task (`sums`: outputs × rows, the weight rows'
/// dot products with each row of `x`) for whole blocks of [`BLOCK`] weight rows, with every row
/// of `x`: [`BLOCK`] rows of `x` at a time ([`block_avx512`]), then the one to three left.
/// Answers how many weight rows that was (the task's, less the last few).
///
/// # Safety
/// The processor must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blocks_avx512<E: Element>(
    sums: &mut [f32],
    x: &[f32],
    weights: &[E],
    inputs: usize,
) -> usize {
    let rows = x.len() / inputs;
    let whole_rows = rows - rows % BLOCK;
    let outputs = weights.len() / inputs;
    let done = outputs - outputs % BLOCK;
    for w0 in (0..done).step_by(BLOCK) {
        // SAFETY: AVX-512F, as the caller promised; each block's rows lie within `x`.
        unsafe {
            for r0 in (0..whole_rows).step_by(BLOCK) {
                block_avx512::<E, BLOCK>(sums, x, weights, inputs, (w0, r0));
            }
            match rows - whole_rows {
                1 => block_avx512::<E, 1>(sums, x, weights, inputs, (w0, whole_rows)),
                2 => block_avx512::<E, 2>(sums, x, weights, inputs, (w0, whole_rows)),
                3 => block_avx512::<E, 3>(sums, x, weights, inputs, (w0, whole_rows)),
                _ => {}
            }
        }
    }
    done
}

/// One block of [`blocks_avx512`]: the [`BLOCK`] weight rows from `w0` by the `R` rows of `x`
/// from `r0`, in BLOCK × R AVX-512 registers of partial sums; each step loads BLOCK + R vectors
/// for BLOCK × R fused multiply-adds (one dot product at a time loads two for one, and bounds a
/// core at half its rate; the compiler does not keep such blocks in registers by itself).
///
/// # Safety
/// The processor must have AVX-512F; `r0 + R` rows of `x` and `w0 + BLOCK` weight rows must exist.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_avx512<E: Element, const R: usize>(
    sums: &mut [f32],
    x: &[f32],
    weights: &[E],
    inputs: usize,
    (w0, r0): (usize, usize),
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_reduce_add_ps, _mm512_setzero_ps,
    };
    const LANES: usize = 16;
    let rows = x.len() / inputs;
    assert!(r0 + R <= rows && (w0 + BLOCK) * inputs <= weights.len());
    let whole = inputs - inputs % LANES;
    let row_start = |r: usize| r * inputs;
    let mut acc: [[__m512; R]; BLOCK] = [[_mm512_setzero_ps(); R]; BLOCK];
    let (xp, wp) = (x.as_ptr(), weights.as_ptr());
    let mut i = 0;
    while i < whole {
        let mut xs: [__m512; R] = [_mm512_setzero_ps(); R];
        for (b, xv) in xs.iter_mut().enumerate() {
            // SAFETY: i + 16 ≤ whole ≤ inputs and r0 + b < rows (asserted): within `x`.
            *xv = unsafe { _mm512_loadu_ps(xp.add(row_start(r0 + b) + i)) };
        }
        for (a, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16 ≤ inputs and w0 + a < the weight rows (asserted).
            let w = unsafe { E::load16(wp.add(row_start(w0 + a) + i)) };
            for (acc, xv) in acc.iter_mut().zip(xs) {
                *acc = _mm512_fmadd_ps(w, xv, *acc);
            }
        }
        i += LANES;
    }
    for (a, acc) in acc.into_iter().enumerate() {
        let w = &weights[row_start(w0 + a)..][..inputs];
        for (b, acc) in acc.into_iter().enumerate() {
            let xr = &x[row_start(r0 + b)..][..inputs];
            let tail: f32 = w[whole..]
                .iter()
                .zip(&xr[whole..])
                .map(|(&p, q)| p.widen() * q)
                .sum();
            sums[(w0 + a) * rows + r0 + b] = _mm512_reduce_add_ps(acc) + tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::sequence_values as values;

    #[test]
    fn the_transpose_has_every_value_in_its_place() {
        // Sizes around whole tiles, and a single row and column.
        for (rows, columns) in [
            (1, 1),
            (1, 5),
            (5, 1),
            (TILE, TILE),
            (TILE + 3, 2 * TILE - 1),
        ] {
            let values = values(rows * columns, 5);
            let t = transposed(&values, rows, columns);
            for r in 0..rows {
                for c in 0..columns {
                    assert_eq!(
                        t[c * rows + r],
                        values[r * columns + c],
                        "{rows} × {columns}"
                    );
                }
            }
        }
    }

    /// Asserts that `got` is within 1e-4 of `want` everywhere: a NaN (a value never written
    /// over) fails too.
    fn assert_near(got: &[f32], want: &[f64], path: &str) {
        let off = got.iter().zip(want).position(|(got, want)| {
            let d = (*got as f64 - want).abs();
            d.is_nan() || d >= 1e-4
        });
        assert!(
            off.is_none(),
            "{path}: value {off:?} is {} for {}",
            got[off.unwrap_or(0)],
            want[off.unwrap_or(0)]
        );
    }

    #[test]
    fn both_layouts_give_the_product_on_every_path() {
        // Outputs in whole 64-wide panel tasks, a 16-wide step and a last few one by one, and
        // over three skinny tasks, the last ending outside a whole block; inputs over whole
        // panel passes and a short last one, both deep and shallow; rows on both sides of
        // PANEL_ROWS and SKINNY_ROWS, in blocks of every size up to PANEL_BLOCK, with one to
        // three rows after whole skinny blocks, and over three tasks of rows.
        let (outputs, inputs) = (2 * PANEL_OUTPUTS + 16 + 5, PANEL_DEEP_DEPTH + 7);
        let weight = values(outputs * inputs, 1);
        let mut weight_t = vec![0f32; weight.len()];
        for (o, row) in weight.chunks_exact(inputs).enumerate() {
            for (k, w) in row.iter().enumerate() {
                weight_t[k * outputs + o] = *w;
            }
        }
        let bias = values(outputs, 2);
        let one_thread = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let rows_cases = [
            1,
            2,
            3,
            5,
            7,
            8,
            13,
            PANEL_ROWS,
            PANEL_ROWS + 1,
            SKINNY_ROWS + 1,
            2 * PANEL_TASK_ROWS + 7,
        ];
        for rows in rows_cases {
            let x = values(rows * inputs, 3);
            let residual = values(rows * outputs, 4);
            for with_residual in [false, true] {
                let mut want = vec![0f64; rows * outputs];
                for (r, want) in want.chunks_exact_mut(outputs).enumerate() {
                    for (o, want) in want.iter_mut().enumerate() {
                        let dot: f64 = (0..inputs)
                            .map(|k| x[r * inputs + k] as f64 * weight[o * inputs + k] as f64)
                            .sum();
                        let start = if with_residual {
                            residual[r * outputs + o] as f64 + bias[o] as f64
                        } else {
                            0.0
                        };
                        *want = start + dot;
                    }
                }
                for (layout, stored) in [
                    (Layout::RowMajor, &weight),
                    (Layout::ColumnMajor, &weight_t),
                ] {
                    let layer = Weights {
                        weight: stored,
                        layout,
                        bias: with_residual.then_some(&bias[..]),
                        outputs,
                        inputs,
                    };
                    // Whatever `out` held is written over when there is nothing to add to.
                    let mut out = vec![MaybeUninit::new(f32::NAN); rows * outputs];
                    let residual = with_residual.then_some(&residual[..]);
                    let out = product_into(&mut out, &x, layer, residual);
                    let path = format!("{layout:?}, {rows} rows, residual {with_residual}");
                    assert_near(out, &want, &path);
                    if layout == Layout::ColumnMajor && !with_residual {
                        // Both kernels, whichever the processor takes; on one thread too,
                        // where one thread's tasks go from panel to panel in turn.
                        for kernel in [ColumnMajor::Panels, ColumnMajor::Gemm] {
                            if kernel == ColumnMajor::Panels && !cpu_ops::has_avx512() {
                                continue;
                            }
                            for pool in [None, Some(&one_thread)] {
                                let mut out = vec![MaybeUninit::new(f32::NAN); rows * outputs];
                                let mut run = || kernel.run(&mut out, &x, stored, inputs, false);
                                match pool {
                                    Some(pool) => pool.install(run),
                                    None => run(),
                                }
                                let path = format!("{kernel:?}, {rows} rows, pool {pool:?}");
                                // SAFETY: the kernel wrote every value (NaN before, else).
                                let out: Vec<f32> =
                                    out.iter().map(|v| unsafe { v.assume_init() }).collect();
                                assert_near(&out, &want, &path);
                            }
                        }
                    }
                }
            }
        }
    }
}
