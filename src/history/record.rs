//! The rows of the two system tables: one [`QueryRecord`] per statement run
//! (`system.query.history`) and one [`LineageRecord`] per (source, target) of every write
//! (`system.access.table_lineage`), with Databricks' column names where Databricks has the column.
//! Each serialises to one JSON object whose fields are the table's columns.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::provider::{ReadKind, TableRead};
use crate::catalog::QualifiedName;
use crate::session::TableWrite;

/// How a statement ended (`execution_status`).
pub const FINISHED: &str = "FINISHED";
/// How a failed statement ended.
pub const FAILED: &str = "FAILED";

/// One statement run against the warehouse: a row of `system.query.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRecord {
    /// The statement's id.
    pub statement_id: String,
    /// The session that ran it.
    pub session_id: String,
    /// `FINISHED` or `FAILED`.
    pub execution_status: String,
    /// The statement as run.
    pub statement_text: String,
    /// Its kind: `SELECT`, `CREATE TABLE`, `INSERT`, `MERGE`, `SET`, …
    pub statement_type: String,
    /// Why it failed.
    pub error_message: Option<String>,
    /// The operating-system user that ran it.
    pub executed_by: String,
    /// What ran it: `vitrine run`, `vitrine repl`, `vitrine serve`, … or `vitrine` (the library).
    pub client_application: String,
    /// The script it came from, if any.
    pub script_file: Option<String>,
    /// The line of the script it starts on.
    pub script_line: Option<u64>,
    /// When it began.
    pub start_time: DateTime<Utc>,
    /// When it ended.
    pub end_time: DateTime<Utc>,
    /// `end_time - start_time` in milliseconds.
    pub total_duration_ms: i64,
    /// Rows the statement's scans read, where they count them.
    pub read_rows: Option<u64>,
    /// Rows in its result set.
    pub produced_rows: u64,
    /// Rows it wrote into tables.
    pub written_rows: Option<u64>,
    /// The catalog one- and two-part names resolved in.
    pub current_catalog: String,
    /// The schema one-part names resolved in.
    pub current_schema: String,
    /// Every setting the session had given a value (`SET`, start-up flags), by key.
    pub settings: BTreeMap<String, String>,
    /// The seed of the statement's random functions (`rand()`), drawn when `vitrine.seed` is
    /// not set.
    pub seed: Option<u64>,
    /// The engine that ran it: version, commit and build profile.
    pub engine_version: String,
}

/// A model a write ran, as its lineage records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The model's kind (`clip`, `smolvlm`).
    pub kind: String,
    /// The model: a hub id, a folder, or a model of the warehouse.
    pub id: String,
    /// The hub commit, or `sha256:` of its weights.
    pub revision: String,
    /// `vitrine.dtype` as it was.
    pub dtype: String,
    /// `vitrine.device` as it was.
    pub device: String,
    /// Every model setting that can change outputs, with its value then.
    pub settings: BTreeMap<String, String>,
}

/// One (source, target) pair of a write: a row of `system.access.table_lineage`. A write that
/// read nothing (`INSERT … VALUES`) has one row with no source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageRecord {
    /// `<statement_id>-<n>`.
    pub record_id: String,
    /// The statement that wrote the target.
    pub statement_id: String,
    /// `SCRIPT` when the statement came from one.
    pub entity_type: Option<String>,
    /// The script.
    pub entity_id: Option<String>,
    /// When the target version was committed (the statement's end).
    pub event_time: DateTime<Utc>,
    /// Its date, `YYYY-MM-DD`.
    pub event_date: String,
    /// `catalog.schema.table` of the source.
    pub source_table_full_name: Option<String>,
    /// The source's catalog.
    pub source_table_catalog: Option<String>,
    /// The source's schema.
    pub source_table_schema: Option<String>,
    /// The source's name.
    pub source_table_name: Option<String>,
    /// Where the source's data is.
    pub source_path: Option<String>,
    /// `TABLE`, `PATH` or `VIEW` (a temporary view).
    pub source_type: Option<String>,
    /// The version of the source read.
    pub source_table_version: Option<u64>,
    /// A temporary view's query.
    pub source_view_definition: Option<String>,
    /// `catalog.schema.table` of the target.
    pub target_table_full_name: String,
    /// The target's catalog.
    pub target_table_catalog: String,
    /// The target's schema.
    pub target_table_schema: String,
    /// The target's name.
    pub target_table_name: String,
    /// Where the target's data is.
    pub target_path: String,
    /// `TABLE`.
    pub target_type: String,
    /// The version written.
    pub target_table_version: u64,
    /// The commit's operation (`CREATE OR REPLACE TABLE AS SELECT`, `MERGE`, …).
    pub operation: String,
    /// The models the statement ran.
    pub models: Vec<ModelRecord>,
    /// The operating-system user.
    pub created_by: String,
}

impl LineageRecord {
    /// The source's qualified name, when it is a table or view of the warehouse.
    pub fn source_name(&self) -> Option<QualifiedName> {
        match (
            &self.source_table_catalog,
            &self.source_table_schema,
            &self.source_table_name,
        ) {
            (Some(catalog), Some(schema), Some(table)) => Some(QualifiedName {
                catalog: catalog.clone(),
                schema: schema.clone(),
                table: table.clone(),
            }),
            _ => None,
        }
    }

    /// The target's qualified name.
    pub fn target_name(&self) -> QualifiedName {
        QualifiedName {
            catalog: self.target_table_catalog.clone(),
            schema: self.target_table_schema.clone(),
            table: self.target_table_name.clone(),
        }
    }
}

/// The lineage rows of one statement: each write paired with each thing read (or with nothing).
pub fn lineage(
    query: &QueryRecord,
    reads: &[TableRead],
    writes: &[TableWrite],
    models: &[ModelRecord],
) -> Vec<LineageRecord> {
    let mut rows = Vec::new();
    for write in writes {
        // A write's own table read at the version it wrote is not a source of it (a later
        // statement of the same session can only read what is committed).
        let sources: Vec<Option<&TableRead>> = {
            let found: Vec<_> = reads
                .iter()
                .filter(|r| {
                    !(r.name.as_ref() == Some(&write.table) && r.version == Some(write.version))
                })
                .map(Some)
                .collect();
            if found.is_empty() {
                vec![None]
            } else {
                found
            }
        };
        for source in sources {
            let name = source.and_then(|s| s.name.as_ref());
            rows.push(LineageRecord {
                record_id: format!("{}-{}", query.statement_id, rows.len()),
                statement_id: query.statement_id.clone(),
                entity_type: query.script_file.as_ref().map(|_| "SCRIPT".to_string()),
                entity_id: query.script_file.clone(),
                event_time: query.end_time,
                event_date: query.end_time.format("%Y-%m-%d").to_string(),
                source_table_full_name: name.map(ToString::to_string),
                source_table_catalog: name.map(|n| n.catalog.clone()),
                source_table_schema: name.map(|n| n.schema.clone()),
                source_table_name: name.map(|n| n.table.clone()),
                source_path: source.map(|s| s.location.clone()).filter(|l| !l.is_empty()),
                source_type: source.map(|s| s.kind.source_type().to_string()),
                source_table_version: source.and_then(|s| s.version),
                source_view_definition: source.and_then(|s| match &s.kind {
                    ReadKind::TemporaryView(sql) => Some(sql.clone()),
                    _ => None,
                }),
                target_table_full_name: write.table.to_string(),
                target_table_catalog: write.table.catalog.clone(),
                target_table_schema: write.table.schema.clone(),
                target_table_name: write.table.table.clone(),
                target_path: write.location.clone(),
                target_type: "TABLE".to_string(),
                target_table_version: write.version,
                operation: write.commit.operation.clone(),
                models: models.to_vec(),
                created_by: query.executed_by.clone(),
            });
        }
    }
    rows
}

/// The kind of a statement, from its first words, as `statement_type` shows it.
pub fn statement_type(sql: &str) -> String {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_uppercase()
        })
        .collect();
    let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    match word(0) {
        "CREATE" | "DROP" | "ALTER" | "DESCRIBE" | "SHOW" => {
            let skip = ["OR", "REPLACE", "TEMPORARY", "TEMP", "EXTERNAL", "IF"];
            let noun = words[1..]
                .iter()
                .find(|w| !skip.contains(&w.as_str()))
                .cloned()
                .unwrap_or_default();
            format!("{} {noun}", word(0)).trim().to_string()
        }
        "WITH" | "VALUES" | "FROM" | "(" => "SELECT".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::version::CommitInfo;
    use crate::catalog::TableFormat;

    fn name(table: &str) -> QualifiedName {
        QualifiedName {
            catalog: "main".into(),
            schema: "s".into(),
            table: table.into(),
        }
    }

    fn query() -> QueryRecord {
        let now = Utc::now();
        QueryRecord {
            statement_id: "q1".into(),
            session_id: "s1".into(),
            execution_status: FINISHED.into(),
            statement_text: "INSERT INTO t SELECT * FROM a JOIN t".into(),
            statement_type: "INSERT".into(),
            error_message: None,
            executed_by: "me".into(),
            client_application: "vitrine".into(),
            script_file: Some("x.sql".into()),
            script_line: Some(3),
            start_time: now,
            end_time: now,
            total_duration_ms: 0,
            read_rows: None,
            produced_rows: 0,
            written_rows: Some(2),
            current_catalog: "main".into(),
            current_schema: "s".into(),
            settings: BTreeMap::new(),
            seed: None,
            engine_version: "test".into(),
        }
    }

    fn read(table: &str, version: u64) -> TableRead {
        TableRead {
            name: Some(name(table)),
            kind: ReadKind::Table(TableFormat::Lance),
            location: format!("/w/{table}"),
            version: Some(version),
        }
    }

    #[test]
    fn each_write_is_paired_with_each_source_and_without_one_when_it_read_nothing() {
        let write = TableWrite {
            table: name("t"),
            location: "/w/t".into(),
            version: 5,
            commit: CommitInfo::operation("WRITE"),
            rows: Some(2),
        };
        let rows = lineage(
            &query(),
            &[read("a", 2), read("t", 4)],
            std::slice::from_ref(&write),
            &[],
        );
        let pairs: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.source_table_full_name.clone().unwrap(),
                    r.source_table_version,
                    r.target_table_version,
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("main.s.a".to_string(), Some(2), 5),
                ("main.s.t".to_string(), Some(4), 5)
            ]
        );
        assert_eq!(rows[1].record_id, "q1-1");
        assert_eq!(rows[0].entity_id.as_deref(), Some("x.sql"));
        let alone = lineage(&query(), &[], &[write], &[]);
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].source_table_full_name, None);
        assert_eq!(alone[0].target_name(), name("t"));
    }

    #[test]
    fn statement_types_name_the_statement() {
        for (sql, kind) in [
            ("select 1", "SELECT"),
            ("CREATE OR REPLACE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("create temporary view v as select 1", "CREATE VIEW"),
            ("WITH x AS (SELECT 1) SELECT * FROM x", "SELECT"),
            ("MERGE INTO t USING s ON t.a = s.a", "MERGE"),
            ("SET vitrine.seed = 1", "SET"),
        ] {
            assert_eq!(statement_type(sql), kind, "{sql}");
        }
    }
}
