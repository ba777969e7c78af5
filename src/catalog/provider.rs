//! The warehouse as DataFusion sees it: catalogs, schemas and tables that resolve three-part names.
//!
//! Each session has its own [`WarehouseCatalogList`] over the shared warehouse. The catalog tree is
//! read from the warehouse into the session's [`CatalogSnapshot`] before each of its statements
//! ([`WarehouseCatalogList::refresh`]), so tables created by other sessions and processes are
//! seen, and a statement plans against one consistent tree. Tables are opened through their
//! format's [`storage()`] when a query names them, at their latest version; views are planned then,
//! with the session's own state. Temporary views and the temporary tables a statement needs
//! (`read_files(…)`, `t VERSION AS OF n`) live in the session only.
//!
//! The catalog list also remembers what a statement read ([`TableRead`]: each table and the
//! version opened, each temporary view and the tables under it), for the statement's lineage,
//! and can pin tables to versions ([`WarehouseCatalogList::pin`]) so that a statement re-run
//! reads what it read the first time.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, Session, TableProvider,
};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;

use super::warehouse::CatalogSnapshot;
use super::{files, storage, QualifiedName, TableEntry, TableFormat, Warehouse};
use crate::error::Result;

/// What a statement read: a table of the warehouse at a version, files, or a temporary view of
/// the session (whose own reads are recorded beside it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRead {
    /// The table or view, as the statement named it (qualified); `None` for files.
    pub name: Option<QualifiedName>,
    /// What was read.
    pub kind: ReadKind,
    /// Where its data is (empty for a temporary view).
    pub location: String,
    /// The version read, for a versioned table.
    pub version: Option<u64>,
}

/// The kind of thing a statement read, as Databricks' lineage names it (`source_type`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReadKind {
    /// A table of the warehouse.
    Table(TableFormat),
    /// Files read by path (`read_files`).
    Path(TableFormat),
    /// A temporary view, with its query.
    TemporaryView(String),
}

impl ReadKind {
    /// Databricks' `source_type`: `TABLE`, `PATH` or `VIEW`.
    pub fn source_type(&self) -> &'static str {
        match self {
            Self::Table(_) => "TABLE",
            Self::Path(_) => "PATH",
            Self::TemporaryView(_) => "VIEW",
        }
    }
}

struct Shared {
    warehouse: Arc<Warehouse>,
    snapshot: RwLock<Arc<CatalogSnapshot>>,
    session_tables: RwLock<HashMap<QualifiedName, Arc<dyn TableProvider>>>,
    /// A session over the same runtime, used to infer file schemas and register object stores.
    reader: Arc<dyn Session>,
    /// The session's state, to plan views (set once the session exists).
    planner: OnceLock<SessionSource>,
    /// What the running statement has read so far.
    reads: Mutex<Vec<TableRead>>,
    /// The tables opened and still alive, with what reading them reads: how a temporary view's
    /// plan, made when the view was created, tells which versions it reads.
    opened: Mutex<Vec<(Weak<dyn TableProvider>, TableRead)>>,
    /// Tables read at a fixed version whatever their latest is.
    pins: RwLock<HashMap<QualifiedName, u64>>,
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
                reads: Mutex::new(Vec::new()),
                opened: Mutex::new(Vec::new()),
                pins: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// From now on, reads `table` at `version` whenever a statement names it.
    pub fn pin(&self, table: QualifiedName, version: u64) {
        self.shared
            .pins
            .write()
            .expect("catalog lock")
            .insert(table, version);
    }

    /// Reads `table` at its latest version again; whether it was pinned.
    pub fn unpin(&self, table: &QualifiedName) -> bool {
        self.shared
            .pins
            .write()
            .expect("catalog lock")
            .remove(table)
            .is_some()
    }

    /// The version `table` is pinned at, if it is.
    pub fn pinned(&self, table: &QualifiedName) -> Option<u64> {
        self.shared
            .pins
            .read()
            .expect("catalog lock")
            .get(table)
            .copied()
    }

    /// What the statement has read since the last call, each thing once, in the order first
    /// read.
    pub fn take_reads(&self) -> Vec<TableRead> {
        std::mem::take(&mut *self.shared.reads.lock().expect("reads lock"))
    }

    /// Notes a read, once: outside statements (a service's searches) nothing takes the reads,
    /// so they must not pile up.
    fn record_read(&self, read: TableRead) {
        let mut reads = self.shared.reads.lock().expect("reads lock");
        if !reads.contains(&read) {
            reads.push(read);
        }
    }

    /// Opens a table the statement reads, at its pinned version, `version`, or its latest, and
    /// records the read.
    pub async fn read_table(
        &self,
        name: &QualifiedName,
        entry: &TableEntry,
        version: Option<u64>,
    ) -> Result<Arc<dyn TableProvider>> {
        let pinned = self
            .shared
            .pins
            .read()
            .expect("catalog lock")
            .get(name)
            .copied();
        let version = version.or(pinned);
        if entry.view_sql.is_some() {
            // A stored view: the tables its query names are read (and recorded) as it plans.
            return self.open_table(entry, version).await;
        }
        let opened = storage(entry.format)?
            .open(
                &entry.location,
                version,
                &entry.options,
                self.shared.reader.as_ref(),
            )
            .await?;
        let read = TableRead {
            name: Some(name.clone()),
            kind: ReadKind::Table(entry.format),
            location: entry.location.clone(),
            version: opened.version,
        };
        self.remember(&opened.provider, read.clone());
        self.record_read(read);
        Ok(opened.provider)
    }

    /// Keeps what reading `provider` reads, for the temporary views planned over it.
    fn remember(&self, provider: &Arc<dyn TableProvider>, read: TableRead) {
        let mut opened = self.shared.opened.lock().expect("opened lock");
        opened.retain(|(table, _)| table.strong_count() > 0);
        opened.push((Arc::downgrade(provider), read));
    }

    /// Records the read of a session table: for a temporary view, the view and every table its
    /// plan reads.
    fn record_session_table(&self, name: &QualifiedName, provider: &Arc<dyn TableProvider>) {
        let Some(view) = provider.as_any().downcast_ref::<ViewTable>() else {
            return;
        };
        self.record_read(TableRead {
            name: Some(name.clone()),
            kind: ReadKind::TemporaryView(view.definition().cloned().unwrap_or_default()),
            location: String::new(),
            version: None,
        });
        self.record_plan_reads(view.logical_plan());
    }

    /// Records the tables under a plan made earlier (a temporary view's), as they were opened.
    fn record_plan_reads(&self, plan: &LogicalPlan) {
        let mut found = Vec::new();
        let _ = plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                if let Ok(provider) = source_as_provider(&scan.source) {
                    found.push(provider);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        for provider in found {
            if let Some(view) = provider.as_any().downcast_ref::<ViewTable>() {
                self.record_plan_reads(view.logical_plan());
                continue;
            }
            let read = self
                .shared
                .opened
                .lock()
                .expect("opened lock")
                .iter()
                .find(|(table, _)| {
                    table
                        .upgrade()
                        .is_some_and(|table| Arc::ptr_eq(&table, &provider))
                })
                .map(|(_, read)| read.clone());
            if let Some(read) = read {
                self.record_read(read);
            }
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

    /// Opens a table of the warehouse, at its latest version or at `version`, without recording
    /// a read (to learn its schema, say).
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
        Ok(storage(entry.format)?
            .open(
                &entry.location,
                version,
                &entry.options,
                self.shared.reader.as_ref(),
            )
            .await?
            .provider)
    }

    /// A table over plain files, for `read_files(…)`; records the read.
    pub async fn open_files(
        &self,
        location: &str,
        format: TableFormat,
        options: &std::collections::BTreeMap<String, String>,
    ) -> Result<Arc<dyn TableProvider>> {
        let provider =
            files::provider(location, format, options, self.shared.reader.as_ref()).await?;
        let read = TableRead {
            name: None,
            kind: ReadKind::Path(format),
            location: location.to_string(),
            version: None,
        };
        self.remember(&provider, read.clone());
        self.record_read(read);
        Ok(provider)
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
            let table = Arc::clone(table);
            self.list.record_session_table(&qualified, &table);
            return Ok(Some(table));
        }
        let Some(entry) = self.list.snapshot().table(&qualified).cloned() else {
            return Ok(None);
        };
        let provider = self
            .list
            .read_table(&qualified, &entry, None)
            .await
            .map_err(|e| DataFusionError::from(e.context(format!("opening table {qualified}"))))?;
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
