//! `vector_search(index => …, query_vector => … | query_text => …, num_results => 10,
//! query_type => 'ANN', filters => '…')`: the nearest rows of a vector index, as a table.
//!
//! Arguments are constant SQL expressions, evaluated first (so `query_vector =>
//! clip_text_embed('red dress')` works). `query_text` is embedded with the index's
//! `embedding_model` (the model registry says which function: `clip` → `clip_text_embed`). `filters` is a predicate on the index's columns,
//! applied before the top-k is taken. The result holds the index's columns and `score`, a
//! similarity where higher is better: the cosine similarity for `metric = 'cosine'`, the dot
//! product for `dot`, and 1 / (1 + squared distance) for `l2`; rows come best first.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use lance::dataset::scanner::Scanner;

use super::filter::RowFilter;
use super::index::{self, IndexEntry, Metric};
use super::resident::{self, ResidentIndex};
use super::statements::index_entry;
use crate::catalog::TableName;
use crate::error::{Result, VitrineError};
use crate::session::Session;

/// The most rows one search returns.
pub const MAX_RESULTS: usize = 10_000;

const ARGUMENTS: &[&str] = &[
    "index",
    "query_vector",
    "query_text",
    "query",
    "num_results",
    "query_type",
    "filters",
];

fn error(message: impl std::fmt::Display) -> VitrineError {
    VitrineError::Plan(format!("vector_search: {message}"))
}

/// Evaluates a constant SQL expression. Plain literals (`'text'`, `10`) are read directly: a
/// search runs several of them, and planning each as a statement costs more than the search.
async fn constant(session: &dyn Session, name: &str, sql: &str) -> Result<ScalarValue> {
    if let Some(value) = literal(sql) {
        return Ok(value);
    }
    if let Some(position) = placeholder(sql) {
        return session.parameter(position).ok_or_else(|| {
            error(format!(
                "{name} => ${position}: the statement was given no value for ${position}"
            ))
        });
    }
    let df = session
        .plan_sql(&format!("SELECT {sql}"))
        .await
        .map_err(|e| error(format!("{name} must be a constant expression ({e})")))?;
    let batches = df.collect().await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| error(format!("{name} has no value")))?;
    Ok(ScalarValue::try_from_array(batch.column(0), 0)?)
}

async fn text(session: &dyn Session, name: &str, sql: &str) -> Result<String> {
    match constant(session, name, sql).await? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Ok(s),
        other => Err(error(format!("{name} must be a string, got {other}"))),
    }
}

/// The floats of a vector value, refusing NULL and NaN.
fn floats(value: ScalarValue) -> Result<Vec<f32>> {
    let array: ArrayRef = value.to_array()?;
    if array.is_null(0) {
        return Err(error("the query vector is NULL"));
    }
    let values = match array.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let list = datafusion::arrow::compute::cast(
                &array,
                &DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
            )?;
            list.as_list::<i32>().value(0)
        }
        other => {
            return Err(error(format!(
                "query_vector must be an ARRAY<FLOAT>, got {other}"
            )))
        }
    };
    let values = values.as_primitive::<Float32Type>();
    if values.null_count() > 0 || values.values().iter().any(|v| v.is_nan()) {
        return Err(error("the query vector holds NULL or NaN values"));
    }
    Ok(values.values().to_vec())
}

/// A single-quoted string without other quotes, or an integer.
fn literal(sql: &str) -> Option<ScalarValue> {
    let sql = sql.trim();
    if let Some(inner) = sql.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        let text = inner.replace("''", "'");
        return (!text.contains('\'')
            || inner.matches('\'').count() == 2 * text.matches('\'').count())
        .then_some(ScalarValue::Utf8(Some(text)));
    }
    sql.parse::<i64>().ok().map(|n| ScalarValue::Int64(Some(n)))
}

/// The position of a placeholder (`$1` → 1).
fn placeholder(sql: &str) -> Option<usize> {
    sql.trim()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
}

/// The numbers of an array literal (`make_array(0.1, -2, …)` or `[0.1, …]`), read without planning
/// a statement: an application passes its query vector this way, and planning 512 literals costs
/// milliseconds. Anything else (an expression, a subquery) is evaluated as SQL.
fn literal_vector(sql: &str) -> Option<Vec<f32>> {
    let sql = sql.trim();
    let inner = sql
        .strip_prefix("make_array(")
        .or_else(|| sql.strip_prefix("MAKE_ARRAY("))
        .and_then(|s| s.strip_suffix(')'))
        .or_else(|| sql.strip_prefix('[').and_then(|s| s.strip_suffix(']')))?;
    let values: Option<Vec<f32>> = inner
        .split(',')
        .map(|v| v.trim().parse::<f32>().ok())
        .collect();
    values.filter(|v| !v.is_empty() && v.iter().all(|x| x.is_finite()))
}

/// The SQL function that embeds query texts for `entry`: its embedding model's, from the model
/// registry.
fn text_embedder(entry: &IndexEntry) -> Result<&'static str> {
    let model = entry.embedding_model.as_deref().ok_or_else(|| {
        error("the index has no embedding_model to embed query_text: pass query_vector, or recreate it WITH (embedding_model = 'clip')")
    })?;
    vitrine_udfs::models::text_embedding_function(model)
        .map_err(|e| error(format!("the index's embedding_model: {e}")))
}

/// The query vector: given, or the embedding of the query text.
async fn query_vector(
    session: &dyn Session,
    search: &Search,
    args: &BTreeMap<String, String>,
) -> Result<Vec<f32>> {
    let entry = &search.entry;
    let text_arg = args.get("query_text").or_else(|| args.get("query"));
    // HYBRID may take both: the vector for the ANN half, the text for the BM25 half.
    let text_arg = if search.hybrid && args.contains_key("query_vector") {
        None
    } else {
        text_arg
    };
    let vector = match (args.get("query_vector"), text_arg) {
        (Some(_), Some(_)) => return Err(error("give query_vector or query_text, not both")),
        (Some(sql), None) => match literal_vector(sql) {
            Some(vector) => vector,
            None => floats(constant(session, "query_vector", sql).await?)?,
        },
        (None, Some(sql)) => {
            let function = text_embedder(entry)?;
            let query = text(session, "query_text", sql).await?;
            floats(
                constant(
                    session,
                    "query_text",
                    &format!("{function}('{}')", query.replace('\'', "''")),
                )
                .await?,
            )?
        }
        (None, None) => return Err(error("give query_vector or query_text")),
    };
    if vector.len() != entry.dimension {
        return Err(error(format!(
            "the query vector has {} values but the index holds {}-d vectors",
            vector.len(),
            entry.dimension
        )));
    }
    Ok(vector)
}

/// A search with its constant arguments evaluated: which index, how many rows, which filter.
struct Search {
    entry: IndexEntry,
    k: usize,
    filter: Option<RowFilter>,
    /// `query_type => 'HYBRID'`: BM25 over the text column fused with the ANN ranking.
    hybrid: bool,
}

/// A filter keeping at most 1 / this of an index's rows is searched exactly over the rows it
/// keeps, where the index is searched through Lance.
const EXACT_FILTER_SHARE: u64 = 50;

/// Reciprocal-rank fusion's constant: a row at rank r in a list adds 1 / (RRF_K + r).
const RRF_K: f64 = 60.0;

impl Search {
    /// Checks the arguments and evaluates all but the query.
    async fn new(session: &dyn Session, args: &BTreeMap<String, String>) -> Result<Self> {
        if let Some(unknown) = args.keys().find(|k| !ARGUMENTS.contains(&k.as_str())) {
            return Err(error(format!(
                "unknown argument '{unknown}' (known: {})",
                ARGUMENTS.join(", ")
            )));
        }
        let index = text(
            session,
            "index",
            args.get("index")
                .ok_or_else(|| error("index => 'name' is required"))?,
        )
        .await?;
        let parts: Vec<String> = index.split('.').map(str::to_string).collect();
        let (_, entry) = index_entry(session, &TableName::from_parts(&parts)?).await?;
        let k = match args.get("num_results") {
            None => 10,
            Some(sql) => match constant(session, "num_results", sql).await? {
                ScalarValue::Int64(Some(n)) if (1..=MAX_RESULTS as i64).contains(&n) => n as usize,
                ScalarValue::Int32(Some(n)) if (1..=MAX_RESULTS as i32).contains(&n) => n as usize,
                other => {
                    return Err(error(format!(
                        "num_results must be an integer from 1 to {MAX_RESULTS}, got {other}"
                    )))
                }
            },
        };
        let query_type = match args.get("query_type") {
            None => "ANN".to_string(),
            Some(sql) => text(session, "query_type", sql).await?.to_ascii_uppercase(),
        };
        let hybrid =
            match query_type.as_str() {
                "ANN" => false,
                "HYBRID" if entry.text_column.is_some() => true,
                "HYBRID" => return Err(error(
                    "query_type 'HYBRID' needs an index WITH (text_column = '…') for its BM25 half",
                )),
                other => {
                    return Err(error(format!(
                        "query_type '{other}' is not supported; use 'ANN' or 'HYBRID'"
                    )))
                }
            };
        let filter = match args.get("filters") {
            Some(sql) => Some(RowFilter::Sql(text(session, "filters", sql).await?)),
            None => None,
        };
        Ok(Self {
            entry,
            k,
            filter,
            hybrid,
        })
    }

    /// The nearest rows to `vector`: the index's columns and `_distance`.
    async fn nearest(&self, vector: Vec<f32>) -> Result<RecordBatch> {
        self.nearest_k(vector, self.k).await
    }

    /// The nearest `k` rows: from the index held in memory where it is one
    /// ([`resident::serves`]), through a Lance scan otherwise.
    async fn nearest_k(&self, vector: Vec<f32>, k: usize) -> Result<RecordBatch> {
        let entry = &self.entry;
        if let Some(resident) = resident::open(entry).await? {
            return self.nearest_in(&resident, &vector, k);
        }
        let dataset = index::open_cached(entry).await?;
        let mut scanner = dataset.scan();
        let lance = |e: lance::Error| error(e);
        scanner
            .nearest(&entry.column, &Float32Array::from(vector), k)
            .map_err(lance)?;
        index::apply_breadth(&mut scanner, &entry.params, k);
        if let Some(filter) = &self.filter {
            // A graph search that may only visit the few rows a filter keeps ends before it
            // finds k of them: compare those rows exactly instead (read through the filter
            // indexes).
            let kept = filter.count(&dataset).await?;
            if kept <= entry.rows / EXACT_FILTER_SHARE {
                scanner.use_index(false);
            }
        }
        self.run(scanner, "_distance").await
    }

    /// The nearest `k` rows from the index held in memory, at the index's breadth.
    fn nearest_in(
        &self,
        resident: &ResidentIndex,
        vector: &[f32],
        k: usize,
    ) -> Result<RecordBatch> {
        let nprobes = index::probes_for(&self.entry.params, k).unwrap_or(1);
        resident.nearest(vector, k, nprobes, self.filter.as_ref())
    }

    /// Applies the filter (before the top-k), projects the index's columns and `score_column`,
    /// and runs the scan.
    async fn run(&self, mut scanner: Scanner, score_column: &str) -> Result<RecordBatch> {
        if let Some(filter) = &self.filter {
            filter.apply(&mut scanner)?;
            scanner.prefilter(true);
        }
        let mut projection: Vec<&str> = self.entry.columns.iter().map(String::as_str).collect();
        projection.push(score_column);
        scanner.disable_scoring_autoprojection();
        scanner.project(&projection).map_err(error)?;
        scanner
            .try_into_batch()
            .await
            .map_err(|e| match &self.filter {
                Some(f) => error(format!("search with filters '{f}' failed: {e}")),
                None => error(e),
            })
    }

    /// The best rows for `text` by BM25 over the text column: the index's columns and `_score`.
    async fn full_text(&self, text: &str, k: usize) -> Result<RecordBatch> {
        let entry = &self.entry;
        let column = entry
            .text_column
            .clone()
            .expect("HYBRID needs a text column");
        let dataset = index::open_cached(entry).await?;
        let mut scanner = dataset.scan();
        let lance = |e: lance::Error| error(e);
        let query = lance_index::scalar::FullTextSearchQuery::new(text.to_string())
            .with_column(column)
            .map_err(lance)?
            .limit(Some(k as i64));
        scanner.full_text_search(query).map_err(lance)?;
        self.run(scanner, "_score").await
    }

    /// `HYBRID`: the ANN and BM25 rankings (each 2k deep) fused by reciprocal rank; the score
    /// is the fused one, Σ 1 / (60 + rank).
    async fn hybrid(&self, vector: Vec<f32>, text: &str) -> Result<(Arc<Schema>, RecordBatch)> {
        let depth = self.k * 2;
        let ann = self.nearest_k(vector, depth).await?;
        let bm25 = self.full_text(text, depth).await?;
        let key = self.entry.primary_key.as_str();
        let mut fused: Vec<(String, f64, usize, usize)> = Vec::new();
        for (list, batch) in [&ann, &bm25].into_iter().enumerate() {
            let keys = datafusion::arrow::compute::cast(
                batch
                    .column_by_name(key)
                    .ok_or_else(|| error("the index lacks its key"))?,
                &DataType::Utf8,
            )?;
            for (rank, value) in keys.as_string::<i32>().iter().enumerate() {
                let value = value.unwrap_or_default().to_string();
                let gain = 1.0 / (RRF_K + rank as f64 + 1.0);
                match fused.iter_mut().find(|f| f.0 == value) {
                    Some(found) => found.1 += gain,
                    None => fused.push((value, gain, list, rank)),
                }
            }
        }
        fused.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        fused.truncate(self.k);
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        let picks: Vec<(usize, usize)> = fused.iter().map(|f| (f.2, f.3)).collect();
        for name in &self.entry.columns {
            let sources = [
                ann.column_by_name(name)
                    .ok_or_else(|| error(format!("no column '{name}'")))?
                    .as_ref(),
                bm25.column_by_name(name)
                    .ok_or_else(|| error(format!("no column '{name}'")))?
                    .as_ref(),
            ];
            fields.push(Field::new(name, sources[0].data_type().clone(), true));
            columns.push(datafusion::arrow::compute::interleave(&sources, &picks)?);
        }
        fields.push(Field::new("score", DataType::Float32, true));
        columns.push(Arc::new(Float32Array::from_iter_values(
            fused.iter().map(|f| f.1 as f32),
        )));
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        Ok((schema, batch))
    }
}

/// Runs the search and returns its rows as a table.
pub async fn search(
    session: &dyn Session,
    args: &BTreeMap<String, String>,
) -> Result<Arc<dyn TableProvider>> {
    let search = Search::new(session, args).await?;
    let vector = query_vector(session, &search, args).await?;
    let (schema, batch) = if search.hybrid {
        let sql = args
            .get("query_text")
            .or_else(|| args.get("query"))
            .ok_or_else(|| error("query_type 'HYBRID' needs query_text for its BM25 half"))?;
        let text = text(session, "query_text", sql).await?;
        search.hybrid(vector, &text).await?
    } else {
        results(&search.entry, None, search.nearest(vector).await?)?
    };
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// The in-process search API: the `k` nearest rows of the vector index `index` (a table name,
/// resolved against the session's schema) to each of `queries`, as `vector_search` returns
/// them (the index's columns and `score`, best first), keeping rows that pass `filter` (a
/// condition on the index's columns). The queries of one call run in parallel on an index held
/// in memory; any number of callers may search at once.
pub async fn nearest(
    session: &dyn Session,
    index: &str,
    queries: &[Vec<f32>],
    k: usize,
    filter: Option<&RowFilter>,
) -> Result<Vec<RecordBatch>> {
    use rayon::prelude::*;
    if !(1..=MAX_RESULTS).contains(&k) {
        return Err(error(format!(
            "num_results must be from 1 to {MAX_RESULTS}, got {k}"
        )));
    }
    let parts: Vec<String> = index.split('.').map(str::to_string).collect();
    let (_, entry) = index_entry(session, &TableName::from_parts(&parts)?).await?;
    for (i, query) in queries.iter().enumerate() {
        if query.len() != entry.dimension {
            return Err(error(format!(
                "query {} has {} values but the index holds {}-d vectors",
                i + 1,
                query.len(),
                entry.dimension
            )));
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(error(format!(
                "query {} holds NaN or infinite values",
                i + 1
            )));
        }
    }
    let search = Search {
        entry,
        k,
        filter: filter.cloned(),
        hybrid: false,
    };
    let found: Vec<RecordBatch> = match resident::open(&search.entry).await? {
        // One query runs on the caller's thread: handing it to the pool costs more than it.
        Some(resident) if queries.len() == 1 => {
            vec![search.nearest_in(&resident, &queries[0], k)?]
        }
        Some(resident) => queries
            .par_iter()
            .map(|query| search.nearest_in(&resident, query, k))
            .collect::<Result<_>>()?,
        None => {
            let mut found = Vec::with_capacity(queries.len());
            for query in queries {
                found.push(search.nearest(query.clone()).await?);
            }
            found
        }
    };
    found
        .into_iter()
        .map(|batch| Ok(results(&search.entry, None, batch)?.1))
        .collect()
}

/// `LATERAL vector_search(…)` beside the table `left`: one search per distinct value of the
/// query argument (`query_argument`, an expression over `left`'s columns). Query texts are
/// embedded in one statement, so the model sees them as one batch. The rows carry
/// `__query_key` (the value of `key` over `left`), on which the rewritten statement joins.
pub async fn lateral_search(
    session: &dyn Session,
    args: &BTreeMap<String, String>,
    query_argument: &str,
    left: &str,
    key: &str,
) -> Result<Arc<dyn TableProvider>> {
    let constants: BTreeMap<String, String> = args
        .iter()
        .filter(|(name, _)| name.as_str() != query_argument)
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let search = Search::new(session, &constants).await?;
    if search.hybrid {
        return Err(error(
            "query_type 'HYBRID' is not supported with LATERAL yet",
        ));
    }
    let query = &args[query_argument];
    let vector_sql = if query_argument == "query_vector" {
        "__q".to_string()
    } else {
        format!("{}(__q)", text_embedder(&search.entry)?)
    };
    let queries = session
        .plan_sql(&format!(
            "SELECT __k AS __query_key, {vector_sql} AS __query_vector \
             FROM (SELECT DISTINCT {key} AS __k, {query} AS __q FROM {left}) AS __distinct_queries \
             WHERE __q IS NOT NULL"
        ))
        .await
        .map_err(|e| error(format!("the query of a LATERAL search ({e})")))?
        .collect()
        .await?;
    let mut batches = Vec::new();
    let mut schema = None;
    for batch in &queries {
        for row in 0..batch.num_rows() {
            let key_value = ScalarValue::try_from_array(batch.column(0), row)?;
            let vector = floats(ScalarValue::try_from_array(batch.column(1), row)?)?;
            if vector.len() != search.entry.dimension {
                return Err(error(format!(
                    "a query vector has {} values but the index holds {}-d vectors",
                    vector.len(),
                    search.entry.dimension
                )));
            }
            let found = search.nearest(vector).await?;
            let (result_schema, rows) = results(&search.entry, Some(key_value), found)?;
            schema = Some(result_schema);
            batches.push(rows);
        }
    }
    let schema = match schema {
        Some(schema) => schema,
        None => {
            // No query rows: the result is empty, with the columns a search returns.
            let mut probe = vec![0.0; search.entry.dimension];
            probe[0] = 1.0;
            let found = search.nearest(probe).await?;
            results(
                &search.entry,
                Some(ScalarValue::Utf8(None)),
                found.slice(0, 0),
            )?
            .0
        }
    };
    Ok(Arc::new(MemTable::try_new(schema, vec![batches])?))
}

/// The index's columns and the score, best first; with `key`, a first column `__query_key`
/// holding it on every row.
fn results(
    entry: &IndexEntry,
    key: Option<ScalarValue>,
    found: RecordBatch,
) -> Result<(Arc<Schema>, RecordBatch)> {
    let distances = found
        .column_by_name("_distance")
        .ok_or_else(|| error("the index returned no distances"))?
        .as_primitive::<Float32Type>()
        .clone();
    let scores: Float32Array = distances
        .iter()
        .map(|d| {
            d.map(|d| match entry.metric {
                Metric::Cosine | Metric::Dot => 1.0 - d,
                Metric::L2 => 1.0 / (1.0 + d),
            })
        })
        .collect();
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    if let Some(key) = key {
        let column = key.to_array_of_size(found.num_rows())?;
        fields.push(Field::new("__query_key", column.data_type().clone(), true));
        columns.push(column);
    }
    for name in &entry.columns {
        let column = found
            .column_by_name(name)
            .ok_or_else(|| error(format!("the index lacks column '{name}'")))?;
        fields.push(Field::new(name, column.data_type().clone(), true));
        columns.push(Arc::clone(column));
    }
    fields.push(Field::new("score", DataType::Float32, true));
    columns.push(Arc::new(scores));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok((schema, batch))
}

#[cfg(test)]
mod tests {
    use super::literal_vector;

    #[test]
    fn array_literals_are_read_directly_and_anything_else_is_left_to_sql() {
        assert_eq!(
            literal_vector("make_array(1.0, -2, 3e-1)"),
            Some(vec![1.0, -2.0, 0.3])
        );
        assert_eq!(literal_vector("[0.5, 0.25]"), Some(vec![0.5, 0.25]));
        assert_eq!(literal_vector("clip_text_embed('red dress')"), None);
        assert_eq!(literal_vector("make_array(1.0, 'NaN'::float)"), None);
        assert_eq!(literal_vector("make_array(1.0, sin(2))"), None);
        assert_eq!(literal_vector("make_array()"), None);
    }

    #[test]
    fn string_and_integer_literals_are_read_directly() {
        use datafusion::common::ScalarValue;
        assert_eq!(
            super::literal("'main.s.vs'"),
            Some(ScalarValue::Utf8(Some("main.s.vs".into())))
        );
        assert_eq!(
            super::literal("'it''s'"),
            Some(ScalarValue::Utf8(Some("it's".into())))
        );
        assert_eq!(super::literal("'a' || 'b'"), None);
        assert_eq!(super::literal("10"), Some(ScalarValue::Int64(Some(10))));
        assert_eq!(super::literal("5 + 5"), None);
    }
}
