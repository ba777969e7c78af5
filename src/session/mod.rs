//! The session seam: what a statement handler may ask of the session that runs it.
//!
//! Handlers of catalog statements, writes and vector indexes ([`crate::engine`]'s statement
//! modules, [`crate::vector`]) depend on the [`Session`] trait only: plan SQL, resolve table
//! names against the current schema, open tables, read the settings, reach the warehouse and the
//! model functions' report. [`crate::engine::EngineSession`] implements it; an engine is shared
//! by many sessions, each with its own settings and current schema. The trait plays the part
//! DataFusion's own `Session` trait plays for its table providers.

mod result;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::sqlparser::ast::{Query, Statement};
use vitrine_udfs::FunctionContext;

pub use result::{scanned_rows, StatementResult};

use crate::catalog::version::CommitInfo;
use crate::catalog::{QualifiedName, TableEntry, TableName, Warehouse, WarehouseCatalogList};
use crate::config::SessionSettings;
use crate::error::{Result, VitrineError};
use crate::sql::parser::{parse_statement, VitrineStatement};

/// Called, while a statement writes a table, with the number of rows written so far.
pub type WriteProgress = Arc<dyn Fn(usize) + Send + Sync>;

/// The statement a session is running, as the commits it makes and its lineage name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunningStatement {
    /// Its id (`statement_id` in `system.query.history`).
    pub id: String,
    /// The script and line it came from (`sql/01_extract_attributes.sql:12`), if any.
    pub script: Option<String>,
}

impl RunningStatement {
    /// What a commit of `operation` made by this statement records.
    pub fn commit(&self, operation: &str) -> CommitInfo {
        CommitInfo {
            statement_id: Some(self.id.clone()).filter(|id| !id.is_empty()),
            script: self.script.clone(),
            ..CommitInfo::operation(operation)
        }
    }
}

/// A table version a statement committed, for its lineage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableWrite {
    /// The table written.
    pub table: QualifiedName,
    /// Where its data is.
    pub location: String,
    /// The version committed.
    pub version: u64,
    /// What the commit recorded (operation, parameters).
    pub commit: CommitInfo,
    /// Rows written, when counted.
    pub rows: Option<u64>,
}

/// What a statement handler needs from the session running it.
#[async_trait]
pub trait Session: Send + Sync {
    /// The warehouse the session's engine is open on.
    fn warehouse(&self) -> &Arc<Warehouse>;

    /// The session's view of the warehouse catalog: the tree as read when the statement began,
    /// or at the last [`refresh`](Self::refresh) ([`WarehouseCatalogList::snapshot`]), and the
    /// tables it can open.
    fn catalogs(&self) -> &WarehouseCatalogList;

    /// Re-reads the catalog tree, so that what other sessions and processes committed is seen;
    /// each statement does it first, work that plans outside a statement does it itself.
    async fn refresh(&self) -> Result<()>;

    /// The session's DataFusion context: its functions, options and temporary tables.
    fn datafusion(&self) -> &SessionContext;

    /// A copy of the session's settings as they are now.
    fn settings(&self) -> SessionSettings;

    /// What the model functions report about the running statement (models used, rows).
    fn model_functions(&self) -> &FunctionContext;

    /// Where statements that write report their rows, if anywhere.
    fn write_progress(&self) -> Option<WriteProgress>;

    /// The value of the running statement's `$position` (from 1), if it was given one.
    fn parameter(&self, position: usize) -> Option<ScalarValue>;

    /// The running statement: what its commits record.
    fn statement(&self) -> RunningStatement;

    /// Records a table version the running statement committed (its lineage's target).
    fn record_write(&self, write: TableWrite);

    /// Counts rows the running statement's scans read outside its result set (a write's).
    fn record_rows_read(&self, rows: u64);

    /// Plans a query or other DataFusion statement, after the Spark rewrites, with the tables its
    /// placeholders stand for (`read_files`, `VERSION AS OF`, `vector_search`).
    async fn plan_statement(&self, statement: Statement) -> Result<DataFrame>;

    /// Plans a query, after the Spark rewrites.
    async fn plan_query(&self, query: Query) -> Result<DataFrame> {
        self.plan_statement(Statement::Query(Box::new(query))).await
    }

    /// Plans a query given as text (the DML rewrites build their plans this way).
    async fn plan_sql(&self, sql: &str) -> Result<DataFrame> {
        match parse_statement(sql)? {
            VitrineStatement::Query(statement) => self.plan_statement(*statement).await,
            other => Err(VitrineError::Plan(format!(
                "expected a query, got {other:?}"
            ))),
        }
    }

    /// The current catalog and schema (`USE` changes them).
    fn current_schema(&self) -> (String, String) {
        let state = self.datafusion().state();
        let options = &state.config().options().catalog;
        (
            options.default_catalog.clone(),
            options.default_schema.clone(),
        )
    }

    /// `USE catalog.schema`: resolves later one- and two-part names there.
    fn use_schema(&self, catalog: &str, schema: &str) {
        let state = self.datafusion().state_ref();
        let mut state = state.write();
        let options = state.config_mut().options_mut();
        options.catalog.default_catalog = catalog.to_string();
        options.catalog.default_schema = schema.to_string();
    }

    /// The schema a `SHOW … IN [catalog.]schema` names (lower-cased), the current one when
    /// none is given.
    fn schema_named(&self, parts: Option<&[String]>) -> Result<(String, String)> {
        let (catalog, schema) = self.current_schema();
        match parts {
            None => Ok((catalog, schema)),
            Some([s]) => Ok((catalog, s.to_lowercase())),
            Some([c, s]) => Ok((c.to_lowercase(), s.to_lowercase())),
            Some(other) => Err(VitrineError::Plan(format!(
                "'{}' is not a schema name: expected [catalog.]schema",
                other.join(".")
            ))),
        }
    }

    /// Fills in the current catalog and schema.
    fn qualify(&self, table: &TableName) -> QualifiedName {
        let (catalog, schema) = self.current_schema();
        table.resolve(&catalog, &schema)
    }

    /// Resolves a table name against the current schema and returns its entry; the error says
    /// which of catalog, schema or table is missing.
    fn table_entry(&self, table: &TableName) -> Result<(QualifiedName, TableEntry)> {
        let name = self.qualify(table);
        let snapshot = self.catalogs().snapshot();
        match snapshot.table(&name) {
            Some(entry) => Ok((name, entry.clone())),
            None if !snapshot.catalogs.contains_key(&name.catalog) => Err(VitrineError::NotFound(
                format!("catalog '{}' does not exist (table {name})", name.catalog),
            )),
            None if !snapshot.has_schema(&name.catalog, &name.schema) => {
                Err(VitrineError::NotFound(format!(
                    "schema '{}.{}' does not exist (table {name})",
                    name.catalog, name.schema
                )))
            }
            None => Err(VitrineError::NotFound(format!(
                "table {name} does not exist"
            ))),
        }
    }
}
