//! `vitrine reproduce`: re-derives a table version from its lineage and says whether the result
//! is the version recorded.
//!
//! A version's lineage ([`crate::history`]) names the statement that wrote it, the versions of
//! the tables it read, the temporary views it read (with their queries), the models it ran and
//! the session's settings and seed. [`reproduce`] re-runs that statement in a session of its own
//! with those settings, every source pinned to the version it read
//! ([`crate::engine::EngineSession::pin_version`]), and the written table renamed into a scratch
//! schema ([`rename`]) that starts as the version the statement found there; it compares the
//! result with the recorded version ([`compare`]) and drops the scratch schema. With `chain`,
//! every ancestor version is re-derived first, back to the files and tables with no lineage.

pub mod compare;
pub mod rename;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::catalog::QualifiedName;
use crate::engine::{Engine, EngineSession};
use crate::error::{Result, VitrineError};
use crate::history::{LineageRecord, ModelRecord, QueryRecord};
use crate::session::Session;
use compare::{Comparison, Content};

/// What re-deriving one table version found.
#[derive(Debug, Clone)]
pub struct Step {
    /// The table.
    pub table: QualifiedName,
    /// The version re-derived.
    pub version: u64,
    /// The statement that wrote it.
    pub statement_id: String,
    /// Its script and line, if it came from one.
    pub script: Option<String>,
    /// The rows of the recorded version.
    pub rows: u64,
    /// Whether the re-derived content is the recorded one.
    pub comparison: Comparison,
    /// Models whose revision is not the one recorded: `kind: recorded -> now`.
    pub model_changes: Vec<String>,
    /// How the version relates to the statement re-run, when not directly (`OPTIMIZE` of the
    /// version before).
    pub note: Option<String>,
}

impl Step {
    /// Whether the re-derived version is the recorded one, with the same models.
    pub fn identical(&self) -> bool {
        self.comparison == Comparison::Identical && self.model_changes.is_empty()
    }
}

/// The operations whose statement can be re-run to re-derive the version.
const RERUNNABLE: &[&str] = &[
    "CREATE TABLE AS SELECT",
    "CREATE OR REPLACE TABLE AS SELECT",
    "WRITE",
    "INSERT OVERWRITE",
    "DELETE",
    "UPDATE",
    "MERGE",
];

/// What to re-derive, and how.
#[derive(Debug, Clone)]
pub struct Request {
    /// The table.
    pub table: QualifiedName,
    /// Its version; the current one when `None`.
    pub version: Option<u64>,
    /// Re-derive each version it descends from first, oldest first.
    pub chain: bool,
    /// Settings applied over the recorded ones (`key`, `value`): what would change if they had
    /// been these.
    pub overrides: Vec<(String, String)>,
}

/// Re-derives the version asked for (and with `chain` its ancestors first); `progress` hears of
/// each step as it starts.
pub async fn reproduce(
    engine: &Arc<Engine>,
    request: &Request,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Vec<Step>> {
    let Request {
        table,
        version,
        chain,
        overrides,
    } = request;
    let (version, chain) = (*version, *chain);
    let records = Records {
        lineage: engine.history().lineage().await?,
        queries: engine.history().queries().await?,
    };
    let version = match version {
        Some(v) => v,
        None => latest_version(engine, table).await?,
    };
    let mut order = Vec::new();
    if chain {
        ancestors(
            &records.lineage,
            table,
            version,
            &mut BTreeSet::new(),
            &mut order,
        );
    } else {
        order.push((table.clone(), version));
    }
    let mut steps = Vec::new();
    for (table, version) in order {
        progress(&format!("re-deriving {table} version {version}"));
        steps.push(rederive(engine, &records, &table, version, overrides).await?);
    }
    Ok(steps)
}

async fn latest_version(engine: &Arc<Engine>, table: &QualifiedName) -> Result<u64> {
    let session = engine.session()?;
    session.refresh().await?;
    let (_, entry) = session.table_entry(&table.clone().into())?;
    crate::catalog::storage(entry.format)?
        .version(&entry.location)
        .await?
        .ok_or_else(|| VitrineError::Plan(format!("{table} has no versions to reproduce")))
}

/// The rows of the statement that wrote `table` at `version` (the latest such statement).
fn writer_of<'a>(
    lineage: &'a [LineageRecord],
    table: &QualifiedName,
    version: u64,
) -> Vec<&'a LineageRecord> {
    let Some(last) = lineage
        .iter()
        .filter(|r| r.target_name() == *table && r.target_table_version == version)
        .max_by_key(|r| r.event_time)
    else {
        return Vec::new();
    };
    lineage
        .iter()
        .filter(|r| r.statement_id == last.statement_id && r.target_name() == *table)
        .collect()
}

/// Depth first: the versions `table`@`version` descends from that have lineage, then itself.
fn ancestors(
    lineage: &[LineageRecord],
    table: &QualifiedName,
    version: u64,
    seen: &mut BTreeSet<(String, u64)>,
    order: &mut Vec<(QualifiedName, u64)>,
) {
    if !seen.insert((table.to_string(), version)) {
        return;
    }
    let rows = writer_of(lineage, table, version);
    if rows.iter().any(|r| is_optimize(r)) && version > 0 {
        ancestors(lineage, table, version - 1, seen, order);
    }
    for row in &rows {
        if let (Some(source), Some(v)) = (row.source_name(), row.source_table_version) {
            if !writer_of(lineage, &source, v).is_empty() {
                ancestors(lineage, &source, v, seen, order);
            }
        }
    }
    if !rows.is_empty() {
        order.push((table.clone(), version));
    }
}

/// The history, read once for a whole run.
struct Records {
    lineage: Vec<LineageRecord>,
    queries: Vec<QueryRecord>,
}

/// Whether the row is of an `OPTIMIZE`, which rewrites files and keeps the rows.
fn is_optimize(row: &LineageRecord) -> bool {
    row.operation.starts_with("OPTIMIZE")
}

/// Re-derives one version.
async fn rederive(
    engine: &Arc<Engine>,
    records: &Records,
    table: &QualifiedName,
    version: u64,
    overrides: &[(String, String)],
) -> Result<Step> {
    let rows = writer_of(&records.lineage, table, version);
    let Some(first) = rows.first() else {
        return Err(VitrineError::NotFound(format!(
            "no lineage is recorded for {table} version {version}: it was written before \
             Vitrine kept history, or by another tool"
        )));
    };
    let query = records
        .queries
        .iter()
        .find(|q| q.statement_id == first.statement_id)
        .ok_or_else(|| {
            VitrineError::NotFound(format!(
                "statement {} is not in system.query.history",
                first.statement_id
            ))
        })?;
    if is_optimize(first) && version > 0 {
        return Box::pin(rederive_optimized(
            engine, records, table, version, overrides, query,
        ))
        .await;
    }
    if !RERUNNABLE.contains(&first.operation.as_str()) {
        return Err(VitrineError::Plan(format!(
            "{table} version {version} was made by {} (statement {}), which re-derives nothing",
            first.operation, query.statement_id
        )));
    }
    let session = engine.session()?;
    session.set_client_application("vitrine reproduce");
    prepare(&session, query, &rows, table).await?;
    for (key, value) in overrides {
        session
            .execute(&format!("SET {key} = '{}'", value.replace('\'', "''")))
            .await?;
    }
    let scratch = QualifiedName {
        catalog: table.catalog.clone(),
        schema: format!(
            "__reproduce_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
        table: table.table.clone(),
    };
    let outcome = run_in_scratch(&session, query, &rows, table, version, &scratch).await;
    let dropped = session
        .execute(&format!(
            "DROP SCHEMA IF EXISTS {}.{} CASCADE",
            scratch.catalog, scratch.schema
        ))
        .await;
    let (expected, comparison, properties) = outcome?;
    dropped.map_err(|e| e.context(format!("dropping the scratch schema of {table}")))?;
    Ok(Step {
        table: table.clone(),
        version,
        statement_id: query.statement_id.clone(),
        script: query
            .script_file
            .as_ref()
            .map(|f| format!("{f}:{}", query.script_line.unwrap_or(0))),
        rows: expected,
        comparison,
        model_changes: model_changes(&first.models, &properties),
        note: None,
    })
}

/// A version `OPTIMIZE` wrote holds the rows of the version before it: that version is
/// re-derived, and the two are compared.
async fn rederive_optimized(
    engine: &Arc<Engine>,
    records: &Records,
    table: &QualifiedName,
    version: u64,
    overrides: &[(String, String)],
    optimize: &QueryRecord,
) -> Result<Step> {
    let mut step = rederive(engine, records, table, version - 1, overrides).await?;
    let session = engine.session()?;
    session.refresh().await?;
    let at = |v: u64| format!("SELECT * FROM {table} VERSION AS OF {v}");
    let kept = Content::read(session.plan_sql(&at(version - 1)).await?).await?;
    let optimized = Content::read(session.plan_sql(&at(version)).await?).await?;
    if step.comparison == Comparison::Identical {
        step.comparison = compare::compare(
            &optimized,
            session.plan_sql(&at(version)).await?,
            &kept,
            session.plan_sql(&at(version - 1)).await?,
        )
        .await?;
    }
    step.note = Some(format!(
        "OPTIMIZE (statement {}) of version {}",
        optimize.statement_id,
        version - 1
    ));
    step.version = version;
    step.rows = optimized.rows;
    Ok(step)
}

/// Gives the session the statement's settings, seed and schema, pins every table it read to the
/// version read, and re-creates the temporary views it read.
async fn prepare(
    session: &EngineSession,
    query: &QueryRecord,
    rows: &[&LineageRecord],
    table: &QualifiedName,
) -> Result<()> {
    for (key, value) in &query.settings {
        session
            .execute(&format!("SET {key} = '{}'", value.replace('\'', "''")))
            .await
            .map_err(|e| e.context(format!("applying the recorded setting {key}")))?;
    }
    if let Some(seed) = query.seed {
        session
            .execute(&format!("SET vitrine.seed = {seed}"))
            .await?;
    }
    if !query.settings.contains_key("vitrine.clock") {
        let clock = query
            .start_time
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        session
            .execute(&format!("SET vitrine.clock = '{clock}'"))
            .await?;
    }
    session
        .execute(&format!(
            "USE {}.{}",
            query.current_catalog, query.current_schema
        ))
        .await?;
    for row in rows {
        let (Some(source), Some(version)) = (row.source_name(), row.source_table_version) else {
            continue;
        };
        if source == *table {
            continue;
        }
        session
            .execute(&format!(
                "SELECT 1 FROM {source} VERSION AS OF {version} LIMIT 0"
            ))
            .await
            .map_err(|e| {
                e.context(format!(
                    "{source} version {version}, which the statement read, is no longer \
                     available (vacuumed?)"
                ))
            })?;
        session.pin_version(source, version);
    }
    for row in rows {
        if let (Some(view), Some(definition)) = (row.source_name(), &row.source_view_definition) {
            let sql = format!(
                "CREATE OR REPLACE TEMPORARY VIEW {} AS {}",
                view.table,
                view_query(definition)?
            );
            session
                .execute(&sql)
                .await
                .map_err(|e| e.context(format!("re-creating the temporary view {view}")))?;
        }
    }
    Ok(())
}

/// The query of a temporary view's recorded definition (its `CREATE VIEW` statement, or the
/// query alone).
fn view_query(definition: &str) -> Result<String> {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::DatabricksDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let statements = Parser::parse_sql(&DatabricksDialect {}, definition)?;
    Ok(match statements.as_slice() {
        [Statement::CreateView(view)] => view.query.to_string(),
        _ => definition.to_string(),
    })
}

/// Runs the statement into the scratch table and compares the outcome with the recorded version;
/// returns the recorded rows, the comparison and the scratch table's properties (which name the
/// models the re-run used).
async fn run_in_scratch(
    session: &EngineSession,
    query: &QueryRecord,
    rows: &[&LineageRecord],
    table: &QualifiedName,
    version: u64,
    scratch: &QualifiedName,
) -> Result<(u64, Comparison, BTreeMap<String, String>)> {
    session
        .execute(&format!(
            "CREATE SCHEMA {}.{}",
            scratch.catalog, scratch.schema
        ))
        .await?;
    let prior = rows
        .iter()
        .find(|r| r.source_name().as_ref() == Some(table))
        .and_then(|r| r.source_table_version);
    if let Some(prior) = prior {
        let (_, entry) = session.table_entry(&table.clone().into())?;
        session
            .execute(&format!(
                "CREATE TABLE {scratch} USING {} AS SELECT * FROM {table} VERSION AS OF {prior}",
                entry.format
            ))
            .await
            .map_err(|e| e.context(format!("copying {table} version {prior} to start from")))?;
    }
    let sql = rename::rename_table(
        &query.statement_text,
        table,
        scratch,
        (&query.current_catalog, &query.current_schema),
    )?;
    session
        .execute(&sql)
        .await
        .map_err(|e| e.context(format!("re-running statement {}", query.statement_id)))?;
    session.refresh().await?;
    let expected_sql = format!("SELECT * FROM {table} VERSION AS OF {version}");
    let got_sql = format!("SELECT * FROM {scratch}");
    let expected = Content::read(session.plan_sql(&expected_sql).await?).await?;
    let got = Content::read(session.plan_sql(&got_sql).await?).await?;
    let comparison = compare::compare(
        &expected,
        session.plan_sql(&expected_sql).await?,
        &got,
        session.plan_sql(&got_sql).await?,
    )
    .await?;
    let properties = session
        .catalogs()
        .snapshot()
        .table(scratch)
        .map(|entry| entry.properties.clone())
        .unwrap_or_default();
    Ok((expected.rows, comparison, properties))
}

/// `kind: recorded -> now` for each model whose id or revision changed, the re-run's models read
/// from the properties a write records (`vitrine.model.<kind>`, `….revision`).
fn model_changes(recorded: &[ModelRecord], properties: &BTreeMap<String, String>) -> Vec<String> {
    let mut changes = Vec::new();
    for model in recorded {
        let key = format!("vitrine.model.{}", model.kind);
        match (
            properties.get(&key),
            properties.get(&format!("{key}.revision")),
        ) {
            (Some(id), Some(revision)) if *id == model.id && *revision == model.revision => {}
            (Some(id), Some(revision)) => changes.push(format!(
                "{}: {}@{} -> {id}@{revision}",
                model.kind, model.id, model.revision
            )),
            _ => changes.push(format!("{}: {} was not run again", model.kind, model.id)),
        }
    }
    changes
}
