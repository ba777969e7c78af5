//! Delta Lake tables, as Databricks keeps them: attach and read (at any version), write new
//! versions, history, restore and optimize (with Z-ordering), through the `deltalake` crate.

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::Session;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::optimize::OptimizeType;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use url::Url;

use super::version::{CommitInfo, HistoryEntry, Mode, OpenedTable, OptimizeMetrics};
use crate::error::{Result, ResultExt, VitrineError};

/// Registers deltalake's S3, GCS and Azure storage handlers, once per process, so that Delta
/// tables on object stores open like local ones.
fn register_object_stores() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        deltalake::aws::register_handlers(None);
        deltalake::gcp::register_handlers(None);
        deltalake::azure::register_handlers(None);
    });
}

/// The Delta table URL of a location (an absolute local path or a URL).
pub fn table_url(location: &str) -> Result<Url> {
    register_object_stores();
    if let Ok(url) = Url::parse(location) {
        if url.scheme().len() > 1 {
            return Ok(url);
        }
    }
    Url::from_directory_path(location)
        .map_err(|_| VitrineError::Plan(format!("'{location}' is not an absolute path or URL")))
}

/// Opens the Delta table at its latest version, or at `version`.
pub async fn open(location: &str, version: Option<u64>) -> Result<DeltaTable> {
    let url = table_url(location)?;
    let table = match version {
        None => deltalake::open_table(url).await,
        Some(v) => deltalake::open_table_with_version(url, v).await,
    };
    table.context(|| match version {
        None => format!("opening Delta table '{location}'"),
        Some(v) => format!("reading version {v} of Delta table '{location}'"),
    })
}

/// Whether a Delta table exists at `location`.
/// Looks for the table's log without opening it (opening a folder with no log logs errors).
pub async fn exists(location: &str) -> bool {
    let Ok(url) = table_url(location) else {
        return false;
    };
    match deltalake::DeltaTableBuilder::from_url(url).and_then(|b| b.build_storage()) {
        Ok(store) => store.is_delta_table_location().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// A DataFusion table over the Delta table at its latest version, or at `version`; registers
/// the table's object store with `session`.
pub async fn provider(
    location: &str,
    version: Option<u64>,
    session: &dyn Session,
) -> Result<OpenedTable> {
    let table = open(location, version).await?;
    table.update_datafusion_session(session)?;
    let provider = table
        .table_provider()
        .await
        .context(|| format!("reading Delta table '{location}'"))?;
    Ok(OpenedTable {
        provider,
        version: table.version(),
    })
}

/// Writes `batches` as one new Delta version; returns that version.
pub async fn write(
    location: &str,
    batches: Vec<RecordBatch>,
    mode: Mode,
    commit: &CommitInfo,
) -> Result<u64> {
    let url = table_url(location)?;
    if let Ok(path) = url.to_file_path() {
        std::fs::create_dir_all(&path).context(|| format!("creating '{location}'"))?;
    }
    // A rewrite commits on top of the version it read: deltalake checks the commits made since
    // and refuses one that changed or added the rows read.
    let table = match mode {
        Mode::Replace { read_version } => open(location, Some(read_version)).await?,
        _ => DeltaTable::try_from_url(url)
            .await
            .context(|| format!("opening Delta table '{location}'"))?,
    };
    let save_mode = match mode {
        Mode::Create => SaveMode::ErrorIfExists,
        Mode::Overwrite | Mode::Replace { .. } => SaveMode::Overwrite,
        Mode::Append => SaveMode::Append,
    };
    let properties = CommitProperties::default().with_metadata(
        commit
            .properties()
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::from(v))),
    );
    let table = table
        .write(batches)
        .with_save_mode(save_mode)
        .with_commit_properties(properties)
        .await
        .context(|| format!("writing Delta table '{location}'"))?;
    Ok(table.version().unwrap_or_default() as u64)
}

/// Every version of the table, newest first.
pub async fn history(location: &str) -> Result<Vec<HistoryEntry>> {
    let table = open(location, None).await?;
    let latest = table.version().unwrap_or_default() as u64;
    let mut entries = Vec::new();
    for (i, info) in table.history(None).await?.enumerate() {
        let commit = CommitInfo::from_properties(|k| {
            info.info
                .get(k)
                .and_then(|v| v.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| {
            CommitInfo::operation(info.operation.clone().unwrap_or_else(|| "UNKNOWN".into()))
        });
        let timestamp = info
            .timestamp
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or_default();
        entries.push(HistoryEntry {
            version: latest.saturating_sub(i as u64),
            timestamp,
            commit,
            num_rows: None,
        });
    }
    Ok(entries)
}

/// Makes the content of `version` the newest version; returns the new version number.
pub async fn restore(location: &str, version: u64) -> Result<u64> {
    let table = open(location, None).await?;
    let (table, _) = table
        .restore()
        .with_version_to_restore(version)
        .await
        .context(|| format!("restoring Delta table '{location}' to version {version}"))?;
    Ok(table.version().unwrap_or_default())
}

/// Compacts small files, Z-ordering by `zorder_by` when given.
pub async fn optimize(location: &str, zorder_by: &[String]) -> Result<OptimizeMetrics> {
    let table = open(location, None).await?;
    let fragments_before = table.snapshot()?.log_data().num_files() as u64;
    let optimize_type = if zorder_by.is_empty() {
        OptimizeType::Compact
    } else {
        OptimizeType::ZOrder(zorder_by.to_vec())
    };
    let (table, metrics) = table
        .optimize()
        .with_type(optimize_type)
        .await
        .context(|| format!("optimizing Delta table '{location}'"))?;
    Ok(OptimizeMetrics {
        files_added: metrics.num_files_added,
        files_removed: metrics.num_files_removed,
        fragments_before,
        fragments_after: table.snapshot()?.log_data().num_files() as u64,
    })
}
