//! Lance tables: reading versions, writing new versions, history, restore, compaction and
//! Z-ordering.
//!
//! Every write commits one new Lance version with a single manifest write at the very end, so a
//! statement that fails or a process that dies half-way leaves the table at its previous version.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{ident, SessionConfig, SessionContext};
use lance::datafusion::LanceTableProvider;
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::optimize::{compact_files, CompactionOptions};
use lance::dataset::transaction::{Operation, Transaction};
use lance::dataset::{
    CommitBuilder, InsertBuilder, MergeInsertBuilder, WhenMatched, WhenNotMatched,
    WriteDestination, WriteMode, WriteParams,
};
use lance::index::DatasetIndexExt;
use lance::session::Session;
use lance::table::format::Fragment;
use lance::Dataset;
use lance_file::version::LanceFileVersion;
use lance_index::optimize::OptimizeOptions;
use lance_index::scalar::{BuiltinIndexType, ScalarIndexParams};
use lance_index::IndexType;

use super::bucket_sort::{bucket_budget, sort_by_key};
use super::scalar_index::{ScalarIndex, ScalarIndexKind};
use super::version::{CommitInfo, HistoryEntry, Mode, OptimizeMetrics, Upserted};
use super::zorder::ZOrder;
use crate::error::{Result, ResultExt, VitrineError};

/// The Lance session every table of the process shares: its metadata and index caches, and its
/// object stores (so that a `memory://` warehouse is one store, not one per open).
fn session() -> Arc<Session> {
    static SESSION: OnceLock<Arc<Session>> = OnceLock::new();
    Arc::clone(SESSION.get_or_init(|| Arc::new(Session::default())))
}

/// Keeps the object store of a `memory://` location alive for the rest of the process: Lance's
/// store registry holds stores weakly, and an in-memory store that is dropped loses its data
/// (even between the writers' files and the commit that adds them).
async fn keep_memory_store(location: &str) {
    static MEMORY_STORES: OnceLock<Mutex<Vec<Arc<lance::io::ObjectStore>>>> = OnceLock::new();
    if !location.starts_with("memory:") {
        return;
    }
    let resolved = lance::io::ObjectStore::from_uri_and_params(
        session().store_registry(),
        location,
        &lance::io::ObjectStoreParams::default(),
    )
    .await;
    if let Ok((store, _)) = resolved {
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
    keep_memory_store(location).await;
    Ok(dataset)
}

/// Whether a Lance dataset exists at `location`.
pub async fn exists(location: &str) -> bool {
    open(location, None).await.is_ok()
}

/// Streams `data` into the dataset as one new version; returns that version. `commit` is
/// recorded in the transaction's properties and shown by `DESCRIBE HISTORY`.
pub async fn write(
    location: &str,
    data: SendableRecordBatchStream,
    mode: Mode,
    commit: &CommitInfo,
) -> Result<u64> {
    write_partitions(location, vec![data], mode, commit).await
}

/// How many file writers one write runs at once: one per core. Lance's writer encodes a
/// batch's pages before it takes the next batch, so one writer keeps about one core busy; each
/// buffers up to 8 MiB per column.
fn writer_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Writes the rows of `partitions` into the dataset as one new version, each partition by a
/// file writer of its own, all at once; returns that version. The new fragments follow the
/// partitions' order. Beyond [`writer_count`] partitions, several share a writer, their rows
/// interleaved. `commit` is recorded in the transaction's properties and shown by `DESCRIBE
/// HISTORY`.
pub async fn write_partitions(
    location: &str,
    partitions: Vec<SendableRecordBatchStream>,
    mode: Mode,
    commit: &CommitInfo,
) -> Result<u64> {
    let mut partitions = at_most(partitions, writer_count());
    let mode = match mode {
        Mode::Create => WriteMode::Create,
        Mode::Overwrite => WriteMode::Overwrite,
        Mode::Append => WriteMode::Append,
        Mode::Replace { read_version } => {
            return replace(location, partitions, read_version, commit).await;
        }
    };
    let params = WriteParams {
        mode,
        session: Some(session()),
        // 2.2 is the first stable file format that stores MAP columns.
        data_storage_version: Some(LanceFileVersion::V2_2),
        transaction_properties: Some(transaction_properties(commit)),
        ..Default::default()
    };
    let context = || format!("writing Lance dataset '{location}'");
    keep_memory_store(location).await;
    if partitions.len() == 1 {
        let data = partitions.pop().expect("one partition");
        let dataset = InsertBuilder::new(location)
            .with_params(&params)
            .execute_stream(data)
            .await
            .context(context)?;
        return Ok(dataset.version().version);
    }
    // Every writer writes against the same version (none for a new dataset).
    let existing = match mode {
        WriteMode::Create => None,
        WriteMode::Append | WriteMode::Overwrite => open(location, None).await.ok().map(Arc::new),
    };
    let destination = || match &existing {
        Some(dataset) => WriteDestination::Dataset(Arc::clone(dataset)),
        None => WriteDestination::Uri(location),
    };
    let written = write_uncommitted(location, existing.clone(), &params, partitions)
        .await
        .map_err(|e| e.context(context()))?;
    let dataset = CommitBuilder::new(destination())
        .with_session(session())
        .with_storage_format(LanceFileVersion::V2_2)
        .execute(concatenated(written))
        .await
        .context(context)?;
    Ok(dataset.version().version)
}

/// `partitions` as at most `count` streams, the extra partitions dealt round the first ones and
/// read as their batches come.
fn at_most(
    partitions: Vec<SendableRecordBatchStream>,
    count: usize,
) -> Vec<SendableRecordBatchStream> {
    let count = count.max(1);
    if partitions.len() <= count {
        return partitions;
    }
    let schema = partitions[0].schema();
    let mut groups: Vec<Vec<SendableRecordBatchStream>> = (0..count).map(|_| Vec::new()).collect();
    for (index, partition) in partitions.into_iter().enumerate() {
        groups[index % count].push(partition);
    }
    groups
        .into_iter()
        .map(|group| {
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&schema),
                futures::stream::select_all(group),
            )) as SendableRecordBatchStream
        })
        .collect()
}

/// Writes each of `partitions` into uncommitted data files with a writer of its own (a task
/// each, so that they run at once), against `existing` (or a new dataset at `location`);
/// returns their transactions in the partitions' order. One writer failing stops the others.
async fn write_uncommitted(
    location: &str,
    existing: Option<Arc<Dataset>>,
    params: &WriteParams,
    partitions: Vec<SendableRecordBatchStream>,
) -> std::result::Result<Vec<Transaction>, VitrineError> {
    let mut writers = tokio::task::JoinSet::new();
    for (index, rows) in partitions.into_iter().enumerate() {
        let (location, existing, params) = (location.to_string(), existing.clone(), params.clone());
        writers.spawn(async move {
            let destination = match existing {
                Some(dataset) => WriteDestination::Dataset(dataset),
                None => WriteDestination::Uri(&location),
            };
            let written = InsertBuilder::new(destination)
                .with_params(&params)
                .execute_uncommitted_stream(rows)
                .await;
            (index, written)
        });
    }
    let mut written = Vec::new();
    while let Some(finished) = writers.join_next().await {
        let (index, transaction) =
            finished.map_err(|e| VitrineError::Plan(format!("a writer task stopped: {e}")))?;
        written.push((index, transaction?));
    }
    written.sort_by_key(|(index, _)| *index);
    Ok(written.into_iter().map(|(_, t)| t).collect())
}

/// The new fragments of an uncommitted append or overwrite.
fn new_fragments(operation: &mut Operation) -> &mut Vec<Fragment> {
    match operation {
        Operation::Append { fragments } | Operation::Overwrite { fragments, .. } => fragments,
        other => unreachable!("an insert writes an append or an overwrite, not {other}"),
    }
}

/// One transaction adding the fragments of every one of `written` (uncommitted writes of the
/// same kind against the same version), in their order. Lance numbers new fragments in list
/// order as it commits.
fn concatenated(written: Vec<Transaction>) -> Transaction {
    let mut written = written.into_iter();
    let mut first = written.next().expect("at least one writer");
    for mut next in written {
        let more = std::mem::take(new_fragments(&mut next.operation));
        new_fragments(&mut first.operation).extend(more);
    }
    first
}

/// Replaces the rows of version `read_version` with the rows of `partitions` (written side by
/// side, as [`write_partitions`] does), as one new version: Lance's update transaction removing
/// every fragment that version had and adding the new ones. Lance checks it against the commits
/// made since: one that changed or removed those fragments (another rewrite, a delete, a
/// compaction) makes it fail; fragments appended since are kept.
async fn replace(
    location: &str,
    partitions: Vec<SendableRecordBatchStream>,
    read_version: u64,
    commit: &CommitInfo,
) -> Result<u64> {
    let context = || format!("rewriting version {read_version} of Lance dataset '{location}'");
    let read = Arc::new(open(location, Some(read_version)).await?);
    let params = WriteParams {
        mode: WriteMode::Append,
        session: Some(session()),
        ..Default::default()
    };
    let fragments = write_uncommitted(location, Some(Arc::clone(&read)), &params, partitions)
        .await
        .map_err(|e| e.context(context()))?
        .into_iter()
        .flat_map(|mut appended| std::mem::take(new_fragments(&mut appended.operation)))
        .collect();
    let removed_fragment_ids = read.get_fragments().iter().map(|f| f.id() as u64).collect();
    let mut transaction = Transaction::new(
        read_version,
        Operation::Update {
            removed_fragment_ids,
            updated_fragments: Vec::new(),
            new_fragments: fragments,
            fields_modified: Vec::new(),
            merged_generations: Vec::new(),
            fields_for_preserving_frag_bitmap: Vec::new(),
            update_mode: None,
            inserted_rows_filter: None,
            updated_fragment_offsets: None,
        },
        None,
    );
    transaction.transaction_properties = Some(transaction_properties(commit));
    let dataset = CommitBuilder::new(read)
        .with_session(session())
        .execute(transaction)
        .await
        .map_err(|e| conflict_or(e, location, read_version))?;
    Ok(dataset.version().version)
}

/// A failed commit's error: a conflict with another writer said plainly.
fn conflict_or(error: lance::Error, location: &str, read_version: u64) -> VitrineError {
    match error {
        lance::Error::CommitConflict { .. }
        | lance::Error::RetryableCommitConflict { .. }
        | lance::Error::IncompatibleTransaction { .. } => VitrineError::Plan(format!(
            "another writer changed the rows of '{location}' that this statement read (version \
             {read_version}) before it could commit; nothing was written: run it again ({error})"
        )),
        other => VitrineError::from(other).context(format!(
            "rewriting version {read_version} of Lance dataset '{location}'"
        )),
    }
}

/// Upserts `data` into the dataset as one new version (Lance's merge-insert): each row replaces
/// the row with the same `keys`, or is added. Only the new rows are written; the replaced rows
/// are marked deleted in their fragments. Returns the version and Lance's row counts.
pub async fn upsert(
    location: &str,
    data: SendableRecordBatchStream,
    keys: &[String],
    commit: &CommitInfo,
) -> Result<Upserted> {
    let dataset = Arc::new(open(location, None).await?);
    let context = || format!("upserting into Lance dataset '{location}'");
    let job = MergeInsertBuilder::try_new(Arc::clone(&dataset), keys.to_vec())
        .and_then(|mut builder| {
            builder
                .when_matched(WhenMatched::UpdateAll)
                .when_not_matched(WhenNotMatched::InsertAll)
                .try_build()
        })
        .context(context)?;
    let mut merged = job.execute_uncommitted(data).await.context(context)?;
    merged.transaction.transaction_properties = Some(transaction_properties(commit));
    let dataset = CommitBuilder::new(dataset)
        .with_session(session())
        .execute(merged.transaction)
        .await
        .context(context)?;
    Ok(Upserted {
        version: dataset.version().version,
        updated: merged.stats.num_updated_rows,
        inserted: merged.stats.num_inserted_rows,
    })
}

/// The transaction properties recording `commit`.
fn transaction_properties(commit: &CommitInfo) -> Arc<HashMap<String, String>> {
    Arc::new(commit.properties().into_iter().collect())
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
        let commit = transaction
            .as_ref()
            .and_then(|t| {
                t.transaction_properties
                    .as_ref()
                    .and_then(|p| CommitInfo::from_properties(|k| p.get(k).cloned()))
                    .or_else(|| Some(CommitInfo::operation(operation_name(t.operation.name()))))
            })
            .unwrap_or_else(|| CommitInfo::operation("UNKNOWN"));
        let num_rows = match dataset.checkout_version(v.version).await {
            Ok(at) => at.count_rows(None).await.ok().map(|n| n as u64),
            Err(_) => None,
        };
        entries.push(HistoryEntry {
            version: v.version,
            timestamp: v.timestamp,
            commit,
            num_rows,
        });
    }
    entries.reverse();
    Ok(entries)
}

/// The name `DESCRIBE HISTORY` shows for a commit of Lance's own `operation` (one Vitrine did
/// not label): Databricks' name where there is one, else Lance's in capitals.
fn operation_name(operation: &str) -> String {
    match operation {
        // Lance's compaction: Databricks calls it OPTIMIZE.
        "Rewrite" => "OPTIMIZE".to_string(),
        // Building, updating or dropping an index.
        "CreateIndex" => "INDEX".to_string(),
        other => other.to_uppercase(),
    }
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

/// Compacts small fragments into larger ones (and materialises deletions), as one new version,
/// then brings the scalar indexes up to date with rows written since they were built (another
/// version, when any row was missing).
pub async fn compact(location: &str) -> Result<OptimizeMetrics> {
    let mut dataset = open(location, None).await?;
    let fragments_before = dataset.count_fragments() as u64;
    let metrics = compact_files(&mut dataset, CompactionOptions::default(), None)
        .await
        .context(|| format!("compacting '{location}'"))?;
    if indexes(&dataset)
        .await?
        .iter()
        .any(|i| i.unindexed_rows > 0)
    {
        dataset
            .optimize_indices(&OptimizeOptions::merge(1))
            .await
            .context(|| format!("bringing the indexes of '{location}' up to date"))?;
    }
    Ok(OptimizeMetrics {
        files_added: metrics.files_added as u64,
        files_removed: metrics.files_removed as u64,
        fragments_before,
        fragments_after: dataset.count_fragments() as u64,
    })
}

/// Rewrites the dataset's rows ordered along a Z-order curve of `columns` (each row's key from
/// the ranks of its values, `zorder.rs`) as one new version, so that rows close in every column
/// share fragments, sorted bucket by bucket in memory bounded by `runtime`'s limit
/// (`bucket_sort.rs`) and written as one contiguous run of buckets per core, side by side;
/// then builds its scalar indexes again over the rewritten rows (one version each).
pub async fn zorder(
    location: &str,
    columns: &[String],
    runtime: Arc<RuntimeEnv>,
) -> Result<OptimizeMetrics> {
    let before = Arc::new(open(location, None).await?);
    let fragments_before = before.count_fragments() as u64;
    let files_before = data_files(&before);
    let kept = indexes(&before).await?;
    let context = SessionContext::new_with_config_rt(SessionConfig::new(), Arc::clone(&runtime));
    let started = std::time::Instant::now();
    let ZOrder { key, histogram } = ZOrder::of(&context, &before, columns)
        .await
        .context(|| format!("ordering '{location}' by {}", columns.join(", ")))?;
    let table = context.read_table(Arc::new(LanceTableProvider::new(before, false, false)))?;
    let names: Vec<_> = table
        .schema()
        .fields()
        .iter()
        .map(|f| ident(f.name()))
        .collect();
    let keyed = table.select(names.iter().cloned().chain([key]).collect::<Vec<_>>())?;
    let counted = started.elapsed();
    // One run of the sorted rows per writer, written side by side.
    let runs = context
        .copied_config()
        .target_partitions()
        .min(writer_count());
    let ordered = sort_by_key(
        keyed.execute_stream_partitioned().await?,
        names.len(),
        histogram,
        bucket_budget(&runtime),
        runs,
        &runtime,
    )
    .await
    .context(|| format!("ordering '{location}' by {}", columns.join(", ")))?;
    let bucketed = started.elapsed();
    write_partitions(
        location,
        ordered,
        Mode::Overwrite,
        &CommitInfo::operation("OPTIMIZE ZORDER").with_parameter(
            "zOrderBy",
            serde_json::to_string(columns).expect("strings are JSON"),
        ),
    )
    .await
    .context(|| format!("clustering '{location}' by {}", columns.join(", ")))?;
    tracing::debug!(
        ?counted,
        ?bucketed,
        written = ?started.elapsed(),
        "Z-order rewrite of '{location}': time at the end of each pass"
    );
    for index in kept {
        if let Ok(kind) = index.kind.parse() {
            let commit = CommitInfo::operation("CREATE INDEX")
                .with_parameter("name", index.name.clone())
                .with_parameter("column", index.column.clone())
                .with_parameter("kind", index.kind.clone());
            create_index(location, &index.name, &index.column, kind, &commit).await?;
        }
    }
    let after = open(location, None).await?;
    Ok(OptimizeMetrics {
        files_added: data_files(&after),
        files_removed: files_before,
        fragments_before,
        fragments_after: after.count_fragments() as u64,
    })
}

fn data_files(dataset: &Dataset) -> u64 {
    dataset
        .get_fragments()
        .iter()
        .map(|f| f.metadata().files.len() as u64)
        .sum()
}

/// Builds the scalar index `name` of `kind` on `column`, as one new version recording `commit`;
/// returns the version.
pub async fn create_index(
    location: &str,
    name: &str,
    column: &str,
    kind: ScalarIndexKind,
    commit: &CommitInfo,
) -> Result<u64> {
    let mut dataset = open(location, None).await?;
    let (index_type, params) = match kind {
        ScalarIndexKind::BTree => (IndexType::BTree, BuiltinIndexType::BTree),
        ScalarIndexKind::Bitmap => (IndexType::Bitmap, BuiltinIndexType::Bitmap),
    };
    let params = ScalarIndexParams::for_builtin(params);
    dataset
        .create_index_builder(&[column], index_type, &params)
        .name(name.to_string())
        .transaction_properties(commit.properties().into_iter().collect())
        .await
        .context(|| format!("building index '{name}' on column '{column}' of '{location}'"))?;
    Ok(dataset.version().version)
}

/// Drops the scalar index `name` as one new version; `None` when there is no such index.
pub async fn drop_index(location: &str, name: &str) -> Result<Option<u64>> {
    let mut dataset = open(location, None).await?;
    if dataset.load_indices_by_name(name).await?.is_empty() {
        return Ok(None);
    }
    dataset
        .drop_index(name)
        .await
        .context(|| format!("dropping index '{name}' of '{location}'"))?;
    Ok(Some(dataset.version().version))
}

/// The scalar indexes of `dataset`'s version, by name, with how many rows each covers.
pub async fn indexes(dataset: &Dataset) -> Result<Vec<ScalarIndex>> {
    let fragments = dataset.get_fragments();
    let rows_of = |ids: &dyn Fn(u64) -> bool| -> u64 {
        fragments
            .iter()
            .filter(|f| ids(f.id() as u64))
            .map(|f| f.metadata().num_rows().unwrap_or(0) as u64)
            .sum()
    };
    let mut found = Vec::new();
    for description in dataset.describe_indices(None).await? {
        let segments = description.metadata();
        let Some(field) = segments
            .first()
            .and_then(|s| s.fields.first())
            .and_then(|id| dataset.schema().field_by_id(*id))
        else {
            continue;
        };
        let covered = |id: u64| {
            segments.iter().any(|s| {
                s.fragment_bitmap
                    .as_ref()
                    .is_some_and(|b| b.contains(id as u32))
            })
        };
        found.push(ScalarIndex {
            name: description.name().to_string(),
            column: field.name.clone(),
            kind: description.index_type().to_string(),
            indexed_rows: rows_of(&covered),
            unindexed_rows: rows_of(&|id| !covered(id)),
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    #[tokio::test]
    async fn partitions_beyond_the_writers_share_them_and_keep_every_row() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let partition = |values: Vec<i64>| -> SendableRecordBatchStream {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from(values))],
            )
            .unwrap();
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&schema),
                futures::stream::iter([Ok(batch)]),
            ))
        };
        let partitions = (0..5)
            .map(|p| partition(vec![p * 10, p * 10 + 1]))
            .collect();
        let streams = at_most(partitions, 2);
        assert_eq!(streams.len(), 2);
        let mut seen = Vec::new();
        for stream in streams {
            for batch in futures::TryStreamExt::try_collect::<Vec<_>>(stream)
                .await
                .unwrap()
            {
                seen.extend(
                    batch
                        .column(0)
                        .as_primitive::<Int64Type>()
                        .values()
                        .to_vec(),
                );
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 10, 11, 20, 21, 30, 31, 40, 41]);
        // No more partitions than writers: each is its own stream, in order.
        assert_eq!(at_most(vec![partition(vec![1])], 2).len(), 1);
    }
}
