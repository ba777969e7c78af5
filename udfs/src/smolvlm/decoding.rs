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
//!
//! A single sequence decoded greedily with a read every step may also go several tokens a
//! step: the tokens that followed the latest few tokens where they last occurred before (in
//! the prompt or the answer: an extraction's keys and values are the prompt's words) are
//! proposed as drafts, and one pass over the token chosen and the drafts gives the model's own
//! choice after each; the drafts it would have chosen are kept, with its choice after the last
//! of them, and the cache forgets the rest ([`Rules::drafts`]). The tokens are the model's
//! greedy ones either way; a pass over a few tokens reads the weights once, as a pass over one.

use candle_core::{DType, Device, Result, Tensor, D};

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

    /// For a single sequence: the greedy choice after each of `tokens` (1 × t, u32, on the
    /// model's device; answered as t u32), the t positions joining the cache; `None` (and
    /// nothing done) when the model does not take several tokens a step.
    fn greedy_each(&mut self, _tokens: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// For a single sequence: forgets the last `n` positions of the cache (drafts rejected).
    /// Asked only of a model that answers [`Decoder::greedy_each`].
    fn forget(&mut self, n: usize) -> Result<()> {
        if n > 0 {
            candle_core::bail!("this model does not forget positions")
        }
        Ok(())
    }

    /// Keeps the rows at `slots` (in that order) and forgets the others.
    fn retain(&mut self, slots: &[usize]) -> Result<()>;
}

/// One sequence's prompt and bounds.
#[derive(Debug, Clone, Copy)]
pub struct Sequence<'a> {
    /// The prompt's tokens, where drafts are looked up.
    pub prompt: &'a [u32],
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
    /// The most drafts a step of a single sequence proposes when decoding greedily and reading
    /// every step (0: none).
    pub drafts: usize,
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
    let mut drafting = Drafting::new(rules.drafts, &device);
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
        if let Some(next) = drafting.step(sequences, rules, &active, &mut generated, model)? {
            match next {
                Some(next) => chosen = Tensor::new(&[next], &device)?,
                None => return Ok(generated),
            }
            continue;
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

/// The drafts of a single sequence's decoding: how many the next pass checks, from one up to
/// [`Rules::drafts`]: two more after a pass that kept all it checked, one more than it kept
/// after one that did not. A pass over a few more tokens costs a few milliseconds more on the
/// CPU (on SmolVLM-256M's shape, 21–24 ms for one token, 24–26 for two, 38 for five, 54 for
/// nine), which drafts that are not kept do not repay.
struct Drafting<'a> {
    most: usize,
    next: usize,
    device: &'a Device,
}

impl<'a> Drafting<'a> {
    fn new(most: usize, device: &'a Device) -> Self {
        Self {
            most,
            next: most.min(1),
            device,
        }
    }

    /// A step with drafts, where [`Rules::drafts`] allows one (a single sequence still
    /// going, decoded greedily, every token read, a draft found, a model that takes several
    /// tokens): the drafts the model keeps join the sequence's tokens, and the answer is the
    /// model's next choice, or `None` when the sequence ended among the drafts. `None` when no
    /// such step is taken (nothing is then done).
    fn step(
        &mut self,
        sequences: &[Sequence],
        rules: Rules,
        active: &[usize],
        generated: &mut [Vec<u32>],
        model: &mut impl Decoder,
    ) -> Result<Option<Option<u32>>> {
        let (&[row], Decoding::Greedy, 1) = (active, rules.decoding, rules.steps_per_read.max(1))
        else {
            return Ok(None);
        };
        let (sequence, tokens) = (sequences[row], &mut generated[row]);
        // The choice after the last draft comes on top of the drafts kept.
        let room = sequence.max_new_tokens.saturating_sub(tokens.len() + 1);
        let Some(&last) = tokens.last() else {
            return Ok(None);
        };
        let drafts = lookup(sequence.prompt, tokens, self.next.min(room));
        if drafts.is_empty() {
            return Ok(None);
        }
        let mut input = vec![last];
        input.extend_from_slice(&drafts);
        let input = Tensor::from_vec(input, (1, drafts.len() + 1), self.device)?;
        let Some(choices) = model.greedy_each(&input)? else {
            return Ok(None);
        };
        let choices: Vec<u32> = choices.to_vec1()?;
        let kept = drafts
            .iter()
            .zip(&choices)
            .take_while(|(draft, choice)| draft == choice)
            .count();
        model.forget(drafts.len() - kept)?;
        self.next = if kept == drafts.len() {
            (self.next + 2).min(self.most)
        } else {
            kept + 1
        };
        if !still_going(tokens, &drafts[..kept], sequence, rules.end) {
            return Ok(Some(None));
        }
        Ok(Some(Some(choices[kept])))
    }
}

/// Shortest and longest run of latest tokens [`lookup`] looks for.
const DRAFT_KEYS: std::ops::RangeInclusive<usize> = 1..=3;

/// Up to `most` drafts: the tokens that followed an earlier occurrence of the last few tokens
/// of `prompt` then `generated` (the longest of [`DRAFT_KEYS`] found), as transformers' prompt
/// lookup proposes them: the latest occurrence followed by `most` tokens, or else the one
/// followed by the most (a run of one token repeated proposes `most` more of it, not one).
/// None when they occur nowhere before.
fn lookup(prompt: &[u32], generated: &[u32], most: usize) -> Vec<u32> {
    if most == 0 {
        return Vec::new();
    }
    let at = |i: usize| {
        if i < prompt.len() {
            prompt[i]
        } else {
            generated[i - prompt.len()]
        }
    };
    let len = prompt.len() + generated.len();
    for key in DRAFT_KEYS.rev() {
        if key >= len {
            continue;
        }
        let occurs = |start: &usize| (0..key).all(|j| at(start + j) == at(len - key + j));
        // Starts before the key itself; from `enough` down, `most` tokens follow.
        let latest = len - key - 1;
        let found = match (len - key).checked_sub(most) {
            Some(enough) => (0..=enough)
                .rev()
                .find(occurs)
                .or_else(|| (enough + 1..=latest).find(occurs)),
            None => (0..=latest).find(occurs),
        };
        if let Some(start) = found {
            let from = start + key;
            return (from..len.min(from + most)).map(at).collect();
        }
    }
    Vec::new()
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
pub(super) fn argmax(logits: &Tensor) -> Result<Tensor> {
    logits.to_dtype(DType::F32)?.argmax(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;

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

        /// The script's tokens after the token fed and after each draft, whatever the drafts
        /// are (a choice after a draft the script does not have is never kept).
        fn greedy_each(&mut self, tokens: &Tensor) -> Result<Option<Tensor>> {
            let tokens: Vec<Vec<u32>> = tokens.to_vec2()?;
            assert_eq!((tokens.len(), self.rows.len()), (1, 1), "one sequence");
            let (sequence, fed) = self.rows[0];
            assert_eq!(
                tokens[0][0], self.script[sequence][fed],
                "sequence {sequence}"
            );
            let t = tokens[0].len();
            let choices = self.script[sequence][fed + 1..=fed + t].to_vec();
            self.rows[0].1 += t;
            self.steps += 1;
            Ok(Some(Tensor::new(choices.as_slice(), &Device::Cpu)?))
        }

        fn forget(&mut self, n: usize) -> Result<()> {
            self.rows[0].1 -= n;
            Ok(())
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
        run_drafted(scripts(), &[], (steps_per_read, 0), decoding, limits)
    }

    /// Decodes `script`'s sequences, each after `prompt`, reading every `steps_per_read` steps
    /// and checking up to `drafts` drafts a step: the tokens, and the model's passes.
    fn run_drafted(
        script: Vec<Vec<u32>>,
        prompt: &[u32],
        (steps_per_read, drafts): (usize, usize),
        decoding: Decoding,
        limits: &[usize],
    ) -> (Vec<Vec<u32>>, usize) {
        let mut model = Scripted::new(script);
        let sequences: Vec<Sequence> = limits
            .iter()
            .map(|&max_new_tokens| Sequence {
                prompt,
                max_new_tokens,
                seed: 1,
            })
            .collect();
        let rules = Rules {
            decoding,
            end: Some(END),
            steps_per_read,
            drafts,
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

    #[test]
    fn drafts_change_no_token_and_save_passes() {
        // An answer that repeats the prompt's runs, then strays from them, then ends.
        let prompt = [0, 1, 2, 3, 4, 0, 2];
        let script = vec![vec![
            1, 2, 3, 4, 0, 1, 2, 3, 1, 1, 2, 3, 4, END, 4, 4, 4, 4, 4,
        ]];
        for limit in 1..=16 {
            let plain = run_drafted(script.clone(), &prompt, (1, 0), Decoding::Greedy, &[limit]);
            for drafts in 1..=6 {
                let drafted = run_drafted(
                    script.clone(),
                    &prompt,
                    (1, drafts),
                    Decoding::Greedy,
                    &[limit],
                );
                assert_eq!(drafted.0, plain.0, "limit {limit}, {drafts} drafts");
                assert!(drafted.1 <= plain.1, "limit {limit}, {drafts} drafts");
            }
        }
        // Thirteen tokens, then the end: twelve passes one token at a time, far fewer with
        // drafts (the prompt's runs and the answer's own).
        let plain = run_drafted(script.clone(), &prompt, (1, 0), Decoding::Greedy, &[16]);
        let drafted = run_drafted(script.clone(), &prompt, (1, 4), Decoding::Greedy, &[16]);
        assert_eq!((plain.0[0].len(), plain.1), (13, 13));
        assert!(drafted.1 <= 7, "{} passes with drafts", drafted.1);
        // A batch drafts once one sequence is left; reading every few steps, or sampling,
        // never.
        for drafts in [0, 3] {
            let (tokens, _) = run_drafted(
                scripts(),
                &[],
                (1, drafts),
                Decoding::Greedy,
                &[10, 7, 10, 11],
            );
            assert_eq!(tokens[3], [3, 4, 3, 4, 3, 4, 3, 4], "{drafts} drafts");
        }
        let every_4 = run_drafted(script.clone(), &prompt, (4, 0), Decoding::Greedy, &[16]);
        let drafted = run_drafted(script.clone(), &prompt, (4, 4), Decoding::Greedy, &[16]);
        assert_eq!(drafted, every_4, "reading every 4 steps");
        let sampled = Decoding::new(1.0, 1.0).unwrap();
        let plain = run_drafted(script.clone(), &prompt, (1, 0), sampled, &[16]);
        assert_eq!(run_drafted(script, &prompt, (1, 4), sampled, &[16]), plain);
    }

    #[test]
    fn drafts_follow_the_latest_earlier_occurrence_of_the_longest_key() {
        // The last three tokens (3, 9, 1) occur nowhere before; the last two (9, 1) do, twice:
        // the later one is followed by 7, 9, 1.
        let prompt = [9, 1, 5, 2, 9, 1, 7];
        assert_eq!(lookup(&prompt, &[3, 9, 1], 3), [7, 3, 9]);
        assert_eq!(lookup(&prompt, &[3, 9, 1], 1), [7]);
        assert_eq!(lookup(&prompt, &[3, 9, 1], 0), Vec::<u32>::new());
        // Nothing before matches the last token: no drafts.
        assert_eq!(lookup(&prompt, &[8], 3), Vec::<u32>::new());
        // A key found at the very end of what came before proposes what follows it only; in
        // a run, the occurrence that most tokens follow.
        assert_eq!(lookup(&[], &[4, 4], 5), [4]);
        assert_eq!(lookup(&[6], &[4, 4, 4, 4, 4], 3), [4, 4]);
        assert_eq!(lookup(&[4, 4, 4, 4, 4, 4], &[4, 4], 3), [4, 4, 4]);
    }
}
