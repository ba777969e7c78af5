//! Statements on a table's scalar indexes: `CREATE INDEX`, `DROP INDEX … ON`, `SHOW INDEXES ON`.
//! Building or dropping an index commits a new version of the table with the same rows, recorded
//! in its lineage like any write.

use super::write::writable_table;
use crate::catalog::storage;
use crate::error::{Result, VitrineError};
use crate::session::{Session, StatementResult, TableWrite};
use crate::sql::parser::CreateScalarIndex;

/// `CREATE INDEX [IF NOT EXISTS] name ON table (column) [USING BTREE|BITMAP]`.
pub(super) async fn create(
    session: &dyn Session,
    create: CreateScalarIndex,
) -> Result<StatementResult> {
    let (table, entry, schema) = writable_table(session, &create.table).await?;
    let storage = storage(entry.format)?;
    let name = &create.name;
    let Ok(field) = schema.field_with_name(&create.column.to_lowercase()) else {
        return Err(VitrineError::Plan(format!(
            "CREATE INDEX {name}: {table} has no column '{}'",
            create.column
        )));
    };
    if storage
        .indexes(&entry.location)
        .await?
        .iter()
        .any(|i| &i.name == name)
    {
        return if create.if_not_exists {
            Ok(StatementResult::message(format!(
                "index {name} on {table} exists"
            )))
        } else {
            Err(VitrineError::Plan(format!(
                "{table} already has an index named '{name}' (use IF NOT EXISTS, or DROP INDEX \
                 {name} ON {table})"
            )))
        };
    }
    let commit = session
        .statement()
        .commit("CREATE INDEX")
        .with_parameter("name", name.clone())
        .with_parameter("column", field.name().clone())
        .with_parameter("kind", create.kind.to_string());
    let version = storage
        .create_index(&entry.location, name, field.name(), create.kind, &commit)
        .await
        .map_err(|e| e.context(format!("CREATE INDEX {name} ON {table}")))?;
    session.record_write(TableWrite {
        table: table.clone(),
        location: entry.location.clone(),
        version,
        commit,
        rows: None,
    });
    Ok(StatementResult::message(format!(
        "created {} index {name} on {table} ({}), version {version}",
        create.kind,
        field.name()
    )))
}

/// `DROP INDEX [IF EXISTS] name ON table`.
pub(super) async fn drop(
    session: &dyn Session,
    name: &str,
    table: &crate::catalog::TableName,
    if_exists: bool,
) -> Result<StatementResult> {
    let (table, entry, _) = writable_table(session, table).await?;
    match storage(entry.format)?
        .drop_index(&entry.location, name)
        .await?
    {
        Some(version) => {
            session.record_write(TableWrite {
                table: table.clone(),
                location: entry.location.clone(),
                version,
                commit: session
                    .statement()
                    .commit("DROP INDEX")
                    .with_parameter("name", name.to_string()),
                rows: None,
            });
            Ok(StatementResult::message(format!(
                "dropped index {name} on {table}, version {version}"
            )))
        }
        None if if_exists => Ok(StatementResult::message(format!(
            "{table} has no index named '{name}'"
        ))),
        None => Err(VitrineError::Plan(format!(
            "DROP INDEX {name}: {table} has no index named '{name}'"
        ))),
    }
}

/// `SHOW INDEXES ON table`: name, column, kind, and how many rows the index covers and does not
/// yet cover (rows written since it was built or last brought up to date by `OPTIMIZE`).
pub(super) async fn show(
    session: &dyn Session,
    table: &crate::catalog::TableName,
) -> Result<StatementResult> {
    let (name, entry) = session.table_entry(table)?;
    let indexes = if entry.format.is_writable() {
        storage(entry.format)?.indexes(&entry.location).await?
    } else {
        Vec::new()
    };
    let rows = indexes
        .into_iter()
        .map(|i| {
            vec![
                Some(i.name),
                Some(i.column),
                Some(i.kind),
                Some(i.indexed_rows.to_string()),
                Some(i.unindexed_rows.to_string()),
            ]
        })
        .collect::<Vec<_>>();
    let count = rows.len();
    Ok(StatementResult::strings(
        &["name", "column", "kind", "indexed_rows", "unindexed_rows"],
        rows,
    )?
    .with_message(format!("{count} indexes on {name}")))
}
