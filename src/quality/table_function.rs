//! `retrieval_quality(baseline => …, candidate => …, …)`: the benchmark as a SQL table function,
//! one row per kind of query and metric, the same figures `vitrine bench quality` reports.
//!
//! Arguments (literals): `baseline`, `candidate` (the indexes, also by position), `k`, `seed`,
//! `per_kind`, `queries` (a JSONL file, or TREC topics with `qrels`), `products`,
//! `ground_truth`, `key`, `filter` (a predicate keeping the evaluated products:
//! `filter => 'g.split = ''test'''`), and a column per facet (`material => 'g.fabric'`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;

use super::queries::Facet;
use super::run::{QualityOptions, QualityReport, QuerySource};
use crate::error::{Result, VitrineError};
use crate::session::Session;

/// The arguments besides the facets' columns.
const ARGUMENTS: &[&str] = &[
    "baseline",
    "candidate",
    "k",
    "seed",
    "per_kind",
    "queries",
    "qrels",
    "products",
    "ground_truth",
    "key",
    "filter",
];

/// The options the arguments of a `retrieval_quality` call give.
pub fn options(arguments: &BTreeMap<String, String>) -> Result<QualityOptions> {
    let required = |name: &str| {
        arguments.get(name).cloned().ok_or_else(|| {
            VitrineError::Plan(format!(
                "retrieval_quality needs {name} => 'catalog.schema.index'"
            ))
        })
    };
    let number = |name: &str| -> Result<Option<u64>> {
        arguments
            .get(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    VitrineError::Plan(format!(
                        "retrieval_quality: {name} takes a whole number, got '{v}'"
                    ))
                })
            })
            .transpose()
    };
    let mut options = QualityOptions::new(required("baseline")?, required("candidate")?);
    if let Some(k) = number("k")? {
        options.k = k as usize;
    }
    if let Some(seed) = number("seed")? {
        options.seed = seed;
    }
    options.queries = match (arguments.get("queries"), arguments.get("qrels")) {
        (None, Some(_)) => {
            return Err(VitrineError::Plan(
                "retrieval_quality: qrels judges the topics of queries => 'file'; give both".into(),
            ))
        }
        (None, None) => QuerySource::Drawn {
            per_kind: number("per_kind")?.map_or(super::run::DEFAULT_PER_KIND, |n| n as usize),
        },
        (Some(topics), Some(qrels)) => QuerySource::Trec {
            topics: PathBuf::from(topics),
            qrels: PathBuf::from(qrels),
        },
        (Some(file), None) => QuerySource::Jsonl(PathBuf::from(file)),
    };
    let labels = &mut options.labels;
    for (name, value) in arguments {
        match name.as_str() {
            "products" => labels.products = value.clone(),
            "ground_truth" => labels.ground_truth = value.clone(),
            "key" => labels.key = value.clone(),
            "filter" => labels.filter = Some(value.clone()),
            name if ARGUMENTS.contains(&name) => {}
            name => {
                let facet = Facet::parse(name).map_err(|_| {
                    let facets: Vec<&str> = Facet::ALL.iter().map(|f| f.name()).collect();
                    VitrineError::Plan(format!(
                        "retrieval_quality has no argument '{name}': it takes {}, and a column per facet ({})",
                        ARGUMENTS.join(", "),
                        facets.join(", ")
                    ))
                })?;
                labels.set_column(facet, value)?;
            }
        }
    }
    Ok(options)
}

/// The metric table's columns.
pub fn schema() -> SchemaRef {
    let figure = |name: &str| Field::new(name, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("queries", DataType::Int64, false),
        Field::new("metric", DataType::Utf8, false),
        figure("baseline"),
        figure("baseline_low"),
        figure("baseline_high"),
        figure("candidate"),
        figure("candidate_low"),
        figure("candidate_high"),
        figure("difference"),
        figure("difference_low"),
        figure("difference_high"),
        figure("p_value"),
        Field::new("meaningful", DataType::Boolean, false),
    ]))
}

/// One row per kind of query (`all` first) and metric; `meaningful` is false when a model
/// behind the figures was made for tests.
pub fn metric_table(report: &QualityReport) -> Result<RecordBatch> {
    let rows: Vec<_> = report
        .kinds
        .iter()
        .flat_map(|kind| kind.metrics.iter().map(move |m| (kind, m)))
        .collect();
    let figure = |value: &dyn Fn(&super::run::MetricFigures) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|(_, m)| value(m)),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(k, _)| k.kind.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|(k, _)| k.queries as i64),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, m)| m.metric.as_str()),
        )),
        figure(&|m| m.baseline.mean),
        figure(&|m| m.baseline.low),
        figure(&|m| m.baseline.high),
        figure(&|m| m.candidate.mean),
        figure(&|m| m.candidate.low),
        figure(&|m| m.candidate.high),
        figure(&|m| m.difference.difference.mean),
        figure(&|m| m.difference.difference.low),
        figure(&|m| m.difference.difference.high),
        figure(&|m| m.difference.p_value),
        Arc::new(BooleanArray::from(vec![
            report.test_models.is_empty();
            rows.len()
        ])),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// Runs the benchmark the arguments describe and gives its metric table.
pub async fn retrieval_quality(
    session: &dyn Session,
    arguments: &BTreeMap<String, String>,
) -> Result<Arc<dyn TableProvider>> {
    let options = options(arguments)?;
    let report = super::run(session, &options).await.map_err(|e| {
        e.context(format!(
            "retrieval_quality({}, {})",
            options.baseline, options.candidate
        ))
    })?;
    let batch = metric_table(&report)?;
    Ok(Arc::new(MemTable::try_new(
        batch.schema(),
        vec![vec![batch]],
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn arguments_set_the_options_and_the_rest_keep_their_defaults() {
        let options = options(&arguments(&[
            ("baseline", "main.s.a"),
            ("candidate", "main.s.b"),
            ("k", "5"),
            ("per_kind", "3"),
            ("material", "g.fabric"),
        ]))
        .unwrap();
        assert_eq!(
            (options.k, options.seed),
            (5, super::super::run::DEFAULT_SEED)
        );
        assert!(matches!(
            options.queries,
            QuerySource::Drawn { per_kind: 3 }
        ));
        assert_eq!(options.labels.columns[&Facet::Material], "g.fabric");
        assert_eq!(options.labels.columns[&Facet::Pattern], "g.pattern");
    }

    #[test]
    fn a_wrong_argument_is_named() {
        let error = |pairs: &[(&str, &str)]| options(&arguments(pairs)).unwrap_err().to_string();
        assert!(error(&[("candidate", "b")]).contains("needs baseline"));
        let base = [("baseline", "a"), ("candidate", "b")];
        assert!(
            error(&[base[0], base[1], ("k", "ten")]).contains("k takes a whole number, got 'ten'")
        );
        assert!(error(&[base[0], base[1], ("topk", "3")]).contains("no argument 'topk'"));
        assert!(error(&[base[0], base[1], ("material", "fabric")]).contains("g.column"));
        assert!(error(&[base[0], base[1], ("qrels", "q.txt")]).contains("give both"));
    }
}
