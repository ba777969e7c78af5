//! What every table format shares about versions: a table opened at a version
//! ([`OpenedTable`]), how a write relates to the data there ([`Mode`]), what a commit records
//! about the statement that made it ([`CommitInfo`]), one committed version as `DESCRIBE
//! HISTORY` shows it ([`HistoryEntry`]), what `OPTIMIZE` did ([`OptimizeMetrics`]), and what an
//! upsert in place did ([`Upserted`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;

/// A table opened for reading: DataFusion's view of it and the version it reads (`None` for
/// files, which have no versions).
#[derive(Clone)]
pub struct OpenedTable {
    /// The table as DataFusion reads it.
    pub provider: Arc<dyn TableProvider>,
    /// The version read.
    pub version: Option<u64>,
}

/// How a write relates to the data already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new table.
    Create,
    /// Replace all rows, as a new version.
    Overwrite,
    /// Replace the rows of `read_version` (a DELETE's, UPDATE's or MERGE's rewrite), as a new
    /// version in the table's own types. The commit fails when another writer changed those
    /// rows since; rows others appended since are kept.
    Replace {
        /// The version whose rows the new rows replace.
        read_version: u64,
    },
    /// Add rows, as a new version.
    Append,
}

/// What a commit records about the statement that made it, in the commit itself (Lance's
/// transaction properties, Delta's `commitInfo`), so that a version always says where it came
/// from. `DESCRIBE HISTORY` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// The kind of write (`WRITE`, `CREATE TABLE AS SELECT`, `MERGE`, …).
    pub operation: String,
    /// The operation's parameters as Databricks names them (`mode`, `predicate`, …).
    pub parameters: BTreeMap<String, String>,
    /// The statement that wrote the version (`system.query.history.statement_id`).
    pub statement_id: Option<String>,
    /// The script and line of that statement (`sql/02_join.sql:12`), when it came from one.
    pub script: Option<String>,
}

/// The keys of [`CommitInfo`] in a commit's properties.
const OPERATION_KEY: &str = "vitrine.operation";
const PARAMETERS_KEY: &str = "vitrine.operation_parameters";
const STATEMENT_KEY: &str = "vitrine.statement_id";
const SCRIPT_KEY: &str = "vitrine.script";

impl CommitInfo {
    /// A commit of `operation` with no parameters and no statement.
    pub fn operation(operation: impl Into<String>) -> Self {
        Self {
            operation: operation.into(),
            ..Self::default()
        }
    }

    /// Adds a parameter.
    pub fn with_parameter(mut self, key: &str, value: impl Into<String>) -> Self {
        self.parameters.insert(key.to_string(), value.into());
        self
    }

    /// The commit's properties, as the formats store them (string values).
    pub fn properties(&self) -> BTreeMap<String, String> {
        let mut properties = BTreeMap::from([(OPERATION_KEY.to_string(), self.operation.clone())]);
        if !self.parameters.is_empty() {
            properties.insert(
                PARAMETERS_KEY.to_string(),
                serde_json::to_string(&self.parameters).expect("a map of strings is JSON"),
            );
        }
        if let Some(id) = &self.statement_id {
            properties.insert(STATEMENT_KEY.to_string(), id.clone());
        }
        if let Some(script) = &self.script {
            properties.insert(SCRIPT_KEY.to_string(), script.clone());
        }
        properties
    }

    /// The commit recorded in `properties`, `None` when they hold no operation (a commit
    /// Vitrine did not make).
    pub fn from_properties(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        Some(Self {
            operation: get(OPERATION_KEY)?,
            parameters: get(PARAMETERS_KEY)
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
            statement_id: get(STATEMENT_KEY),
            script: get(SCRIPT_KEY),
        })
    }
}

/// One committed version of a table, as `DESCRIBE HISTORY` shows it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The version number.
    pub version: u64,
    /// When it was committed.
    pub timestamp: DateTime<Utc>,
    /// What the commit recorded: the operation (`WRITE`, `MERGE`, `OPTIMIZE ZORDER`, …), its
    /// parameters, the statement and script.
    pub commit: CommitInfo,
    /// Rows in the table at that version, when known.
    pub num_rows: Option<u64>,
}

/// What `OPTIMIZE` did.
#[derive(Debug, Clone, Default)]
pub struct OptimizeMetrics {
    /// Data files written.
    pub files_added: u64,
    /// Data files (and deletion files) replaced.
    pub files_removed: u64,
    /// Fragments (or files) before.
    pub fragments_before: u64,
    /// Fragments (or files) after.
    pub fragments_after: u64,
}

/// What an upsert in place wrote: the new version and MERGE's row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    /// The version committed.
    pub version: u64,
    /// Rows that replaced a row with the same key.
    pub updated: u64,
    /// Rows added because no row had their key.
    pub inserted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_reads_back_from_its_properties() {
        let commit = CommitInfo {
            statement_id: Some("s-1".into()),
            script: Some("sql/02.sql:7".into()),
            ..CommitInfo::operation("DELETE").with_parameter("predicate", "price > 10")
        };
        let properties = commit.properties();
        let back = CommitInfo::from_properties(|k| properties.get(k).cloned());
        assert_eq!(back, Some(commit));
        assert_eq!(CommitInfo::from_properties(|_| None), None);
    }
}
