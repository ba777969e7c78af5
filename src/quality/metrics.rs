//! Retrieval metrics per query, as trec_eval and ranx define them.
//!
//! A query's judgments ([`Judgments`]) grade products 0, 1, 2, …; a grade of 1 or more is
//! relevant. A ranking is the products an index returned, best first. At cut-off `k` (the whole
//! ranking when `k` is `None`):
//! - Recall@k: relevant products in the top k over all relevant products;
//! - Precision@k: relevant products in the top k over k (over the ranking's length without k);
//! - nDCG@k: Σ grade / log2(rank + 1) over the top k, divided by the same sum for the ideal
//!   order of the judgments (Järvelin and Kekäläinen's gains);
//! - MRR@k: 1 / the rank of the first relevant product in the top k, 0 when there is none;
//! - MAP@k: the precision at each relevant product's rank in the top k, summed, over all
//!   relevant products.
//!
//! A query without any relevant product scores 0 on every metric.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A query's graded judgments: product → grade (0 = judged not relevant).
pub type Judgments = HashMap<String, u32>;

/// The metrics the benchmark reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Share of the relevant products retrieved.
    Recall,
    /// Share of the retrieved products that are relevant.
    Precision,
    /// Normalised discounted cumulative gain over graded relevance.
    Ndcg,
    /// Reciprocal rank of the first relevant product.
    Mrr,
    /// Mean average precision (per query: average precision).
    Map,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 5] = [
        Metric::Ndcg,
        Metric::Recall,
        Metric::Precision,
        Metric::Mrr,
        Metric::Map,
    ];

    /// The metric's name at cut-off `k`, as ranx and the report write it (`ndcg@10`, `map`).
    pub fn label(self, k: Option<usize>) -> String {
        match k {
            Some(k) => format!("{self}@{k}"),
            None => self.to_string(),
        }
    }

    /// The metric of one query: `ranking` (best first) judged by `judgments`, cut at `k`.
    pub fn score(self, judgments: &Judgments, ranking: &[String], k: Option<usize>) -> f64 {
        let relevant = judgments.values().filter(|g| **g > 0).count();
        if relevant == 0 {
            return 0.0;
        }
        let top = &ranking[..k.map_or(ranking.len(), |k| k.min(ranking.len()))];
        let grade = |product: &String| judgments.get(product).copied().unwrap_or(0);
        match self {
            Metric::Recall => hits(top, &grade) as f64 / relevant as f64,
            Metric::Precision => {
                let depth = k.unwrap_or(ranking.len());
                if depth == 0 {
                    0.0
                } else {
                    hits(top, &grade) as f64 / depth as f64
                }
            }
            Metric::Ndcg => {
                let mut ideal: Vec<u32> = judgments.values().copied().filter(|g| *g > 0).collect();
                ideal.sort_unstable_by(|a, b| b.cmp(a));
                ideal.truncate(k.unwrap_or(ideal.len()));
                let ideal = dcg(ideal.into_iter());
                dcg(top.iter().map(grade)) / ideal
            }
            Metric::Mrr => top
                .iter()
                .position(|p| grade(p) > 0)
                .map_or(0.0, |rank| 1.0 / (rank + 1) as f64),
            Metric::Map => {
                let mut found = 0;
                let mut sum = 0.0;
                for (rank, product) in top.iter().enumerate() {
                    if grade(product) > 0 {
                        found += 1;
                        sum += found as f64 / (rank + 1) as f64;
                    }
                }
                sum / relevant as f64
            }
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Recall => "recall",
            Metric::Precision => "precision",
            Metric::Ndcg => "ndcg",
            Metric::Mrr => "mrr",
            Metric::Map => "map",
        })
    }
}

fn hits(top: &[String], grade: &impl Fn(&String) -> u32) -> usize {
    top.iter().filter(|p| grade(p) > 0).count()
}

fn dcg(grades: impl Iterator<Item = u32>) -> f64 {
    grades
        .enumerate()
        .map(|(i, g)| f64::from(g) / ((i + 2) as f64).log2())
        .sum()
}

/// Per-query values of every metric at `k`, for the queries of `qrels` (a query the run lacks
/// retrieved nothing).
pub fn per_query(
    qrels: &BTreeMap<String, Judgments>,
    run: &BTreeMap<String, Vec<String>>,
    k: Option<usize>,
) -> BTreeMap<Metric, Vec<f64>> {
    let empty = Vec::new();
    Metric::ALL
        .iter()
        .map(|metric| {
            let values = qrels
                .iter()
                .map(|(query, judgments)| {
                    metric.score(judgments, run.get(query).unwrap_or(&empty), k)
                })
                .collect();
            (*metric, values)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judgments(pairs: &[(&str, u32)]) -> Judgments {
        pairs.iter().map(|(p, g)| (p.to_string(), *g)).collect()
    }

    fn ranking(products: &[&str]) -> Vec<String> {
        products.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_perfect_ranking_scores_one_and_an_empty_one_zero() {
        let j = judgments(&[("a", 3), ("b", 1), ("c", 0)]);
        let best = ranking(&["a", "b", "c"]);
        for metric in [Metric::Recall, Metric::Ndcg, Metric::Mrr, Metric::Map] {
            assert!(
                (metric.score(&j, &best, Some(10)) - 1.0).abs() < 1e-12,
                "{metric}"
            );
            assert_eq!(metric.score(&j, &[], Some(10)), 0.0, "{metric}");
        }
        assert!((Metric::Precision.score(&j, &best, Some(2)) - 1.0).abs() < 1e-12);
        assert!((Metric::Precision.score(&j, &best, Some(10)) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn graded_gains_reward_the_better_product_first() {
        let j = judgments(&[("a", 3), ("b", 1)]);
        let swapped = Metric::Ndcg.score(&j, &ranking(&["b", "a"]), Some(2));
        let expected = (1.0 + 3.0 / 3f64.log2()) / (3.0 + 1.0 / 3f64.log2());
        assert!((swapped - expected).abs() < 1e-12, "{swapped}");
        assert_eq!(Metric::Mrr.score(&j, &ranking(&["x", "b"]), Some(2)), 0.5);
        assert_eq!(Metric::Mrr.score(&j, &ranking(&["x", "b"]), Some(1)), 0.0);
    }
}
