//! Where the system tables live: one small JSON file per statement under the warehouse's
//! `_system/` folder (`query_history/<date>/<start>-<statement>.json`, and beside it
//! `table_lineage/…` for a statement that wrote), so that any number of processes record at once
//! without a commit to contend for, and a record survives the process that wrote it. Reading
//! lists the folder and decodes every file into the tables' Arrow schemas.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::catalog::{Session as DataFusionSession, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::record::{LineageRecord, QueryRecord};
use crate::catalog::{QualifiedName, Warehouse};
use crate::error::{Result, ResultExt};

/// The folder of the system tables under the warehouse root.
const SYSTEM_DIR: &str = "_system";
const HISTORY_DIR: &str = "query_history";
const LINEAGE_DIR: &str = "table_lineage";

/// The records of a warehouse's statements and writes.
#[derive(Debug, Clone)]
pub struct HistoryStore {
    warehouse: Arc<Warehouse>,
}

impl HistoryStore {
    /// The store of `warehouse`.
    pub fn new(warehouse: Arc<Warehouse>) -> Self {
        Self { warehouse }
    }

    fn folder(&self, table: &str) -> Path {
        self.warehouse
            .store_prefix()
            .clone()
            .join(SYSTEM_DIR)
            .join(table)
    }

    /// Records a statement and, when it wrote, its lineage.
    pub async fn append(&self, query: &QueryRecord, lineage: &[LineageRecord]) -> Result<()> {
        let file = format!(
            "{}-{}.json",
            query.start_time.timestamp_micros(),
            query.statement_id
        );
        let date = query.start_time.format("%Y-%m-%d").to_string();
        if !lineage.is_empty() {
            let path = self
                .folder(LINEAGE_DIR)
                .join(date.as_str())
                .join(file.as_str());
            self.put_lines(&path, lineage).await?;
        }
        let path = self
            .folder(HISTORY_DIR)
            .join(date.as_str())
            .join(file.as_str());
        self.put_lines(&path, std::slice::from_ref(query)).await
    }

    async fn put_lines<T: Serialize>(&self, path: &Path, rows: &[T]) -> Result<()> {
        let mut bytes = Vec::new();
        for row in rows {
            serde_json::to_writer(&mut bytes, row)?;
            bytes.push(b'\n');
        }
        self.warehouse
            .store()
            .put(path, PutPayload::from(bytes))
            .await
            .context(|| format!("writing '{path}'"))?;
        Ok(())
    }

    /// Every statement recorded, oldest first.
    pub async fn queries(&self) -> Result<Vec<QueryRecord>> {
        let mut rows: Vec<QueryRecord> = self.read(HISTORY_DIR).await?;
        rows.sort_by_key(|q| q.start_time);
        Ok(rows)
    }

    /// Every lineage row recorded, oldest first.
    pub async fn lineage(&self) -> Result<Vec<LineageRecord>> {
        let mut rows: Vec<LineageRecord> = self.read(LINEAGE_DIR).await?;
        rows.sort_by(|a, b| (a.event_time, &a.record_id).cmp(&(b.event_time, &b.record_id)));
        Ok(rows)
    }

    /// The rows of every file under one table's folder.
    async fn read<T: DeserializeOwned>(&self, table: &str) -> Result<Vec<T>> {
        let store = self.warehouse.store();
        let folder = self.folder(table);
        let files: Vec<_> = store
            .list(Some(&folder))
            .try_collect()
            .await
            .context(|| format!("listing '{folder}'"))?;
        let contents: Vec<(Path, bytes::Bytes)> = futures::stream::iter(files)
            .map(|meta| {
                let store = Arc::clone(&store);
                async move {
                    let bytes = store.get(&meta.location).await?.bytes().await?;
                    Ok::<_, object_store::Error>((meta.location, bytes))
                }
            })
            .buffer_unordered(32)
            .try_collect()
            .await
            .context(|| format!("reading '{folder}'"))?;
        let mut rows = Vec::new();
        for (path, bytes) in contents {
            for (line, text) in bytes.split(|b| *b == b'\n').enumerate() {
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                rows.push(
                    serde_json::from_slice(text)
                        .context(|| format!("reading '{path}' line {}", line + 1))?,
                );
            }
        }
        Ok(rows)
    }
}

/// The names of the two system tables.
pub fn system_tables() -> [(QualifiedName, SystemTable); 2] {
    let name = |schema: &str, table: &str| QualifiedName {
        catalog: "system".into(),
        schema: schema.into(),
        table: table.into(),
    };
    [
        (name("query", "history"), SystemTable::QueryHistory),
        (name("access", "table_lineage"), SystemTable::TableLineage),
    ]
}

/// Which system table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemTable {
    /// `system.query.history`.
    QueryHistory,
    /// `system.access.table_lineage`.
    TableLineage,
}

impl SystemTable {
    /// The table's schema.
    pub fn schema(self) -> SchemaRef {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let int = |name: &str| Field::new(name, DataType::Int64, true);
        let time = |name: &str| {
            Field::new(
                name,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            )
        };
        let map = |name: &str| {
            let entries = Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ]);
            Field::new(
                name,
                DataType::Map(
                    Arc::new(Field::new("entries", DataType::Struct(entries), false)),
                    false,
                ),
                true,
            )
        };
        let fields = match self {
            Self::QueryHistory => vec![
                text("statement_id"),
                text("session_id"),
                text("execution_status"),
                text("statement_text"),
                text("statement_type"),
                text("error_message"),
                text("executed_by"),
                text("client_application"),
                text("script_file"),
                int("script_line"),
                time("start_time"),
                time("end_time"),
                int("total_duration_ms"),
                int("read_rows"),
                int("produced_rows"),
                int("written_rows"),
                text("current_catalog"),
                text("current_schema"),
                map("settings"),
                int("seed"),
                text("engine_version"),
            ],
            Self::TableLineage => {
                let model = Fields::from(vec![
                    text("kind"),
                    text("id"),
                    text("revision"),
                    text("dtype"),
                    text("device"),
                    map("settings"),
                ]);
                vec![
                    text("record_id"),
                    text("statement_id"),
                    text("entity_type"),
                    text("entity_id"),
                    time("event_time"),
                    Field::new("event_date", DataType::Date32, true),
                    text("source_table_full_name"),
                    text("source_table_catalog"),
                    text("source_table_schema"),
                    text("source_table_name"),
                    text("source_path"),
                    text("source_type"),
                    int("source_table_version"),
                    text("source_view_definition"),
                    text("target_table_full_name"),
                    text("target_table_catalog"),
                    text("target_table_schema"),
                    text("target_table_name"),
                    text("target_path"),
                    text("target_type"),
                    int("target_table_version"),
                    text("operation"),
                    Field::new(
                        "models",
                        DataType::List(Arc::new(Field::new("item", DataType::Struct(model), true))),
                        true,
                    ),
                    text("created_by"),
                ]
            }
        };
        Arc::new(Schema::new(fields))
    }

    /// Its rows as Arrow.
    async fn batch(self, store: &HistoryStore) -> Result<RecordBatch> {
        let schema = self.schema();
        let mut decoder = ReaderBuilder::new(Arc::clone(&schema)).build_decoder()?;
        match self {
            Self::QueryHistory => decoder.serialize(&store.queries().await?)?,
            Self::TableLineage => decoder.serialize(&store.lineage().await?)?,
        }
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(schema)))
    }
}

/// A system table as DataFusion reads it: every record, read when a query scans it.
#[derive(Debug)]
pub struct SystemTableProvider {
    table: SystemTable,
    store: HistoryStore,
}

impl SystemTableProvider {
    /// `table` over the records of `store`.
    pub fn new(table: SystemTable, store: HistoryStore) -> Self {
        Self { table, store }
    }
}

#[async_trait]
impl TableProvider for SystemTableProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DataFusionSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let batch = self
            .table
            .batch(&self.store)
            .await
            .map_err(datafusion::error::DataFusionError::from)?;
        MemTable::try_new(self.schema(), vec![vec![batch]])?
            .scan(state, projection, filters, limit)
            .await
    }
}
