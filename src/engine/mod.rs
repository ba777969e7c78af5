//! The engine: one DataFusion session over a warehouse, running Databricks SQL statement by
//! statement.
//!
//! [`Engine::execute`] parses a statement ([`crate::sql::parser`]), applies the Spark rewrites
//! ([`crate::sql::rewrite`]) and routes it: queries to DataFusion, catalog statements to
//! `catalog_ops`, writes to `write` (which commits each statement as one new table version).

mod catalog_ops;
mod dml;
mod model_batches;
mod result;
mod script;
mod vector_index;
mod vector_search;
mod write;
mod zorder;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::optimizer::Analyzer;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Query, Statement};

pub use result::StatementResult;
pub use script::ScriptError;

use vitrine_udfs::FunctionContext;

use crate::catalog::blobs::WarehouseFiles;
use crate::catalog::{QualifiedName, TableEntry, TableName, Warehouse, WarehouseCatalogList};
use crate::config::{
    known_vitrine_setting, validate_vitrine_setting, EngineConfig, DEFAULT_CATALOG, DEFAULT_SCHEMA,
};
use crate::error::{Result, VitrineError};
use crate::sql::functions::{self, SparkIntegerDivision};
use crate::sql::parser::{parse_statement, VitrineStatement};
use crate::sql::rewrite::{rewrite_statement, TableRequest, TableRequestKind};

/// Called, while a statement writes a table, with the number of rows written so far.
pub type WriteProgress = Arc<dyn Fn(usize) + Send + Sync>;

pub use vitrine_udfs::context::{
    ProgressSink as ModelProgress, ProgressUpdate as ModelProgressUpdate,
};

/// A session on a warehouse.
pub struct Engine {
    ctx: SessionContext,
    catalogs: WarehouseCatalogList,
    /// `SET` values that are not DataFusion options (`vitrine.*`, `spark.*`, …).
    settings: Mutex<BTreeMap<String, String>>,
    /// The settings the session started with (command-line flags), which `RESET` goes back to.
    startup_settings: BTreeMap<String, String>,
    write_progress: Mutex<Option<WriteProgress>>,
    /// What the model functions share with the session (settings, files, report).
    functions: Arc<FunctionContext>,
}

impl Engine {
    /// Opens the warehouse and starts a session in `main.default` (both created when missing).
    pub async fn open(config: EngineConfig) -> Result<Self> {
        let warehouse = Arc::new(Warehouse::open(&config.warehouse).await?);
        let runtime = Arc::new(RuntimeEnvBuilder::new().build()?);
        if let Some(url) = warehouse.object_store_url() {
            runtime.register_object_store(&url, warehouse.store());
        }
        let session_config = SessionConfig::new()
            .with_default_catalog_and_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .set_str("datafusion.sql_parser.dialect", "databricks")
            // DataFusion 53's leaf-expression pushdown moves `get_field(e, …)` of a subquery's
            // `smolvlm_extract(…) AS e` below the joins and filters that choose the rows, so a
            // model would run on every row of the table (measured: the whole catalog for a
            // 100-product sample). Model calls must stay where the query puts them.
            .set_bool(
                "datafusion.optimizer.enable_leaf_expression_pushdown",
                false,
            );
        let reader = SessionStateBuilder::new()
            .with_default_features()
            .with_runtime_env(Arc::clone(&runtime))
            .build();
        let catalogs = WarehouseCatalogList::new(Arc::clone(&warehouse), Arc::new(reader));
        let model_functions = Arc::new(FunctionContext::new(Arc::new(WarehouseFiles::new(
            Arc::clone(&warehouse),
            tokio::runtime::Handle::current(),
        ))));
        let mut analyzer_rules = Analyzer::new().rules;
        analyzer_rules.insert(0, Arc::new(SparkIntegerDivision));
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(session_config)
            .with_runtime_env(runtime)
            .with_catalog_list(Arc::new(catalogs.clone()))
            .with_analyzer_rules(analyzer_rules)
            .with_physical_optimizer_rule(Arc::new(model_batches::SliceModelInputs::new(
                Arc::clone(&model_functions),
            )))
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        let session = ctx.state_weak_ref();
        catalogs.set_planner(Box::new(move || {
            session.upgrade().map(|s| s.read().clone())
        }));
        functions::register(&mut ctx)?;
        vitrine_udfs::register(&mut ctx, Arc::clone(&model_functions))?;
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            zorder::ZOrderKey::new(),
        ));

        let snapshot = catalogs.refresh().await?;
        if !snapshot.has_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA) {
            warehouse.put_catalog(DEFAULT_CATALOG).await?;
            warehouse
                .put_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA)
                .await?;
            catalogs.refresh().await?;
        }
        let engine = Self {
            ctx,
            catalogs,
            settings: Mutex::new(BTreeMap::new()),
            startup_settings: config.settings.clone(),
            write_progress: Mutex::new(None),
            functions: model_functions,
        };
        for (key, value) in &config.settings {
            engine.set(key, value)?;
        }
        Ok(engine)
    }

    /// The DataFusion session, for registering functions and for embedding.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Arc<Warehouse> {
        self.catalogs.warehouse()
    }

    /// The current catalog and schema (`USE` changes them).
    pub fn current_schema(&self) -> (String, String) {
        let state = self.ctx.state();
        let options = &state.config().options().catalog;
        (
            options.default_catalog.clone(),
            options.default_schema.clone(),
        )
    }

    /// Reports rows written by the statements that write (a progress bar, say).
    pub fn on_rows_written(&self, report: WriteProgress) {
        *self.write_progress.lock().expect("progress lock") = Some(report);
    }

    /// Syncs the `CONTINUOUS` vector indexes whose source changed since their last sync (what
    /// `vitrine serve` does periodically); returns a line per index synced.
    pub async fn sync_continuous_indexes(&self) -> Result<Vec<String>> {
        vector_index::sync_continuous(self).await
    }

    /// Reports the model functions' progress (rows done, rows expected) during a statement.
    pub fn on_model_progress(&self, report: ModelProgress) {
        self.functions.on_progress(report);
    }

    pub(crate) fn model_functions(&self) -> &FunctionContext {
        &self.functions
    }

    pub(crate) fn write_progress(&self) -> Option<WriteProgress> {
        self.write_progress.lock().expect("progress lock").clone()
    }

    /// A session setting set with `SET` (or given at start-up), if any.
    pub fn setting(&self, key: &str) -> Option<String> {
        self.settings
            .lock()
            .expect("settings lock")
            .get(key)
            .cloned()
    }

    /// Every table name the session can see, qualified, for completion and `\d`.
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let snapshot = self.catalogs.refresh().await?;
        let mut names = Vec::new();
        for (catalog, schemas) in &snapshot.catalogs {
            for (schema, tables) in schemas {
                names.extend(tables.keys().map(|t| format!("{catalog}.{schema}.{t}")));
            }
        }
        Ok(names)
    }

    /// Runs one statement and returns its result set (empty for most statements that write),
    /// with a warning for rows the model functions could not process.
    pub async fn execute(&self, sql: &str) -> Result<StatementResult> {
        self.functions.begin_statement();
        let outcome = self.execute_statement(sql).await;
        let report = self.functions.finish_statement();
        let mut result = outcome?;
        result.warnings.extend(report.warnings());
        Ok(result)
    }

    async fn execute_statement(&self, sql: &str) -> Result<StatementResult> {
        self.catalogs.refresh().await?;
        let statement = parse_statement(sql)?;
        tracing::debug!(?statement, "executing");
        match statement {
            VitrineStatement::Query(statement) => {
                let df = self.plan_statement(*statement).await?;
                StatementResult::collect(df).await
            }
            VitrineStatement::DataFusion(sql) => {
                StatementResult::collect(self.ctx.sql(&sql).await?).await
            }
            VitrineStatement::Set { key, value } => self.execute_set(key, value).await,
            VitrineStatement::Reset { key } => self.reset(key.as_deref()),
            VitrineStatement::CreateTable(create) => write::create_table(self, *create).await,
            VitrineStatement::Insert {
                table,
                columns,
                overwrite,
                query,
            } => write::insert(self, &table, &columns, overwrite, *query).await,
            VitrineStatement::Delete {
                table,
                alias,
                predicate,
            } => write::delete(self, &table, alias, predicate).await,
            VitrineStatement::Update {
                table,
                alias,
                assignments,
                predicate,
            } => write::update(self, &table, alias, assignments, predicate).await,
            VitrineStatement::Merge(merge) => write::merge(self, *merge).await,
            VitrineStatement::CreateView {
                name,
                or_replace,
                if_not_exists,
                comment,
                query,
            } => {
                self.create_view(&name, or_replace, if_not_exists, comment, *query)
                    .await
            }
            VitrineStatement::Optimize { table, zorder_by } => {
                write::optimize(self, &table, &zorder_by).await
            }
            VitrineStatement::Restore { table, version } => {
                write::restore(self, &table, version).await
            }
            VitrineStatement::CreateVectorIndex(create) => {
                vector_index::create(self, *create).await
            }
            VitrineStatement::SyncIndex { name } => vector_index::sync(self, &name).await,
            VitrineStatement::DropIndex { name, if_exists } => {
                vector_index::drop(self, &name, if_exists).await
            }
            VitrineStatement::ShowIndexes { schema } => vector_index::show(self, schema).await,
            VitrineStatement::DescribeIndex { name } => vector_index::describe(self, &name).await,
            other => catalog_ops::execute(self, other).await,
        }
    }

    /// `CREATE VIEW`: checks that the query plans, then stores its rewritten text in the catalog.
    async fn create_view(
        &self,
        name: &TableName,
        or_replace: bool,
        if_not_exists: bool,
        comment: Option<String>,
        query: Query,
    ) -> Result<StatementResult> {
        let name = self.qualify(name);
        let snapshot = self.catalogs.snapshot();
        if !snapshot.has_schema(&name.catalog, &name.schema) {
            return Err(VitrineError::NotFound(format!(
                "schema '{}.{}' does not exist",
                name.catalog, name.schema
            )));
        }
        match snapshot.table(&name) {
            Some(_) if if_not_exists => {
                return Ok(StatementResult::message(format!("{name} exists")))
            }
            Some(e) if e.format != crate::catalog::TableFormat::View => {
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
        self.ctx
            .state()
            .create_logical_plan(&sql)
            .await
            .map_err(|e| VitrineError::from(e).context(format!("view {name}")))?;
        let entry = TableEntry {
            format: crate::catalog::TableFormat::View,
            location: String::new(),
            managed: true,
            properties: Default::default(),
            options: Default::default(),
            comment,
            created_at: chrono::Utc::now().to_rfc3339(),
            view_sql: Some(sql),
        };
        self.warehouse().put_table(&name, &entry).await?;
        Ok(StatementResult::message(format!("created view {name}")))
    }

    /// Plans a query or other DataFusion statement, after the Spark rewrites.
    pub(crate) async fn plan_statement(&self, mut statement: Statement) -> Result<DataFrame> {
        let requests = rewrite_statement(&mut statement)?;
        self.with_requested_tables(requests, || async {
            let plan = self
                .ctx
                .state()
                .statement_to_plan(DFStatement::Statement(Box::new(statement)))
                .await?;
            Ok(self.ctx.execute_logical_plan(plan).await?)
        })
        .await
    }

    /// Plans a query, after the Spark rewrites.
    pub(crate) async fn plan_query(&self, query: Query) -> Result<DataFrame> {
        self.plan_statement(Statement::Query(Box::new(query))).await
    }

    /// Plans a query given as text (the DML rewrites build their plans this way).
    pub(crate) async fn plan_sql(&self, sql: &str) -> Result<DataFrame> {
        match parse_statement(sql)? {
            VitrineStatement::Query(statement) => self.plan_statement(*statement).await,
            other => Err(VitrineError::Plan(format!(
                "expected a query, got {other:?}"
            ))),
        }
    }

    /// Opens the tables a statement's placeholders stand for, registers them while `plan` runs,
    /// and removes them after (the plan holds its own references).
    async fn with_requested_tables<F, Fut>(
        &self,
        requests: Vec<TableRequest>,
        plan: F,
    ) -> Result<DataFrame>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<DataFrame>>,
    {
        let (catalog, schema) = self.current_schema();
        let mut registered = Vec::new();
        for request in &requests {
            let provider = match &request.kind {
                TableRequestKind::Version { table, version } => {
                    let (name, entry) = self.table_entry(table)?;
                    self.catalogs
                        .open_table(&entry, Some(*version))
                        .await
                        .map_err(|e| e.context(format!("reading {name} VERSION AS OF {version}")))?
                }
                TableRequestKind::AsOfTime { table, timestamp } => {
                    let (name, entry) = self.table_entry(table)?;
                    let version = self.version_at(&name, &entry, timestamp).await?;
                    self.catalogs.open_table(&entry, Some(version)).await?
                }
                TableRequestKind::ReadFiles { path, options } => {
                    let mut options = options.clone();
                    let format = options
                        .remove("format")
                        .unwrap_or_else(|| path.rsplit('.').next().unwrap_or("csv").to_string());
                    let format = crate::catalog::TableFormat::parse(&format)?;
                    let location = self.warehouse().resolve_path(path);
                    self.catalogs
                        .open_files(&location, format, &options)
                        .await?
                }
                TableRequestKind::VectorSearch { arguments } => {
                    // Boxed: evaluating the arguments plans queries, which may search again.
                    Box::pin(vector_search::search(self, arguments)).await?
                }
                TableRequestKind::LateralVectorSearch {
                    arguments,
                    query_argument,
                    left,
                    key,
                } => {
                    Box::pin(vector_search::lateral_search(
                        self,
                        arguments,
                        query_argument,
                        left,
                        key,
                    ))
                    .await?
                }
            };
            let name = QualifiedName {
                catalog: catalog.clone(),
                schema: schema.clone(),
                table: request.placeholder.clone(),
            };
            self.catalogs.register_session_table(name.clone(), provider);
            registered.push(name);
        }
        let result = plan().await;
        for name in &registered {
            self.catalogs.deregister_session_table(name);
        }
        result
    }

    /// The newest version of a table committed at or before the time `timestamp` (a SQL
    /// expression) evaluates to, as Databricks' `TIMESTAMP AS OF` reads it.
    async fn version_at(
        &self,
        name: &QualifiedName,
        entry: &TableEntry,
        timestamp: &str,
    ) -> Result<u64> {
        let sql = format!("SELECT CAST(to_timestamp_micros({timestamp}) AS BIGINT)");
        let batches = self.ctx.sql(&sql).await?.collect().await?;
        let micros = batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
            })
            .filter(|a| {
                datafusion::arrow::array::Array::len(*a) == 1
                    && !datafusion::arrow::array::Array::is_null(*a, 0)
            })
            .map(|a| a.value(0))
            .ok_or_else(|| {
                VitrineError::Plan(format!("TIMESTAMP AS OF {timestamp}: not a time"))
            })?;
        let history = crate::catalog::history(name, entry).await?;
        history
            .iter()
            .filter(|h| h.timestamp.timestamp_micros() <= micros)
            .map(|h| h.version)
            .max()
            .ok_or_else(|| {
                VitrineError::NotFound(format!("{name} has no version at or before {timestamp}"))
            })
    }

    /// Resolves a table name against the current schema and returns its entry.
    pub(crate) fn table_entry(&self, table: &TableName) -> Result<(QualifiedName, TableEntry)> {
        let name = self.qualify(table);
        let snapshot = self.catalogs.snapshot();
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

    /// Fills in the current catalog and schema.
    pub(crate) fn qualify(&self, table: &TableName) -> QualifiedName {
        let (catalog, schema) = self.current_schema();
        table.resolve(&catalog, &schema)
    }

    pub(crate) fn catalogs(&self) -> &WarehouseCatalogList {
        &self.catalogs
    }

    fn set(&self, key: &str, value: &str) -> Result<()> {
        if key.starts_with("vitrine.") {
            validate_vitrine_setting(key, value)?;
            self.functions.set(key, value).map_err(VitrineError::Plan)?;
        }
        self.settings
            .lock()
            .expect("settings lock")
            .insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// `RESET [key]`: `key` (every key when none) back to the value the session started with, or
    /// to its default. DataFusion's own options are SET back instead.
    fn reset(&self, key: Option<&str>) -> Result<StatementResult> {
        if let Some(key) = key.filter(|k| k.starts_with("datafusion.")) {
            return Err(VitrineError::Plan(format!(
                "RESET {key}: DataFusion options are reset with SET {key} = <default>"
            )));
        }
        let mut settings = self.settings.lock().expect("settings lock");
        match key {
            Some(key) => {
                if key.starts_with("vitrine.") {
                    known_vitrine_setting(key)?;
                }
                match self.startup_settings.get(key) {
                    Some(value) => settings.insert(key.to_string(), value.clone()),
                    None => settings.remove(key),
                };
            }
            None => settings.clone_from(&self.startup_settings),
        }
        self.functions
            .reset_settings(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(VitrineError::Plan)?;
        Ok(StatementResult::message(match key {
            Some(key) => format!("{key} reset"),
            None => "every setting reset".to_string(),
        }))
    }

    async fn execute_set(
        &self,
        key: Option<String>,
        value: Option<String>,
    ) -> Result<StatementResult> {
        match (key, value) {
            (Some(key), Some(value)) if key.starts_with("datafusion.") => {
                self.ctx
                    .sql(&format!("SET {key} = '{}'", value.replace('\'', "''")))
                    .await?
                    .collect()
                    .await?;
                Ok(StatementResult::message(format!("{key} = {value}")))
            }
            (Some(key), Some(value)) => {
                self.set(&key, &value)?;
                Ok(StatementResult::message(format!("{key} = {value}")))
            }
            (key, None) => {
                let settings = self.settings.lock().expect("settings lock").clone();
                let rows: Vec<Vec<Option<String>>> = settings
                    .into_iter()
                    .filter(|(k, _)| key.as_ref().is_none_or(|want| want == k))
                    .map(|(k, v)| vec![Some(k), Some(v)])
                    .collect();
                StatementResult::strings(&["key", "value"], rows)
            }
            (None, Some(_)) => Err(VitrineError::Parse("SET needs a key".into())),
        }
    }
}
