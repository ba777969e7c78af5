//! The warehouse as DataFusion sees it: catalogs, schemas and tables that resolve three-part names.
//!
//! Each session has its own [`WarehouseCatalogList`] over the shared warehouse. The catalog tree is
//! read from the warehouse into the session's [`CatalogSnapshot`] before each of its statements
//! ([`WarehouseCatalogList::refresh`]), so tables created by other sessions and processes are
//! seen, and a statement plans against one consistent tree. Tables are opened through their
//! format's [`storage()`] when a query names them, at their latest version; views are planned then,
//! with the session's own state. Temporary views and the temporary tables a statement needs
//! (`read_files(…)`, `t VERSION AS OF n`) live in the session only.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SessionState;

use super::warehouse::CatalogSnapshot;
use super::{files, storage, QualifiedName, TableEntry, TableFormat, Warehouse};
use crate::error::Result;

struct Shared {
    warehouse: Arc<Warehouse>,
    snapshot: RwLock<Arc<CatalogSnapshot>>,
    session_tables: RwLock<HashMap<QualifiedName, Arc<dyn TableProvider>>>,
    /// A session over the same runtime, used to infer file schemas and register object stores.
    reader: Arc<dyn Session>,
    /// The session's state, to plan views (set once the session exists).
    planner: OnceLock<SessionSource>,
}

/// Hands out a copy of the session's current state.
pub type SessionSource = Box<dyn Fn() -> Option<SessionState> + Send + Sync>;

/// The root of the warehouse catalog tree as one session sees it, registered as that session's
/// catalog list.
#[derive(Clone)]
pub struct WarehouseCatalogList {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WarehouseCatalogList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarehouseCatalogList")
            .field("warehouse", &self.shared.warehouse.display())
            .finish()
    }
}

impl WarehouseCatalogList {
    /// A session's catalog list over `warehouse`; `reader` is a session sharing the engine's
    /// runtime.
    pub fn new(warehouse: Arc<Warehouse>, reader: Arc<dyn Session>) -> Self {
        Self {
            shared: Arc::new(Shared {
                warehouse,
                snapshot: RwLock::new(Arc::default()),
                session_tables: RwLock::new(HashMap::new()),
                reader,
                planner: OnceLock::new(),
            }),
        }
    }

    /// Gives the catalog its session, with which views are planned.
    pub fn set_planner(&self, source: SessionSource) {
        let _ = self.shared.planner.set(source);
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Arc<Warehouse> {
        &self.shared.warehouse
    }

    /// Re-reads the catalog tree from the warehouse.
    pub async fn refresh(&self) -> Result<Arc<CatalogSnapshot>> {
        let snapshot = self.shared.warehouse.load_snapshot().await?;
        *self.shared.snapshot.write().expect("catalog lock") = Arc::clone(&snapshot);
        Ok(snapshot)
    }

    /// The catalog tree as last read.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        Arc::clone(&self.shared.snapshot.read().expect("catalog lock"))
    }

    /// Opens a table of the warehouse, at its latest version or at `version`.
    pub async fn open_table(
        &self,
        entry: &TableEntry,
        version: Option<u64>,
    ) -> Result<Arc<dyn TableProvider>> {
        if let Some(sql) = &entry.view_sql {
            let state = self
                .shared
                .planner
                .get()
                .and_then(|source| source())
                .ok_or_else(|| {
                    crate::error::VitrineError::Plan(
                        "views cannot be read before the session starts".into(),
                    )
                })?;
            let plan = state.create_logical_plan(sql).await?;
            return Ok(Arc::new(ViewTable::new(plan, Some(sql.to_string()))));
        }
        storage(entry.format)?
            .open(
                &entry.location,
                version,
                &entry.options,
                self.shared.reader.as_ref(),
            )
            .await
    }

    /// A table over plain files, for `read_files(…)`.
    pub async fn open_files(
        &self,
        location: &str,
        format: TableFormat,
        options: &std::collections::BTreeMap<String, String>,
    ) -> Result<Arc<dyn TableProvider>> {
        files::provider(location, format, options, self.shared.reader.as_ref()).await
    }

    /// Makes `provider` visible under `name` for this session only.
    pub fn register_session_table(&self, name: QualifiedName, provider: Arc<dyn TableProvider>) {
        self.shared
            .session_tables
            .write()
            .expect("catalog lock")
            .insert(name, provider);
    }

    /// Removes a session-only table.
    pub fn deregister_session_table(&self, name: &QualifiedName) -> Option<Arc<dyn TableProvider>> {
        self.shared
            .session_tables
            .write()
            .expect("catalog lock")
            .remove(name)
    }

    /// Whether a session-only table (a view, say) has this name.
    pub fn has_session_table(&self, name: &QualifiedName) -> bool {
        self.shared
            .session_tables
            .read()
            .expect("catalog lock")
            .contains_key(name)
    }

    fn session_schemas(&self, catalog: &str) -> Vec<String> {
        let tables = self.shared.session_tables.read().expect("catalog lock");
        tables
            .keys()
            .filter(|n| n.catalog == catalog)
            .map(|n| n.schema.clone())
            .collect()
    }
}

impl CatalogProviderList for WarehouseCatalogList {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn register_catalog(
        &self,
        name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        tracing::warn!("ignoring catalog '{name}' registered in memory: use CREATE CATALOG");
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        self.snapshot().catalogs.keys().cloned().collect()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        let exists =
            self.snapshot().catalogs.contains_key(name) || !self.session_schemas(name).is_empty();
        exists.then(|| {
            Arc::new(WarehouseCatalog {
                list: self.clone(),
                name: name.to_string(),
            }) as _
        })
    }
}

#[derive(Debug)]
struct WarehouseCatalog {
    list: WarehouseCatalogList,
    name: String,
}

impl CatalogProvider for WarehouseCatalog {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .list
            .snapshot()
            .catalogs
            .get(&self.name)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        names.extend(self.list.session_schemas(&self.name));
        names.sort();
        names.dedup();
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let exists = self.list.snapshot().has_schema(&self.name, name)
            || self
                .list
                .session_schemas(&self.name)
                .iter()
                .any(|s| s == name);
        exists.then(|| {
            Arc::new(WarehouseSchema {
                list: self.list.clone(),
                catalog: self.name.clone(),
                name: name.to_string(),
            }) as _
        })
    }

    fn register_schema(
        &self,
        name: &str,
        _schema: Arc<dyn SchemaProvider>,
    ) -> DFResult<Option<Arc<dyn SchemaProvider>>> {
        Err(DataFusionError::Plan(format!(
            "cannot register schema '{name}' in memory: use CREATE SCHEMA {}.{name}",
            self.name
        )))
    }
}

#[derive(Debug)]
struct WarehouseSchema {
    list: WarehouseCatalogList,
    catalog: String,
    name: String,
}

impl WarehouseSchema {
    fn qualified(&self, table: &str) -> QualifiedName {
        QualifiedName {
            catalog: self.catalog.clone(),
            schema: self.name.clone(),
            table: table.to_string(),
        }
    }
}

#[async_trait]
impl SchemaProvider for WarehouseSchema {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let snapshot = self.list.snapshot();
        let mut names: Vec<String> = snapshot
            .catalogs
            .get(&self.catalog)
            .and_then(|c| c.get(&self.name))
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        let session = self
            .list
            .shared
            .session_tables
            .read()
            .expect("catalog lock");
        names.extend(
            session
                .keys()
                .filter(|n| n.catalog == self.catalog && n.schema == self.name)
                .map(|n| n.table.clone()),
        );
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let qualified = self.qualified(name);
        if let Some(table) = self
            .list
            .shared
            .session_tables
            .read()
            .expect("catalog lock")
            .get(&qualified)
        {
            return Ok(Some(Arc::clone(table)));
        }
        let Some(entry) = self.list.snapshot().table(&qualified).cloned() else {
            return Ok(None);
        };
        let provider =
            self.list.open_table(&entry, None).await.map_err(|e| {
                DataFusionError::from(e.context(format!("opening table {qualified}")))
            })?;
        Ok(Some(provider))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> DFResult<Option<Arc<dyn TableProvider>>> {
        let qualified = self.qualified(&name);
        if self.list.snapshot().table(&qualified).is_some() {
            return Err(DataFusionError::Plan(format!(
                "table {qualified} exists in the warehouse"
            )));
        }
        self.list
            .register_session_table(qualified, Arc::clone(&table));
        Ok(None)
    }

    fn deregister_table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Ok(self.list.deregister_session_table(&self.qualified(name)))
    }

    fn table_exist(&self, name: &str) -> bool {
        let qualified = self.qualified(name);
        self.list.has_session_table(&qualified) || self.list.snapshot().table(&qualified).is_some()
    }
}
