//! Causal attention over sequences packed one after another with no padding (CLIP's text
//! tower), where a sequence that begins with another's tokens reads their keys and values from
//! that one's rows instead of computing them again.
//!
//! Under a causal mask a token's states at every layer depend only on the tokens up to itself:
//! two sequences that begin with the same tokens have the same states there, at every layer.
//! [`Packing`] lays out a batch so that each such beginning is computed once; product
//! descriptions that begin with the same brand and gender, or repeat outright, then cost only
//! the tokens where they differ.

use std::collections::HashMap;

use candle_core::{Device, Result, Storage, Tensor};
use rayon::prelude::*;

use super::{attend_block, kernel_takes, Strided};
use crate::cpu_ops::{exp_in_place, zeroed};

/// How causal sequences lie in the rows of an encoder's input: one after another with no
/// padding, each in rows of its own from the first token that no earlier sequence of the pack
/// begins with (its last token always in a row of its own, so that its final state is its own
/// row). The tokens before are another sequence's rows, whose states are the same at every
/// layer.
#[derive(Debug, Clone)]
pub struct Packing {
    sequences: Vec<Packed>,
    /// The row of each token of each sequence, sequence after sequence: its own rows, or an
    /// earlier sequence's for the tokens it shares.
    token_rows: Vec<usize>,
}

/// One sequence of a [`Packing`].
#[derive(Debug, Clone, Copy)]
struct Packed {
    length: usize,
    /// Its first tokens, whose rows are an earlier sequence's.
    shared: usize,
    /// The row of its first token after those (its own rows follow one another).
    first_row: usize,
    /// Where its tokens' rows start in `token_rows`.
    rows_at: usize,
}

impl Packing {
    /// `sequences` (token ids) with each one's longest beginning that an earlier sequence also
    /// begins with shared, up to all its tokens but the last: the tokens are found in a tree of
    /// the beginnings seen so far, one step a token.
    pub fn sharing_prefixes<S: AsRef<[u32]>>(sequences: &[S]) -> Self {
        // Each tree node is the row of its last token; a child is found by (parent, token).
        const ROOT: usize = usize::MAX;
        let mut children: HashMap<(usize, u32), usize> = HashMap::new();
        let mut packing = Self::empty(sequences.len());
        for tokens in sequences {
            let tokens = tokens.as_ref();
            let (mut parent, mut prefix) = (ROOT, Vec::new());
            while prefix.len() + 1 < tokens.len() {
                match children.get(&(parent, tokens[prefix.len()])) {
                    Some(&row) => {
                        prefix.push(row);
                        parent = row;
                    }
                    None => break,
                }
            }
            let (shared, first_row) = (prefix.len(), packing.rows());
            for (row, &token) in (first_row..).zip(&tokens[shared..]) {
                // A repeated sequence's last token is known already: the first row stays.
                children.entry((parent, token)).or_insert(row);
                parent = row;
            }
            packing.push(shared, tokens.len(), &mut prefix);
        }
        packing
    }

    fn empty(sequences: usize) -> Self {
        Self {
            sequences: Vec::with_capacity(sequences),
            token_rows: Vec::new(),
        }
    }

    /// Appends a sequence of `length` tokens whose first ones lie in the rows of `prefix`.
    fn push(&mut self, shared: usize, length: usize, prefix: &mut Vec<usize>) {
        let first_row = self.rows();
        self.sequences.push(Packed {
            length,
            shared,
            first_row,
            rows_at: self.token_rows.len(),
        });
        self.token_rows.append(prefix);
        self.token_rows
            .extend(first_row..first_row + length - shared);
    }

    /// The rows computed: every sequence's tokens less the shared ones (the last sequence's own
    /// rows end them).
    pub fn rows(&self) -> usize {
        self.sequences
            .last()
            .map_or(0, |s| s.first_row + s.length - s.shared)
    }

    /// Every sequence's tokens, shared or not.
    pub fn tokens(&self) -> usize {
        self.token_rows.len()
    }

    /// The positions of `sequence`'s tokens that are rows of its own, in the order of its rows.
    pub fn own_positions(&self, sequence: usize) -> std::ops::Range<usize> {
        let s = &self.sequences[sequence];
        s.shared..s.length
    }

    /// The row that holds the token at `position` of `sequence`.
    pub fn row(&self, sequence: usize, position: usize) -> usize {
        self.token_rows(sequence)[position]
    }

    /// The rows of `sequence`'s tokens, one per token.
    fn token_rows(&self, sequence: usize) -> &[usize] {
        let s = &self.sequences[sequence];
        &self.token_rows[s.rows_at..][..s.length]
    }
}

/// The queries of each packed sequence that [`attend_packed_causal`] answers.
#[derive(Debug, Clone, Copy)]
pub enum Queries<'a> {
    /// Those of every row: the result has a row per row of the input.
    Every,
    /// One token's a sequence, at these positions within each (an encoder's last layer, when
    /// only the pooled token's state is kept), each in a row of the sequence's own: the result
    /// has a row per sequence.
    At(&'a [usize]),
}

/// Causal self-attention over sequences packed as `packing` lays them out. `qkv` (rows ×
/// 3·width) is the fused projection's output, queries, keys and values side by side, each
/// `heads` heads wide; each token attends to the tokens of its own sequence up to itself, in its
/// own rows or in those it shares. Queries, keys and values are read in place through their
/// strides, except a sequence's keys and values when some of them lie in another's rows: those
/// are gathered first. Each (head, sequence) pair is one task of the thread pool. The result
/// has the heads side by side, as the padded path's context: a row for each query that
/// `queries` names, in order. An error when [`kernel_takes`] refuses `qkv` or the shapes
/// disagree.
pub fn attend_packed_causal(
    qkv: &Tensor,
    heads: usize,
    packing: &Packing,
    queries: Queries,
    scale: f64,
) -> Result<Tensor> {
    if !kernel_takes(qkv) {
        candle_core::bail!("packed attention: f32 on the CPU without gradients is needed");
    }
    let (rows, row) = qkv.dims2()?;
    let width = row / 3;
    if row % 3 != 0 || heads == 0 || width % heads != 0 || packing.rows() != rows {
        candle_core::bail!(
            "packed attention: {rows} × {row} projections do not hold {heads} heads of \
             queries, keys and values for {} packed rows",
            packing.rows()
        );
    }
    let sequences = &packing.sequences;
    // Each sequence's queries: the first one's position within it, and how many.
    let asked: Vec<(usize, usize)> = match queries {
        Queries::Every => sequences
            .iter()
            .map(|s| (s.shared, s.length - s.shared))
            .collect(),
        Queries::At(positions) => {
            if positions.len() != sequences.len()
                || positions
                    .iter()
                    .zip(sequences)
                    .any(|(&p, s)| p < s.shared || p >= s.length)
            {
                candle_core::bail!(
                    "packed attention: query positions {positions:?} outside the rows of their \
                     sequences"
                );
            }
            positions.iter().map(|&p| (p, 1)).collect()
        }
    };
    let answers: usize = asked.iter().map(|&(_, count)| count).sum();
    let size = width / heads;
    let qkv = qkv.contiguous()?;
    let (storage, layout) = qkv.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("packed attention: a CPU tensor was expected")
    };
    let values = &cpu.as_slice::<f32>()?[layout.start_offset()..][..rows * row];
    // Head-major output, so that each (head, sequence) block is one contiguous slice.
    let mut out = Box::new_uninit_slice(heads * answers * size);
    let mut blocks = Vec::with_capacity(heads * sequences.len());
    let mut rest = &mut out[..];
    for head in 0..heads {
        for (sequence, &(_, count)) in asked.iter().enumerate() {
            let (block, tail) = rest.split_at_mut(count * size);
            blocks.push((head, sequence, block));
            rest = tail;
        }
    }
    let scale = scale as f32;
    blocks
        .into_par_iter()
        .filter(|(_, sequence, _)| asked[*sequence].1 > 0)
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(scores, gathered), (head, sequence, out)| {
                let out = zeroed(out);
                let (first, count) = asked[sequence];
                let s = &sequences[sequence];
                // The keys up to the last query's own token.
                let keys = first + count;
                let column = head * size;
                let query_row = s.first_row + first - s.shared;
                let q = Strided::rows(&values[query_row * row + column..], row);
                let (k, v) = if s.shared == 0 {
                    let at = s.first_row * row + column;
                    (
                        Strided::columns(&values[at + width..], row),
                        Strided::rows(&values[at + 2 * width..], row),
                    )
                } else {
                    // Keys then values, keys × size each, row by row.
                    gathered.clear();
                    for part in [width, 2 * width] {
                        for &r in &packing.token_rows(sequence)[..keys] {
                            gathered.extend_from_slice(&values[r * row + part + column..][..size]);
                        }
                    }
                    let (k, v) = gathered.split_at(keys * size);
                    (Strided::columns(k, size), Strided::rows(v, size))
                };
                attend_block(
                    out,
                    scores,
                    (q, k, v),
                    (count, keys, size),
                    scale,
                    #[inline(always)]
                    |i, row| {
                        let (seen, unseen) = row.split_at_mut(first + i + 1);
                        unseen.fill(0.0);
                        exp_in_place(seen)
                    },
                );
            },
        );
    // SAFETY: every block of `out` was zeroed by its task, then written (the blocks of no
    // queries left out hold no values).
    let out = unsafe { out.assume_init() }.into_vec();
    Tensor::from_vec(out, (heads, answers, size), &Device::Cpu)?
        .transpose(0, 1)?
        .reshape((answers, width))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::tests::composed;
    use crate::cpu_ops::max_difference;

    /// Sequences of `lengths`, each in rows of its own (no token shared).
    fn unshared(lengths: &[usize]) -> Packing {
        let mut packing = Packing::empty(lengths.len());
        for &length in lengths {
            packing.push(0, length, &mut Vec::new());
        }
        packing
    }

    /// `attention(tokens)` for one sequence alone under a causal mask, from the projections
    /// `qkv` (tokens × 3·width) of its tokens.
    fn alone(qkv: &Tensor, heads: usize, scale: f64) -> Tensor {
        let (len, row) = qkv.dims2().unwrap();
        let width = row / 3;
        let part = |i: usize| {
            qkv.narrow(1, i * width, width)
                .unwrap()
                .reshape((1, len, heads, width / heads))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let causal: Vec<f32> = (0..len * len)
            .map(|at| {
                if at % len > at / len {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(causal, (1, 1, len, len), qkv.device()).unwrap();
        composed(&part(0), &part(1), &part(2), scale, Some(&mask))
            .transpose(1, 2)
            .unwrap()
            .reshape((len, width))
            .unwrap()
    }

    #[test]
    fn packed_sequences_attend_as_each_one_alone_under_a_causal_mask() {
        let device = Device::Cpu;
        let (heads, size, lengths) = (3, 4, [3, 1, 5]);
        let width = heads * size;
        let tokens: usize = lengths.iter().sum();
        let qkv = Tensor::randn(0f32, 1.0, (tokens, 3 * width), &device).unwrap();
        let scale = (size as f64).powf(-0.5);
        let packing = unshared(&lengths);
        assert_eq!((packing.rows(), packing.tokens()), (tokens, tokens));
        let packed = attend_packed_causal(&qkv, heads, &packing, Queries::Every, scale).unwrap();
        assert_eq!(packed.dims2().unwrap(), (tokens, width));
        let mut start = 0;
        for len in lengths {
            let want = alone(&qkv.narrow(0, start, len).unwrap(), heads, scale);
            let got = packed.narrow(0, start, len).unwrap();
            assert!(max_difference(&got, &want) < 1e-5, "sequence at {start}");
            start += len;
        }
        // One query a sequence: the rows of every query's result at those positions.
        let positions = [1, 0, 4];
        let pooled =
            attend_packed_causal(&qkv, heads, &packing, Queries::At(&positions), scale).unwrap();
        let rows = Tensor::new(&[1u32, 3, 8], &device).unwrap();
        let want = packed.index_select(&rows, 0).unwrap();
        assert!(max_difference(&pooled, &want) < 1e-6);
        // A packing that does not cover the rows, positions outside their sequences, or a
        // tracked input, are refused.
        let every = Queries::Every;
        let short = unshared(&[3, 1]);
        assert!(attend_packed_causal(&qkv, heads, &short, every, scale).is_err());
        for positions in [&[1, 1, 4][..], &[0, 0]] {
            let at = Queries::At(positions);
            assert!(attend_packed_causal(&qkv, heads, &packing, at, scale).is_err());
        }
        let tracked = candle_core::Var::from_tensor(&qkv).unwrap();
        let refused = attend_packed_causal(tracked.as_tensor(), heads, &packing, every, scale);
        assert!(refused.is_err());
    }

    #[test]
    fn sequences_that_begin_alike_compute_their_common_tokens_once() {
        let sequences: [&[u32]; 6] = [
            &[7, 1, 2, 3],
            &[7, 1, 5],
            &[7, 1, 2, 3],
            &[8, 1],
            &[7, 1, 2, 4, 4],
            &[7],
        ];
        let packing = Packing::sharing_prefixes(&sequences);
        assert_eq!(packing.sequences.len(), 6);
        assert_eq!(packing.tokens(), 19);
        // Rows: 4, then 5 (7 and 1 shared), the repeat's last token, 8 and 1, 2 and 4 after
        // [7, 1, 2], and the lone 7 again (a sequence's last token is always its own).
        assert_eq!(packing.rows(), 4 + 1 + 1 + 2 + 2 + 1);
        let own: Vec<_> = (0..6).map(|s| packing.own_positions(s)).collect();
        assert_eq!(own, [0..4, 2..3, 3..4, 0..2, 3..5, 0..1]);
        assert_eq!(packing.token_rows(4), [0, 1, 2, 8, 9]);
        assert_eq!(packing.token_rows(2), [0, 1, 2, 5]);
        assert_eq!(packing.row(3, 1), 7);

        // Projections that depend only on a token and what comes before it, as an encoder's
        // are: attention over the shared rows equals each sequence's alone.
        let device = Device::Cpu;
        let (heads, size) = (2, 3);
        let width = heads * size;
        let table = Tensor::randn(0f32, 1.0, (10, 3 * width), &device).unwrap();
        let project = |tokens: &[u32]| {
            // A token's row mixes its own and the previous token's rows of `table`.
            let rows: Vec<Tensor> = (0..tokens.len())
                .map(|i| {
                    let at = |t: u32| table.get(t as usize).unwrap();
                    let before = if i == 0 { 0 } else { tokens[i - 1] };
                    (at(tokens[i]) + (at(before) * 0.5).unwrap()).unwrap()
                })
                .collect();
            Tensor::stack(&rows, 0).unwrap()
        };
        let own_rows: Vec<Tensor> = sequences
            .iter()
            .enumerate()
            .map(|(s, tokens)| {
                let positions = packing.own_positions(s);
                project(tokens)
                    .narrow(0, positions.start, positions.len())
                    .unwrap()
            })
            .collect();
        let qkv = Tensor::cat(&own_rows, 0).unwrap();
        let scale = (size as f64).powf(-0.5);
        let packed = attend_packed_causal(&qkv, heads, &packing, Queries::Every, scale).unwrap();
        assert_eq!(packed.dims2().unwrap(), (packing.rows(), width));
        let mut row = 0;
        for (s, tokens) in sequences.iter().enumerate() {
            let positions = packing.own_positions(s);
            let want = alone(&project(tokens), heads, scale)
                .narrow(0, positions.start, positions.len())
                .unwrap();
            let got = packed.narrow(0, row, positions.len()).unwrap();
            assert!(max_difference(&got, &want) < 1e-5, "sequence {s}");
            row += positions.len();
        }
        // The last token of each, alone.
        let last: Vec<usize> = sequences.iter().map(|t| t.len() - 1).collect();
        let pooled =
            attend_packed_causal(&qkv, heads, &packing, Queries::At(&last), scale).unwrap();
        for (s, tokens) in sequences.iter().enumerate() {
            let want = alone(&project(tokens), heads, scale)
                .narrow(0, tokens.len() - 1, 1)
                .unwrap();
            let got = pooled.narrow(0, s, 1).unwrap();
            assert!(max_difference(&got, &want) < 1e-5, "pooled {s}");
        }
        // A query in another sequence's rows is refused.
        let shared = [3, 1, 3, 1, 4, 0];
        let at = Queries::At(&shared);
        assert!(attend_packed_causal(&qkv, heads, &packing, at, scale).is_err());
    }
}
