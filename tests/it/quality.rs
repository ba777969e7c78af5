//! The retrieval-quality benchmark: its metrics agree with ranx, an independent implementation.

use std::collections::BTreeMap;

use vitrine::bench::quality::metrics::{per_query, Metric};
use vitrine::bench::quality::trec::{rankings, read_qrels, read_run};

use crate::support::repo_path;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo_path("tests/fixtures/quality").join(name)).unwrap()
}

/// `tests/fixtures/quality/make_metric_fixture.py` wrote the runs and qrels and ranx's per-query
/// values of every metric, at 10 and over the whole ranking.
#[test]
fn metrics_agree_with_ranx_per_query_to_1e6() {
    let qrels = read_qrels(&fixture("qrels.txt"), "qrels.txt").unwrap();
    let expected: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>> =
        serde_json::from_str(&fixture("ranx_metrics.json")).unwrap();
    let mut compared = 0;
    for system in ["baseline", "candidate"] {
        let file = format!("{system}.trec");
        let run = rankings(&read_run(&fixture(&file), &file).unwrap());
        for k in [Some(10), None] {
            let ours = per_query(&qrels, &run, k);
            for metric in Metric::ALL {
                let theirs = &expected[system][&metric.label(k)];
                assert_eq!(theirs.len(), qrels.len(), "{system} {}", metric.label(k));
                for ((query, _), value) in qrels.iter().zip(&ours[&metric]) {
                    let want = theirs[query];
                    assert!(
                        (value - want).abs() < 1e-6,
                        "{system} {} {query}: {value} vs ranx {want}",
                        metric.label(k)
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 2 * 2 * 5 * 40);
}
