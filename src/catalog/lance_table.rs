//! Lance tables: reading versions, writing new versions, history, restore and compaction.
//!
//! Every write commits one new Lance version with a single manifest write at the very end, so a
//! statement that fails or a process that dies half-way leaves the table at its previous version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::execution::SendableRecordBatchStream;
use lance::datafusion::LanceTableProvider;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::optimize::{compact_files, CompactionOptions};
use lance::dataset::{InsertBuilder, WriteMode, WriteParams};
use lance::session::Session;
use lance::Dataset;
use lance_file::version::LanceFileVersion;

use crate::error::{Result, ResultExt};

/// The transaction property in which Vitrine records the operation of each commit.
const OPERATION_PROPERTY: &str = "vitrine.operation";

/// The Lance session every table of the process shares: its metadata and index caches, and its
/// object stores (so that a `memory://` warehouse is one store, not one per open).
fn session() -> Arc<Session> {
    static SESSION: OnceLock<Arc<Session>> = OnceLock::new();
    Arc::clone(SESSION.get_or_init(|| Arc::new(Session::default())))
}

/// Keeps the object store of a `memory://` dataset alive for the rest of the process: Lance's
/// store registry holds stores weakly, and an in-memory store that is dropped loses its data.
async fn keep_memory_store(location: &str, dataset: &Dataset) {
    static MEMORY_STORES: OnceLock<Mutex<Vec<Arc<lance::io::ObjectStore>>>> = OnceLock::new();
    if !location.starts_with("memory:") {
        return;
    }
    if let Ok(store) = dataset.object_store(None).await {
        let mut stores = MEMORY_STORES
            .get_or_init(Default::default)
            .lock()
            .expect("memory stores lock");
        if !stores.iter().any(|s| Arc::ptr_eq(s, &store)) {
            stores.push(store);
        }
    }
}

/// Opens a Lance dataset at its latest version, or at `version`.
pub async fn open(location: &str, version: Option<u64>) -> Result<Dataset> {
    let builder = DatasetBuilder::from_uri(location).with_session(session());
    let builder = match version {
        Some(v) => builder.with_version(v),
        None => builder,
    };
    let dataset = builder.load().await.context(|| match version {
        None => format!("opening Lance dataset '{location}'"),
        Some(v) => format!("reading version {v} of '{location}'"),
    })?;
    keep_memory_store(location, &dataset).await;
    Ok(dataset)
}

/// A DataFusion table over the dataset at its latest version, or at `version`.
pub async fn provider(location: &str, version: Option<u64>) -> Result<Arc<dyn TableProvider>> {
    let dataset = open(location, version).await?;
    Ok(Arc::new(LanceTableProvider::new(
        Arc::new(dataset),
        false,
        false,
    )))
}

/// Whether a Lance dataset exists at `location`.
pub async fn exists(location: &str) -> bool {
    open(location, None).await.is_ok()
}

/// How a write relates to the data already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new table.
    Create,
    /// Replace all rows, as a new version.
    Overwrite,
    /// Add rows, as a new version.
    Append,
}

/// Streams `data` into the dataset as one new version; returns that version. `operation` is
/// recorded in the commit and shown by `DESCRIBE HISTORY`.
pub async fn write(
    location: &str,
    data: SendableRecordBatchStream,
    mode: Mode,
    operation: &str,
) -> Result<u64> {
    let mode = match mode {
        Mode::Create => WriteMode::Create,
        Mode::Overwrite => WriteMode::Overwrite,
        Mode::Append => WriteMode::Append,
    };
    let params = WriteParams {
        mode,
        session: Some(session()),
        // 2.2 is the first stable file format that stores MAP columns.
        data_storage_version: Some(LanceFileVersion::V2_2),
        transaction_properties: Some(Arc::new(HashMap::from([(
            OPERATION_PROPERTY.to_string(),
            operation.to_string(),
        )]))),
        ..Default::default()
    };
    let dataset = InsertBuilder::new(location)
        .with_params(&params)
        .execute_stream(data)
        .await
        .context(|| format!("writing Lance dataset '{location}'"))?;
    keep_memory_store(location, &dataset).await;
    Ok(dataset.version().version)
}

/// One committed version of a table, as `DESCRIBE HISTORY` shows it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// Version number.
    pub version: u64,
    /// Commit time.
    pub timestamp: DateTime<Utc>,
    /// What made the version (`CREATE TABLE AS SELECT`, `WRITE`, `OPTIMIZE`, …).
    pub operation: String,
    /// Rows in the table at that version.
    pub num_rows: Option<u64>,
}

/// Every version of the dataset, newest first.
pub async fn history(location: &str) -> Result<Vec<HistoryEntry>> {
    let dataset = open(location, None).await?;
    let mut entries = Vec::new();
    for v in dataset.versions().await? {
        let transaction = dataset
            .read_transaction_by_version(v.version)
            .await
            .ok()
            .flatten();
        let operation = transaction
            .as_ref()
            .and_then(|t| {
                t.transaction_properties
                    .as_ref()
                    .and_then(|p| p.get(OPERATION_PROPERTY).cloned())
                    .or_else(|| Some(t.operation.name().to_uppercase()))
            })
            .unwrap_or_else(|| "UNKNOWN".to_string());
        let num_rows = match dataset.checkout_version(v.version).await {
            Ok(at) => at.count_rows(None).await.ok().map(|n| n as u64),
            Err(_) => None,
        };
        entries.push(HistoryEntry {
            version: v.version,
            timestamp: v.timestamp,
            operation,
            num_rows,
        });
    }
    entries.reverse();
    Ok(entries)
}

/// Makes the content of `version` the table's newest version; returns the new version number.
pub async fn restore(location: &str, version: u64) -> Result<u64> {
    let mut dataset = open(location, Some(version)).await?;
    dataset
        .restore()
        .await
        .context(|| format!("restoring '{location}' to version {version}"))?;
    Ok(dataset.version().version)
}

/// What `OPTIMIZE` did.
#[derive(Debug, Clone, Default)]
pub struct OptimizeMetrics {
    /// Data files written.
    pub files_added: u64,
    /// Data files (and deletion files) replaced.
    pub files_removed: u64,
    /// Fragments before.
    pub fragments_before: u64,
    /// Fragments after.
    pub fragments_after: u64,
}

/// Compacts small fragments into larger ones (and materialises deletions), as one new version.
pub async fn compact(location: &str) -> Result<OptimizeMetrics> {
    let mut dataset = open(location, None).await?;
    let fragments_before = dataset.count_fragments() as u64;
    let metrics = compact_files(&mut dataset, CompactionOptions::default(), None)
        .await
        .context(|| format!("compacting '{location}'"))?;
    Ok(OptimizeMetrics {
        files_added: metrics.files_added as u64,
        files_removed: metrics.files_removed as u64,
        fragments_before,
        fragments_after: dataset.count_fragments() as u64,
    })
}
