//! Scaled dot-product attention on the CPU, head by head: `softmax(q·kᵀ·scale + mask)·v`.
//!
//! candle multiplies a batch of matrices one after another, each product spread over the
//! thread pool: for attention's head-sized products (a 1,024 × 64 by 64 × 1,024 product per
//! head in SmolVLM's vision tower) the threads meet after every head, and the scores of every
//! head are written out in full before the softmax reads them back. Here each block of up to 64
//! queries of a (batch, head) pair is one task of the thread pool, which computes its scores
//! with a one-thread product, adds the mask, takes the softmax and multiplies by `v` while the
//! scores are still in the core's cache, in a buffer the task's thread reuses; keys that the
//! mask hides from every query of the block (the future under a causal mask, left padding) are
//! not computed at all, each mask row's visible keys being found once for all the heads. A key
//! head that serves many queries (an encoder's, a prompt's) is copied transposed once, so that
//! gemm writes the blocks' scores a whole vector at a time. Only f32 tensors on the CPU that no
//! gradient is tracked through take this path ([`attend`] answers `None` for the others, which
//! keep candle's composed operations).
//!
//! [`attend_packed_causal`] does the same for causal attention over sequences of different
//! lengths packed one after another (CLIP's text tower): no padding token is computed, nor a
//! token whose sequence begins as an earlier one of the batch does up to it ([`Packing`]).
//!
//! Other devices and types compose the operation ([`attend_composed`]), its softmax one
//! operation with the scaling and the mask ([`softmax`]).

use candle_core::{DType, Device, Result, Storage, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

mod few_rows;
mod packed;
pub mod softmax;

use crate::cpu_ops::{cpu_f32, exp_in_place, softmax_last_dim, widest_simd, zeroed};
pub use packed::{attend_packed_causal, Packing, Queries};
use softmax::{scaled_softmax, Seen};

/// Query rows per task of [`attend`]: a block's scores (rows × keys) stay in the core's cache
/// between the two products, and the blocks of one head share the thread pool among them.
const QUERY_BLOCK: usize = 64;

/// A mask value at or below this hides its key (transformers and the layers here mask with
/// f32's lowest value; −∞ also counts).
const HIDDEN: f32 = -1e30;

/// `softmax(q·kᵀ·scale + mask)·v` for `q` (batch × heads × queries × head size) and `k`, `v`
/// (batch × key heads × keys × head size), the softmax over the keys; with fewer key heads than
/// query heads (grouped-query attention) each key head serves `heads / key heads` query heads
/// in turn, read in place. `mask` (batch or 1 × heads or 1 × queries or 1 × keys) is added to
/// the scores. `k` and `v` may be views whose heads lie apart in a larger buffer (a key/value
/// cache with room to grow) as long as each head's keys × head size are contiguous. The result
/// is batch × heads × queries × head size. `None` when the inputs are not f32 on the CPU, when
/// a gradient is tracked through them, when their shapes are not these or when one is empty:
/// the caller composes the operation itself.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let tensors = [Some(q), Some(k), Some(v), mask];
    let fast = tensors.iter().flatten().all(|t| kernel_takes(t));
    if !fast || q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
        return Ok(None);
    }
    let (batch, heads, queries, size) = q.dims4()?;
    let (kb, key_heads, keys, ks) = k.dims4()?;
    if (kb, ks) != (batch, size)
        || key_heads == 0
        || heads % key_heads != 0
        || v.dims4()? != (batch, key_heads, keys, size)
    {
        return Ok(None);
    }
    if batch * heads * queries * size * keys == 0 {
        return Ok(None);
    }
    let group = heads / key_heads;
    let mask = match mask {
        Some(mask) => match MaskLayout::of(mask, batch, heads, queries, keys)? {
            Some(layout) => Some((layout, mask.contiguous()?)),
            None => return Ok(None),
        },
        None => None,
    };
    let (q, k, v) = (q.contiguous()?, head_blocks(k)?, head_blocks(v)?);
    let (q_storage, q_layout) = q.storage_and_layout();
    let (k_storage, k_layout) = k.storage_and_layout();
    let (v_storage, v_layout) = v.storage_and_layout();
    let mask_storage = mask.as_ref().map(|(_, m)| m.storage_and_layout());
    let qs = cpu_f32(&q_storage, q_layout, "attention")?;
    let (ks, vs) = (
        Heads::of(&k_storage, k_layout)?,
        Heads::of(&v_storage, v_layout)?,
    );
    let ms = match &mask_storage {
        Some((storage, layout)) => Some(cpu_f32(storage, layout, "attention")?),
        None => None,
    };
    // Each distinct mask row's visible keys, found once for every head and block that reads it.
    let spans: Vec<Option<(usize, usize)>> = ms.map_or_else(Vec::new, |ms| {
        ms.par_chunks(keys).map(visible_span).collect()
    });
    let mut out = Box::new_uninit_slice(batch * heads * queries * size);
    let scale = scale as f32;
    // When one block holds all of a head's queries (a decoding step, a short prompt), the
    // query heads that share a key head are stacked into one block, contiguous in `q` and
    // `out`: their key head is read once for all of them. Not when that leaves too few blocks
    // to share among the threads (one sequence's three key heads on two threads).
    let enough_blocks = batch * key_heads >= 4 * rayon::current_num_threads();
    let stacked = if queries <= QUERY_BLOCK && enough_blocks {
        group
    } else {
        1
    };
    let block_rows = if stacked > 1 {
        stacked * queries
    } else {
        QUERY_BLOCK
    };
    // When a key head serves at least as many query rows as it has values a key, the blocks
    // read it transposed (head size × keys), copied once here for all of them: gemm then
    // writes their scores a whole vector at a time, where against kᵀ read in place it writes
    // them one value at a time (its microkernel stores vectors along a destination's columns
    // only; see [`product`]). Not for a decoding step's few queries against a long cache.
    let keys_t = (group * queries >= size).then(|| ks.transposed(batch, key_heads, keys, size));
    out.par_chunks_mut(stacked * queries * size)
        .enumerate()
        .flat_map(|(unit, out)| {
            out.par_chunks_mut(block_rows * size)
                .enumerate()
                .map(move |(block, out)| (unit, block * block_rows, out))
        })
        .for_each_init(Vec::new, |scores, (unit, first, out)| {
            let out = zeroed(out);
            // The unit's first query head; row `first + i` of the unit is query
            // `(first + i) % queries` of head `head + (first + i) / queries`.
            let (b, head) = (unit * stacked / heads, unit * stacked % heads);
            let at = |i: usize| (head + (first + i) / queries, (first + i) % queries);
            let rows = out.len() / size;
            let q = &qs[(unit * stacked * queries + first) * size..][..rows * size];
            let mask_rows = |i: usize| {
                mask.as_ref().zip(ms).map(|((layout, _), ms)| {
                    let (h, query) = at(i);
                    &ms[layout.row(b, h, query)..][..keys]
                })
            };
            let (lo, hi) = seen_keys(
                mask.as_ref().into_iter().flat_map(|(layout, _)| {
                    (0..rows).map(|i| {
                        let (h, query) = at(i);
                        spans[layout.row(b, h, query) / keys]
                    })
                }),
                keys,
            );
            let key_head = b * key_heads + head / group;
            let (lo, hi, k) = match &keys_t {
                Some(keys_t) => {
                    // Whole vectors of keys, so that gemm reads the transposed keys in place
                    // (the keys added are hidden from every row of the block).
                    let (lo, hi) = whole_vectors(lo, hi, keys);
                    let k = &keys_t[key_head * size * keys + lo..][..(size - 1) * keys + hi - lo];
                    (lo, hi, Strided::rows(k, keys))
                }
                None => {
                    let k = &ks.block(b, head / group, keys * size)[lo * size..hi * size];
                    (lo, hi, Strided::columns(k, size))
                }
            };
            let seen = hi - lo;
            let v = &vs.block(b, head / group, keys * size)[lo * size..hi * size];
            let (q, v) = (Strided::rows(q, size), Strided::rows(v, size));
            attend_block(
                out,
                scores,
                (q, k, v),
                (rows, seen, size),
                scale,
                #[inline(always)]
                |i, row| {
                    if let Some(m) = mask_rows(i) {
                        for (s, m) in row.iter_mut().zip(&m[lo..hi]) {
                            *s += m;
                        }
                    }
                    exp_in_place(row)
                },
            );
        });
    // SAFETY: every block of `out` was zeroed by its task, then written.
    let out = unsafe { out.assume_init() }.into_vec();
    Tensor::from_vec(out, (batch, heads, queries, size), &Device::Cpu).map(Some)
}

/// The same operation as [`attend`], on any device and dtype and differentiable, composed of
/// candle's operations: the path of GPU tensors and trained layers. With grouped-query
/// attention the query heads that share a key head are stacked as the rows of one product
/// against it, so `k` and `v` (views into a key/value cache included, each head's keys
/// contiguous) are read in place, never copied once per query head. When no gradient is
/// tracked, the scores' scaling, masking and softmax are one [`scaled_softmax`] over the keys
/// `seen` names; otherwise they are composed (in f32) with the additive `mask` (batch or 1 × 1
/// × queries × keys). `seen` and `mask` must hide the same keys: `Seen::All` with no mask, or
/// the causal rule the mask was built by.
pub fn attend_composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
    seen: Seen,
) -> Result<Tensor> {
    let (batch, heads, queries, size) = q.dims4()?;
    let (_, key_heads, keys, _) = k.dims4()?;
    if key_heads == 0 || heads % key_heads != 0 {
        candle_core::bail!("{heads} query heads cannot share {key_heads} key heads evenly");
    }
    let group = heads / key_heads;
    let stacked = q
        .contiguous()?
        .reshape((batch, key_heads, group * queries, size))?;
    let scores = stacked.matmul(&k.t()?)?;
    let fused = fuses_softmax(q, k) && (mask.is_none() || matches!(seen, Seen::Causal { .. }));
    let probabilities = if fused {
        scaled_softmax(
            &scores.reshape((batch, key_heads, group, queries, keys))?,
            scale,
            seen,
        )?
        .reshape((batch, key_heads, group * queries, keys))?
    } else {
        let scores = (scores * scale)?.to_dtype(DType::F32)?;
        let scores = match mask {
            Some(mask) => scores
                .reshape((batch, key_heads, group, queries, keys))?
                .broadcast_add(&mask.to_dtype(DType::F32)?.unsqueeze(2)?)?
                .reshape((batch, key_heads, group * queries, keys))?,
            None => scores,
        };
        softmax_last_dim(&scores)?.to_dtype(q.dtype())?
    };
    probabilities
        .matmul(v)?
        .reshape((batch, heads, queries, size))
}

/// Whether [`attend_composed`] takes the softmax of these queries' scores against these keys
/// in one operation (no gradient tracked, f32, bf16 or f16), applying a [`Seen`] rule itself:
/// then a causal rule needs no additive mask built for it.
pub fn fuses_softmax(q: &Tensor, k: &Tensor) -> bool {
    !(q.track_op() || k.track_op()) && matches!(q.dtype(), DType::F32 | DType::BF16 | DType::F16)
}

/// The keys `lo..hi` that some row of a block's mask leaves visible, given each row's
/// [`visible_span`] (a causal mask hides the keys after the block's last query, left padding
/// the keys before a sequence's first token): the keys outside are skipped, their weights being
/// zero to f32's precision. Every key when there is no mask, or when the mask hides every key
/// from every row (such rows average the values, as the composed softmax does).
fn seen_keys(spans: impl Iterator<Item = Option<(usize, usize)>>, keys: usize) -> (usize, usize) {
    let (lo, hi) = spans.flatten().fold((keys, 0), |(lo, hi), (first, end)| {
        (lo.min(first), hi.max(end))
    });
    if lo < hi {
        (lo, hi)
    } else {
        (0, keys)
    }
}

/// `lo..hi` widened to a multiple of 16 keys where `keys` leaves room: up to the next multiple
/// past `hi`, then down below `lo` for the rest.
fn whole_vectors(lo: usize, hi: usize, keys: usize) -> (usize, usize) {
    let short = (16 - (hi - lo) % 16) % 16;
    let hi_grown = (hi + short).min(keys);
    (lo.saturating_sub(short - (hi_grown - hi)), hi_grown)
}

/// The first key a mask row leaves visible and one past its last (`None` when it hides every
/// key), looked for a whole vector of keys at a time: a causal row hides most of its keys after
/// the last visible one.
fn visible_span(row: &[f32]) -> Option<(usize, usize)> {
    const LANES: usize = 16;
    let seen = |chunk: &[f32]| chunk.iter().fold(false, |any, &m| any | (m > HIDDEN));
    let first_chunk = row.chunks(LANES).position(seen)?;
    let first = first_chunk * LANES
        + row[first_chunk * LANES..]
            .iter()
            .position(|&m| m > HIDDEN)?;
    // Chunks counted from the end, the last one possibly short: `rchunks`.
    let from_end = row.rchunks(LANES).position(seen)?;
    let chunk_end = row.len() - from_end * LANES;
    let last = row[..chunk_end].iter().rposition(|&m| m > HIDDEN)?;
    Some((first, last + 1))
}

/// Whether this module's kernels take `xs`: f32 on the CPU with no gradient tracked through it.
pub fn kernel_takes(xs: &Tensor) -> bool {
    kernel_runs_on(xs.device(), xs.dtype()) && !xs.track_op()
}

/// Whether this module's kernels run on `device` in `dtype`: f32 on the CPU.
pub fn kernel_runs_on(device: &Device, dtype: DType) -> bool {
    matches!(device, Device::Cpu) && dtype == DType::F32
}

/// A matrix read in place from a slice of f32: its first value and the steps between rows and
/// between columns.
#[derive(Clone, Copy)]
struct Strided<'a> {
    values: &'a [f32],
    row_step: usize,
    column_step: usize,
}

impl<'a> Strided<'a> {
    /// Rows `row_step` apart, each row's values side by side.
    fn rows(values: &'a [f32], row_step: usize) -> Self {
        Self {
            values,
            row_step,
            column_step: 1,
        }
    }

    /// The transpose of [`Strided::rows`]: each column's values side by side, columns
    /// `column_step` apart (`kᵀ` read from `k`).
    fn columns(values: &'a [f32], column_step: usize) -> Self {
        Self {
            values,
            row_step: 1,
            column_step,
        }
    }

    /// The transpose: the same values, rows and columns swapped.
    fn transpose(self) -> Self {
        Self {
            values: self.values,
            row_step: self.column_step,
            column_step: self.row_step,
        }
    }

    /// Whether a `rows × columns` matrix lies inside the slice.
    fn holds(&self, rows: usize, columns: usize) -> bool {
        rows == 0
            || columns == 0
            || (rows - 1) * self.row_step + (columns - 1) * self.column_step < self.values.len()
    }
}

/// `dst = scale · a · b` on the calling thread, for `(m, n, k)`: `a` m × k, `b` k × n, `dst` the
/// first m × n values of a row-major buffer. gemm reads a left operand in place only when it is
/// column-major with rows a multiple of 16, a right one only when its row step is 1, and copies
/// them into its packed layout otherwise: the values (keys × head size, row-major) on the right
/// would be copied for every block of queries. For them the transposed product dstᵀ = bᵀ · aᵀ
/// is taken, which reads both operands as they lie when it has at most [`IN_PLACE_COLUMNS`]
/// columns: more go in parts. It also writes `dst` a whole vector at a time (gemm's
/// microkernel stores vectors only along a destination's columns, and dstᵀ's columns are
/// `dst`'s rows): [`attend`] hands it the keys transposed for that. A few rows (a decoding
/// step's) go to [`few_rows`] instead.
fn product(dst: &mut [f32], (m, n, k): (usize, usize, usize), a: Strided, b: Strided, scale: f32) {
    assert!(
        dst.len() >= m * n && a.holds(m, k) && b.holds(k, n),
        "attention: a {m} × {k} by {k} × {n} product outside its buffers"
    );
    if few_rows::takes(m, &a, &b) {
        few_rows::product(dst, (m, n, k), a, b, scale);
        return;
    }
    let transposed = b.column_step == 1 && b.row_step != 1 && a.column_step == 1 && n % 16 == 0;
    // (rows, columns, destination column and row steps, left and right operands): dst = a·b
    // as written, or dstᵀ (n × m: column step n, row step 1) = bᵀ·aᵀ.
    let (rows, columns, dst_steps, left, right) = if transposed {
        (n, m, (n, 1), b.transpose(), a.transpose())
    } else {
        (m, n, (1, n), a, b)
    };
    // gemm copies a column-major left operand into its packed layout when the product has
    // more than 48 columns (`gemm_common`'s single-thread threshold, 8 × its 6-column
    // microkernel): the transposed product's left operand is the values, which would be copied
    // for every block of queries. The columns (queries) go in parts of at most 48 instead.
    let part = if transposed && columns > IN_PLACE_COLUMNS {
        columns.div_ceil(columns.div_ceil(IN_PLACE_COLUMNS))
    } else {
        columns.max(1)
    };
    for first in (0..columns).step_by(part) {
        let width = part.min(columns - first);
        // SAFETY: the assertion above keeps every value the strides and sizes reach inside the
        // slices (a transposed operand reaches the same values, a part of the columns fewer);
        // dst is written only, a and b read only, and they do not alias (dst is `&mut`).
        unsafe {
            gemm(
                rows,
                width,
                k,
                dst.as_mut_ptr().add(first * dst_steps.0),
                dst_steps.0 as isize,
                dst_steps.1 as isize,
                false,
                left.values.as_ptr(),
                left.column_step as isize,
                left.row_step as isize,
                right.values.as_ptr().add(first * right.column_step),
                right.column_step as isize,
                right.row_step as isize,
                0f32,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
    }
}

/// Columns up to which gemm reads a column-major left operand in place (see [`product`]).
const IN_PLACE_COLUMNS: usize = 48;

/// One block of queries of a (batch or sequence, head) pair on the calling thread: `out`
/// (queries × size) = softmax(`weigh`(scale · q · kᵀ)) · v. `weigh(i, row)` turns query `i`'s
/// row of scores into unnormalised weights in place (mask, then [`exp_in_place`]) and answers
/// their sum (a closure marked `#[inline(always)]`, so that [`widest_simd`] covers it); the
/// division by it is left to `out`'s rows (size values each) instead of the weights (keys values
/// each). `scores` is a buffer the thread reuses.
fn attend_block(
    out: &mut [f32],
    scores: &mut Vec<f32>,
    (q, k, v): (Strided, Strided, Strided),
    (queries, keys, size): (usize, usize, usize),
    scale: f32,
    mut weigh: impl FnMut(usize, &mut [f32]) -> f32,
) {
    scores.resize(queries * keys + queries, 0f32);
    let (weights, inverses) = scores.split_at_mut(queries * keys);
    product(weights, (queries, keys, size), q, k, scale);
    widest_simd(
        #[inline(always)]
        || {
            for (i, (row, inverse)) in weights
                .chunks_exact_mut(keys)
                .zip(inverses.iter_mut())
                .enumerate()
            {
                *inverse = 1.0 / weigh(i, row);
            }
        },
    );
    product(
        out,
        (queries, size, keys),
        Strided::rows(weights, keys),
        v,
        1.0,
    );
    widest_simd(
        #[inline(always)]
        || {
            for (row, inverse) in out.chunks_exact_mut(size).zip(inverses.iter()) {
                for o in row {
                    *o *= inverse;
                }
            }
        },
    );
}

/// `t` (rank 4) as a tensor whose every (batch, head) block of rows is contiguous: `t` itself
/// when it already is (a view into a larger buffer along the rows), a contiguous copy if not.
fn head_blocks(t: &Tensor) -> Result<Tensor> {
    let (_, _, rows, size) = t.dims4()?;
    let stride = t.stride();
    if stride[3] == 1 && (stride[2] == size || rows == 1) {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// The (batch, head) blocks of a rank-4 f32 tensor on the CPU whose blocks are contiguous
/// (see [`head_blocks`]), read in place.
struct Heads<'a> {
    values: &'a [f32],
    start: usize,
    batch_stride: usize,
    head_stride: usize,
}

impl<'a> Heads<'a> {
    fn of(storage: &'a Storage, layout: &candle_core::Layout) -> Result<Self> {
        let Storage::Cpu(cpu) = storage else {
            candle_core::bail!("attention: a CPU tensor was expected")
        };
        Ok(Self {
            values: cpu.as_slice::<f32>()?,
            start: layout.start_offset(),
            batch_stride: layout.stride()[0],
            head_stride: layout.stride()[1],
        })
    }

    /// The `len` values of the block of `batch` and `head`.
    fn block(&self, batch: usize, head: usize, len: usize) -> &'a [f32] {
        &self.values[self.start + batch * self.batch_stride + head * self.head_stride..][..len]
    }

    /// Every block (`rows` × `size`, row-major) transposed, one after another in (batch, head)
    /// order: `size` × `rows` each.
    fn transposed(&self, batch: usize, heads: usize, rows: usize, size: usize) -> Vec<f32> {
        let mut out = Box::new_uninit_slice(batch * heads * rows * size);
        out.par_chunks_mut(rows * size)
            .enumerate()
            .for_each(|(block, out)| {
                let out = zeroed(out);
                let values = self.block(block / heads, block % heads, rows * size);
                // Sixteen rows at a time: each column's sixteen values land side by side.
                for first in (0..rows).step_by(16) {
                    let last = (first + 16).min(rows);
                    for column in 0..size {
                        for row in first..last {
                            out[column * rows + row] = values[row * size + column];
                        }
                    }
                }
            });
        // SAFETY: every block of `out` was zeroed by its task, then written.
        unsafe { out.assume_init() }.into_vec()
    }
}

/// Where a mask's row for a (batch, head, query) starts, the mask being broadcast over the
/// dimensions it holds once.
#[derive(Debug, Clone, Copy)]
struct MaskLayout {
    batch_stride: usize,
    head_stride: usize,
    row_stride: usize,
}

impl MaskLayout {
    /// The layout of `mask` (rank 4, each of its first three dimensions either 1 or the
    /// scores', its last the keys) over scores of `batch × heads × queries × keys`; `None`
    /// for any other shape.
    fn of(
        mask: &Tensor,
        batch: usize,
        heads: usize,
        queries: usize,
        keys: usize,
    ) -> Result<Option<Self>> {
        if mask.rank() != 4 {
            return Ok(None);
        }
        let (mb, mh, mq, mk) = mask.dims4()?;
        let fits = |m: usize, n: usize| m == 1 || m == n;
        if !(fits(mb, batch) && fits(mh, heads) && fits(mq, queries) && mk == keys) {
            return Ok(None);
        }
        let stride = |m: usize, step: usize| if m == 1 { 0 } else { step };
        Ok(Some(Self {
            batch_stride: stride(mb, mh * mq * mk),
            head_stride: stride(mh, mq * mk),
            row_stride: stride(mq, mk),
        }))
    }

    fn row(&self, batch: usize, head: usize, query: usize) -> usize {
        batch * self.batch_stride + head * self.head_stride + query * self.row_stride
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::max_difference;

    /// The operation composed of candle's steps, as the layers computed it before.
    pub(super) fn composed(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
        mask: Option<&Tensor>,
    ) -> Tensor {
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * scale).unwrap();
        let scores = match mask {
            Some(m) => scores.broadcast_add(m).unwrap(),
            None => scores,
        };
        candle_nn::ops::softmax_last_dim(&scores)
            .unwrap()
            .matmul(v)
            .unwrap()
    }

    #[test]
    fn head_by_head_attention_equals_the_composed_operation() {
        let device = Device::Cpu;
        let (b, h, l, s, d) = (2, 3, 5, 7, 8);
        let q = Tensor::randn(0f32, 1.0, (b, h, l, d), &device).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, h, s, d), &device).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, h, s, d), &device).unwrap();
        let scale = (d as f64).powf(-0.5);
        let fused = attend(&q, &k, &v, scale, None).unwrap().unwrap();
        assert_eq!(fused.dims4().unwrap(), (b, h, l, d));
        assert!(max_difference(&fused, &composed(&q, &k, &v, scale, None)) < 1e-5);
        // A causal-style mask per batch, broadcast over heads; and one over batch and heads.
        let per_batch = Tensor::randn(0f32, 3.0, (b, 1, l, s), &device).unwrap();
        let fused = attend(&q, &k, &v, scale, Some(&per_batch))
            .unwrap()
            .unwrap();
        let want = composed(&q, &k, &v, scale, Some(&per_batch));
        assert!(max_difference(&fused, &want) < 1e-5);
        let shared = Tensor::randn(0f32, 3.0, (1, 1, l, s), &device).unwrap();
        let fused = attend(&q, &k, &v, scale, Some(&shared)).unwrap().unwrap();
        let want = composed(&q, &k, &v, scale, Some(&shared));
        assert!(max_difference(&fused, &want) < 1e-5);
        // Keys masked by a large negative value get no weight: only the first key is seen.
        let only_first: Vec<f32> = (0..s).map(|j| if j == 0 { 0.0 } else { -1e9 }).collect();
        let masked = Tensor::from_vec(only_first, (1, 1, 1, s), &device).unwrap();
        let fused = attend(&q, &k, &v, scale, Some(&masked)).unwrap().unwrap();
        let first_value = v
            .narrow(2, 0, 1)
            .unwrap()
            .broadcast_as((b, h, l, d))
            .unwrap();
        assert!(max_difference(&fused, &first_value.contiguous().unwrap()) < 1e-5);
    }

    #[test]
    fn head_sizes_of_whole_vectors_take_the_values_in_place_and_agree() {
        // A head size that is a multiple of 16 sends the weighted sum of the values through
        // the transposed product; one block of queries and several, blocks over 48 queries
        // taken in two parts of the same width (64) and of two widths (51: 26 and 25).
        let device = Device::Cpu;
        let (b, h, d) = (2, 2, 32);
        for (l, s) in [
            (5, 7),
            (IN_PLACE_COLUMNS + 3, 40),
            (QUERY_BLOCK + 6, 90),
            (QUERY_BLOCK + 6, 96),
        ] {
            let q = Tensor::randn(0f32, 1.0, (b, h, l, d), &device).unwrap();
            let k = Tensor::randn(0f32, 1.0, (b, h, s, d), &device).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, h, s, d), &device).unwrap();
            let mask = Tensor::randn(0f32, 3.0, (b, 1, l, s), &device).unwrap();
            let scale = (d as f64).powf(-0.5);
            for mask in [None, Some(&mask)] {
                let fused = attend(&q, &k, &v, scale, mask).unwrap().unwrap();
                let off = max_difference(&fused, &composed(&q, &k, &v, scale, mask));
                assert!(off < 1e-5, "{l} queries, {s} keys: {off}");
            }
        }
    }

    #[test]
    fn query_blocks_skip_the_keys_a_causal_mask_with_left_padding_hides() {
        let device = Device::Cpu;
        // More queries than one block, keys after a cache of 7 slots, sequences padded by 0 and 30.
        let (b, h, l, cached, d) = (2, 2, 2 * QUERY_BLOCK + 9, 7, 8);
        let s = cached + l;
        let q = Tensor::randn(0f32, 1.0, (b, h, l, d), &device).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, h, s, d), &device).unwrap();
        let v = Tensor::randn(0f32, 1.0, (b, h, s, d), &device).unwrap();
        let padding = [0, 30];
        let values: Vec<f32> = (0..b)
            .flat_map(|r| {
                (0..l).flat_map(move |i| {
                    (0..s).map(move |j| {
                        if j < padding[r] || j > cached + i {
                            f32::MIN
                        } else {
                            0.0
                        }
                    })
                })
            })
            .collect();
        let mask = Tensor::from_vec(values, (b, 1, l, s), &device).unwrap();
        let scale = (d as f64).powf(-0.5);
        let fused = attend(&q, &k, &v, scale, Some(&mask)).unwrap().unwrap();
        let want = composed(&q, &k, &v, scale, Some(&mask));
        // Rows whose every key is hidden (the padded sequence's first queries) average whatever
        // keys their block computes; every other row matches.
        let seen = |r: usize| fused.get(r).unwrap().narrow(1, 30, l - 30).unwrap();
        let wanted = |r: usize| want.get(r).unwrap().narrow(1, 30, l - 30).unwrap();
        assert!(max_difference(&fused.get(0).unwrap(), &want.get(0).unwrap()) < 1e-5);
        assert!(max_difference(&seen(1), &wanted(1)) < 1e-5);
        assert_eq!(visible_span(&[f32::MIN, 0.0, 0.0, f32::MIN]), Some((1, 3)));
        assert_eq!(visible_span(&[f32::MIN; 3]), None);
        // Spans across and inside whole vectors of keys, against a plain scan.
        for (first, last, len) in [(0, 39, 40), (17, 17, 40), (3, 31, 33), (32, 32, 33)] {
            let row: Vec<f32> = (0..len)
                .map(|j| {
                    if (first..=last).contains(&j) && j % 5 != 1 {
                        0.5
                    } else {
                        f32::MIN
                    }
                })
                .collect();
            let plain = row
                .iter()
                .position(|&m| m > HIDDEN)
                .zip(row.iter().rposition(|&m| m > HIDDEN));
            assert_eq!(
                visible_span(&row),
                plain.map(|(f, l)| (f, l + 1)),
                "{first}..={last} of {len}"
            );
        }
        assert_eq!(
            seen_keys([Some((1, 3)), None, Some((2, 5))].into_iter(), 6),
            (1, 5)
        );
        assert_eq!(seen_keys([None, None].into_iter(), 3), (0, 3));
        // Keys widened to whole vectors: past the end first, then before the start.
        assert_eq!(whole_vectors(4, 20, 100), (4, 20));
        assert_eq!(whole_vectors(4, 21, 100), (4, 36));
        assert_eq!(whole_vectors(20, 90, 96), (16, 96));
        assert_eq!(whole_vectors(3, 40, 40), (0, 40));
        assert_eq!(whole_vectors(0, 32, 40), (0, 32));
    }

    #[test]
    fn grouped_key_heads_in_a_larger_buffer_are_read_in_place() {
        let device = Device::Cpu;
        let (b, h, key_heads, l, s, d) = (2, 6, 2, 3, 5, 4);
        let q = Tensor::randn(0f32, 1.0, (b, h, l, d), &device).unwrap();
        // Keys and values in buffers with room for 4 more slots, seen through views.
        let buffer = |mean: f32| {
            Tensor::randn(mean, 1.0, (b, key_heads, s + 4, d), &device)
                .unwrap()
                .narrow(2, 0, s)
                .unwrap()
        };
        let (k, v) = (buffer(0.0), buffer(0.5));
        // Each key head repeated for the query heads it serves, as the layers did by a copy.
        let repeated = |x: &Tensor| {
            x.unsqueeze(2)
                .unwrap()
                .expand((b, key_heads, h / key_heads, s, d))
                .unwrap()
                .reshape((b, h, s, d))
                .unwrap()
        };
        let scale = (d as f64).powf(-0.5);
        // The heads sharing a key head go in one block when there are blocks enough for the
        // threads (one thread here), one head a block otherwise (64 threads): masks per batch
        // and per head (each stacked row must find its own head's), several queries and one
        // (a decoding step).
        for threads in [1, 64] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for queries in [l, 1] {
                let q = q.narrow(2, 0, queries).unwrap().contiguous().unwrap();
                for mask_heads in [1, h] {
                    let shape = (b, mask_heads, queries, s);
                    let mask = Tensor::randn(0f32, 3.0, shape, &device).unwrap();
                    let fused = pool
                        .install(|| attend(&q, &k, &v, scale, Some(&mask)))
                        .unwrap()
                        .unwrap();
                    let want = composed(&q, &repeated(&k), &repeated(&v), scale, Some(&mask));
                    assert_eq!(fused.dims4().unwrap(), (b, h, queries, d));
                    let off = max_difference(&fused, &want);
                    assert!(
                        off < 1e-5,
                        "{threads} threads, {queries} queries, mask of {mask_heads} heads: {off}"
                    );
                }
            }
        }
        // Query heads that key heads do not divide are left to the composed operation.
        let five = Tensor::randn(0f32, 1.0, (b, 5, l, d), &device).unwrap();
        assert!(attend(&five, &k, &v, scale, None).unwrap().is_none());
    }

    #[test]
    fn the_composed_path_reads_grouped_heads_in_place_as_the_kernel_does() {
        let device = Device::Cpu;
        let (b, h, key_heads, s, d) = (3, 6, 2, 9, 8);
        // Keys and values in a cache with room for 5 more slots, seen through views.
        let buffer = |mean: f32| {
            Tensor::randn(mean, 1.0, (b, key_heads, s + 5, d), &device)
                .unwrap()
                .narrow(2, 0, s)
                .unwrap()
        };
        let (k, v) = (buffer(0.0), buffer(0.5));
        let scale = (d as f64).powf(-0.5);
        // A prefill (several queries, a mask per batch), a decoding step (one query, no mask).
        for (l, masked) in [(4, true), (1, false)] {
            let q = Tensor::randn(0f32, 1.0, (b, h, l, d), &device).unwrap();
            let mask = Tensor::randn(0f32, 3.0, (b, 1, l, s), &device).unwrap();
            let mask = masked.then_some(&mask);
            let want = attend(&q, &k, &v, scale, mask).unwrap().unwrap();
            let got = attend_composed(&q, &k, &v, scale, mask, Seen::All).unwrap();
            assert_eq!(got.dims4().unwrap(), (b, h, l, d));
            assert!(max_difference(&got, &want) < 1e-5, "{l} queries");
            // In bf16, where only the composed path goes, within bf16's precision.
            let half = |x: &Tensor| x.to_dtype(DType::BF16).unwrap();
            let got = attend_composed(&half(&q), &half(&k), &half(&v), scale, mask, Seen::All)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            assert!(max_difference(&got, &want) < 5e-2, "{l} queries in bf16");
        }
        let five = Tensor::randn(0f32, 1.0, (b, 5, 1, d), &device).unwrap();
        assert!(attend_composed(&five, &k, &v, scale, None, Seen::All).is_err());
    }

    #[test]
    fn a_causal_rule_hides_in_the_composed_path_what_its_mask_hides_in_the_kernel() {
        let device = Device::Cpu;
        let (b, h, key_heads, s, l, d) = (3, 6, 2, 11, 4, 8);
        let first: [u32; 3] = [0, 3, 6];
        let offset = s - l;
        let mask = softmax::causal_mask(&first, l, s, offset, &device).unwrap();
        let first_slot = Tensor::new(&first, &device).unwrap();
        let seen = Seen::Causal {
            offset,
            first_slot: &first_slot,
        };
        let q = Tensor::randn(0f32, 1.0, (b, h, l, d), &device).unwrap();
        let k = Tensor::randn(0f32, 1.0, (b, key_heads, s, d), &device).unwrap();
        let v = Tensor::randn(0.5f32, 1.0, (b, key_heads, s, d), &device).unwrap();
        let scale = (d as f64).powf(-0.5);
        let want = attend(&q, &k, &v, scale, Some(&mask)).unwrap().unwrap();
        let got = attend_composed(&q, &k, &v, scale, Some(&mask), seen).unwrap();
        assert!(max_difference(&got, &want) < 1e-5);
        // The rule alone, without the mask, gives the same.
        let got = attend_composed(&q, &k, &v, scale, None, seen).unwrap();
        assert!(max_difference(&got, &want) < 1e-5);
        let half = |x: &Tensor| x.to_dtype(DType::BF16).unwrap();
        let got = attend_composed(&half(&q), &half(&k), &half(&v), scale, None, seen)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        assert!(max_difference(&got, &want) < 5e-2);
    }

    #[test]
    fn other_inputs_are_left_to_the_composed_operation() {
        let device = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, 2, 3, 4), &device).unwrap();
        let half = q.to_dtype(DType::F16).unwrap();
        assert!(attend(&half, &half, &half, 1.0, None).unwrap().is_none());
        let tracked = candle_core::Var::from_tensor(&q).unwrap();
        assert!(attend(tracked.as_tensor(), &q, &q, 1.0, None)
            .unwrap()
            .is_none());
        let no_keys = Tensor::zeros((1, 2, 0, 4), DType::F32, &device).unwrap();
        assert!(attend(&q, &no_keys, &no_keys, 1.0, None).unwrap().is_none());
        let odd_mask = Tensor::zeros((3, 4), DType::F32, &device).unwrap();
        assert!(attend(&q, &q, &q, 1.0, Some(&odd_mask)).unwrap().is_none());
    }
}
