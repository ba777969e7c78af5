//! The two products of a decoding step's attention: a few query rows (one per query head, or a
//! key head's group stacked) against hundreds of cached keys, then their weights against the
//! cached values. gemm packs the keys or values it is given for so few rows, and the compiler's
//! dot products end each key with a horizontal sum: a step of SmolVLM-256M at batch 1 spent 5.6
//! to 6 of its 27 ms in attention either way. Here, where the processor has AVX-512 and the head
//! size is whole vectors, sixteen keys' sums are folded into one register at once
//! ([`sum_sixteen`]) and the weighted values are summed in registers; elsewhere, plain loops.

use super::Strided;
#[cfg(target_arch = "x86_64")]
use crate::cpu_ops::has_avx512;
use crate::cpu_ops::{dot, widest_simd};

/// Rows of a left operand up to which [`super::product`] takes [`product`] instead of gemm.
pub(super) const FEW_ROWS: usize = 4;

/// Whether [`product`] takes `a` (rows × `k`) by `b`: `a`'s rows side by side, and `b` either
/// the keys (columns side by side: kᵀ) or the values (rows side by side).
pub(super) fn takes(m: usize, a: &Strided, b: &Strided) -> bool {
    m <= FEW_ROWS && a.column_step == 1 && (b.row_step == 1 || b.column_step == 1)
}

/// `dst` (m × n, row-major) = `scale` · `a` (m × k) · `b` (k × n) on the calling thread, for
/// operands [`takes`] accepts; `b`, the large operand, is read from memory once and as it lies.
pub(super) fn product(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    a: Strided,
    b: Strided,
    scale: f32,
) {
    let a_row = |i: usize| &a.values[i * a.row_step..][..k];
    if b.row_step == 1 {
        // Scores: each value is a row of `a` dotted with a key (a column of `b`).
        #[cfg(target_arch = "x86_64")]
        if k % LANES == 0 && has_avx512() {
            for (i, out) in dst.chunks_exact_mut(n).take(m).enumerate() {
                // SAFETY: AVX-512F is there; `out` has n values, the row k, and the n keys
                // of k values `column_step` apart lie inside `b` (the caller's assertion).
                unsafe { scores_avx512(out, a_row(i), b, scale) };
            }
            return;
        }
        widest_simd(
            #[inline(always)]
            || {
                for j in 0..n {
                    let key = &b.values[j * b.column_step..][..k];
                    for i in 0..m {
                        dst[i * n + j] = scale * dot(a_row(i), key);
                    }
                }
            },
        );
        return;
    }
    // Weighted values: each row of `dst` sums the rows of `b` weighted by a row of `a`.
    #[cfg(target_arch = "x86_64")]
    if n % (VALUE_VECTORS * LANES) == 0 && has_avx512() {
        // SAFETY: AVX-512F is there; the m rows of `a` hold k weights each, the k rows of `b`
        // n values each, `dst` m × n (the caller's assertion).
        unsafe {
            match m {
                1 => values_avx512::<1>(dst, (n, k), a, b, scale),
                2 => values_avx512::<2>(dst, (n, k), a, b, scale),
                3 => values_avx512::<3>(dst, (n, k), a, b, scale),
                _ => values_avx512::<FEW_ROWS>(dst, (n, k), a, b, scale),
            }
        }
        return;
    }
    widest_simd(
        #[inline(always)]
        || {
            for (i, out) in dst.chunks_exact_mut(n).take(m).enumerate() {
                out.fill(0.0);
                for (j, &weight) in a_row(i).iter().enumerate() {
                    let row = &b.values[j * b.row_step..][..n];
                    for (o, v) in out.iter_mut().zip(row) {
                        *o += weight * v;
                    }
                }
                for o in out.iter_mut() {
                    *o *= scale;
                }
            }
        },
    );
}

/// f32 lanes of an AVX-512 register.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;

/// Registers of one row of weighted values summed at a time (64 columns): with [`FEW_ROWS`]
/// rows, sixteen registers of sums.
#[cfg(target_arch = "x86_64")]
const VALUE_VECTORS: usize = 4;

/// `out[j]` = `scale` · `q` · key `j` for every key of `keys` (each `q.len()` values, `q.len()` a
/// multiple of 16), sixteen keys at a time: one register of partial sums per key, folded into
/// one register of the sixteen sums; the last keys one [`dot`] each.
///
/// # Safety
/// The processor must have AVX-512F; `out.len()` keys of `q.len()` values, `column_step` apart,
/// must lie inside `keys.values`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512(out: &mut [f32], q: &[f32], keys: Strided, scale: f32) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    let (n, k, step) = (out.len(), q.len(), keys.column_step);
    let whole = n - n % LANES;
    let kp = keys.values.as_ptr();
    for j0 in (0..whole).step_by(LANES) {
        let mut sums: [__m512; LANES] = [_mm512_setzero_ps(); LANES];
        for c in (0..k).step_by(LANES) {
            // SAFETY: c + 16 ≤ k: within `q`.
            let qv = unsafe { _mm512_loadu_ps(q.as_ptr().add(c)) };
            for (t, sum) in sums.iter_mut().enumerate() {
                // SAFETY: key j0 + t < n, its values c..c + 16 within k (the caller's promise).
                let kv = unsafe { _mm512_loadu_ps(kp.add((j0 + t) * step + c)) };
                *sum = _mm512_fmadd_ps(qv, kv, *sum);
            }
        }
        let folded = _mm512_mul_ps(sum_sixteen(sums), _mm512_set1_ps(scale));
        // SAFETY: j0 + 16 ≤ n = out.len().
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(j0), folded) };
    }
    for (j, out) in out.iter_mut().enumerate().skip(whole) {
        *out = scale * dot(q, &keys.values[j * step..][..k]);
    }
}

/// One register whose lane `t` is the sum of `sums[t]`'s sixteen lanes: the registers are
/// added in pairs after interleaving their 32-bit halves, then their 64-bit halves (four
/// registers, each of whose 128-bit quarters holds four keys' sums over that quarter), then
/// their quarters twice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn sum_sixteen(sums: [std::arch::x86_64::__m512; LANES]) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd, _mm512_shuffle_f32x4,
        _mm512_unpackhi_pd, _mm512_unpackhi_ps, _mm512_unpacklo_pd, _mm512_unpacklo_ps,
    };
    // Quarters 0 and 2 of both registers (0x88), then quarters 1 and 3 (0xDD), added.
    let quarters = |a, b| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(a, b),
            _mm512_shuffle_f32x4::<0xDD>(a, b),
        )
    };
    let pairs: [_; 8] = std::array::from_fn(|p| {
        let (a, b) = (sums[2 * p], sums[2 * p + 1]);
        _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
    });
    let fours: [_; 4] = std::array::from_fn(|f| {
        let (a, b) = (
            _mm512_castps_pd(pairs[2 * f]),
            _mm512_castps_pd(pairs[2 * f + 1]),
        );
        _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
        )
    });
    quarters(quarters(fours[0], fours[1]), quarters(fours[2], fours[3]))
}

/// `dst` (R × n) = `scale` · `weights` (R × k) · `values` (k × n, rows side by side), n a
/// multiple of 64: for each 64 columns, the R rows' sums stay in registers while every value
/// row is read once, each weight broadcast onto it.
///
/// # Safety
/// The processor must have AVX-512F; the R rows of `weights` must hold k values each, the k
/// rows of `values` n each, and `dst` R × n.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn values_avx512<const R: usize>(
    dst: &mut [f32],
    (n, k): (usize, usize),
    weights: Strided,
    values: Strided,
    scale: f32,
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    assert!(
        dst.len() >= R * n,
        "attention: weighted values outside their buffer"
    );
    let (wp, vp) = (weights.values.as_ptr(), values.values.as_ptr());
    for c0 in (0..n).step_by(VALUE_VECTORS * LANES) {
        let mut sums: [[__m512; VALUE_VECTORS]; R] = [[_mm512_setzero_ps(); VALUE_VECTORS]; R];
        for j in 0..k {
            let mut row: [__m512; VALUE_VECTORS] = [_mm512_setzero_ps(); VALUE_VECTORS];
            for (v, part) in row.iter_mut().enumerate() {
                // SAFETY: row j < k, columns c0 + 16·v + 16 ≤ n (the caller's promise).
                *part = unsafe { _mm512_loadu_ps(vp.add(j * values.row_step + c0 + LANES * v)) };
            }
            for (r, sums) in sums.iter_mut().enumerate() {
                // SAFETY: row r < R, weight j < k (the caller's promise).
                let w = _mm512_set1_ps(unsafe { *wp.add(r * weights.row_step + j) });
                for (sum, part) in sums.iter_mut().zip(row) {
                    *sum = _mm512_fmadd_ps(w, part, *sum);
                }
            }
        }
        let scale = _mm512_set1_ps(scale);
        for (r, sums) in sums.into_iter().enumerate() {
            for (v, sum) in sums.into_iter().enumerate() {
                // SAFETY: r · n + c0 + 16·v + 16 ≤ R · n ≤ dst.len() (asserted).
                unsafe {
                    _mm512_storeu_ps(
                        dst.as_mut_ptr().add(r * n + c0 + LANES * v),
                        _mm512_mul_ps(sum, scale),
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu_ops::sequence_values as values;

    /// Asserts that each of the rows × columns values of `got` is within `tolerance` of
    /// `want(row, column)`.
    fn assert_near(
        got: &[f32],
        (rows, columns): (usize, usize),
        want: impl Fn(usize, usize) -> f64,
        tolerance: f64,
        what: &str,
    ) {
        for i in 0..rows {
            for j in 0..columns {
                let (got, want) = (got[i * columns + j] as f64, want(i, j));
                assert!(
                    (got - want).abs() < tolerance,
                    "{what}: ({i}, {j}) is {got}, not {want}"
                );
            }
        }
    }

    #[test]
    fn both_products_match_sums_in_f64_on_every_path() {
        // Head sizes of whole registers (the AVX-512 paths where there is AVX-512) and not;
        // keys in whole sixteens and with a few after; one to four rows; keys and values
        // inside a larger buffer (a cache with room), rows of `a` apart.
        for (k_size, keys) in [(64, 16 * 5 + 7), (128, 32), (24, 19)] {
            let room = 3;
            let cache = values((keys + room) * k_size, 1);
            for m in 1..=FEW_ROWS {
                let row_step = k_size + 5;
                let q = values(m * row_step, 2);
                let a = Strided::rows(&q, row_step);
                let b = Strided::columns(&cache, k_size);
                assert!(takes(m, &a, &b));
                let mut scores = vec![f32::NAN; m * keys];
                product(&mut scores, (m, keys, k_size), a, b, 0.5);
                let score = |i: usize, j: usize| -> f64 {
                    (0..k_size)
                        .map(|d| q[i * row_step + d] as f64 * cache[j * k_size + d] as f64)
                        .sum::<f64>()
                        * 0.5
                };
                let what = format!("scores, size {k_size}, {m} rows");
                assert_near(&scores, (m, keys), score, 1e-5, &what);
                // The weighted values: scores (m × keys) by the values (keys × k_size).
                let a = Strided::rows(&scores, keys);
                let b = Strided::rows(&cache, k_size);
                assert!(takes(m, &a, &b));
                let mut out = vec![f32::NAN; m * k_size];
                product(&mut out, (m, k_size, keys), a, b, 2.0);
                let value = |i: usize, c: usize| -> f64 {
                    (0..keys)
                        .map(|j| scores[i * keys + j] as f64 * cache[j * k_size + c] as f64)
                        .sum::<f64>()
                        * 2.0
                };
                let what = format!("values, size {k_size}, {m} rows");
                assert_near(&out, (m, k_size), value, 1e-4, &what);
            }
        }
        // More rows than FEW_ROWS, or a left operand read down its columns, go to gemm.
        let q = values(64, 3);
        let b = Strided::columns(&q, 8);
        assert!(!takes(FEW_ROWS + 1, &Strided::rows(&q, 8), &b));
        assert!(!takes(2, &Strided::columns(&q, 8), &b));
    }
}
