//! How the next token is chosen: greedily, or drawn with a temperature and a nucleus (top-p) cut
//! from a generator seeded per sequence, so that a row's answer depends on its seed alone and
//! not on the rows batched with it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ModelError;

/// The decoding rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The most likely token (transformers' `do_sample=False`).
    Greedy,
    /// A token drawn from softmax(logits / temperature), restricted to the smallest set of most
    /// likely tokens whose probabilities reach `top_p` (transformers' `do_sample=True`).
    Sample {
        /// Above 0; below 1 sharpens, above 1 flattens.
        temperature: f32,
        /// In (0, 1]; 1 keeps every token.
        top_p: f32,
    },
}

impl Decoding {
    /// `Greedy` for temperature 0, else `Sample`; refuses values out of range.
    pub fn new(temperature: f32, top_p: f32) -> Result<Self, ModelError> {
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(ModelError::Config(format!(
                "temperature must be 0 (greedy) or more, got {temperature}"
            )));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ModelError::Config(format!(
                "top_p must be in (0, 1], got {top_p}"
            )));
        }
        Ok(if temperature == 0.0 {
            Self::Greedy
        } else {
            Self::Sample { temperature, top_p }
        })
    }
}

/// One sequence's token chooser.
pub struct Sampler {
    decoding: Decoding,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A chooser for `decoding` whose draws follow from `seed`.
    pub fn new(decoding: Decoding, seed: u64) -> Self {
        Self {
            decoding,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next token given the last position's `logits`.
    pub fn next(&mut self, logits: &[f32]) -> u32 {
        match self.decoding {
            Decoding::Greedy => argmax(logits),
            Decoding::Sample { temperature, top_p } => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut candidates: Vec<(u32, f32)> = logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as u32, ((l - max) / temperature).exp()))
                    .collect();
                candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
                let total: f32 = candidates.iter().map(|c| c.1).sum();
                // Keep the most likely tokens until their share reaches top_p (at least one).
                let (mut kept, mut mass) = (0, 0.0);
                while kept < candidates.len() && (kept == 0 || mass < top_p * total) {
                    mass += candidates[kept].1;
                    kept += 1;
                }
                let mut draw = self.rng.random::<f32>() * mass;
                for &(token, weight) in &candidates[..kept] {
                    if draw < weight {
                        return token;
                    }
                    draw -= weight;
                }
                candidates[kept - 1].0
            }
        }
    }
}

/// The index of the largest value (the first of equals, as `torch.argmax`).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_temperature_is_greedy_and_bad_values_are_refused() {
        assert_eq!(Decoding::new(0.0, 1.0).unwrap(), Decoding::Greedy);
        assert!(Decoding::new(-0.1, 1.0).is_err());
        assert!(Decoding::new(0.7, 0.0).is_err());
        assert!(Decoding::new(0.7, 1.5).is_err());
        assert_eq!(
            Sampler::new(Decoding::Greedy, 9).next(&[0.1, 3.0, 3.0, -1.0]),
            1
        );
    }

    #[test]
    fn draws_follow_the_tempered_distribution() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 at temperature 1.
        let logits = [2.0f32.ln(), 1.0f32.ln(), 0.5f32.ln(), 0.5f32.ln()];
        let mut sampler = Sampler::new(Decoding::new(1.0, 1.0).unwrap(), 7);
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            counts[sampler.next(&logits) as usize] += 1;
        }
        for (count, p) in counts.iter().zip([0.5, 0.25, 0.125, 0.125]) {
            let share = *count as f64 / 20_000.0;
            assert!((share - p).abs() < 0.015, "{counts:?}");
        }
        // Temperature 0.5 squares the odds: 0.5² : 0.25² : … = 16 : 4 : 1 : 1.
        let mut sharp = Sampler::new(Decoding::new(0.5, 1.0).unwrap(), 7);
        let first = (0..20_000).filter(|_| sharp.next(&logits) == 0).count();
        assert!(
            (first as f64 / 20_000.0 - 16.0 / 22.0).abs() < 0.015,
            "{first}"
        );
    }

    #[test]
    fn top_p_keeps_the_smallest_likely_set_and_seeds_repeat() {
        let logits = [2.0f32.ln(), 1.0f32.ln(), 0.5f32.ln(), 0.5f32.ln()];
        // 0.5 + 0.25 reaches 0.7: only tokens 0 and 1 can come.
        let mut sampler = Sampler::new(Decoding::new(1.0, 0.7).unwrap(), 1);
        let drawn: std::collections::BTreeSet<u32> =
            (0..2_000).map(|_| sampler.next(&logits)).collect();
        assert_eq!(drawn, [0, 1].into());
        // A tiny top_p keeps the most likely token only: greedy.
        let mut narrow = Sampler::new(Decoding::new(1.0, 1e-6).unwrap(), 1);
        assert!((0..100).all(|_| narrow.next(&logits) == 0));
        let run = |seed| {
            let mut s = Sampler::new(Decoding::new(1.0, 1.0).unwrap(), seed);
            (0..32).map(|_| s.next(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
