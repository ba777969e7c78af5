//! The storage seam: what a table format does, behind one trait.
//!
//! [`TableStorage`] is everything the engine asks of a format: open a version as a DataFusion
//! table, write and commit a version, the current version, history, restore, and optimize
//! (compaction, Z-ordering), in the terms of [`super::version`]. [`storage()`] picks the
//! implementation for a [`TableFormat`]: Lance ([`super::lance_table`]), Delta
//! ([`super::delta_table`]) or read-only files ([`super::files`]). Nothing outside this module matches on a table's format to decide how
//! to store it; a distributed scan adds its own per-format code here.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::SendableRecordBatchStream;
use futures::TryStreamExt;

use super::scalar_index::{ScalarIndex, ScalarIndexKind};
use super::version::{CommitInfo, HistoryEntry, Mode, OpenedTable, OptimizeMetrics, Upserted};
use super::{
    delta_scan, delta_table, files, lance_scan, lance_table, QualifiedName, TableEntry, TableFormat,
};
use crate::error::{Result, VitrineError};

/// A table format: how tables of it are read, written and versioned. Locations are URIs or
/// local paths as the table entry holds them.
#[async_trait]
pub trait TableStorage: Send + Sync {
    /// Whether data of this format is at `location`.
    async fn exists(&self, location: &str) -> bool;

    /// A DataFusion table over the data at its latest version, or at `version`, and the version
    /// it reads. `options` are the table's `OPTIONS (…)`; `reader` is a session of the engine's
    /// runtime (object stores, schema inference).
    async fn open(
        &self,
        location: &str,
        version: Option<u64>,
        options: &BTreeMap<String, String>,
        reader: &dyn Session,
    ) -> Result<OpenedTable>;

    /// Writes the rows of `partitions` (a plan's output partitions: their rows keep their order
    /// within a partition, and have none across partitions) as one new version, committed only
    /// once all are written; returns the version. A format that can writes the partitions side
    /// by side. `commit` is recorded in the commit and shown by `DESCRIBE HISTORY`.
    async fn write(
        &self,
        location: &str,
        partitions: Vec<SendableRecordBatchStream>,
        mode: Mode,
        commit: &CommitInfo,
    ) -> Result<u64>;

    /// Whether [`Self::upsert`] writes only the rows it is given (otherwise a MERGE rewrites
    /// the whole table).
    fn upserts_in_place(&self) -> bool {
        false
    }

    /// Writes `rows` as one new version in which each row replaces the table's row with the
    /// same values in the `keys` columns, or is added where there is none (MERGE's upsert);
    /// returns the version and how many rows were updated and inserted. `rows` must be unique
    /// on `keys`, with no NULL key.
    async fn upsert(
        &self,
        location: &str,
        rows: SendableRecordBatchStream,
        keys: &[String],
        commit: &CommitInfo,
    ) -> Result<Upserted> {
        let _ = (rows, keys, commit);
        Err(VitrineError::Plan(format!(
            "the table at '{location}' cannot be upserted in place"
        )))
    }

    /// The current version, or `None` for a format without versions.
    async fn version(&self, location: &str) -> Result<Option<u64>>;

    /// Every committed version, newest first.
    async fn history(&self, location: &str) -> Result<Vec<HistoryEntry>>;

    /// Makes the content of `version` the newest version; returns the new version.
    async fn restore(&self, location: &str, version: u64) -> Result<u64>;

    /// Compacts the table's files as a new version; with `zorder_by`, rewrites the rows
    /// clustered along a Z-order curve of those columns, sorting within `runtime`'s memory pool
    /// (spilling to its disk when the session set a memory limit). Scalar indexes are kept,
    /// brought up to date with every row.
    async fn optimize(
        &self,
        location: &str,
        zorder_by: &[String],
        runtime: Arc<RuntimeEnv>,
    ) -> Result<OptimizeMetrics>;

    /// Builds a scalar index `name` of `kind` on `column` as a new version recording `commit`;
    /// returns the version. Fails when the table has an index of that name.
    async fn create_index(
        &self,
        location: &str,
        name: &str,
        column: &str,
        kind: ScalarIndexKind,
        commit: &CommitInfo,
    ) -> Result<u64> {
        let _ = (location, name, column, kind, commit);
        Err(no_indexes())
    }

    /// Drops the scalar index `name` as a new version; returns the version, or `None` when the
    /// table has no such index.
    async fn drop_index(&self, location: &str, name: &str) -> Result<Option<u64>> {
        let _ = (location, name);
        Err(no_indexes())
    }

    /// The table's scalar indexes at its latest version, by name.
    async fn indexes(&self, location: &str) -> Result<Vec<ScalarIndex>> {
        let _ = location;
        Ok(Vec::new())
    }
}

/// The error of a format that keeps no scalar indexes.
fn no_indexes() -> VitrineError {
    VitrineError::Plan(
        "only Lance tables keep scalar indexes (Delta and file tables are clustered with \
         OPTIMIZE … ZORDER BY instead)"
            .into(),
    )
}

/// The storage of tables of `format`; a view has none.
pub fn storage(format: TableFormat) -> Result<&'static dyn TableStorage> {
    match format {
        TableFormat::Lance => Ok(&LanceStorage),
        TableFormat::Delta => Ok(&DeltaStorage),
        TableFormat::Csv => Ok(&FileStorage(TableFormat::Csv)),
        TableFormat::Parquet => Ok(&FileStorage(TableFormat::Parquet)),
        TableFormat::View => Err(VitrineError::Plan(
            "a view is a stored query: it has no storage".into(),
        )),
    }
}

/// Every committed version of a table, newest first; the error names the table when its format
/// has no versions.
pub async fn history(name: &QualifiedName, entry: &TableEntry) -> Result<Vec<HistoryEntry>> {
    if !entry.format.is_writable() {
        return Err(VitrineError::Plan(format!(
            "{name} is a {} table: it has no versions",
            entry.format
        )));
    }
    storage(entry.format)?.history(&entry.location).await
}

/// Which format the data at `location` is in: a Delta log, a Lance dataset, else files by their
/// suffix.
pub async fn detect_format(location: &str) -> Result<TableFormat> {
    for format in [TableFormat::Delta, TableFormat::Lance] {
        if storage(format)?.exists(location).await {
            return Ok(format);
        }
    }
    let lower = location.to_lowercase();
    for (suffix, format) in [
        (".csv", TableFormat::Csv),
        (".parquet", TableFormat::Parquet),
    ] {
        if lower.ends_with(suffix) || lower.ends_with(&format!("{suffix}/")) {
            return Ok(format);
        }
    }
    Err(VitrineError::Plan(format!(
        "cannot tell the format of '{location}': add USING DELTA|LANCE|CSV|PARQUET"
    )))
}

/// Lance datasets: streamed writes, versions, compaction, Z-order by rewriting.
struct LanceStorage;

#[async_trait]
impl TableStorage for LanceStorage {
    async fn exists(&self, location: &str) -> bool {
        lance_table::exists(location).await
    }

    async fn open(
        &self,
        location: &str,
        version: Option<u64>,
        _options: &BTreeMap<String, String>,
        _reader: &dyn Session,
    ) -> Result<OpenedTable> {
        lance_scan::provider(location, version).await
    }

    async fn write(
        &self,
        location: &str,
        partitions: Vec<SendableRecordBatchStream>,
        mode: Mode,
        commit: &CommitInfo,
    ) -> Result<u64> {
        lance_table::write_partitions(location, partitions, mode, commit).await
    }

    fn upserts_in_place(&self) -> bool {
        true
    }

    async fn upsert(
        &self,
        location: &str,
        rows: SendableRecordBatchStream,
        keys: &[String],
        commit: &CommitInfo,
    ) -> Result<Upserted> {
        lance_table::upsert(location, rows, keys, commit).await
    }

    async fn version(&self, location: &str) -> Result<Option<u64>> {
        Ok(Some(
            lance_table::open(location, None).await?.version().version,
        ))
    }

    async fn history(&self, location: &str) -> Result<Vec<HistoryEntry>> {
        lance_table::history(location).await
    }

    async fn restore(&self, location: &str, version: u64) -> Result<u64> {
        lance_table::restore(location, version).await
    }

    async fn create_index(
        &self,
        location: &str,
        name: &str,
        column: &str,
        kind: ScalarIndexKind,
        commit: &CommitInfo,
    ) -> Result<u64> {
        lance_table::create_index(location, name, column, kind, commit).await
    }

    async fn drop_index(&self, location: &str, name: &str) -> Result<Option<u64>> {
        lance_table::drop_index(location, name).await
    }

    async fn indexes(&self, location: &str) -> Result<Vec<ScalarIndex>> {
        lance_table::indexes(&lance_table::open(location, None).await?).await
    }

    async fn optimize(
        &self,
        location: &str,
        zorder_by: &[String],
        runtime: Arc<RuntimeEnv>,
    ) -> Result<OptimizeMetrics> {
        if zorder_by.is_empty() {
            lance_table::compact(location).await
        } else {
            lance_table::zorder(location, zorder_by, runtime).await
        }
    }
}

/// Delta Lake tables, as Databricks writes them.
struct DeltaStorage;

#[async_trait]
impl TableStorage for DeltaStorage {
    async fn exists(&self, location: &str) -> bool {
        delta_table::exists(location).await
    }

    async fn open(
        &self,
        location: &str,
        version: Option<u64>,
        _options: &BTreeMap<String, String>,
        reader: &dyn Session,
    ) -> Result<OpenedTable> {
        delta_scan::provider(location, version, reader).await
    }

    async fn write(
        &self,
        location: &str,
        partitions: Vec<SendableRecordBatchStream>,
        mode: Mode,
        commit: &CommitInfo,
    ) -> Result<u64> {
        let batches = futures::stream::select_all(partitions)
            .try_collect()
            .await?;
        delta_table::write(location, batches, mode, commit).await
    }

    async fn version(&self, location: &str) -> Result<Option<u64>> {
        let table = delta_table::open(location, None).await?;
        Ok(table.version())
    }

    async fn history(&self, location: &str) -> Result<Vec<HistoryEntry>> {
        delta_table::history(location).await
    }

    async fn restore(&self, location: &str, version: u64) -> Result<u64> {
        delta_table::restore(location, version).await
    }

    async fn optimize(
        &self,
        location: &str,
        zorder_by: &[String],
        _runtime: Arc<RuntimeEnv>,
    ) -> Result<OptimizeMetrics> {
        delta_table::optimize(location, zorder_by).await
    }
}

/// CSV or Parquet files, attached read-only.
struct FileStorage(TableFormat);

impl FileStorage {
    fn read_only(&self) -> VitrineError {
        VitrineError::Plan(format!("{} tables are read-only", self.0))
    }

    fn unversioned(&self) -> VitrineError {
        VitrineError::Plan(format!("{} tables have no versions", self.0))
    }
}

#[async_trait]
impl TableStorage for FileStorage {
    async fn exists(&self, _location: &str) -> bool {
        false
    }

    async fn open(
        &self,
        location: &str,
        version: Option<u64>,
        options: &BTreeMap<String, String>,
        reader: &dyn Session,
    ) -> Result<OpenedTable> {
        if version.is_some() {
            return Err(self.unversioned());
        }
        Ok(OpenedTable {
            provider: files::provider(location, self.0, options, reader).await?,
            version: None,
        })
    }

    async fn write(
        &self,
        _location: &str,
        _partitions: Vec<SendableRecordBatchStream>,
        _mode: Mode,
        _commit: &CommitInfo,
    ) -> Result<u64> {
        Err(self.read_only())
    }

    async fn version(&self, _location: &str) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn history(&self, _location: &str) -> Result<Vec<HistoryEntry>> {
        Err(self.unversioned())
    }

    async fn restore(&self, _location: &str, _version: u64) -> Result<u64> {
        Err(self.unversioned())
    }

    async fn optimize(
        &self,
        _location: &str,
        _zorder_by: &[String],
        _runtime: Arc<RuntimeEnv>,
    ) -> Result<OptimizeMetrics> {
        Err(self.read_only())
    }
}
