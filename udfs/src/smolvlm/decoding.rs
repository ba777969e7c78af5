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
//! Sequences decoded greedily with a read every step may also go several tokens a step: for
//! each, the tokens that followed its latest few tokens where they last occurred before (in
//! its prompt or answer: an extraction's keys and values are the prompt's words) are proposed
//! as drafts, and one pass over every sequence's token chosen and drafts gives the model's own
//! choice after each; the drafts it would have chosen are kept, with its choice after the last
//! of them, and the cache forgets or hides the rest ([`Rules::drafts`]). The tokens are the
//! model's greedy ones either way; a pass over a few tokens a sequence reads the weights once,
//! as a pass over one.

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

    /// The greedy choice after each of `tokens` (rows × t, u32, on the model's device;
    /// answered as rows × t u32), the t positions of each row joining the cache; `None` (and
    /// nothing done) when the model does not take several tokens a step.
    fn greedy_each(&mut self, _tokens: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// Of the `of` positions the last [`Decoder::greedy_each`] added, keeps the first
    /// `kept[r]` of row `r` (the token fed and the drafts kept) and forgets the others, so that
    /// the row's next token follows its last kept one. Asked only of a model that answers
    /// [`Decoder::greedy_each`].
    fn keep(&mut self, of: usize, kept: &[usize]) -> Result<()> {
        if kept.iter().any(|&k| k != of) {
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
    /// The most drafts a step proposes for each sequence when decoding greedily and reading
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
    let mut drafting = Drafting::new(rules.drafts, sequences.len(), &device);
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
        if let Some(drafted) = drafting.step(sequences, rules, &active, &mut generated, model)? {
            if drafted.going.is_empty() {
                return Ok(generated);
            }
            if drafted.going.len() < active.len() {
                model.retain(&drafted.going)?;
                active = drafted.going.iter().map(|&slot| active[slot]).collect();
            }
            chosen = Tensor::new(drafted.next.as_slice(), &device)?;
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

/// The drafts of greedy decoding: how many each sequence proposes ([`Pace`]) and how many a
/// pass checks. A pass over more tokens costs more: on SmolVLM-256M's shape on the CPU, one
/// sequence's pass took 21–24 ms for one token, 24–26 for two, 38 for five, 54 for nine; eight
/// sequences' 47 ms for one token each, 70 for two, 104 for four, 167 for eight. So a pass checks
/// as many drafts a sequence as half of the sequences propose at least (the others' rows are
/// filled up, their fill never kept), and a sequence whose drafts were all rejected proposes
/// none for a while.
struct Drafting<'a> {
    most: usize,
    /// Each sequence's pace.
    paces: Vec<Pace>,
    device: &'a Device,
}

/// How many drafts one sequence proposes: from one up to [`Rules::drafts`], two more after a
/// pass that kept all it checked, one more than it kept after one that kept some; after one that
/// kept none, none for the next 1, 2, 4, … up to [`LONGEST_PAUSE`] passes (the pause doubling
/// with each such pass in a row), then one.
#[derive(Debug, Clone, Copy)]
struct Pace {
    next: usize,
    /// Passes still to go without drafts.
    paused: usize,
    /// Passes the next pause lasts.
    pause: usize,
}

/// The longest pause of a sequence whose drafts are not kept ([`Pace`]).
const LONGEST_PAUSE: usize = 16;

impl Pace {
    /// The drafts to propose in the next pass (counting that pass, when paused).
    fn proposes(&mut self) -> usize {
        if self.paused > 0 {
            self.paused -= 1;
            return 0;
        }
        self.next
    }

    /// Learns from a pass that checked `checked` of the sequence's drafts and kept `kept`.
    fn checked(&mut self, checked: usize, kept: usize, most: usize) {
        if checked == 0 {
            return;
        }
        if kept == 0 {
            (self.next, self.paused) = (1, self.pause);
            self.pause = (2 * self.pause).min(LONGEST_PAUSE);
            return;
        }
        self.next = match kept == checked {
            true => (self.next + 2).min(most),
            false => kept + 1,
        };
        self.pause = 1;
    }
}

/// What a pass with drafts leaves: the sequences still going (their slots among the rows
/// decoded), and the model's next choice for each of them.
struct Drafted {
    going: Vec<usize>,
    next: Vec<u32>,
}

impl<'a> Drafting<'a> {
    fn new(most: usize, sequences: usize, device: &'a Device) -> Self {
        let pace = Pace {
            next: most.min(1),
            paused: 0,
            pause: 1,
        };
        Self {
            most,
            paces: vec![pace; sequences],
            device,
        }
    }

    /// A pass with drafts, where [`Rules::drafts`] allows one (greedy decoding, every token
    /// read, drafts found for at least half of the sequences, a model that takes several
    /// tokens a pass): every active sequence's last token and drafts go through the model
    /// together, the drafts each keeps join its tokens, and the model's choice after them is
    /// its next token. `None` when no such pass is taken (nothing is then done).
    fn step(
        &mut self,
        sequences: &[Sequence],
        rules: Rules,
        active: &[usize],
        generated: &mut [Vec<u32>],
        model: &mut impl Decoder,
    ) -> Result<Option<Drafted>> {
        if (rules.decoding, rules.steps_per_read.max(1)) != (Decoding::Greedy, 1) || self.most == 0
        {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(active.len());
        for &row in active {
            let (sequence, tokens) = (sequences[row], &generated[row]);
            let Some(&last) = tokens.last() else {
                return Ok(None);
            };
            // The choice after the last draft comes on top of the drafts kept.
            let room = sequence.max_new_tokens.saturating_sub(tokens.len() + 1);
            let proposes = self.paces[row].proposes().min(room);
            rows.push((last, lookup(sequence.prompt, tokens, proposes)));
        }
        // The most drafts that half of the sequences propose at least.
        let mut counts: Vec<usize> = rows.iter().map(|(_, drafts)| drafts.len()).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let half = counts.len().saturating_sub(1) / 2;
        let t = 1 + counts.get(half).copied().unwrap_or(0);
        if t == 1 {
            return Ok(None);
        }
        for (_, drafts) in &mut rows {
            drafts.truncate(t - 1);
        }
        let input: Vec<u32> = rows
            .iter()
            .flat_map(|(last, drafts)| {
                let filler = *drafts.last().unwrap_or(last);
                std::iter::once(*last)
                    .chain(drafts.iter().copied())
                    .chain(std::iter::repeat_n(filler, t - 1 - drafts.len()))
            })
            .collect();
        let input = Tensor::from_vec(input, (rows.len(), t), self.device)?;
        let Some(choices) = model.greedy_each(&input)? else {
            return Ok(None);
        };
        let choices: Vec<Vec<u32>> = choices.to_vec2()?;
        let kept: Vec<usize> = rows
            .iter()
            .zip(&choices)
            .map(|((_, drafts), choices)| {
                drafts
                    .iter()
                    .zip(choices)
                    .take_while(|(draft, choice)| draft == choice)
                    .count()
            })
            .collect();
        let fed: Vec<usize> = kept.iter().map(|&k| k + 1).collect();
        model.keep(t, &fed)?;
        let mut drafted = Drafted {
            going: Vec::new(),
            next: Vec::new(),
        };
        for (slot, ((&row, (_, drafts)), (&kept, choices))) in active
            .iter()
            .zip(&rows)
            .zip(kept.iter().zip(&choices))
            .enumerate()
        {
            self.paces[row].checked(drafts.len(), kept, self.most);
            if still_going(
                &mut generated[row],
                &drafts[..kept],
                sequences[row],
                rules.end,
            ) {
                drafted.going.push(slot);
                drafted.next.push(choices[kept]);
            }
        }
        Ok(Some(drafted))
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

    const VOCABULARY: usize = 16;
    const END: u32 = 5;

    /// A model whose row `r` answers `script[r]` whatever came before, checking that each
    /// step is fed the token chosen at the step before.
    struct Scripted {
        script: Vec<Vec<u32>>,
        /// The sequence each row is, and how many tokens it has been given.
        rows: Vec<(usize, usize)>,
        steps: usize,
        /// Passes over several tokens a row.
        drafted: usize,
    }

    impl Scripted {
        fn new(script: Vec<Vec<u32>>) -> Self {
            let rows = (0..script.len()).map(|r| (r, 0)).collect();
            Self {
                script,
                rows,
                steps: 0,
                drafted: 0,
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

        /// Each row's scripted tokens after the token fed and after each draft, whatever the
        /// drafts are (a choice after a draft the script does not have is never kept; past the
        /// script's end, the end token).
        fn greedy_each(&mut self, tokens: &Tensor) -> Result<Option<Tensor>> {
            let tokens: Vec<Vec<u32>> = tokens.to_vec2()?;
            assert_eq!(tokens.len(), self.rows.len());
            let t = tokens[0].len();
            let mut choices = Vec::new();
            for (row, tokens) in self.rows.iter_mut().zip(tokens) {
                let (sequence, fed) = *row;
                let script = &self.script[sequence];
                assert_eq!(tokens[0], script[fed], "sequence {sequence}");
                choices.extend((fed + 1..=fed + t).map(|i| script.get(i).copied().unwrap_or(END)));
                row.1 += t;
            }
            self.steps += 1;
            self.drafted += 1;
            Ok(Some(Tensor::from_vec(
                choices,
                (self.rows.len(), t),
                &Device::Cpu,
            )?))
        }

        fn keep(&mut self, of: usize, kept: &[usize]) -> Result<()> {
            assert_eq!(kept.len(), self.rows.len());
            for (row, &kept) in self.rows.iter_mut().zip(kept) {
                assert!((1..=of).contains(&kept), "{kept} of {of}");
                row.1 -= of - kept;
            }
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

    /// Decodes `script`'s sequences after `prompt` with up to 1–6 drafts a step: the tokens of
    /// decoding without drafts, in no more passes.
    fn drafts_change_nothing(script: &[Vec<u32>], prompt: &[u32], limits: &[usize]) {
        let plain = run_drafted(script.to_vec(), prompt, (1, 0), Decoding::Greedy, limits);
        for drafts in 1..=6 {
            let drafted = run_drafted(
                script.to_vec(),
                prompt,
                (1, drafts),
                Decoding::Greedy,
                limits,
            );
            assert_eq!(drafted.0, plain.0, "limits {limits:?}, {drafts} drafts");
            assert!(drafted.1 <= plain.1, "limits {limits:?}, {drafts} drafts");
        }
    }

    #[test]
    fn drafts_change_no_token_and_save_passes() {
        // An answer that repeats the prompt's runs, then strays from them, then ends.
        let prompt = [0, 1, 2, 3, 4, 0, 2];
        let script = vec![vec![
            1, 2, 3, 4, 0, 1, 2, 3, 1, 1, 2, 3, 4, END, 4, 4, 4, 4, 4,
        ]];
        for limit in 1..=16 {
            drafts_change_nothing(&script, &prompt, &[limit]);
        }
        // Thirteen tokens, then the end: twelve passes one token at a time, far fewer with
        // drafts (the prompt's runs and the answer's own).
        let plain = run_drafted(script.clone(), &prompt, (1, 0), Decoding::Greedy, &[16]);
        let drafted = run_drafted(script.clone(), &prompt, (1, 4), Decoding::Greedy, &[16]);
        assert_eq!((plain.0[0].len(), plain.1), (13, 13));
        assert!(drafted.1 <= 7, "{} passes with drafts", drafted.1);
        // A batch: each sequence checks its own drafts in the same passes, and one that ends
        // among its drafts leaves the batch while the others go on.
        let batch = vec![
            script[0].clone(),
            scripts()[1].clone(),
            scripts()[3].clone(),
            scripts()[0].clone(),
        ];
        for limits in [
            [16, 12, 11, 10],
            [3, 12, 5, 1],
            [1, 1, 1, 1],
            [0, 7, 12, 12],
        ] {
            drafts_change_nothing(&batch, &prompt, &limits);
        }
        let plain = run_drafted(
            batch.clone(),
            &prompt,
            (1, 0),
            Decoding::Greedy,
            &[16, 12, 12, 12],
        );
        let drafted = run_drafted(batch, &prompt, (1, 4), Decoding::Greedy, &[16, 12, 12, 12]);
        assert_eq!(
            plain.1, 13,
            "the longest answer: thirteen tokens, then the end"
        );
        assert!(drafted.1 <= 8, "{} passes with drafts", drafted.1);
        // Reading every few steps, or sampling: no drafts.
        let every_4 = run_drafted(script.clone(), &prompt, (4, 0), Decoding::Greedy, &[16]);
        let drafted = run_drafted(script.clone(), &prompt, (4, 4), Decoding::Greedy, &[16]);
        assert_eq!(drafted, every_4, "reading every 4 steps");
        let sampled = Decoding::new(1.0, 1.0).unwrap();
        let plain = run_drafted(script.clone(), &prompt, (1, 0), sampled, &[16]);
        assert_eq!(run_drafted(script, &prompt, (1, 4), sampled, &[16]), plain);
    }

    #[test]
    fn a_sequence_whose_drafts_are_never_kept_stops_proposing_them() {
        // Each token differs from the first draft the lookup proposes at that point.
        let prompt = [0, 1, 2, 3, 4, 6, 7];
        let mut answer: Vec<u32> = Vec::new();
        for _ in 0..64 {
            let token = match lookup(&prompt, &answer, 1).first() {
                Some(&draft) => (draft + 1) % 15 + u32::from(draft + 1 == END),
                None => 0,
            };
            answer.push(token);
        }
        assert!(answer
            .iter()
            .all(|&token| token != END && (token as usize) < VOCABULARY));
        let plain = run_drafted(
            vec![answer.clone()],
            &prompt,
            (1, 0),
            Decoding::Greedy,
            &[60],
        );
        let mut model = Scripted::new(vec![answer]);
        let sequences = [Sequence {
            prompt: &prompt,
            max_new_tokens: 60,
            seed: 1,
        }];
        let rules = Rules {
            decoding: Decoding::Greedy,
            end: Some(END),
            steps_per_read: 1,
            drafts: 4,
        };
        let tokens = decode(&model.logits(), &sequences, rules, &mut model).unwrap();
        assert_eq!(tokens, plain.0);
        // Pauses of 1, 2, 4, 8, 16, 16, 16 passes: 7 passes with drafts in 60, not 59.
        assert!(
            (5..=8).contains(&model.drafted),
            "{} passes with drafts",
            model.drafted
        );
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
