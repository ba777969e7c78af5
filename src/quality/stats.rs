//! Uncertainty of a mean over queries: a percentile-bootstrap 95 % interval, and for two systems
//! judged on the same queries, the interval of the paired difference and a two-sided paired
//! randomization (sign-flip) test. Resampling is seeded, so a run repeats exactly. And how the
//! per-query values spread: quantiles and a histogram.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Resamples drawn for each interval and test.
pub const RESAMPLES: usize = 10_000;

/// A mean and its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    /// The mean over queries.
    pub mean: f64,
    /// The 2.5th percentile of the bootstrap means.
    pub low: f64,
    /// The 97.5th percentile of the bootstrap means.
    pub high: f64,
}

/// The mean of `values` with its percentile-bootstrap 95 % interval.
pub fn bootstrap(values: &[f64], seed: u64) -> Interval {
    let mean = mean(values);
    if values.len() < 2 {
        return Interval {
            mean,
            low: mean,
            high: mean,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = values.len();
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Interval {
        mean,
        low: percentile(&means, 0.025),
        high: percentile(&means, 0.975),
    }
}

/// Candidate − baseline on the same queries.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Paired {
    /// The mean difference and its bootstrap 95 % interval.
    pub difference: Interval,
    /// Two-sided p-value of the paired randomization test (no difference between the systems).
    pub p_value: f64,
}

/// Compares per-query values of two systems, query by query.
pub fn paired(baseline: &[f64], candidate: &[f64], seed: u64) -> Paired {
    let differences: Vec<f64> = candidate.iter().zip(baseline).map(|(c, b)| c - b).collect();
    let observed = mean(&differences).abs();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_f11b);
    let as_extreme = (0..RESAMPLES)
        .filter(|_| {
            let flipped: f64 = differences
                .iter()
                .map(|d| if rng.random::<bool>() { *d } else { -d })
                .sum::<f64>()
                / differences.len().max(1) as f64;
            flipped.abs() >= observed - 1e-12
        })
        .count();
    Paired {
        difference: bootstrap(&differences, seed),
        p_value: (as_extreme + 1) as f64 / (RESAMPLES + 1) as f64,
    }
}

/// The mean, 0 for no values.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// How per-query values spread over a range.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Distribution {
    /// The smallest value.
    pub min: f64,
    /// The 25th percentile.
    pub p25: f64,
    /// The median.
    pub median: f64,
    /// The 75th percentile.
    pub p75: f64,
    /// The largest value.
    pub max: f64,
    /// Share of the values that are exactly zero (queries that found nothing relevant).
    pub zero_share: f64,
    /// The range the histogram covers, `[from, to]`.
    pub range: [f64; 2],
    /// Values per equal-width bin of `range`, the last bin closed.
    pub histogram: Vec<usize>,
}

/// The spread of `values` (none gives zeros), with a histogram of `bins` bins over
/// `[from, to]` (values outside it go to the end bins).
pub fn distribution(values: &[f64], from: f64, to: f64, bins: usize) -> Distribution {
    let mut histogram = vec![0; bins.max(1)];
    let width = (to - from) / histogram.len() as f64;
    for value in values {
        let bin = ((value - from) / width).floor().max(0.0) as usize;
        histogram[bin.min(bins.max(1) - 1)] += 1;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if sorted.is_empty() {
            0.0
        } else {
            percentile(&sorted, q)
        }
    };
    Distribution {
        min: at(0.0),
        p25: at(0.25),
        median: at(0.5),
        p75: at(0.75),
        max: at(1.0),
        zero_share: if values.is_empty() {
            0.0
        } else {
            values.iter().filter(|v| **v == 0.0).count() as f64 / values.len() as f64
        },
        range: [from, to],
        histogram,
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let (below, above) = (position.floor() as usize, position.ceil() as usize);
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_holds_the_mean_and_repeats_with_its_seed() {
        let values: Vec<f64> = (0..50).map(|i| (i % 7) as f64 / 7.0).collect();
        let a = bootstrap(&values, 1);
        assert!(a.low < a.mean && a.mean < a.high, "{a:?}");
        assert_eq!(a, bootstrap(&values, 1));
        assert_ne!(a, bootstrap(&values, 2));
    }

    #[test]
    fn a_distribution_has_its_quantiles_and_every_value_in_a_bin() {
        let values = [0.0, 0.0, 0.25, 0.5, 1.0];
        let d = distribution(&values, 0.0, 1.0, 4);
        assert_eq!(
            (d.min, d.p25, d.median, d.p75, d.max),
            (0.0, 0.0, 0.25, 0.5, 1.0)
        );
        assert_eq!(d.zero_share, 0.4);
        assert_eq!(
            d.histogram,
            [2, 1, 1, 1],
            "1.0 falls in the last, closed bin"
        );
        let spread = distribution(&[-2.0, 0.1, 3.0], -1.0, 1.0, 2);
        assert_eq!(
            spread.histogram,
            [1, 2],
            "values outside go to the end bins"
        );
        assert_eq!(distribution(&[], 0.0, 1.0, 3).histogram, [0, 0, 0]);
    }

    #[test]
    fn a_clear_improvement_is_significant_and_no_change_is_not() {
        let baseline: Vec<f64> = (0..40).map(|i| (i % 5) as f64 / 10.0).collect();
        let better: Vec<f64> = baseline.iter().map(|b| b + 0.2).collect();
        let up = paired(&baseline, &better, 3);
        assert!((up.difference.mean - 0.2).abs() < 1e-12);
        assert!(up.p_value < 0.001, "{up:?}");
        let same = paired(&baseline, &baseline, 3);
        assert_eq!(same.difference.mean, 0.0);
        assert!(same.p_value > 0.99, "{same:?}");
    }
}
