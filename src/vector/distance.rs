//! Nearness of f32 vectors for the searches Vitrine runs itself (the exact pass of calibration,
//! the in-memory index of [`super::resident`]): dot products and squared distances on the
//! widest SIMD the CPU offers (AVX2 with FMA on x86-64, detected at run time, as the release
//! build targets baseline x86-64), and the metric's view of them.

use super::index::Metric;

/// Lanes summed apart: enough independent sums for two 8-wide AVX2 registers, so that the
/// compiler vectorises the loop without reordering one sum's additions.
const LANES: usize = 16;

/// Σ f(aᵢ, bᵢ) over `LANES` independent sums. `#[inline(always)]`, so that the AVX2 entry
/// points below compile it with their features.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32, f32) -> f32) -> f32 {
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .fold(0.0, |sum, (x, y)| term(*x, *y, sum));
    let mut sums = [0.0f32; LANES];
    for (x, y) in chunks_a.zip(chunks_b) {
        for lane in 0..LANES {
            sums[lane] = term(x[lane], y[lane], sums[lane]);
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y, sum| x.mul_add(y, sum))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn squared_l2_avx2(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y, sum| (x - y).mul_add(x - y, sum))
}

/// Whether this CPU runs the AVX2 + FMA kernels (the answer is cached by the standard library).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// The dot product of two vectors of the same length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { dot_avx2(a, b) };
    }
    lane_sum(a, b, |x, y, sum| sum + x * y)
}

/// The squared Euclidean distance of two vectors of the same length.
pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { squared_l2_avx2(a, b) };
    }
    lane_sum(a, b, |x, y, sum| sum + (x - y) * (x - y))
}

/// Scales `vector` to unit length for the cosine metric (so that cosine similarity is a dot
/// product); leaves other metrics' vectors, and the zero vector, as they are.
pub fn normalise(metric: Metric, vector: &mut [f32]) {
    if metric == Metric::Cosine {
        let norm = dot(vector, vector).sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
    }
}

/// Higher is nearer: the dot product for cosine (on normalised vectors) and dot, minus the
/// squared distance for l2.
pub fn nearness(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => dot(a, b),
        Metric::L2 => -squared_l2(a, b),
    }
}

/// The distance Lance reports for a nearness: 1 − the dot product for cosine and dot, the
/// squared distance for l2.
pub fn lance_distance(metric: Metric, nearness: f32) -> f32 {
    match metric {
        Metric::Cosine | Metric::Dot => 1.0 - nearness,
        Metric::L2 => -nearness,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_agree_with_plain_sums_at_every_length() {
        for len in [0, 1, 7, 16, 17, 33, 512, 515] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let plain_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            assert!(
                (dot(&a, &b) - plain_dot).abs() <= 1e-4 * (1.0 + plain_dot.abs()),
                "{len}"
            );
            assert!(
                (squared_l2(&a, &b) - plain_l2).abs() <= 1e-4 * (1.0 + plain_l2),
                "{len}"
            );
        }
    }

    #[test]
    fn cosine_vectors_are_normalised_and_others_kept() {
        let mut v = vec![3.0, 4.0];
        normalise(Metric::Cosine, &mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0, 0.0];
        normalise(Metric::Cosine, &mut zero);
        assert_eq!(zero, vec![0.0, 0.0]);
        let mut kept = vec![3.0, 4.0];
        normalise(Metric::L2, &mut kept);
        assert_eq!(kept, vec![3.0, 4.0]);
        assert_eq!(nearness(Metric::L2, &[0.0, 0.0], &[3.0, 4.0]), -25.0);
        assert_eq!(lance_distance(Metric::Cosine, 0.25), 0.75);
    }
}
