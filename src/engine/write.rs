//! Statements that write: `CREATE TABLE`, `INSERT`, `DELETE`, `UPDATE`, `MERGE`, `OPTIMIZE`,
//! `RESTORE`. Each commits at most one new table version, and only after all its data is written;
//! the catalog entry is written last. The one exception is asked for: with
//! `vitrine.write.commit_rows` set, an `INSERT INTO` a Lance table commits every so many rows, so
//! that a long model statement stopped half-way keeps what it did.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    execute_stream, execute_stream_partitioned, ExecutionPlan, ExecutionPlanProperties,
    Partitioning,
};
use datafusion::prelude::DataFrame;
use datafusion::sql::sqlparser::ast::{self, Expr, Query};
use futures::{StreamExt, TryStreamExt};

use super::conform;
use crate::catalog::storage::detect_format;
use crate::catalog::version::{CommitInfo, Mode, Upserted};
use crate::catalog::{storage, QualifiedName, TableEntry, TableFormat, TableName, TableStorage};
use crate::error::{Result, VitrineError};
use crate::session::{scanned_rows, Session, StatementResult, TableWrite};
use crate::sql::dml::{delete_queries, merge_queries, update_queries, Upsert};
use crate::sql::parser::{single_table, CreateTable};

/// How [`commit`] writes, beyond its mode.
#[derive(Debug, Default, Clone, Copy)]
struct WriteOptions {
    /// For an append: commit a version every so many rows.
    chunk_rows: Option<usize>,
    /// Store every column as nullable, as Spark's `CREATE TABLE … AS SELECT` does whatever
    /// the query's columns are (a column `CAST(id AS INT)` over `range` still takes NULLs later).
    nullable: bool,
}

/// `plan` without the round-robin repartition that DataFusion may put between a query's
/// `ORDER BY` (one sorted stream) and the per-row operators above it (the columns' last
/// conversions), which would deal the sorted rows out to several writers: the table keeps the
/// order the query asked for, written by one writer.
fn in_its_order(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(repartition) = plan.as_any().downcast_ref::<RepartitionExec>() {
        let input = repartition.input();
        let sorted_stream =
            input.output_partitioning().partition_count() == 1 && input.output_ordering().is_some();
        if matches!(repartition.partitioning(), Partitioning::RoundRobinBatch(_)) && sorted_stream {
            return Ok(Arc::clone(input));
        }
        return Ok(plan);
    }
    let per_row = plan.as_any().is::<ProjectionExec>() || plan.as_any().is::<FilterExec>();
    match plan.children().as_slice() {
        [child] if per_row => {
            let kept = in_its_order(Arc::clone(child))?;
            if Arc::ptr_eq(&kept, child) {
                Ok(plan)
            } else {
                Ok(plan.with_new_children(vec![kept])?)
            }
        }
        _ => Ok(plan),
    }
}

/// Writes `df` into the table as one new version, or, for an append with `chunk_rows`, as one
/// version per `chunk_rows` rows, recording `info` in each commit and the write in the
/// statement's lineage; returns the (last) version and the rows written.
async fn commit(
    session: &dyn Session,
    entry: &TableEntry,
    name: &QualifiedName,
    df: DataFrame,
    mode: Mode,
    info: &CommitInfo,
    options: WriteOptions,
) -> Result<(u64, usize)> {
    let storage = storage(entry.format)?;
    // An append is already in the table's types (`conform::to_table`), which it must keep.
    let df = match mode {
        Mode::Append | Mode::Replace { .. } => df,
        Mode::Create | Mode::Overwrite => conform::to_storage(df)?,
    };
    let rows = Arc::new(AtomicUsize::new(0));
    let task = Arc::new(df.task_ctx());
    let plan = in_its_order(df.create_physical_plan().await?)?;
    tracing::debug!(
        "writing {name}:\n{}",
        datafusion::physical_plan::displayable(plan.as_ref()).indent(true)
    );
    session.model_functions().expect_rows(input_rows(&plan));
    // An append committed in chunks takes the rows as one stream; any other write takes the
    // plan's partitions, which a format may write side by side.
    let chunked = options.chunk_rows.filter(|_| mode == Mode::Append);
    let partitions = match chunked {
        Some(_) => vec![execute_stream(Arc::clone(&plan), task)?],
        None => execute_stream_partitioned(Arc::clone(&plan), task)?,
    };
    let progress = session.write_progress();
    let partitions: Vec<_> = partitions
        .into_iter()
        .map(|partition| {
            let stream = if options.nullable {
                all_nullable(partition)
            } else {
                partition
            };
            let schema = stream.schema();
            let (counter, progress) = (Arc::clone(&rows), progress.clone());
            let counted = stream.inspect_ok(move |b| {
                let total = counter.fetch_add(b.num_rows(), Ordering::Relaxed) + b.num_rows();
                if let Some(report) = &progress {
                    report(total);
                }
            });
            Box::pin(RecordBatchStreamAdapter::new(schema, counted)) as SendableRecordBatchStream
        })
        .collect();
    let version = match chunked {
        Some(chunk) => {
            let stream = partitions.into_iter().next().expect("one stream");
            append_in_chunks(storage, &entry.location, stream, chunk, info).await
        }
        None => storage.write(&entry.location, partitions, mode, info).await,
    }
    .map_err(|e| e.context(format!("writing {name}")))?;
    if let Some(read) = scanned_rows(&plan) {
        session.record_rows_read(read);
    }
    let rows = rows.load(Ordering::Relaxed);
    session.record_write(TableWrite {
        table: name.clone(),
        location: entry.location.clone(),
        version,
        commit: info.clone(),
        rows: Some(rows as u64),
    });
    Ok((version, rows))
}

/// `stream` with every column relabelled nullable.
fn all_nullable(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let fields = stream
        .schema()
        .fields()
        .iter()
        .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
        .collect::<Vec<_>>();
    let schema = Arc::new(Schema::new(fields));
    let relabel = Arc::clone(&schema);
    let batches = stream.map(move |batch| {
        Ok(RecordBatch::try_new(
            Arc::clone(&relabel),
            batch?.columns().to_vec(),
        )?)
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

/// Appends `batches` to the table at `location`, committing a version each time at least
/// `chunk` rows have arrived, and the rest at the end. A failure keeps the versions committed
/// before it and says how many rows they hold.
async fn append_in_chunks(
    storage: &dyn TableStorage,
    location: &str,
    mut batches: SendableRecordBatchStream,
    chunk: usize,
    info: &CommitInfo,
) -> Result<u64> {
    let schema = batches.schema();
    let (mut pending, mut pending_rows, mut committed) = (Vec::new(), 0, 0);
    let mut version = None;
    let stopped = |e: VitrineError, committed: usize| {
        e.context(format!(
            "{committed} row(s) were committed before this (vitrine.write.commit_rows = {chunk}); \
             they stay in the table"
        ))
    };
    loop {
        let next = batches.try_next().await;
        let batch = match next {
            Ok(batch) => batch,
            Err(e) => return Err(stopped(e.into(), committed)),
        };
        let end = batch.is_none();
        if let Some(batch) = batch {
            pending_rows += batch.num_rows();
            pending.push(batch);
        }
        if pending_rows >= chunk || (end && (pending_rows > 0 || version.is_none())) {
            let data = futures::stream::iter(std::mem::take(&mut pending).into_iter().map(Ok));
            let stream = Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), data));
            version = Some(
                storage
                    .write(location, vec![stream], Mode::Append, info)
                    .await
                    .map_err(|e| stopped(e, committed))?,
            );
            committed += std::mem::take(&mut pending_rows);
        }
        if end {
            return Ok(version.expect("the end commits at least once"));
        }
    }
}

/// The most rows any scan under `plan` reads, when the scans know: an upper bound of the rows
/// a model function in the plan may see, for its progress bar.
fn input_rows(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    if plan.children().is_empty() {
        let statistics = plan.partition_statistics(None).ok()?;
        return statistics.num_rows.get_value().map(|n| *n as u64);
    }
    plan.children().into_iter().filter_map(input_rows).max()
}

/// Records the models the statement ran in the table's properties (`vitrine.model.<name>` = the
/// id, `vitrine.model.<name>.revision`), so that readers know what produced its vectors and
/// `SET vitrine.model.<name>` can reproduce it. Returns whether any model ran.
fn record_models(session: &dyn Session, entry: &mut TableEntry) -> bool {
    let models = session.model_functions().models_used();
    for model in &models {
        let key = format!("vitrine.model.{}", model.name);
        entry
            .properties
            .insert(format!("{key}.revision"), model.revision.clone());
        entry.properties.insert(key, model.id.clone());
    }
    !models.is_empty()
}

/// `CREATE [OR REPLACE] TABLE …`.
pub(super) async fn create_table(
    session: &dyn Session,
    create: CreateTable,
) -> Result<StatementResult> {
    let name = session.qualify(&create.name);
    let warehouse = session.warehouse();
    let snapshot = session.catalogs().snapshot();
    if !snapshot.has_schema(&name.catalog, &name.schema) {
        return Err(VitrineError::NotFound(format!(
            "schema '{}.{}' does not exist: CREATE SCHEMA {}.{} first",
            name.catalog, name.schema, name.catalog, name.schema
        )));
    }
    let existing = snapshot.table(&name).cloned();
    if existing.is_some() {
        if create.if_not_exists {
            return Ok(StatementResult::message(format!("table {name} exists")));
        }
        if !create.or_replace {
            return Err(VitrineError::AlreadyExists(format!(
                "table {name} already exists: use CREATE OR REPLACE TABLE or DROP TABLE"
            )));
        }
    }
    let now = chrono::Utc::now().to_rfc3339();

    if let (Some(location), None, None) = (&create.location, &create.query, &create.columns) {
        let location = warehouse.resolve_path(location);
        let format = match create.format {
            Some(f) => f,
            None => detect_format(&location).await?,
        };
        let entry = TableEntry {
            format,
            location: location.clone(),
            managed: false,
            properties: create.properties,
            options: create.options,
            comment: create.comment,
            created_at: now,
            view_sql: None,
        };
        session
            .catalogs()
            .open_table(&entry, None)
            .await
            .map_err(|e| e.context(format!("attaching {name} at '{location}'")))?;
        warehouse.put_table(&name, &entry).await?;
        return Ok(StatementResult::message(format!(
            "attached {format} table {name} at '{location}'"
        )));
    }

    let format = create
        .format
        .or(existing.as_ref().map(|e| e.format))
        .unwrap_or(TableFormat::Lance);
    if !format.is_writable() {
        return Err(VitrineError::Plan(format!("{format} tables are read-only: use CREATE TABLE … USING {format} LOCATION '…' to attach files")));
    }
    if let Some(e) = &existing {
        if e.format != format {
            return Err(VitrineError::Plan(format!(
                "{name} is a {} table: DROP it before creating it as {format}",
                e.format
            )));
        }
    }
    let (location, managed) = match (&existing, &create.location) {
        (Some(e), _) => (e.location.clone(), e.managed),
        (None, Some(l)) => (warehouse.resolve_path(l), false),
        (None, None) => (warehouse.table_location(&name), true),
    };
    let has_query = create.query.is_some();
    let df = match (create.query, &create.columns) {
        (Some(query), None) => session.plan_query(*query).await?,
        (Some(query), Some(columns)) => conform::to_table(
            session.plan_query(*query).await?,
            &Schema::new(columns.clone()),
            &[],
            &name.to_string(),
        )?,
        (None, Some(columns)) => {
            session
                .datafusion()
                .read_batch(RecordBatch::new_empty(Arc::new(Schema::new(
                    columns.clone(),
                ))))?
        }
        (None, None) => {
            return Err(VitrineError::Plan(format!(
                "CREATE TABLE {name} needs columns or AS SELECT"
            )))
        }
    };
    let mode = if existing.is_some() || storage(format)?.exists(&location).await {
        Mode::Overwrite
    } else {
        Mode::Create
    };
    let operation = match (create.or_replace, has_query) {
        (true, true) => "CREATE OR REPLACE TABLE AS SELECT",
        (false, true) => "CREATE TABLE AS SELECT",
        (true, false) => "CREATE OR REPLACE TABLE",
        (false, false) => "CREATE TABLE",
    };
    let mut info = session
        .statement()
        .commit(operation)
        .with_parameter("isManaged", managed.to_string());
    if let Some(comment) = &create.comment {
        info = info.with_parameter("description", comment.clone());
    }
    if !create.properties.is_empty() {
        info = info.with_parameter(
            "properties",
            serde_json::to_string(&create.properties).expect("a map of strings is JSON"),
        );
    }
    let mut entry = TableEntry {
        format,
        location,
        managed,
        properties: existing
            .as_ref()
            .map(|e| e.properties.clone())
            .unwrap_or_default(),
        options: create.options,
        comment: create
            .comment
            .or(existing.as_ref().and_then(|e| e.comment.clone())),
        created_at: existing.as_ref().map_or(now, |e| e.created_at.clone()),
        view_sql: None,
    };
    entry.properties.extend(create.properties);
    let options = WriteOptions {
        nullable: has_query && create.columns.is_none(),
        ..WriteOptions::default()
    };
    let (version, rows) = commit(session, &entry, &name, df, mode, &info, options).await?;
    record_models(session, &mut entry);
    warehouse.put_table(&name, &entry).await?;
    Ok(StatementResult::message(format!(
        "created table {name} ({rows} rows, version {version})"
    )))
}

/// The table's entry, checked to be writable, and its current schema.
pub(super) async fn writable_table(
    session: &dyn Session,
    table: &TableName,
) -> Result<(QualifiedName, TableEntry, Arc<Schema>)> {
    let (name, entry) = session.table_entry(table)?;
    if !entry.format.is_writable() {
        return Err(VitrineError::Plan(format!(
            "{name} is a {} table, which is read-only",
            entry.format
        )));
    }
    // Recorded as read: what the statement writes on top of is one of its inputs.
    let schema = session
        .catalogs()
        .read_table(&name, &entry, None)
        .await?
        .schema();
    Ok((name, entry, schema))
}

/// `INSERT INTO|OVERWRITE table [(columns)] query`.
pub(super) async fn insert(
    session: &dyn Session,
    table: &TableName,
    columns: &[String],
    overwrite: bool,
    query: Query,
) -> Result<StatementResult> {
    let (name, mut entry, schema) = writable_table(session, table).await?;
    let query = session.plan_query(query).await?;
    let casts = conform::casts(&query, &schema, columns);
    let df = conform::to_table(query, &schema, columns, &name.to_string())?;
    let (mode, operation, mode_name) = if overwrite {
        (Mode::Overwrite, "INSERT OVERWRITE", "Overwrite")
    } else {
        (Mode::Append, "WRITE", "Append")
    };
    let info = session
        .statement()
        .commit(operation)
        .with_parameter("mode", mode_name);
    let chunk_rows = session.settings().core.commit_rows;
    let options = WriteOptions {
        chunk_rows,
        ..WriteOptions::default()
    };
    let (version, rows) = commit(session, &entry, &name, df, mode, &info, options)
        .await
        .map_err(|e| {
            // Name the conversions only where one can have failed, not on every error.
            if !casts.is_empty() && e.to_string().to_lowercase().contains("cast") {
                e.context(format!("converting {}", casts.join(", ")))
            } else {
                e
            }
        })?;
    if record_models(session, &mut entry) {
        session.warehouse().put_table(&name, &entry).await?;
    }
    Ok(StatementResult::message(format!(
        "inserted {rows} rows into {name} (version {version})"
    )))
}

/// The first row of a query of `N` counts (`BIGINT` columns).
async fn counts<const N: usize>(session: &dyn Session, sql: &str) -> Result<[i64; N]> {
    let batches = session.plan_sql(sql).await?.collect().await?;
    let value = |i: usize| {
        batches.first().and_then(|b| {
            b.column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .filter(|a| !a.is_empty())
                .map(|a| a.value(0))
        })
    };
    let mut row = [0; N];
    for (i, cell) in row.iter_mut().enumerate() {
        *cell = value(i).ok_or_else(|| VitrineError::Plan(format!("no counts from '{sql}'")))?;
    }
    Ok(row)
}

/// The table a statement rewriting its rows (DELETE, UPDATE, MERGE) writes, and the version of
/// it the statement reads, held until the statement ends: every query of the statement reads
/// that version, and the commit replaces exactly its rows, so that a concurrent writer's rows
/// are never lost ([`Mode::Replace`]).
struct RewriteTarget<'a> {
    session: &'a dyn Session,
    name: QualifiedName,
    entry: TableEntry,
    schema: Arc<Schema>,
    version: Option<u64>,
    /// Whether this statement pinned the table (a session that had pinned it keeps its pin).
    pinned_here: bool,
}

impl<'a> RewriteTarget<'a> {
    /// Pins `table` at its latest version (or the version the session pinned it at), then
    /// reads it as the statement's target.
    async fn hold(session: &'a dyn Session, table: &TableName) -> Result<Self> {
        let (name, entry) = session.table_entry(table)?;
        let catalogs = session.catalogs();
        let (version, pinned_here) = match catalogs.pinned(&name) {
            Some(version) => (Some(version), false),
            None if entry.format.is_writable() => {
                let version = storage(entry.format)?.version(&entry.location).await?;
                if let Some(version) = version {
                    catalogs.pin(name.clone(), version);
                }
                (version, version.is_some())
            }
            None => (None, false),
        };
        // Built before reading, so that a failed read still releases the pin.
        let mut target = Self {
            session,
            name,
            entry,
            schema: Arc::new(Schema::empty()),
            version,
            pinned_here,
        };
        let (_, entry, schema) = writable_table(session, table).await?;
        target.entry = entry;
        target.schema = schema;
        Ok(target)
    }

    /// Replaces the rows of the version held with `df`, as one new version.
    async fn rewrite(&self, df: DataFrame, info: &CommitInfo) -> Result<u64> {
        let df = conform::to_table(df, &self.schema, &[], &self.name.to_string())?;
        let mode = match self.version {
            Some(read_version) => Mode::Replace { read_version },
            None => Mode::Overwrite,
        };
        let (version, _) = commit(
            self.session,
            &self.entry,
            &self.name,
            df,
            mode,
            info,
            WriteOptions::default(),
        )
        .await?;
        Ok(version)
    }

    /// Counts the rows a DELETE or UPDATE affects and, when there are any, replaces the
    /// table's content with `content` as one new version. Returns Databricks'
    /// `num_affected_rows`.
    async fn rewrite_rows(
        &self,
        content: &str,
        counting: &str,
        info: &CommitInfo,
    ) -> Result<StatementResult> {
        let [affected] = counts(self.session, counting).await?;
        let result = StatementResult::strings(
            &["num_affected_rows"],
            vec![vec![Some(affected.to_string())]],
        )?;
        if affected == 0 {
            return Ok(result);
        }
        let df = self.session.plan_sql(content).await?;
        let version = self.rewrite(df, info).await?;
        Ok(result.with_message(format!(
            "{}: {affected} rows of {} (version {version})",
            info.operation, self.name
        )))
    }
}

impl Drop for RewriteTarget<'_> {
    fn drop(&mut self) {
        if self.pinned_here {
            self.session.catalogs().unpin(&self.name);
        }
    }
}

/// `DELETE FROM table [WHERE predicate]`.
pub(super) async fn delete(
    session: &dyn Session,
    table: &TableName,
    alias: Option<String>,
    predicate: Option<Expr>,
) -> Result<StatementResult> {
    let target = RewriteTarget::hold(session, table).await?;
    let (content, counting) = delete_queries(
        &target.name.to_string(),
        alias.as_deref(),
        predicate.as_ref(),
    );
    let info = with_predicate(session.statement().commit("DELETE"), predicate.as_ref());
    target.rewrite_rows(&content, &counting, &info).await
}

/// `UPDATE table SET … [WHERE predicate]`.
pub(super) async fn update(
    session: &dyn Session,
    table: &TableName,
    alias: Option<String>,
    assignments: Vec<(String, Expr)>,
    predicate: Option<Expr>,
) -> Result<StatementResult> {
    let target = RewriteTarget::hold(session, table).await?;
    let (content, counting) = update_queries(
        &target.name.to_string(),
        alias.as_deref(),
        &target.schema,
        &assignments,
        predicate.as_ref(),
    )?;
    let info = with_predicate(session.statement().commit("UPDATE"), predicate.as_ref());
    target.rewrite_rows(&content, &counting, &info).await
}

/// A commit's `predicate` parameter, as Databricks records a DELETE's or UPDATE's.
fn with_predicate(info: CommitInfo, predicate: Option<&Expr>) -> CommitInfo {
    match predicate {
        Some(predicate) => info.with_parameter("predicate", predicate.to_string()),
        None => info,
    }
}

/// Writes an upsert's rows in place of the target rows with the same keys, as one new version
/// (only those rows are written; a rewrite would write the whole table).
async fn upsert_rows(
    session: &dyn Session,
    name: &QualifiedName,
    entry: &TableEntry,
    schema: &Schema,
    upsert: &Upsert,
    info: &CommitInfo,
) -> Result<Upserted> {
    let rows = session.plan_sql(&upsert.rows).await?;
    let rows = conform::to_table(rows, schema, &[], &name.to_string())?;
    let stream = rows.execute_stream().await?;
    let upserted = storage(entry.format)?
        .upsert(&entry.location, stream, &upsert.keys, info)
        .await
        .map_err(|e| e.context(format!("writing {name}")))?;
    session.record_write(TableWrite {
        table: name.clone(),
        location: entry.location.clone(),
        version: upserted.version,
        commit: info.clone(),
        rows: Some(upserted.updated + upserted.inserted),
    });
    Ok(upserted)
}

/// `MERGE INTO target USING source ON … WHEN …`: an upsert by key is written in place where the
/// table's format can (Lance), reading only the source; anything else checks and counts the
/// MERGE against the whole target, then rewrites the table as one new version.
pub(super) async fn merge(session: &dyn Session, merge: ast::Merge) -> Result<StatementResult> {
    let (table, _) = single_table(&merge.table)?;
    let target = RewriteTarget::hold(session, &table).await?;
    let (name, entry, schema) = (&target.name, &target.entry, &target.schema);
    let queries = merge_queries(&merge, &name.to_string(), schema)?;
    let info = session
        .statement()
        .commit("MERGE")
        .with_parameter("predicate", merge.on.to_string());
    if let Some(upsert) = &queries.upsert {
        if storage(entry.format)?.upserts_in_place() {
            let [unfit, rows] = counts(session, &upsert.check).await?;
            if unfit == 0 {
                if rows == 0 {
                    return merge_result(name, (0, 0, 0), None);
                }
                let upserted = upsert_rows(session, name, entry, schema, upsert, &info).await?;
                let counts = (upserted.updated as i64, 0, upserted.inserted as i64);
                return merge_result(name, counts, Some(upserted.version));
            }
        }
    }
    let has_matched_actions = merge
        .clauses
        .iter()
        .any(|c| c.clause_kind == ast::MergeClauseKind::Matched);
    if has_matched_actions {
        let ambiguous = session
            .plan_sql(&queries.ambiguous)
            .await?
            .collect()
            .await?;
        let rows: usize = ambiguous.iter().map(|b| b.num_rows()).sum();
        if rows > 0 {
            return Err(VitrineError::Plan(format!(
                "MERGE INTO {name}: several source rows match the same target row; \
                 make the source unique on the ON condition's keys"
            )));
        }
    }
    let [updated, deleted, inserted] = counts(session, &queries.counts)
        .await
        .map_err(|e| e.context(format!("MERGE INTO {name}")))?;
    let mut version = None;
    if updated + deleted + inserted > 0 {
        let content = session.plan_sql(&queries.content).await?;
        version = Some(target.rewrite(content, &info).await?);
    }
    merge_result(name, (updated, deleted, inserted), version)
}

/// MERGE's result: Databricks' four count columns, and a message naming the version written.
fn merge_result(
    name: &QualifiedName,
    (updated, deleted, inserted): (i64, i64, i64),
    version: Option<u64>,
) -> Result<StatementResult> {
    let mut message =
        format!("merged into {name}: {updated} updated, {deleted} deleted, {inserted} inserted");
    if let Some(version) = version {
        message.push_str(&format!(" (version {version})"));
    }
    let rows = vec![vec![
        Some((updated + deleted + inserted).to_string()),
        Some(updated.to_string()),
        Some(deleted.to_string()),
        Some(inserted.to_string()),
    ]];
    Ok(StatementResult::strings(
        &[
            "num_affected_rows",
            "num_updated_rows",
            "num_deleted_rows",
            "num_inserted_rows",
        ],
        rows,
    )?
    .with_message(message))
}

/// `OPTIMIZE table [ZORDER BY (columns)]`: compacts the table's files; with `ZORDER BY`, rewrites
/// the rows clustered along a Z-order curve of the columns. Returns Databricks' `path` and
/// `metrics` columns.
pub(super) async fn optimize(
    session: &dyn Session,
    table: &TableName,
    zorder_by: &[String],
) -> Result<StatementResult> {
    let (name, entry, schema) = writable_table(session, table).await?;
    for column in zorder_by {
        if schema.index_of(column).is_err() {
            return Err(VitrineError::Plan(format!(
                "OPTIMIZE {name}: ZORDER BY column '{column}' does not exist"
            )));
        }
    }
    let storage = storage(entry.format)?;
    let before = storage.version(&entry.location).await?;
    let metrics = storage
        .optimize(
            &entry.location,
            zorder_by,
            session.datafusion().runtime_env(),
        )
        .await
        .map_err(|e| e.context(format!("OPTIMIZE {name}")))?;
    let after = storage.version(&entry.location).await?;
    if let Some(version) = after.filter(|v| Some(*v) != before) {
        let mut info = session.statement().commit("OPTIMIZE");
        if !zorder_by.is_empty() {
            info = info.with_parameter(
                "zOrderBy",
                serde_json::to_string(zorder_by).expect("strings are JSON"),
            );
        }
        session.record_write(TableWrite {
            table: name.clone(),
            location: entry.location.clone(),
            version,
            commit: info,
            rows: None,
        });
    }
    let sql = format!(
        "SELECT '{path}' AS path, named_struct('numFilesAdded', CAST({} AS BIGINT), 'numFilesRemoved', CAST({} AS BIGINT), \
         'numFilesBefore', CAST({} AS BIGINT), 'numFilesAfter', CAST({} AS BIGINT), 'zOrderBy', '{}') AS metrics",
        metrics.files_added,
        metrics.files_removed,
        metrics.fragments_before,
        metrics.fragments_after,
        zorder_by.join(","),
        path = entry.location.replace('\'', "''"),
    );
    StatementResult::collect(session.datafusion().sql(&sql).await?).await
}

/// `RESTORE TABLE t TO VERSION AS OF n`.
pub(super) async fn restore(
    session: &dyn Session,
    table: &TableName,
    version: u64,
) -> Result<StatementResult> {
    let (name, entry, _) = writable_table(session, table).await?;
    let new_version = storage(entry.format)?
        .restore(&entry.location, version)
        .await?;
    session.record_write(TableWrite {
        table: name.clone(),
        location: entry.location.clone(),
        version: new_version,
        commit: session
            .statement()
            .commit("RESTORE")
            .with_parameter("version", version.to_string()),
        rows: None,
    });
    Ok(StatementResult::message(format!(
        "restored {name} to version {version} (now version {new_version})"
    )))
}
