//! The decoding loop: each sequence's chosen token goes back into the model until the sequence
//! ends, at its token limit or at the end token, the sequences still going decoded together.
//!
//! Greedy choices stay on the model's device: each row's argmax is the next step's input, and
//! the tokens chosen come back to the host only every [`Rules::steps_per_read`] steps, or sooner
//! when a sequence reaches its limit. On a GPU a read waits for all the work queued, so reading
//! every step would stall the launches of the next step's kernels behind each token. A
//! sequence that ends between two reads goes on being decoded until the next one and its tokens
//! past the end are dropped: the answers do not depend on how often the tokens are read.
//! Sampled tokens are drawn on the host ([`Sampler`]), so sampling reads every step.

use candle_core::{DType, Result, Tensor, D};

use super::sampling::{Decoding, Sampler};

/// What the loop asks of the model.
pub trait Decoder {
    /// Logits (rows × vocabulary) of the position after each row's `tokens` (rows × 1, u32, on
    /// the model's device); the rows are the sequences still decoding, in the loop's order.
    fn step(&mut self, tokens: &Tensor) -> Result<Tensor>;

    /// The argmax of [`Decoder::step`]'s logits (rows, u32, on the model's device); a model
    /// that can find it without computing every logit says so here.
    fn greedy_step(&mut self, tokens: &Tensor) -> Result<Tensor> {
        argmax(&self.step(tokens)?)
    }

    /// Keeps the rows at `slots` (in that order) and forgets the others.
    fn retain(&mut self, slots: &[usize]) -> Result<()>;
}

/// One sequence's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Sequence {
    /// The most tokens to generate (one at least is always generated).
    pub max_new_tokens: usize,
    /// Seeds the sequence's draws when sampling.
    pub seed: u64,
}

/// How a batch is decoded.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Greedy, or sampled.
    pub decoding: Decoding,
    /// The token that ends a sequence (not returned), if any.
    pub end: Option<u32>,
    /// Greedy steps between two reads of the tokens chosen (1 reads every step).
    pub steps_per_read: usize,
}

/// Each sequence's tokens, the first chosen from `logits` (rows × vocabulary: the prompts' last
/// positions, one row per sequence) and each next one from `model`'s step over the one before.
pub fn decode(
    logits: &Tensor,
    sequences: &[Sequence],
    rules: Rules,
    model: &mut impl Decoder,
) -> Result<Vec<Vec<u32>>> {
    let device = logits.device().clone();
    let reads_every = match rules.decoding {
        Decoding::Greedy => rules.steps_per_read.max(1),
        Decoding::Sample { .. } => 1,
    };
    let mut samplers: Vec<Sampler> = sequences
        .iter()
        .map(|s| Sampler::new(rules.decoding, s.seed))
        .collect();
    let mut active: Vec<usize> = (0..sequences.len()).collect();
    let mut generated = vec![Vec::new(); sequences.len()];
    // The tokens chosen since the last read, one tensor (active rows) a step.
    let mut unread: Vec<Tensor> = Vec::new();
    let mut chosen = choose(logits, rules.decoding, &active, &mut samplers)?;
    loop {
        unread.push(chosen.clone());
        let at_limit = active
            .iter()
            .any(|&row| generated[row].len() + unread.len() >= sequences[row].max_new_tokens);
        if at_limit || unread.len() >= reads_every {
            let steps: Vec<Vec<u32>> = Tensor::stack(&unread, 1)?.to_vec2()?;
            unread.clear();
            let mut keep = Vec::new();
            for (slot, (&row, tokens)) in active.iter().zip(steps).enumerate() {
                if still_going(&mut generated[row], &tokens, sequences[row], rules.end) {
                    keep.push(slot);
                }
            }
            if keep.is_empty() {
                return Ok(generated);
            }
            if keep.len() < active.len() {
                model.retain(&keep)?;
                let slots: Vec<u32> = keep.iter().map(|&slot| slot as u32).collect();
                chosen = chosen.index_select(&Tensor::new(slots.as_slice(), &device)?, 0)?;
                active = keep.iter().map(|&slot| active[slot]).collect();
            }
        }
        let tokens = chosen.unsqueeze(1)?;
        chosen = match rules.decoding {
            Decoding::Greedy => model.greedy_step(&tokens)?,
            Decoding::Sample { .. } => choose(
                &model.step(&tokens)?,
                rules.decoding,
                &active,
                &mut samplers,
            )?,
        };
    }
}

/// Appends a sequence's newly read `tokens` to what it has generated, up to its end token or
/// its limit; whether it goes on.
fn still_going(
    generated: &mut Vec<u32>,
    tokens: &[u32],
    sequence: Sequence,
    end: Option<u32>,
) -> bool {
    for &token in tokens {
        if Some(token) == end {
            return false;
        }
        generated.push(token);
        if generated.len() >= sequence.max_new_tokens {
            return false;
        }
    }
    true
}

/// The next token of each active row (a u32 tensor on the logits' device): the argmax,
/// computed there, or drawn by the row's sampler on the host.
fn choose(
    logits: &Tensor,
    decoding: Decoding,
    active: &[usize],
    samplers: &mut [Sampler],
) -> Result<Tensor> {
    if decoding == Decoding::Greedy {
        return argmax(logits);
    }
    let drawn: Vec<u32> = active
        .iter()
        .zip(logits.to_dtype(DType::F32)?.to_vec2::<f32>()?)
        .map(|(&row, values)| samplers[row].next(&values))
        .collect();
    Tensor::new(drawn.as_slice(), logits.device())
}

/// Each row's largest logit's index (the first of equals), in f32.
fn argmax(logits: &Tensor) -> Result<Tensor> {
    logits.to_dtype(DType::F32)?.argmax(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    const VOCABULARY: usize = 6;
    const END: u32 = 5;

    /// A model whose row `r` answers `script[r]` whatever came before, checking that each
    /// step is fed the token chosen at the step before.
    struct Scripted {
        script: Vec<Vec<u32>>,
        /// The sequence each row is, and how many tokens it has been given.
        rows: Vec<(usize, usize)>,
        steps: usize,
    }

    impl Scripted {
        fn new(script: Vec<Vec<u32>>) -> Self {
            let rows = (0..script.len()).map(|r| (r, 0)).collect();
            Self {
                script,
                rows,
                steps: 0,
            }
        }

        /// Logits favouring each row's next scripted token by a wide margin.
        fn logits(&self) -> Tensor {
            let mut values = vec![0f32; self.rows.len() * VOCABULARY];
            for (i, &(sequence, fed)) in self.rows.iter().enumerate() {
                values[i * VOCABULARY + self.script[sequence][fed] as usize] = 60.0;
            }
            Tensor::from_vec(values, (self.rows.len(), VOCABULARY), &Device::Cpu).unwrap()
        }
    }

    impl Decoder for Scripted {
        fn step(&mut self, tokens: &Tensor) -> Result<Tensor> {
            let tokens: Vec<Vec<u32>> = tokens.to_vec2()?;
            assert_eq!(tokens.len(), self.rows.len());
            for (row, token) in self.rows.iter_mut().zip(tokens) {
                let (sequence, fed) = *row;
                assert_eq!(token, [self.script[sequence][fed]], "sequence {sequence}");
                row.1 += 1;
            }
            self.steps += 1;
            Ok(self.logits())
        }

        fn retain(&mut self, slots: &[usize]) -> Result<()> {
            self.rows = slots.iter().map(|&slot| self.rows[slot]).collect();
            Ok(())
        }
    }

    fn scripts() -> Vec<Vec<u32>> {
        vec![
            vec![1, 2, 3, END, 4, 4, 4, 4, 4, 4, 4, 4],
            vec![2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
            vec![END, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            vec![3, 4, 3, 4, 3, 4, 3, 4, END, 1, 1, 1],
        ]
    }

    fn run(steps_per_read: usize, decoding: Decoding, limits: &[usize]) -> (Vec<Vec<u32>>, usize) {
        let mut model = Scripted::new(scripts());
        let sequences: Vec<Sequence> = limits
            .iter()
            .map(|&max_new_tokens| Sequence {
                max_new_tokens,
                seed: 1,
            })
            .collect();
        let rules = Rules {
            decoding,
            end: Some(END),
            steps_per_read,
        };
        let tokens = decode(&model.logits(), &sequences, rules, &mut model).unwrap();
        (tokens, model.steps)
    }

    #[test]
    fn every_sequence_stops_at_its_end_or_limit_however_often_tokens_are_read() {
        let limits = [10, 7, 10, 11];
        let want: Vec<Vec<u32>> = vec![
            vec![1, 2, 3],
            vec![2; 7],
            vec![],
            vec![3, 4, 3, 4, 3, 4, 3, 4],
        ];
        for steps_per_read in 1..=12 {
            let (tokens, steps) = run(steps_per_read, Decoding::Greedy, &limits);
            assert_eq!(tokens, want, "a read every {steps_per_read} steps");
            // The last sequence to end chose its end token at its ninth choice: eight steps
            // after the prompt's, and reading less often never runs past the next read.
            assert!(
                (8..8 + steps_per_read).contains(&steps),
                "{steps} steps reading every {steps_per_read}"
            );
        }
        // Reading every step decodes no step past a sequence's end.
        assert_eq!(run(1, Decoding::Greedy, &limits).1, 8);
    }

    #[test]
    fn a_limit_ends_a_sequence_at_once_and_one_token_is_the_least() {
        for steps_per_read in [1, 4, 100] {
            let (tokens, steps) = run(steps_per_read, Decoding::Greedy, &[2, 3, 1, 0]);
            assert_eq!(tokens, vec![vec![1, 2], vec![2, 2, 2], vec![], vec![3]]);
            assert_eq!(steps, 2, "a read every {steps_per_read} steps");
        }
    }

    #[test]
    fn sampled_decoding_feeds_back_the_tokens_drawn() {
        let decoding = Decoding::new(1.0, 1.0).unwrap();
        let (tokens, steps) = run(8, decoding, &[10, 7, 10, 11]);
        assert_eq!(tokens[0], [1, 2, 3]);
        assert_eq!(tokens[3], [3, 4, 3, 4, 3, 4, 3, 4]);
        assert_eq!(steps, 8, "sampling reads every step");
    }
}
