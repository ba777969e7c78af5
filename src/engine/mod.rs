//! The engine: a warehouse opened once and shared, through [`Arc`], by any number of sessions
//! that run Databricks SQL statement by statement.
//!
//! [`Engine`] holds what every session shares: the warehouse, DataFusion's runtime (memory pool,
//! object stores), the model files found so far, and the settings given at start-up.
//! [`EngineSession`] is one caller's session (the command line, the REPL, one request of a
//! service): its own DataFusion context, settings, current schema and catalog snapshot. Sessions
//! run statements concurrently; a `SET` or `USE` in one never changes another.
//!
//! [`EngineSession::execute`] parses a statement ([`crate::sql::parser`]), applies the Spark
//! rewrites ([`crate::sql::rewrite`]) and routes it: queries to DataFusion, catalog statements to
//! `catalog_ops`, views to `views`, writes to `write` (which commits each statement as one
//! new table version), scalar indexes to `table_indexes`, vector indexes to [`crate::vector`].
//! Those handlers see the session through the [`crate::session::Session`] trait only.

mod catalog_ops;
mod conform;
mod grace_join;
mod model_batches;
mod query_settings;
mod recorder;
mod script;
mod session;
mod table_indexes;
mod views;
mod worker;
mod worker_reports;
mod write;

use std::sync::Arc;

use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use vitrine_udfs::runtime::source::Hub;

pub use script::ScriptError;
pub use session::EngineSession;
pub use vitrine_udfs::context::{
    ProgressSink as ModelProgress, ProgressUpdate as ModelProgressUpdate,
};

use crate::catalog::blobs::WarehouseFiles;
use crate::catalog::{Warehouse, WarehouseCatalogList};
use crate::cluster::Workers;
use crate::config::{EngineConfig, SessionSettings, DEFAULT_CATALOG, DEFAULT_SCHEMA};
use crate::error::Result;
use crate::history::HistoryStore;
use crate::models::objects::WarehouseModels;
use crate::session::Session as _;

/// A warehouse opened for SQL, shared by the sessions that run statements on it.
pub struct Engine {
    warehouse: Arc<Warehouse>,
    runtime: Arc<RuntimeEnv>,
    /// A bare session over the runtime, with which tables infer file schemas and register
    /// object stores.
    reader: Arc<SessionState>,
    /// What the model functions of every session read image paths through.
    files: Arc<WarehouseFiles>,
    /// Where every session's model functions find model files (shared, so that a model folder
    /// is located once).
    hub: Hub,
    /// The settings every session starts with and `RESET` goes back to.
    startup: SessionSettings,
    /// Where every session records its statements (`system.query.history`, lineage).
    history: HistoryStore,
    /// The workers sessions plan across, if any.
    workers: Option<Workers>,
    /// As a worker: the plan fragments received so far.
    worker_plans: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("warehouse", &self.warehouse.display())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the warehouse (creating `main.default` when missing) and checks the start-up
    /// settings.
    pub async fn open(config: EngineConfig) -> Result<Arc<Self>> {
        let startup = SessionSettings::from_values(&config.settings)?;
        if let Some(workers) = &config.workers {
            workers.check().await?;
        }
        let warehouse = Arc::new(Warehouse::open(&config.warehouse).await?);
        let runtime = Arc::new(RuntimeEnvBuilder::new().build()?);
        if let Some(url) = warehouse.object_store_url() {
            runtime.register_object_store(&url, warehouse.store());
        }
        let reader = SessionStateBuilder::new()
            .with_default_features()
            .with_runtime_env(Arc::clone(&runtime))
            .build();
        let snapshot = warehouse.load_snapshot().await?;
        if !snapshot.has_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA) {
            warehouse.put_catalog(DEFAULT_CATALOG).await?;
            warehouse
                .put_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA)
                .await?;
        }
        let files = Arc::new(WarehouseFiles::new(
            Arc::clone(&warehouse),
            tokio::runtime::Handle::current(),
        ));
        let hub = Hub::from_env().with_objects(Arc::new(WarehouseModels::new(
            Arc::clone(&warehouse),
            tokio::runtime::Handle::current(),
            crate::models::objects::default_cache(),
        )));
        Ok(Arc::new(Self {
            history: HistoryStore::new(Arc::clone(&warehouse)),
            warehouse,
            runtime,
            reader: Arc::new(reader),
            files,
            hub,
            startup,
            workers: config.workers,
            worker_plans: Arc::default(),
        }))
    }

    /// Answers a coordinator's plan fragments on `listener` (`vitrine worker`) until the process
    /// ends, with this engine's functions and models.
    pub async fn serve_worker(self: &Arc<Self>, listener: tokio::net::TcpListener) -> Result<()> {
        worker::serve(Arc::clone(self), listener, Arc::clone(&self.worker_plans)).await
    }

    /// As a worker: how many plan fragments (one per task of a stage) it has been sent.
    pub fn worker_plans(&self) -> u64 {
        self.worker_plans.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new session in `main.default` with the start-up settings.
    pub fn session(self: &Arc<Self>) -> Result<EngineSession> {
        EngineSession::new(Arc::clone(self))
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Arc<Warehouse> {
        &self.warehouse
    }

    /// The records of the statements run on the warehouse.
    pub fn history(&self) -> &HistoryStore {
        &self.history
    }

    /// Syncs the `CONTINUOUS` vector indexes whose source changed since their last sync (what
    /// `vitrine serve` does periodically), in a session of its own; returns a line per index
    /// synced.
    pub async fn sync_continuous_indexes(self: &Arc<Self>) -> Result<Vec<String>> {
        let session = self.session()?;
        session.refresh().await?;
        crate::vector::statements::sync_continuous(&session).await
    }

    /// Reads into memory every vector index searched there that is not held in its current
    /// state yet ([`crate::vector::statements::warm`]); returns a line per index read.
    pub async fn warm_indexes(self: &Arc<Self>) -> Result<Vec<String>> {
        let session = self.session()?;
        crate::vector::statements::warm(&session).await
    }

    /// A catalog list for a new session: its own snapshot and temporary tables over the shared
    /// warehouse and runtime.
    fn catalog_list(&self) -> WarehouseCatalogList {
        WarehouseCatalogList::new(Arc::clone(&self.warehouse), self.reader.clone() as _)
    }
}
