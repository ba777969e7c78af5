//! TREC files: qrels (`query 0 product grade`) and runs (`query Q0 product rank score tag`), the
//! formats trec_eval, ranx and pytrec_eval read, so that a benchmark's judgments and rankings can
//! be checked with any of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::metrics::Judgments;
use crate::error::{Result, VitrineError};

/// A run: per query, the products retrieved with their scores, best first.
pub type Ranked = BTreeMap<String, Vec<(String, f64)>>;

fn bad_line(file: &str, number: usize, line: &str, expected: &str) -> VitrineError {
    VitrineError::Plan(format!(
        "{file}:{number}: expected '{expected}', got '{line}'"
    ))
}

/// Reads qrels; `file` names the source in errors.
pub fn read_qrels(text: &str, file: &str) -> Result<BTreeMap<String, Judgments>> {
    let mut qrels: BTreeMap<String, Judgments> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] => continue,
            [query, _, product, grade] => {
                let grade = grade
                    .parse::<i64>()
                    .map_err(|_| bad_line(file, i + 1, line, "query 0 product grade"))?;
                qrels
                    .entry(query.to_string())
                    .or_default()
                    .insert(product.to_string(), grade.max(0) as u32);
            }
            _ => return Err(bad_line(file, i + 1, line, "query 0 product grade")),
        }
    }
    Ok(qrels)
}

/// Reads a run, each query's products ordered by score (higher first), then by rank.
pub fn read_run(text: &str, file: &str) -> Result<Ranked> {
    const EXPECTED: &str = "query Q0 product rank score tag";
    let mut rows: BTreeMap<String, Vec<(String, u64, f64)>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [] => continue,
            [query, _, product, rank, score, ..] => {
                let rank = rank
                    .parse::<u64>()
                    .map_err(|_| bad_line(file, i + 1, line, EXPECTED))?;
                let score = score
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite())
                    .ok_or_else(|| bad_line(file, i + 1, line, EXPECTED))?;
                rows.entry(query.to_string())
                    .or_default()
                    .push((product.to_string(), rank, score));
            }
            _ => return Err(bad_line(file, i + 1, line, EXPECTED)),
        }
    }
    Ok(rows
        .into_iter()
        .map(|(query, mut ranked)| {
            ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)));
            let ranked = ranked.into_iter().map(|(p, _, s)| (p, s)).collect();
            (query, ranked)
        })
        .collect())
}

/// Writes qrels.
pub fn qrels_text(qrels: &BTreeMap<String, Judgments>) -> String {
    let mut out = String::new();
    for (query, judgments) in qrels {
        let mut products: Vec<_> = judgments.iter().collect();
        products.sort();
        for (product, grade) in products {
            let _ = writeln!(out, "{query} 0 {product} {grade}");
        }
    }
    out
}

/// Writes a run under the tag `name`.
pub fn run_text(run: &Ranked, name: &str) -> String {
    let mut out = String::new();
    for (query, ranked) in run {
        for (rank, (product, score)) in ranked.iter().enumerate() {
            let _ = writeln!(out, "{query} Q0 {product} {} {score:.6} {name}", rank + 1);
        }
    }
    out
}

/// The products of each query of a run, best first.
pub fn rankings(run: &Ranked) -> BTreeMap<String, Vec<String>> {
    run.iter()
        .map(|(q, ranked)| (q.clone(), ranked.iter().map(|(p, _)| p.clone()).collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_qrels_read_back_what_was_written() {
        let run: Ranked = BTreeMap::from([(
            "q1".to_string(),
            vec![("b".to_string(), 0.9), ("a".to_string(), 0.5)],
        )]);
        assert_eq!(read_run(&run_text(&run, "x"), "run").unwrap(), run);
        let qrels = BTreeMap::from([(
            "q1".to_string(),
            Judgments::from([("a".to_string(), 2), ("c".to_string(), 0)]),
        )]);
        assert_eq!(read_qrels(&qrels_text(&qrels), "qrels").unwrap(), qrels);
    }

    #[test]
    fn a_bad_line_is_named_with_its_file_and_number() {
        let err = read_run("q1 Q0 a 1 0.5 x\nq1 Q0 b two 0.4 x\n", "base.trec").unwrap_err();
        assert!(err.to_string().contains("base.trec:2"), "{err}");
        let err = read_qrels("q1 0 a\n", "qrels.txt").unwrap_err();
        assert!(err.to_string().contains("qrels.txt:1"), "{err}");
    }
}
