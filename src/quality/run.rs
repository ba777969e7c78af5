//! Running the benchmark in a session: the labelled catalog read with SQL, the queries searched
//! on both indexes with `vector_search`, and every figure of the comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use serde::Serialize;

use super::extraction::{self, ExtractionQuality};
use super::metrics::{per_query, Judgments, Metric};
use super::queries::{self, Facet, LabelledProduct, Query};
use super::stats::{self, Distribution, Interval, Paired};
use super::trec::Ranked;
use vitrine_udfs::runtime::source::is_test_model;

use crate::catalog::TableName;
use crate::error::{Result, ResultExt, VitrineError};
use crate::session::Session;
use crate::sql::dml::quote;
use crate::vector;
use crate::vector::index::IndexEntry;

/// Where the labelled catalog is: the products table and the ground-truth table joined on
/// `key`, and the column holding each facet (a `|`-separated or array column for style).
#[derive(Debug, Clone)]
pub struct LabelSource {
    /// Table with article type, colour and gender.
    pub products: String,
    /// Table with the visual attributes.
    pub ground_truth: String,
    /// The column both tables share, which the indexes' primary key holds.
    pub key: String,
    /// Facet → `table_alias.column` (`p.` for products, `g.` for the ground truth).
    pub columns: BTreeMap<Facet, String>,
    /// Phase 1's extracted attributes, compared with the ground truth when the table exists.
    pub extracted: Option<String>,
    /// A predicate on the joined catalog (`g.split = 'test'`): only the products it keeps are
    /// queried, judged and ranked, as if the indexes held nothing else.
    pub filter: Option<String>,
}

impl Default for LabelSource {
    /// The demo catalog: `main.fashion_demo.products` and `products_ground_truth`.
    fn default() -> Self {
        Self {
            products: "main.fashion_demo.products".into(),
            ground_truth: "main.fashion_demo.products_ground_truth".into(),
            key: "product_id".into(),
            columns: BTreeMap::from([
                (Facet::Article, "p.article_type".into()),
                (Facet::Colour, "p.base_color".into()),
                (Facet::Gender, "p.gender".into()),
                (Facet::Material, "g.material".into()),
                (Facet::Pattern, "g.pattern".into()),
                (Facet::Sleeve, "g.sleeve_length".into()),
                (Facet::Collar, "g.collar_type".into()),
                (Facet::Style, "g.style_keywords".into()),
            ]),
            extracted: Some("main.fashion_demo.product_extracted_attributes".into()),
            filter: None,
        }
    }
}

impl LabelSource {
    /// Reads `facet` from `column`, written `p.column` (the products table) or `g.column` (the
    /// ground-truth table).
    pub fn set_column(&mut self, facet: Facet, column: &str) -> Result<()> {
        if !(column.starts_with("p.") || column.starts_with("g.")) {
            return Err(VitrineError::Plan(format!(
                "'{column}': name the table as p.column (products) or g.column (ground truth)"
            )));
        }
        self.columns.insert(facet, column.to_string());
        Ok(())
    }
}

/// The cut-off when none is given.
pub const DEFAULT_K: usize = 10;
/// The seed when none is given.
pub const DEFAULT_SEED: u64 = 42;
/// Queries drawn of each kind when none is given.
pub const DEFAULT_PER_KIND: usize = 30;

/// What to compare, and how.
#[derive(Debug, Clone)]
pub struct QualityOptions {
    /// The index searched as it is today.
    pub baseline: String,
    /// The index that should search better.
    pub candidate: String,
    /// Results per query, and the metrics' cut-off.
    pub k: usize,
    /// Seeds the query sample and the resampling.
    pub seed: u64,
    /// Where the queries and their judgments come from.
    pub queries: QuerySource,
    /// The labelled catalog queries are drawn from.
    pub labels: LabelSource,
}

impl QualityOptions {
    /// `baseline` against `candidate` on the demo catalog's drawn queries, with the defaults.
    pub fn new(baseline: impl Into<String>, candidate: impl Into<String>) -> Self {
        Self {
            baseline: baseline.into(),
            candidate: candidate.into(),
            k: DEFAULT_K,
            seed: DEFAULT_SEED,
            queries: QuerySource::Drawn {
                per_kind: DEFAULT_PER_KIND,
            },
            labels: LabelSource::default(),
        }
    }
}

/// Where a benchmark's queries and judgments come from.
#[derive(Debug, Clone)]
pub enum QuerySource {
    /// Drawn from the labelled catalog with the seed: this many of each kind.
    Drawn {
        /// Queries of each kind.
        per_kind: usize,
    },
    /// JSON lines, each a query with its judgments ([`queries::read_jsonl`]).
    Jsonl(PathBuf),
    /// TREC topics (`id<TAB>text`) judged by TREC qrels.
    Trec {
        /// The topics file.
        topics: PathBuf,
        /// The qrels file.
        qrels: PathBuf,
    },
}

fn read_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).context(|| format!("reading '{}'", path.display()))
}

/// The benchmark's queries, and the products they are evaluated on when the labelled catalog is
/// filtered (judgments of other products dropped).
async fn load_queries(
    session: &dyn Session,
    options: &QualityOptions,
) -> Result<(Vec<Query>, Option<BTreeSet<String>>)> {
    let catalog = match (&options.queries, &options.labels.filter) {
        (QuerySource::Drawn { .. }, _) | (_, Some(_)) => {
            labelled_catalog(session, &options.labels).await?
        }
        _ => Vec::new(),
    };
    let mut queries = match &options.queries {
        QuerySource::Drawn { per_kind } => queries::generate(&catalog, *per_kind, options.seed),
        QuerySource::Jsonl(path) => {
            queries::read_jsonl(&read_file(path)?, &path.display().to_string())?
        }
        QuerySource::Trec { topics, qrels } => {
            let qrels = super::trec::read_qrels(&read_file(qrels)?, &qrels.display().to_string())?;
            queries::read_topics(&read_file(topics)?, &topics.display().to_string(), &qrels)?
        }
    };
    let evaluated = match &options.labels.filter {
        Some(filter) if catalog.is_empty() => {
            return Err(VitrineError::Plan(format!(
                "the filter '{filter}' keeps no product of {} and {}",
                options.labels.products, options.labels.ground_truth
            )))
        }
        Some(_) => {
            let ids: BTreeSet<String> = catalog.into_iter().map(|p| p.id).collect();
            for query in &mut queries {
                query.judgments.retain(|product, _| ids.contains(product));
            }
            Some(ids)
        }
        None => None,
    };
    if queries.is_empty() {
        return Err(VitrineError::Plan(match &options.queries {
            QuerySource::Drawn { .. } => format!(
                "no query could be drawn from {} and {}: their facet columns hold no informative values",
                options.labels.products, options.labels.ground_truth
            ),
            _ => "the queries file holds no query".to_string(),
        }));
    }
    Ok((queries, evaluated))
}

/// The products a filtered benchmark ranked: those the filter kept.
#[derive(Debug, Clone, Serialize)]
pub struct EvaluatedProducts {
    /// The predicate on the labelled catalog.
    pub filter: String,
    /// How many products it kept.
    pub products: usize,
    /// Per index (baseline, candidate): queries whose search returned fewer than k of the kept
    /// products even after over-fetching, so that their ranking is cut short.
    pub short_rankings: [usize; 2],
}

/// A metric's value for one index, with its interval.
#[derive(Debug, Clone, Serialize)]
pub struct MetricFigures {
    /// The metric at the cut-off (`ndcg@10`).
    pub metric: String,
    /// Baseline mean and interval.
    pub baseline: Interval,
    /// Candidate mean and interval.
    pub candidate: Interval,
    /// Candidate − baseline, with its interval and p-value.
    pub difference: Paired,
}

/// The figures of one kind of query (or of all: kind `all`).
#[derive(Debug, Clone, Serialize)]
pub struct KindFigures {
    /// `colour+article`, or `all`.
    pub kind: String,
    /// Queries of the kind.
    pub queries: usize,
    /// Every metric.
    pub metrics: Vec<MetricFigures>,
}

/// How one metric's per-query values spread over all queries.
#[derive(Debug, Clone, Serialize)]
pub struct MetricDistribution {
    /// The metric at the cut-off (`ndcg@10`).
    pub metric: String,
    /// The baseline's values, over [0, 1].
    pub baseline: Distribution,
    /// The candidate's values, over [0, 1].
    pub candidate: Distribution,
    /// Candidate − baseline per query, over [−1, 1].
    pub difference: Distribution,
}

/// Bins of the distributions' histograms.
const HISTOGRAM_BINS: usize = 10;

/// What a benchmark run found.
#[derive(Debug, Clone, Serialize)]
pub struct QualityReport {
    /// The baseline index.
    pub baseline: String,
    /// The candidate index.
    pub candidate: String,
    /// The cut-off.
    pub k: usize,
    /// The seed.
    pub seed: u64,
    /// The models behind the vectors and the query embeddings, as `kind=id`.
    pub models: Vec<String>,
    /// Those of `models` made for tests: the figures then mean nothing.
    pub test_models: Vec<String>,
    /// All queries, then each kind.
    pub kinds: Vec<KindFigures>,
    /// Each metric's per-query values over all queries.
    pub distributions: Vec<MetricDistribution>,
    /// Phase 1's extraction against the ground truth, when its table exists.
    pub extraction: Option<ExtractionQuality>,
    /// The products ranked, when the labelled catalog was filtered.
    pub evaluated: Option<EvaluatedProducts>,
    /// The queries, with their texts and kinds.
    #[serde(skip)]
    pub queries: Vec<Query>,
    /// What each index returned.
    #[serde(skip)]
    pub runs: [Ranked; 2],
    /// What was searched: baseline, candidate.
    #[serde(skip)]
    pub indexes: [SearchedIndex; 2],
}

impl QualityReport {
    /// The judgments of every query, by query id.
    pub fn qrels(&self) -> BTreeMap<String, Judgments> {
        self.queries
            .iter()
            .map(|q| (q.id.clone(), q.judgments.clone()))
            .collect()
    }

    /// The figures of `metric` over all queries.
    pub fn headline(&self, metric: Metric) -> Option<&MetricFigures> {
        let label = metric.label(Some(self.k));
        self.kinds
            .first()?
            .metrics
            .iter()
            .find(|m| m.metric == label)
    }
}

/// Runs the benchmark: draws the queries, searches both indexes, scores them.
pub async fn run(session: &dyn Session, options: &QualityOptions) -> Result<QualityReport> {
    if options.k == 0 {
        return Err(VitrineError::Plan(
            "the cut-off k must be at least 1".into(),
        ));
    }
    session.refresh().await?;
    let (queries, evaluated) = load_queries(session, options).await?;
    let (baseline, baseline_index, baseline_short) = search(
        session,
        &options.baseline,
        &queries,
        options.k,
        evaluated.as_ref(),
    )
    .await?;
    let (candidate, candidate_index, candidate_short) = search(
        session,
        &options.candidate,
        &queries,
        options.k,
        evaluated.as_ref(),
    )
    .await?;
    let evaluated = options
        .labels
        .filter
        .as_ref()
        .zip(evaluated)
        .map(|(filter, ids)| EvaluatedProducts {
            filter: filter.clone(),
            products: ids.len(),
            short_rankings: [baseline_short, candidate_short],
        });
    let kinds = figures(&queries, [&baseline, &candidate], options.k, options.seed);
    let distributions = distributions(&queries, [&baseline, &candidate], options.k);
    let mut models: Vec<String> = [&baseline_index, &candidate_index]
        .iter()
        .flat_map(|i| i.models.iter().cloned())
        .collect();
    models.sort();
    models.dedup();
    let test_models = models
        .iter()
        .filter(|m| m.split_once('=').is_some_and(|(_, id)| is_test_model(id)))
        .cloned()
        .collect();
    let extraction = match &options.labels.extracted {
        Some(table) if session.table_entry(&table_name(table)?).is_ok() => Some(
            extraction::measure(
                session,
                &extraction::ExtractionSource {
                    extracted: table,
                    ground_truth: &options.labels.ground_truth,
                    products: &options.labels.products,
                    article: options
                        .labels
                        .columns
                        .get(&Facet::Article)
                        .map_or("p.article_type", String::as_str),
                    key: &options.labels.key,
                },
            )
            .await?,
        ),
        _ => None,
    };
    Ok(QualityReport {
        baseline: options.baseline.clone(),
        candidate: options.candidate.clone(),
        k: options.k,
        seed: options.seed,
        models,
        test_models,
        kinds,
        distributions,
        extraction,
        evaluated,
        queries,
        runs: [baseline, candidate],
        indexes: [baseline_index, candidate_index],
    })
}

/// Every product with its facet values.
async fn labelled_catalog(
    session: &dyn Session,
    labels: &LabelSource,
) -> Result<Vec<LabelledProduct>> {
    let key = quote(&labels.key);
    let facets: Vec<(Facet, &String)> = labels.columns.iter().map(|(f, c)| (*f, c)).collect();
    let columns: Vec<String> = facets
        .iter()
        .map(|(facet, column)| {
            if *facet == Facet::Style {
                format!("CAST({column} AS STRING) AS {}", facet.name())
            } else {
                format!("{column} AS {}", facet.name())
            }
        })
        .collect();
    let filter = labels
        .filter
        .as_ref()
        .map_or(String::new(), |f| format!(" WHERE {f}"));
    let sql = format!(
        "SELECT CAST(p.{key} AS STRING) AS id, {} FROM {} p JOIN {} g ON p.{key} = g.{key}{filter}",
        columns.join(", "),
        labels.products,
        labels.ground_truth
    );
    let batches = session
        .plan_sql(&sql)
        .await
        .map_err(|e| e.context("reading the labelled catalog for the quality benchmark"))?
        .collect()
        .await?;
    let mut catalog = Vec::new();
    for batch in &batches {
        let strings: Vec<StringArray> = (0..batch.num_columns())
            .map(|i| {
                datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8)
                    .map(|a| a.as_string::<i32>().clone())
            })
            .collect::<std::result::Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            if strings[0].is_null(row) {
                continue;
            }
            let mut product = LabelledProduct {
                id: strings[0].value(row).to_string(),
                facets: BTreeMap::new(),
            };
            for (i, (facet, _)) in facets.iter().enumerate() {
                let column = &strings[i + 1];
                if column.is_null(row) {
                    continue;
                }
                product
                    .facets
                    .insert(*facet, split_values(column.value(row)));
            }
            catalog.push(product);
        }
    }
    // Scans need not return rows in the same order twice: the draw of queries must not depend
    // on it.
    catalog.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(catalog)
}

/// A dotted name as written (`main.fashion_demo.vs_text_search`).
fn table_name(name: &str) -> Result<TableName> {
    TableName::from_parts(&name.split('.').map(str::to_string).collect::<Vec<_>>())
}

/// One value, or the items of a list written as `[a, b]` or `a|b`.
fn split_values(text: &str) -> Vec<String> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split([',', '|'])
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// An index as a run searched it.
#[derive(Debug, Clone, Serialize)]
pub struct SearchedIndex {
    /// Its qualified name.
    pub index: String,
    /// Its entry: source, key, metric, ANN kind, parameters, synced source version.
    pub entry: IndexEntry,
    /// The models recorded on its source and the one that embedded the queries, as `kind=id`.
    pub models: Vec<String>,
}

/// The top `k` products of `index` for every query, through `vector_search(query_text => …)`,
/// what was searched, and how many rankings came out short of `k`. With `evaluated`, each search
/// fetches four times the results the kept products' share of the index should need, and keeps
/// the first `k` of them that are evaluated.
async fn search(
    session: &dyn Session,
    index: &str,
    queries: &[Query],
    k: usize,
    evaluated: Option<&BTreeSet<String>>,
) -> Result<(Ranked, SearchedIndex, usize)> {
    let qualified = session.qualify(&table_name(index)?);
    let entry = vector::catalog::get(session.warehouse(), &qualified)
        .await?
        .ok_or_else(|| {
            VitrineError::NotFound(format!("vector index {qualified} does not exist"))
        })?;
    let fetch = match evaluated {
        None => k,
        Some(ids) => {
            let rows = usize::try_from(entry.rows).unwrap_or(usize::MAX);
            (k * rows.div_ceil(ids.len().max(1)) * 4).min(rows.max(k))
        }
    };
    let mut models = Vec::new();
    if let Ok((_, source)) = session.table_entry(&table_name(&entry.source)?) {
        models.extend(source.properties.iter().filter_map(|(key, id)| {
            let kind = key.strip_prefix("vitrine.model.")?;
            (!kind.contains('.')).then(|| format!("{kind}={id}"))
        }));
    }
    if let Some(kind) = &entry.embedding_model {
        // A kind without weights (hashing) is named alone.
        models.push(match session.settings().choices.model(kind) {
            Some(id) => format!("{kind}={id}"),
            None => kind.clone(),
        });
    }
    let table = "__vitrine_quality_queries";
    let schema = Arc::new(Schema::new(vec![
        Field::new("query_id", DataType::Utf8, false),
        Field::new("query_text", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from_iter_values(
                queries.iter().map(|q| q.id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                queries.iter().map(|q| q.text.as_str()),
            )),
        ],
    )?;
    let datafusion = session.datafusion();
    datafusion.register_table(
        table,
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    let sql = format!(
        "SELECT q.query_id, CAST(r.{key} AS STRING) AS product, CAST(r.score AS DOUBLE) AS score \
         FROM {table} q, LATERAL vector_search(index => '{qualified}', query_text => q.query_text, num_results => {fetch}) r",
        key = quote(&entry.primary_key),
    );
    let results = match session.plan_sql(&sql).await {
        Ok(df) => df.collect().await.map_err(VitrineError::from),
        Err(e) => Err(e),
    };
    datafusion.deregister_table(table)?;
    let batches = results.map_err(|e| e.context(format!("searching {qualified}")))?;
    let mut ranked: Ranked = queries.iter().map(|q| (q.id.clone(), Vec::new())).collect();
    for batch in &batches {
        use datafusion::arrow::compute::cast;
        let ids = cast(batch.column(0), &DataType::Utf8)?;
        let products = cast(batch.column(1), &DataType::Utf8)?;
        let scores = cast(batch.column(2), &DataType::Float64)?;
        let (ids, products) = (ids.as_string::<i32>(), products.as_string::<i32>());
        let scores = scores.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        for row in 0..batch.num_rows() {
            if ids.is_null(row) || products.is_null(row) || scores.is_null(row) {
                continue;
            }
            ranked
                .entry(ids.value(row).to_string())
                .or_default()
                .push((products.value(row).to_string(), scores.value(row)));
        }
    }
    let mut short = 0;
    for results in ranked.values_mut() {
        results.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if let Some(ids) = evaluated {
            let fetched = results.len();
            results.retain(|(product, _)| ids.contains(product));
            short += usize::from(results.len() < k && fetched == fetch);
        }
        results.truncate(k);
    }
    let searched = SearchedIndex {
        index: qualified.to_string(),
        entry,
        models,
    };
    Ok((ranked, searched, short))
}

/// The figures over all queries, then per kind.
fn figures(queries: &[Query], runs: [&Ranked; 2], k: usize, seed: u64) -> Vec<KindFigures> {
    let mut groups: Vec<(String, Vec<&Query>)> = vec![("all".into(), queries.iter().collect())];
    let mut kinds: Vec<&str> = Vec::new();
    for query in queries {
        if !kinds.contains(&query.kind.as_str()) {
            kinds.push(&query.kind);
        }
    }
    for kind in kinds {
        groups.push((
            kind.to_string(),
            queries.iter().filter(|q| q.kind == kind).collect(),
        ));
    }
    groups
        .into_iter()
        .map(|(kind, group)| {
            let [baseline, candidate] = scores(&group, runs, k);
            let metrics = Metric::ALL
                .iter()
                .map(|metric| MetricFigures {
                    metric: metric.label(Some(k)),
                    baseline: stats::bootstrap(&baseline[metric], seed),
                    candidate: stats::bootstrap(&candidate[metric], seed),
                    difference: stats::paired(&baseline[metric], &candidate[metric], seed),
                })
                .collect();
            KindFigures {
                kind,
                queries: group.len(),
                metrics,
            }
        })
        .collect()
}

/// Every metric's per-query values on `queries` (in the order of their ids), for both runs.
fn scores(queries: &[&Query], runs: [&Ranked; 2], k: usize) -> [BTreeMap<Metric, Vec<f64>>; 2] {
    let qrels: BTreeMap<String, Judgments> = queries
        .iter()
        .map(|q| (q.id.clone(), q.judgments.clone()))
        .collect();
    runs.map(|run| per_query(&qrels, &super::trec::rankings(run), Some(k)))
}

/// The spread of each metric's per-query values over all queries.
fn distributions(queries: &[Query], runs: [&Ranked; 2], k: usize) -> Vec<MetricDistribution> {
    let all: Vec<&Query> = queries.iter().collect();
    let [baseline, candidate] = scores(&all, runs, k);
    Metric::ALL
        .iter()
        .map(|metric| {
            let (b, c) = (&baseline[metric], &candidate[metric]);
            let differences: Vec<f64> = c.iter().zip(b).map(|(c, b)| c - b).collect();
            MetricDistribution {
                metric: metric.label(Some(k)),
                baseline: stats::distribution(b, 0.0, 1.0, HISTOGRAM_BINS),
                candidate: stats::distribution(c, 0.0, 1.0, HISTOGRAM_BINS),
                difference: stats::distribution(&differences, -1.0, 1.0, HISTOGRAM_BINS),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::split_values;

    #[test]
    fn list_columns_split_into_their_values() {
        assert_eq!(split_values("[sporty, casual]"), ["sporty", "casual"]);
        assert_eq!(split_values("sporty|casual"), ["sporty", "casual"]);
        assert_eq!(split_values("Tshirts"), ["Tshirts"]);
        assert!(split_values("[]").is_empty());
    }
}
