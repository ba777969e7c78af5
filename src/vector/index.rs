//! Vector indexes: a Lance dataset holding a source table's primary key, embedding and chosen
//! columns, with a native ANN index on the embedding. The entry (`_indexes/<catalog>/<schema>/
//! <index>.json`) records what the index was built from and the source version it reflects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::execution::SendableRecordBatchStream;
use lance::index::vector::VectorIndexParams;
use lance::index::DatasetIndexExt;
use lance_index::scalar::InvertedIndexParams;
use lance_index::vector::hnsw::builder::HnswBuildParams;
use lance_index::vector::ivf::IvfBuildParams;
use lance_index::vector::sq::builder::SQBuildParams;
use lance_index::IndexType;
use lance_linalg::distance::MetricType;
use serde::{Deserialize, Serialize};

use crate::catalog::lance_table;
use crate::catalog::version::{CommitInfo, Mode};
use crate::error::{Result, ResultExt, VitrineError};

/// The name of the ANN index inside an index dataset.
const ANN_INDEX_NAME: &str = "ann";
/// The name of the full-text index on `text_column`.
const FTS_INDEX_NAME: &str = "fts";

/// How similarity is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity (score = 1 − cosine distance).
    Cosine,
    /// Euclidean distance (score = 1 / (1 + distance²)).
    L2,
    /// Inner product (score = the dot product).
    Dot,
}

impl Metric {
    /// Parses `metric = 'cosine' | 'l2' | 'dot'` (and their usual synonyms).
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_lowercase().as_str() {
            "cosine" => Ok(Self::Cosine),
            "l2" | "euclidean" => Ok(Self::L2),
            "dot" | "inner_product" | "ip" => Ok(Self::Dot),
            other => Err(VitrineError::Plan(format!(
                "metric '{other}': expected cosine, l2 or dot"
            ))),
        }
    }

    fn lance(self) -> MetricType {
        match self {
            Self::Cosine => MetricType::Cosine,
            Self::L2 => MetricType::L2,
            Self::Dot => MetricType::Dot,
        }
    }
}

/// The ANN structure of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AnnKind {
    /// Exact search over every row (built as one IVF partition holding the exact vectors, so
    /// that the index's metric applies).
    Flat,
    /// Inverted file with exact vectors in each partition.
    IvfFlat,
    /// Inverted file with product-quantised vectors.
    IvfPq,
    /// Inverted file with an HNSW graph over scalar-quantised vectors in each partition.
    IvfHnswSq,
}

/// The most vector bytes an IVF_FLAT or FLAT index may hold to be searched in memory
/// ([`super::resident`]); larger ones are searched through Lance.
pub const MAX_RESIDENT_BYTES: u64 = 4 << 30;

/// Whether `rows` f32 vectors of `dimension` fit in [`MAX_RESIDENT_BYTES`].
pub fn fits_in_memory(rows: u64, dimension: usize) -> bool {
    rows.saturating_mul(dimension as u64 * 4) <= MAX_RESIDENT_BYTES
}

impl AnnKind {
    /// The structure an index of `rows` vectors of `dimension` gets when `USING` names none:
    /// IVF_FLAT while its vectors fit in memory ([`MAX_RESIDENT_BYTES`]; 2 million 512-d
    /// vectors), searched there at FAISS's speed (`benches/RESULTS.md`); IVF_HNSW_SQ above.
    pub fn default_for(rows: u64, dimension: usize) -> Self {
        if fits_in_memory(rows, dimension) {
            Self::IvfFlat
        } else {
            Self::IvfHnswSq
        }
    }

    /// Parses `USING …`.
    pub fn parse(text: &str) -> Result<Self> {
        match text.to_ascii_uppercase().as_str() {
            "FLAT" => Ok(Self::Flat),
            "IVF_FLAT" => Ok(Self::IvfFlat),
            "IVF_PQ" => Ok(Self::IvfPq),
            "IVF_HNSW_SQ" => Ok(Self::IvfHnswSq),
            other => Err(VitrineError::Plan(format!(
                "index type '{other}': expected IVF_HNSW_SQ, IVF_PQ, IVF_FLAT or FLAT"
            ))),
        }
    }
}

impl std::fmt::Display for AnnKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Flat => "FLAT",
            Self::IvfFlat => "IVF_FLAT",
            Self::IvfPq => "IVF_PQ",
            Self::IvfHnswSq => "IVF_HNSW_SQ",
        })
    }
}

/// A vector index's catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The source table (three-part name).
    pub source: String,
    /// The embedding column.
    pub column: String,
    /// The source's primary key column.
    pub primary_key: String,
    /// The columns the index keeps and returns (the key and the embedding included).
    pub columns: Vec<String>,
    /// Similarity measure.
    pub metric: Metric,
    /// ANN structure.
    pub kind: AnnKind,
    /// Build and search parameters (`num_partitions`, `num_sub_vectors`, `nprobes`, …).
    pub params: BTreeMap<String, String>,
    /// `TRIGGERED` (synced by `SYNC INDEX`) or `CONTINUOUS`.
    pub pipeline_type: String,
    /// The model that embeds `query_text` (`clip`), when given.
    pub embedding_model: Option<String>,
    /// A text column with a full-text (BM25) index, for `query_type => 'HYBRID'`.
    #[serde(default)]
    pub text_column: Option<String>,
    /// Every other `WITH` option, kept as given (Databricks' `endpoint_name`, …).
    pub options: BTreeMap<String, String>,
    /// The index dataset.
    pub location: String,
    /// Length of the embeddings.
    pub dimension: usize,
    /// The source version the index reflects.
    pub synced_version: u64,
    /// Rows in the index.
    pub rows: u64,
    /// When the index was created (RFC 3339).
    pub created_at: String,
    /// When it was last synced (RFC 3339).
    pub synced_at: String,
    /// The scalar indexes on kept columns that filtered searches through Lance use, as
    /// `column (BTREE | BITMAP)` (none on an index searched in memory).
    #[serde(default)]
    pub filter_indexes: Vec<String>,
    /// The search-breadth parameters given in `WITH` (kept as given when the breadth is
    /// measured again after a sync).
    #[serde(default)]
    pub given_params: BTreeSet<String>,
    /// Rows written or removed by syncs since the breadth was last measured.
    #[serde(default)]
    pub changed_since_measured: u64,
}

/// Parameters chosen from the row count and the dimension, each overridable in `WITH`:
/// about √n partitions of at least 256 rows, PQ with 16 dimensions per sub-vector, and at
/// query time a generous breadth (probes, graph breadth, re-ranking) that
/// [`super::calibrate::tune`] then narrows to what the target recall needs.
pub fn default_params(kind: AnnKind, rows: u64, dimension: usize) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    if kind == AnnKind::Flat {
        params.insert("num_partitions".into(), "1".into());
        params.insert("nprobes".into(), "1".into());
        return params;
    }
    let partitions = ((rows as f64).sqrt() as u64).clamp(1, (rows / 256).max(1));
    params.insert("num_partitions".into(), partitions.to_string());
    params.insert(
        "nprobes".into(),
        (partitions / 4).max(partitions.min(8)).to_string(),
    );
    if kind == AnnKind::IvfHnswSq {
        // Graph search breadth, and re-ranking of the quantised candidates with exact vectors.
        params.insert("ef".into(), "100".into());
        params.insert("refine_factor".into(), "5".into());
    }
    if kind == AnnKind::IvfPq {
        let mut sub_vectors = (dimension / 16).max(1);
        while !dimension.is_multiple_of(sub_vectors) {
            sub_vectors -= 1;
        }
        params.insert("num_sub_vectors".into(), sub_vectors.to_string());
        params.insert("refine_factor".into(), "10".into());
    }
    params
}

fn param(params: &BTreeMap<String, String>, key: &str) -> Result<Option<usize>> {
    params
        .get(key)
        .map(|v| {
            v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                VitrineError::Plan(format!("{key} must be a positive integer, got '{v}'"))
            })
        })
        .transpose()
}

/// The IVF partitions a search for the `k` nearest probes: the measured breadth (for the 10
/// nearest) times √(k / 10) rounded, since deeper answers reach further from the query (3× for
/// 100; unchanged up to 22).
pub fn probes_for(params: &BTreeMap<String, String>, k: usize) -> Option<usize> {
    let nprobes: usize = params.get("nprobes")?.parse().ok()?;
    let widen = ((k as f64 / 10.0).sqrt().round() as usize).max(1);
    Some(nprobes * widen)
}

/// Sets how widely a search for the `k` nearest looks, from an index's parameters: the IVF
/// partitions probed, the re-ranking of quantised candidates with exact vectors, and the HNSW
/// graph's breadth.
pub fn apply_breadth(
    scanner: &mut lance::dataset::scanner::Scanner,
    params: &BTreeMap<String, String>,
    k: usize,
) {
    if let Some(n) = probes_for(params, k) {
        scanner.nprobes(n);
    }
    let refine: Option<u32> = params.get("refine_factor").and_then(|v| v.parse().ok());
    if let Some(factor) = refine {
        scanner.refine(factor);
    }
    if let Some(ef) = params.get("ef").and_then(|v| v.parse::<usize>().ok()) {
        // The graph search must reach every candidate asked of it: k, or k × the refine
        // factor when the candidates are re-ranked.
        scanner.ef(ef.max(k * refine.map_or(1, |f| f.max(1) as usize)));
    }
}

/// Writes the index dataset from `rows` and builds its ANN structure; returns the row count.
pub async fn build(entry: &IndexEntry, rows: SendableRecordBatchStream) -> Result<u64> {
    let mode = if lance_table::exists(&entry.location).await {
        Mode::Overwrite
    } else {
        Mode::Create
    };
    lance_table::write(
        &entry.location,
        rows,
        mode,
        &CommitInfo::operation("CREATE VECTOR INDEX"),
    )
    .await?;
    let mut dataset = lance_table::open(&entry.location, None).await?;
    let count = dataset
        .count_rows(None)
        .await
        .context(|| "counting index rows".into())? as u64;
    if count > 0 {
        let partitions = param(&entry.params, "num_partitions")?.unwrap_or(1);
        let metric = entry.metric.lance();
        let params = match entry.kind {
            AnnKind::IvfFlat | AnnKind::Flat => VectorIndexParams::ivf_flat(partitions, metric),
            AnnKind::IvfPq => VectorIndexParams::ivf_pq(
                partitions,
                8,
                param(&entry.params, "num_sub_vectors")?.unwrap_or(entry.dimension / 16),
                metric,
                50,
            ),
            AnnKind::IvfHnswSq => VectorIndexParams::with_ivf_hnsw_sq_params(
                metric,
                IvfBuildParams::new(partitions),
                HnswBuildParams::default(),
                SQBuildParams::default(),
            ),
        };
        dataset
            .create_index(
                &[entry.column.as_str()],
                IndexType::Vector,
                Some(ANN_INDEX_NAME.into()),
                &params,
                true,
            )
            .await
            .context(|| format!("building the {} index of '{}'", entry.kind, entry.location))?;
        if let Some(text) = &entry.text_column {
            dataset
                .create_index(
                    &[text.as_str()],
                    IndexType::Inverted,
                    Some(FTS_INDEX_NAME.into()),
                    &InvertedIndexParams::default(),
                    true,
                )
                .await
                .context(|| format!("building the full-text index on '{text}'"))?;
        }
    }
    Ok(count)
}

/// Columns with at most this many distinct values get a BITMAP index; others a BTREE.
const BITMAP_UP_TO_VALUES: usize = 1_000;

/// Builds a scalar index on each kept column a filter can use (numbers, strings, booleans,
/// dates and times; not the key, the embedding or the text column): BITMAP for a column of
/// few distinct values, BTREE otherwise, so that Lance's filtered searches read only the rows
/// that pass. `SYNC INDEX` keeps them up to date with the ANN index. Returns what it built.
pub async fn build_filter_indexes(entry: &IndexEntry) -> Result<Vec<String>> {
    use datafusion::arrow::datatypes::DataType;
    use lance_index::scalar::{BuiltinIndexType, ScalarIndexParams};
    let mut dataset = lance_table::open(&entry.location, None).await?;
    let schema: datafusion::arrow::datatypes::Schema = dataset.schema().into();
    let mut built = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        let filterable = matches!(
            field.data_type(),
            DataType::Boolean
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(_, _)
        ) || field.data_type().is_numeric();
        if !filterable
            || *name == entry.column
            || *name == entry.primary_key
            || entry.text_column.as_ref() == Some(name)
        {
            continue;
        }
        let distinct = distinct_values(&dataset, name, BITMAP_UP_TO_VALUES + 1).await?;
        let kind = if distinct <= BITMAP_UP_TO_VALUES {
            BuiltinIndexType::Bitmap
        } else {
            BuiltinIndexType::BTree
        };
        let label = format!("{name} ({})", kind.as_str().to_uppercase());
        dataset
            .create_index(
                &[name.as_str()],
                IndexType::Scalar,
                Some(format!("filter_{name}")),
                &ScalarIndexParams::for_builtin(kind),
                true,
            )
            .await
            .context(|| format!("building the filter index on '{name}'"))?;
        built.push(label);
    }
    Ok(built)
}

/// How many distinct values `column` holds, counting up to `limit`.
async fn distinct_values(dataset: &lance::Dataset, column: &str, limit: usize) -> Result<usize> {
    use datafusion::arrow::array::Array;
    use futures::TryStreamExt;
    let mut scanner = dataset.scan();
    scanner
        .project(&[column])
        .map_err(|e| VitrineError::Plan(format!("reading '{column}': {e}")))?;
    let mut stream = scanner
        .try_into_stream()
        .await
        .map_err(|e| VitrineError::Plan(format!("reading '{column}': {e}")))?;
    let mut seen = std::collections::HashSet::new();
    while let Some(batch) = stream
        .try_next()
        .await
        .map_err(|e| VitrineError::Plan(format!("reading '{column}': {e}")))?
    {
        let values = datafusion::arrow::compute::cast(
            batch.column(0),
            &datafusion::arrow::datatypes::DataType::Utf8,
        )?;
        let values = datafusion::arrow::array::AsArray::as_string::<i32>(&values);
        for i in 0..values.len() {
            seen.insert(values.is_valid(i).then(|| values.value(i).to_string()));
            if seen.len() >= limit {
                return Ok(seen.len());
            }
        }
    }
    Ok(seen.len())
}

/// Opens the index dataset.
pub async fn open(entry: &IndexEntry) -> Result<Arc<lance::Dataset>> {
    Ok(Arc::new(lance_table::open(&entry.location, None).await?))
}

type OpenIndexes = std::collections::HashMap<String, (String, Arc<lance::Dataset>)>;

/// The index datasets opened for searching, by location, each with its entry's `synced_at`.
fn opened() -> std::sync::MutexGuard<'static, OpenIndexes> {
    static OPEN: std::sync::OnceLock<std::sync::Mutex<OpenIndexes>> = std::sync::OnceLock::new();
    OPEN.get_or_init(Default::default)
        .lock()
        .expect("index cache lock")
}

/// The index dataset for searching, opened once per state of the index: every write to an index
/// (CREATE, SYNC) also rewrites its entry's `synced_at`, so an entry seen before maps to the same
/// dataset version and the open (manifest reads) is skipped.
pub async fn open_cached(entry: &IndexEntry) -> Result<Arc<lance::Dataset>> {
    if let Some((synced_at, dataset)) = opened().get(&entry.location) {
        if *synced_at == entry.synced_at {
            return Ok(Arc::clone(dataset));
        }
    }
    let dataset = open(entry).await?;
    opened().insert(
        entry.location.clone(),
        (entry.synced_at.clone(), Arc::clone(&dataset)),
    );
    Ok(dataset)
}

/// Lets go of the dataset opened for the index at `location` (dropped).
pub fn forget(location: &str) {
    opened().remove(location);
}

/// The row ids the ANN index in `dataset` holds in IVF partition `partition`, over all its
/// segments (rows deleted since may be among them).
pub async fn partition_row_ids(
    entry: &IndexEntry,
    dataset: &lance::Dataset,
    partition: usize,
) -> Result<Vec<u64>> {
    use datafusion::arrow::array::AsArray;
    use futures::TryStreamExt;
    let failed = |e: &dyn std::fmt::Display| {
        VitrineError::Plan(format!(
            "reading partition {partition} of '{}': {e}",
            entry.location
        ))
    };
    let mut stream = dataset
        .read_index_partition(ANN_INDEX_NAME, partition, false)
        .await
        .map_err(|e| failed(&e))?;
    let mut ids = Vec::new();
    while let Some(batch) = stream.try_next().await.map_err(|e| failed(&e))? {
        let column = batch
            .column_by_name("_rowid")
            .ok_or_else(|| failed(&"no _rowid column"))?;
        ids.extend_from_slice(
            column
                .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
                .values(),
        );
    }
    Ok(ids)
}

/// The IVF centroids of the ANN index in `dataset` (partitions × dimension floats, as trained:
/// on unit vectors for cosine), or `None` where the dataset has no ANN index (it had no rows).
/// Every segment of an index shares its first segment's centroids.
pub async fn centroids(entry: &IndexEntry, dataset: &lance::Dataset) -> Result<Option<Vec<f32>>> {
    use datafusion::arrow::array::AsArray;
    use lance::index::DatasetIndexInternalExt;
    let failed = |e: lance::Error| {
        VitrineError::Plan(format!(
            "reading the partitions of '{}': {e}",
            entry.location
        ))
    };
    let segments = dataset
        .load_indices_by_name(ANN_INDEX_NAME)
        .await
        .map_err(failed)?;
    let Some(first) = segments.first() else {
        return Ok(None);
    };
    let opened = dataset
        .open_vector_index(
            &entry.column,
            &first.uuid,
            &lance_index::metrics::NoOpMetricsCollector,
        )
        .await
        .map_err(failed)?;
    let Some(centroids) = opened.ivf_model().centroids.clone() else {
        return Ok(None);
    };
    let values = datafusion::arrow::compute::cast(
        centroids.values(),
        &datafusion::arrow::datatypes::DataType::Float32,
    )?;
    Ok(Some(
        values
            .as_primitive::<datafusion::arrow::datatypes::Float32Type>()
            .values()
            .to_vec(),
    ))
}
