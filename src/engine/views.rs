//! `CREATE [OR REPLACE] VIEW [IF NOT EXISTS]`: the view's query, checked to plan, is stored in
//! the catalog and planned again whenever the view is read, so that it follows its tables.

use datafusion::sql::sqlparser::ast::{Query, Statement};

use crate::catalog::{TableEntry, TableFormat, TableName};
use crate::error::{Result, VitrineError};
use crate::session::{Session, StatementResult};
use crate::sql::rewrite::rewrite_statement;

/// `CREATE VIEW`: checks that the query plans, then stores its rewritten text in the catalog.
pub(super) async fn create(
    session: &dyn Session,
    name: &TableName,
    or_replace: bool,
    if_not_exists: bool,
    comment: Option<String>,
    query: Query,
) -> Result<StatementResult> {
    let name = session.qualify(name);
    let snapshot = session.catalogs().snapshot();
    if !snapshot.has_schema(&name.catalog, &name.schema) {
        return Err(VitrineError::NotFound(format!(
            "schema '{}.{}' does not exist",
            name.catalog, name.schema
        )));
    }
    match snapshot.table(&name) {
        Some(_) if if_not_exists => return Ok(StatementResult::message(format!("{name} exists"))),
        Some(e) if e.format != TableFormat::View => {
            return Err(VitrineError::AlreadyExists(format!(
                "{name} is a table, not a view"
            )))
        }
        Some(_) if !or_replace => {
            return Err(VitrineError::AlreadyExists(format!(
                "view {name} already exists"
            )))
        }
        _ => {}
    }
    let mut statement = Statement::Query(Box::new(query));
    if !rewrite_statement(&mut statement)?.is_empty() {
        return Err(VitrineError::Plan(format!(
            "view {name}: read_files and VERSION AS OF cannot be stored in a view"
        )));
    }
    let sql = statement.to_string();
    session
        .datafusion()
        .state()
        .create_logical_plan(&sql)
        .await
        .map_err(|e| VitrineError::from(e).context(format!("view {name}")))?;
    let entry = TableEntry {
        format: TableFormat::View,
        location: String::new(),
        managed: true,
        properties: Default::default(),
        options: Default::default(),
        comment,
        created_at: chrono::Utc::now().to_rfc3339(),
        view_sql: Some(sql),
    };
    session.warehouse().put_table(&name, &entry).await?;
    Ok(StatementResult::message(format!("created view {name}")))
}
