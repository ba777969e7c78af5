//! Statements on the catalog itself: catalogs, schemas, `USE`, `SHOW`, `DESCRIBE`, `DROP TABLE`,
//! table properties and comments.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, MapBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::Schema;

use crate::catalog::storage::{self, storage};
use crate::catalog::TableFormat;
use crate::error::{Result, VitrineError};
use crate::history::HistoryStore;
use crate::session::{Session, StatementResult};
use std::collections::BTreeMap;

use crate::catalog::TableName;
use crate::sql::parser::UseKind;
use crate::sql::types::spark_type_name;

/// `CREATE CATALOG [IF NOT EXISTS] name`, with its `default` schema.
pub(super) async fn create_catalog(
    session: &dyn Session,
    name: String,
    if_not_exists: bool,
) -> Result<StatementResult> {
    let warehouse = session.warehouse();
    let snapshot = session.catalogs().snapshot();
    if snapshot.catalogs.contains_key(&name) {
        if if_not_exists {
            return Ok(StatementResult::message(format!("catalog {name} exists")));
        }
        return Err(VitrineError::AlreadyExists(format!(
            "catalog '{name}' already exists"
        )));
    }
    warehouse.put_catalog(&name).await?;
    warehouse.put_schema(&name, "default").await?;
    Ok(StatementResult::message(format!("created catalog {name}")))
}

/// `CREATE SCHEMA [IF NOT EXISTS] [catalog.]name`.
pub(super) async fn create_schema(
    session: &dyn Session,
    catalog: Option<String>,
    name: String,
    if_not_exists: bool,
) -> Result<StatementResult> {
    let warehouse = session.warehouse();
    let snapshot = session.catalogs().snapshot();
    let (current_catalog, _) = session.current_schema();
    let catalog = catalog.unwrap_or(current_catalog);
    if !snapshot.catalogs.contains_key(&catalog) {
        return Err(VitrineError::NotFound(format!(
            "catalog '{catalog}' does not exist: CREATE CATALOG {catalog} first"
        )));
    }
    if snapshot.has_schema(&catalog, &name) {
        if if_not_exists {
            return Ok(StatementResult::message(format!(
                "schema {catalog}.{name} exists"
            )));
        }
        return Err(VitrineError::AlreadyExists(format!(
            "schema '{catalog}.{name}' already exists"
        )));
    }
    warehouse.put_schema(&catalog, &name).await?;
    Ok(StatementResult::message(format!(
        "created schema {catalog}.{name}"
    )))
}

/// `DROP SCHEMA [IF EXISTS] [catalog.]name [CASCADE]`: with `CASCADE`, its tables and vector indexes too.
pub(super) async fn drop_schema(
    session: &dyn Session,
    catalog: Option<String>,
    name: String,
    if_exists: bool,
    cascade: bool,
) -> Result<StatementResult> {
    let warehouse = session.warehouse();
    let snapshot = session.catalogs().snapshot();
    let (current_catalog, _) = session.current_schema();
    let catalog = catalog.unwrap_or(current_catalog);
    let Some(tables) = snapshot.catalogs.get(&catalog).and_then(|c| c.get(&name)) else {
        if if_exists {
            return Ok(StatementResult::message(format!(
                "schema {catalog}.{name} does not exist"
            )));
        }
        return Err(VitrineError::NotFound(format!(
            "schema '{catalog}.{name}' does not exist"
        )));
    };
    let indexes = crate::vector::catalog::list(warehouse, &catalog, &name).await?;
    if (!tables.is_empty() || !indexes.is_empty()) && !cascade {
        return Err(VitrineError::Plan(format!(
            "schema '{catalog}.{name}' has {} tables and {} vector indexes: DROP them or use CASCADE",
            tables.len(),
            indexes.len()
        )));
    }
    for (index, _) in &indexes {
        crate::vector::catalog::delete(
            warehouse,
            &crate::catalog::QualifiedName {
                catalog: catalog.clone(),
                schema: name.clone(),
                table: index.clone(),
            },
        )
        .await?;
    }
    for (table, entry) in tables {
        let qualified = crate::catalog::QualifiedName {
            catalog: catalog.clone(),
            schema: name.clone(),
            table: table.clone(),
        };
        warehouse.delete_table(&qualified, entry).await?;
    }
    warehouse.delete_schema(&catalog, &name).await?;
    Ok(StatementResult::message(format!(
        "dropped schema {catalog}.{name}"
    )))
}

/// `USE CATALOG c`, `USE [SCHEMA] [c.]s`: where later one- and two-part names resolve, in this session.
pub(super) async fn use_schema(
    session: &dyn Session,
    kind: UseKind,
    name: Vec<String>,
) -> Result<StatementResult> {
    let snapshot = session.catalogs().snapshot();
    let (current_catalog, _) = session.current_schema();
    let (catalog, schema) = match (kind, name.as_slice()) {
        (UseKind::Catalog, [c]) => (c.clone(), "default".to_string()),
        (UseKind::Schema, [s]) => (current_catalog, s.clone()),
        (UseKind::Schema, [c, s]) => (c.clone(), s.clone()),
        _ => {
            return Err(VitrineError::Plan(format!(
                "USE takes a catalog or [catalog.]schema, got '{}'",
                name.join(".")
            )))
        }
    };
    if !snapshot.catalogs.contains_key(&catalog) {
        return Err(VitrineError::NotFound(format!(
            "catalog '{catalog}' does not exist"
        )));
    }
    if !snapshot.has_schema(&catalog, &schema) {
        return Err(VitrineError::NotFound(format!(
            "schema '{catalog}.{schema}' does not exist"
        )));
    }
    session.use_schema(&catalog, &schema);
    Ok(StatementResult::message(format!(
        "using {catalog}.{schema}"
    )))
}

/// `SHOW CATALOGS`.
pub(super) async fn show_catalogs(session: &dyn Session) -> Result<StatementResult> {
    let snapshot = session.catalogs().snapshot();
    StatementResult::strings(
        &["catalog"],
        snapshot
            .catalogs
            .keys()
            .map(|c| vec![Some(c.clone())])
            .collect(),
    )
}

/// `SHOW SCHEMAS [IN catalog]`.
pub(super) async fn show_schemas(
    session: &dyn Session,
    catalog: Option<String>,
) -> Result<StatementResult> {
    let snapshot = session.catalogs().snapshot();
    let (current_catalog, _) = session.current_schema();
    let catalog = catalog.unwrap_or(current_catalog);
    let schemas = snapshot
        .catalogs
        .get(&catalog)
        .ok_or_else(|| VitrineError::NotFound(format!("catalog '{catalog}' does not exist")))?;
    StatementResult::strings(
        &["databaseName"],
        schemas.keys().map(|s| vec![Some(s.clone())]).collect(),
    )
}

/// `SHOW TABLES [IN [catalog.]schema]`, with each table's format.
pub(super) async fn show_tables(
    session: &dyn Session,
    schema: Option<Vec<String>>,
) -> Result<StatementResult> {
    let snapshot = session.catalogs().snapshot();
    let (catalog, schema) = session.schema_named(schema.as_deref())?;
    let tables = snapshot
        .catalogs
        .get(&catalog)
        .and_then(|c| c.get(&schema))
        .ok_or_else(|| {
            VitrineError::NotFound(format!("schema '{catalog}.{schema}' does not exist"))
        })?;
    StatementResult::strings(
        &["database", "tableName", "format"],
        tables
            .iter()
            .map(|(t, e)| {
                vec![
                    Some(schema.clone()),
                    Some(t.clone()),
                    Some(e.format.to_string()),
                ]
            })
            .collect(),
    )
}

/// `SHOW TBLPROPERTIES table`.
pub(super) async fn show_tbl_properties(
    session: &dyn Session,
    table: TableName,
) -> Result<StatementResult> {
    let (_, entry) = session.table_entry(&table)?;
    StatementResult::strings(
        &["key", "value"],
        entry
            .properties
            .iter()
            .map(|(k, v)| vec![Some(k.clone()), Some(v.clone())])
            .collect(),
    )
}

/// `DESCRIBE HISTORY table`: every version, newest first.
pub(super) async fn describe_history(
    session: &dyn Session,
    table: TableName,
    records: &HistoryStore,
) -> Result<StatementResult> {
    let (name, entry) = session.table_entry(&table)?;
    let mut history = storage::history(&name, &entry).await?;
    if history.iter().any(|h| h.commit.statement_id.is_none()) {
        // Commits that cannot carry their statement (compaction, restore): the lineage names it.
        let lineage = records.lineage().await?;
        let queries = records.queries().await?;
        for h in history
            .iter_mut()
            .filter(|h| h.commit.statement_id.is_none())
        {
            let Some(row) = lineage.iter().find(|r| {
                r.target_name() == name
                    && r.target_table_version == h.version
                    && r.target_path == entry.location
            }) else {
                continue;
            };
            h.commit.statement_id = Some(row.statement_id.clone());
            h.commit.script = queries
                .iter()
                .find(|q| q.statement_id == row.statement_id)
                .and_then(|q| Some(format!("{}:{}", q.script_file.as_ref()?, q.script_line?)));
        }
    }
    history.sort_by_key(|h| std::cmp::Reverse(h.version));
    let mut parameters = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for h in &history {
        for (key, value) in &h.commit.parameters {
            parameters.keys().append_value(key);
            parameters.values().append_value(value);
        }
        parameters.append(true)?;
    }
    let utc = Some(std::sync::Arc::from("UTC"));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            history.iter().map(|h| h.version as i64),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                history.iter().map(|h| h.timestamp.timestamp_micros()),
            )
            .with_timezone_opt(utc),
        ),
        Arc::new(StringArray::from_iter_values(
            history.iter().map(|h| h.commit.operation.as_str()),
        )),
        Arc::new(parameters.finish()),
        Arc::new(StringArray::from_iter(
            history.iter().map(|h| h.commit.statement_id.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            history.iter().map(|h| h.commit.script.as_deref()),
        )),
        Arc::new(Int64Array::from_iter(
            history.iter().map(|h| h.num_rows.map(|n| n as i64)),
        )),
    ];
    let names = [
        "version",
        "timestamp",
        "operation",
        "operationParameters",
        "statement_id",
        "script",
        "num_rows",
    ];
    let batch = RecordBatch::try_from_iter(names.into_iter().zip(columns))?;
    let df = session.datafusion().read_batch(batch)?;
    StatementResult::collect(df).await
}

/// `DROP TABLE [IF EXISTS] table`: its entry, and a managed table's data.
pub(super) async fn drop_table(
    session: &dyn Session,
    table: TableName,
    if_exists: bool,
) -> Result<StatementResult> {
    let warehouse = session.warehouse();
    let (name, entry) = match session.table_entry(&table) {
        Ok(found) => found,
        Err(VitrineError::NotFound(_)) if if_exists => {
            return Ok(StatementResult::message(format!(
                "table {table} does not exist"
            )))
        }
        Err(e) => return Err(e),
    };
    warehouse.delete_table(&name, &entry).await?;
    Ok(StatementResult::message(format!("dropped table {name}")))
}

/// `DROP VIEW [IF EXISTS] name`: a stored view, or a temporary one of this session.
pub(super) async fn drop_view(
    session: &dyn Session,
    name: TableName,
    if_exists: bool,
) -> Result<StatementResult> {
    let warehouse = session.warehouse();
    let snapshot = session.catalogs().snapshot();
    let qualified = session.qualify(&name);
    match snapshot.table(&qualified) {
        Some(entry) if entry.format == TableFormat::View => {
            warehouse.delete_table(&qualified, entry).await?;
            Ok(StatementResult::message(format!(
                "dropped view {qualified}"
            )))
        }
        Some(_) => Err(VitrineError::Plan(format!(
            "{qualified} is a table: use DROP TABLE"
        ))),
        None if session
            .catalogs()
            .deregister_session_table(&qualified)
            .is_some() =>
        {
            Ok(StatementResult::message(format!(
                "dropped temporary view {qualified}"
            )))
        }
        None if if_exists => Ok(StatementResult::message(format!(
            "view {qualified} does not exist"
        ))),
        None => Err(VitrineError::NotFound(format!(
            "view {qualified} does not exist"
        ))),
    }
}

/// `ALTER TABLE table SET TBLPROPERTIES (…)`.
pub(super) async fn set_tbl_properties(
    session: &dyn Session,
    table: TableName,
    properties: BTreeMap<String, String>,
) -> Result<StatementResult> {
    let warehouse = session.warehouse();
    let (name, mut entry) = session.table_entry(&table)?;
    let count = properties.len();
    entry.properties.extend(properties);
    warehouse.put_table(&name, &entry).await?;
    Ok(StatementResult::message(format!(
        "set {count} properties on {name}"
    )))
}

/// `ALTER TABLE table UNSET TBLPROPERTIES (…)`.
pub(super) async fn unset_tbl_properties(
    session: &dyn Session,
    table: TableName,
    keys: Vec<String>,
) -> Result<StatementResult> {
    let warehouse = session.warehouse();
    let (name, mut entry) = session.table_entry(&table)?;
    for key in &keys {
        entry.properties.remove(key);
    }
    warehouse.put_table(&name, &entry).await?;
    Ok(StatementResult::message(format!(
        "unset {} properties on {name}",
        keys.len()
    )))
}

/// `COMMENT ON TABLE table IS …`.
pub(super) async fn comment_on_table(
    session: &dyn Session,
    table: TableName,
    comment: Option<String>,
) -> Result<StatementResult> {
    let warehouse = session.warehouse();
    let (name, mut entry) = session.table_entry(&table)?;
    entry.comment = comment;
    warehouse.put_table(&name, &entry).await?;
    Ok(StatementResult::message(format!("commented on {name}")))
}

/// `DESCRIBE [TABLE] [EXTENDED] table`: its columns with Spark types, and with `EXTENDED` the
/// table's details (format, location, version, properties).
pub(super) async fn describe(
    session: &dyn Session,
    table: &crate::catalog::TableName,
    extended: bool,
) -> Result<StatementResult> {
    let (name, entry) = session.table_entry(table)?;
    let provider = session.catalogs().open_table(&entry, None).await?;
    let schema: std::sync::Arc<Schema> = provider.schema();
    let mut rows: Vec<Vec<Option<String>>> = schema
        .fields()
        .iter()
        .map(|f| {
            vec![
                Some(f.name().clone()),
                Some(spark_type_name(f.data_type())),
                None,
            ]
        })
        .collect();
    if extended {
        let version = storage(entry.format)?
            .version(&entry.location)
            .await?
            .map(|v| v.to_string());
        let properties = entry
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let detail = |k: &str, v: Option<String>| vec![Some(k.to_string()), v, None];
        rows.push(detail("", None));
        rows.push(detail("# Detailed Table Information", None));
        rows.push(detail("Catalog", Some(name.catalog.clone())));
        rows.push(detail("Database", Some(name.schema.clone())));
        rows.push(detail("Table", Some(name.table.clone())));
        rows.push(detail(
            "Type",
            Some(if entry.managed { "MANAGED" } else { "EXTERNAL" }.to_string()),
        ));
        rows.push(detail("Provider", Some(entry.format.to_string())));
        rows.push(detail("Location", Some(entry.location.clone())));
        rows.push(detail("Created Time", Some(entry.created_at.clone())));
        rows.push(detail("Version", version));
        rows.push(detail("Comment", entry.comment.clone()));
        rows.push(detail("Table Properties", Some(format!("[{properties}]"))));
    }
    StatementResult::strings(&["col_name", "data_type", "comment"], rows)
}
