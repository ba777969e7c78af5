//! The benchmark's files: `metrics.json` (every figure), `report.md` and `report.html` (the same
//! for people, the page with charts), the
//! judgments as TREC qrels (`qrels.txt`), each index's results as a TREC run (`baseline.trec`,
//! `candidate.trec`) and the queries with their judgments (`queries.jsonl`, which `--queries`
//! reads back), so that any figure can be recomputed with trec_eval or ranx, and any run repeated.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Result, ResultExt};
use crate::quality::metrics::Metric;
use crate::quality::run::{MetricFigures, QualityReport};
use crate::quality::stats::Interval;
use crate::quality::trec;

/// Writes every file of the report into `dir` (created when missing).
pub fn write(report: &QualityReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).context(|| format!("creating '{}'", dir.display()))?;
    let markdown = markdown(report);
    let files = [
        ("metrics.json", serde_json::to_string_pretty(report)? + "\n"),
        ("report.html", super::html::page(report, &markdown)?),
        ("report.md", markdown),
        ("qrels.txt", trec::qrels_text(&report.qrels())),
        ("baseline.trec", trec::run_text(&report.runs[0], "baseline")),
        (
            "candidate.trec",
            trec::run_text(&report.runs[1], "candidate"),
        ),
        ("queries.jsonl", queries_jsonl(report)?),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).context(|| format!("writing '{}'", path.display()))?;
    }
    Ok(())
}

fn queries_jsonl(report: &QualityReport) -> Result<String> {
    let mut out = String::new();
    for query in &report.queries {
        let judgments: std::collections::BTreeMap<&String, &u32> = query.judgments.iter().collect();
        let line = serde_json::json!({
            "id": query.id,
            "kind": query.kind,
            "text": query.text,
            "judgments": judgments,
        });
        out.push_str(&serde_json::to_string(&line)?);
        out.push('\n');
    }
    Ok(out)
}

fn interval(i: &Interval) -> String {
    format!("{:.4} [{:.4}, {:.4}]", i.mean, i.low, i.high)
}

fn difference(m: &MetricFigures) -> String {
    format!(
        "{:+.4} [{:+.4}, {:+.4}] (p = {:.4})",
        m.difference.difference.mean,
        m.difference.difference.low,
        m.difference.difference.high,
        m.difference.p_value
    )
}

/// The warning a report carries when a model behind it was made for tests.
fn banner(report: &QualityReport) -> Option<String> {
    (!report.test_models.is_empty()).then(|| {
        format!(
            "NOT MEANINGFUL: made for tests (random or scripted weights): {}",
            report.test_models.join(", ")
        )
    })
}

/// The headline metric of both indexes with intervals, and the difference; after the banner
/// when a model was made for tests.
pub fn headline(report: &QualityReport) -> String {
    match banner(report) {
        Some(banner) => format!("{banner}\n{}", headline_line(report)),
        None => headline_line(report),
    }
}

fn headline_line(report: &QualityReport) -> String {
    match report.headline(Metric::Ndcg) {
        Some(m) => format!(
            "{}: baseline {} {}, candidate {} {}, difference {}",
            m.metric,
            report.baseline,
            interval(&m.baseline),
            report.candidate,
            interval(&m.candidate),
            difference(m)
        ),
        None => "no queries".to_string(),
    }
}

/// The report as Markdown.
pub fn markdown(report: &QualityReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Retrieval quality: {} vs {}\n",
        report.baseline, report.candidate
    );
    if let Some(banner) = banner(report) {
        let _ = writeln!(out, "> **{banner}**\n");
    }
    let models = if report.models.is_empty() {
        "none recorded".to_string()
    } else {
        report.models.join(", ")
    };
    let _ = writeln!(
        out,
        "{} queries, top {} results, seed {}; means over queries with bootstrap 95 % intervals; \
         differences are candidate − baseline with a paired randomization test. Models: {models}.\n",
        report.queries.len(),
        report.k,
        report.seed
    );
    if let Some(evaluated) = &report.evaluated {
        let _ = writeln!(
            out,
            "Evaluated on the {} products where `{}`: only they are queried, judged and ranked.",
            evaluated.products, evaluated.filter
        );
        let [baseline, candidate] = evaluated.short_rankings;
        if baseline + candidate > 0 {
            let _ = writeln!(
                out,
                "Rankings cut short of {} results: {baseline} baseline, {candidate} candidate.",
                report.k
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{}\n", headline_line(report));
    if let Some(extraction) = &report.extraction {
        let _ = writeln!(
            out,
            "## Extraction: {} against the ground truth\n\n{} products, {} extracted, {} of \
             them failed; over the others (confusion matrices in metrics.json):\n",
            extraction.extracted, extraction.products, extraction.attempted, extraction.failed
        );
        let _ = writeln!(out, "| attribute | products | accuracy | macro-F1 |");
        let _ = writeln!(out, "|---|---|---|---|");
        for a in &extraction.attributes {
            let _ = writeln!(
                out,
                "| {} | {} | {:.4} | {:.4} |",
                a.attribute, a.products, a.accuracy, a.macro_f1
            );
        }
        let _ = writeln!(
            out,
            "\nThe plan's phase-1 criteria (rates other than success are over successful extractions):\n"
        );
        let _ = writeln!(out, "| criterion | target | measured | result |");
        let _ = writeln!(out, "|---|---|---|---|");
        for c in &extraction.criteria {
            let measured = c
                .measured_pct
                .map_or_else(|| "-".to_string(), |v| format!("{v:.1}%"));
            let _ = writeln!(
                out,
                "| {} | {} | {measured} | {} |",
                c.criterion, c.target, c.result
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "## Spread of the per-query values (all queries)\n\n\
         | metric | values of | min | p25 | median | p75 | max | share at 0 |\n|---|---|---|---|---|---|---|---|"
    );
    for d in &report.distributions {
        for (name, values) in [
            ("baseline", &d.baseline),
            ("candidate", &d.candidate),
            ("difference", &d.difference),
        ] {
            let _ = writeln!(
                out,
                "| {} | {name} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} |",
                d.metric,
                values.min,
                values.p25,
                values.median,
                values.p75,
                values.max,
                values.zero_share
            );
        }
    }
    out.push('\n');
    for kind in &report.kinds {
        let _ = writeln!(out, "## {} ({} queries)\n", kind.kind, kind.queries);
        let _ = writeln!(out, "| metric | baseline | candidate | difference |");
        let _ = writeln!(out, "|---|---|---|---|");
        for m in &kind.metrics {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                m.metric,
                interval(&m.baseline),
                interval(&m.candidate),
                difference(m)
            );
        }
        out.push('\n');
    }
    out
}
