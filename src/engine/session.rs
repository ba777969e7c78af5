//! [`EngineSession`]: one caller's session on a shared [`Engine`], and the routing of each
//! statement to its handler.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::Field;
use datafusion::common::ScalarValue;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::logical_expr::{ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs};
use datafusion::optimizer::Analyzer;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::{CopyToSource, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, Statement};
use datafusion::sql::sqlparser::dialect::DatabricksDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_distributed::DistributedExt as _;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use vitrine_udfs::FunctionContext;

use super::query_settings::QuerySettings;
use super::{
    catalog_ops, conform, grace_join, model_batches, table_indexes, views, worker_reports, write,
    Engine, ModelProgress,
};
use crate::catalog::{
    storage, QualifiedName, TableEntry, TableFormat, Warehouse, WarehouseCatalogList,
};
use crate::cluster;
use crate::config::{SessionSettings, DEFAULT_CATALOG, DEFAULT_SCHEMA};
use crate::error::{Result, VitrineError};
use crate::history::store::{system_tables, SystemTableProvider};
use crate::models;
use crate::quality;
use crate::session::{RunningStatement, Session, StatementResult, TableWrite, WriteProgress};
use crate::sql::functions::statement_inputs::{self, StatementInputs};
use crate::sql::functions::{self, SparkIntegerDivision};
use crate::sql::parser::{parse_statement, VitrineStatement};
use crate::sql::rewrite::{rewrite_statement, TableRequest, TableRequestKind};
use crate::vector;

/// One caller's session: its own DataFusion context (functions, options, current schema),
/// settings, catalog snapshot and model-function report, over an engine it shares with other
/// sessions. Statements of one session run one at a time (a second waits for the first);
/// sessions run concurrently.
pub struct EngineSession {
    pub(super) engine: Arc<Engine>,
    /// Held while a statement runs: the model functions' report is the session's.
    running: tokio::sync::Mutex<()>,
    ctx: SessionContext,
    catalogs: WarehouseCatalogList,
    settings: Mutex<SessionSettings>,
    write_progress: Mutex<Option<WriteProgress>>,
    /// What the model functions share with the session (settings, files, report).
    functions: Arc<FunctionContext>,
    /// The values of the running statement's `$1`, `$2`, … ([`Self::execute_with_parameters`]).
    parameters: Mutex<Vec<ScalarValue>>,
    /// The session's id in `system.query.history`.
    pub(super) id: String,
    /// What runs the session's statements (`client_application`).
    pub(super) client: Mutex<String>,
    /// The running statement, as its commits name it.
    pub(super) running_statement: Mutex<RunningStatement>,
    /// The table versions the running statement committed.
    pub(super) writes: Mutex<Vec<TableWrite>>,
    /// Rows the running statement's writes read.
    pub(super) rows_read: AtomicU64,
    /// The running statement's clock and seed, as its functions read them.
    pub(super) inputs: Arc<StatementInputs>,
}

impl std::fmt::Debug for EngineSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSession")
            .field("engine", &self.engine)
            .field("schema", &self.current_schema())
            .finish_non_exhaustive()
    }
}

/// The name a `COPY` statement's source is planned under while DataFusion plans the copy.
const COPY_SOURCE: &str = "__vitrine_copy_source";

impl EngineSession {
    pub(super) fn new(engine: Arc<Engine>) -> Result<Self> {
        let session_config = SessionConfig::new()
            .with_default_catalog_and_schema(DEFAULT_CATALOG, DEFAULT_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true)
            .set_str("datafusion.sql_parser.dialect", "databricks")
            // Spark's TIMESTAMP is an instant shown in the session time zone: DataFusion's
            // `now()`, `to_timestamp()` and `TIMESTAMP WITH TIME ZONE` carry this zone.
            .set_str(
                "datafusion.execution.time_zone",
                engine.startup.core.time_zone(),
            )
            // DataFusion 53's leaf-expression pushdown moves `get_field(e, …)` of a subquery's
            // `smolvlm_extract(…) AS e` below the joins and filters that choose the rows, so a
            // model would run on every row of the table (measured: the whole catalog for a
            // 100-product sample). Model calls must stay where the query puts them.
            .set_bool(
                "datafusion.optimizer.enable_leaf_expression_pushdown",
                false,
            );
        let catalogs = engine.catalog_list();
        let model_functions = Arc::new(FunctionContext::new(
            engine.files.clone(),
            engine.hub.clone(),
        ));
        model_functions.set_settings(
            engine.startup.models.clone(),
            engine.startup.choices.chosen().clone(),
        );
        let sql_functions = vitrine_udfs::functions(&model_functions);
        let batched = sql_functions
            .iter()
            .filter(|f| f.runs_model)
            .map(|f| f.udf.name().to_string())
            .collect();
        let mut analyzer_rules = Analyzer::new().rules;
        analyzer_rules.insert(0, Arc::new(SparkIntegerDivision));
        let mut state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(session_config)
            .with_runtime_env(Arc::clone(&engine.runtime))
            .with_catalog_list(Arc::new(catalogs.clone()))
            .with_analyzer_rules(analyzer_rules)
            .with_physical_optimizer_rule(Arc::new(model_batches::SliceModelInputs::new(
                Arc::clone(&model_functions),
                batched,
            )));
        if engine.workers.is_none() {
            // Joins that spill under a memory limit (one node: a distributed plan's joins run
            // on the workers as they are planned).
            state = state.with_physical_optimizer_rule(Arc::new(grace_join::SpillLargeJoins));
        }
        if let Some(workers) = &engine.workers {
            // Added last: the plan is cut into stages once every other rule has run.
            let codecs: [Arc<dyn PhysicalExtensionCodec>; 1] =
                [Arc::new(model_batches::SliceBatchesCodec)];
            state = cluster::distribute(state, workers, &engine.warehouse, &codecs)?
                .with_distributed_task_estimator(model_batches::ModelInputTasks)
                .with_physical_optimizer_rule(Arc::new(worker_reports::CollectWorkerReports::new(
                    Arc::clone(&model_functions),
                )));
            state = QuerySettings::default().send_from(state);
        }
        let state = state.build();
        let mut ctx = SessionContext::new_with_state(state);
        let state = ctx.state_weak_ref();
        catalogs.set_planner(Box::new(move || state.upgrade().map(|s| s.read().clone())));
        functions::register(&mut ctx)?;
        let inputs = Arc::new(StatementInputs::default());
        statement_inputs::register(&mut ctx, &inputs)?;
        for function in sql_functions {
            ctx.register_udf(function.udf);
        }
        for (name, table) in system_tables() {
            let provider = SystemTableProvider::new(table, engine.history().clone());
            catalogs.register_session_table(name, Arc::new(provider));
        }
        Ok(Self {
            running: tokio::sync::Mutex::new(()),
            settings: Mutex::new(engine.startup.clone()),
            engine,
            ctx,
            catalogs,
            write_progress: Mutex::new(None),
            functions: model_functions,
            parameters: Mutex::new(Vec::new()),
            id: uuid::Uuid::new_v4().to_string(),
            client: Mutex::new("vitrine".to_string()),
            running_statement: Mutex::new(RunningStatement::default()),
            writes: Mutex::new(Vec::new()),
            rows_read: AtomicU64::new(0),
            inputs,
        })
    }

    /// The engine the session runs on.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Names what runs this session's statements, as `system.query.history.client_application`
    /// shows it (`vitrine run`, `vitrine repl`, …).
    pub fn set_client_application(&self, name: &str) {
        *self.client.lock().expect("client lock") = name.to_string();
    }

    /// Reads `table` at `version` in every later statement of this session, whatever its latest
    /// version: how a statement is re-run against the versions it read.
    pub fn pin_version(&self, table: QualifiedName, version: u64) {
        self.catalogs.pin(table, version);
    }

    /// Reports rows written by the statements that write (a progress bar, say).
    pub fn on_rows_written(&self, report: WriteProgress) {
        *self.write_progress.lock().expect("progress lock") = Some(report);
    }

    /// Reports the model functions' progress (rows done, rows expected) during a statement.
    pub fn on_model_progress(&self, report: ModelProgress) {
        self.functions.on_progress(report);
    }

    /// The value `SET` (or a start-up flag) gave `key` in this session, if any.
    pub fn setting(&self, key: &str) -> Option<String> {
        self.settings
            .lock()
            .expect("settings lock")
            .get(key)
            .map(str::to_string)
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
        self.execute_with_parameters(sql, Vec::new()).await
    }

    /// Runs one statement whose `$1`, `$2`, … stand for `parameters`, as a prepared statement's
    /// do: a query's placeholders anywhere, and `vector_search`'s arguments (`query_vector =>
    /// $1`), so that an application's query vector is neither printed as 512 literals nor
    /// parsed back.
    pub async fn execute_with_parameters(
        &self,
        sql: &str,
        parameters: Vec<ScalarValue>,
    ) -> Result<StatementResult> {
        self.execute_recorded(sql, parameters, None).await
    }

    /// Runs one statement of a script, recorded with the script's name and the statement's line.
    pub async fn execute_in_script(
        &self,
        sql: &str,
        file: &str,
        line: usize,
    ) -> Result<StatementResult> {
        self.execute_recorded(sql, Vec::new(), Some((file, line)))
            .await
    }

    /// Runs one statement and records it in `system.query.history` (and its writes' lineage).
    async fn execute_recorded(
        &self,
        sql: &str,
        parameters: Vec<ScalarValue>,
        script: Option<(&str, usize)>,
    ) -> Result<StatementResult> {
        let _running = self.running.lock().await;
        let start = self.begin_record(script);
        self.functions.begin_statement();
        *self.parameters.lock().expect("parameters lock") = parameters;
        // Boxed: a statement's future holds every kind of statement's, nested deeply; unboxed, it
        // makes the future of any caller's script too deep for rustc's default query depth.
        let outcome = match (
            Box::pin(self.execute_statement(sql)).await,
            &self.engine.workers,
        ) {
            (Err(e), Some(workers)) => Err(workers.name_stopped(e).await),
            (outcome, _) => outcome,
        };
        self.parameters.lock().expect("parameters lock").clear();
        let report = self.functions.finish_statement();
        let unrecorded = self
            .finish_record(start, sql, &outcome, &report.models)
            .await;
        match outcome {
            Ok(mut result) => {
                result.warnings.extend(report.warnings());
                result.warnings.extend(unrecorded);
                Ok(result)
            }
            Err(e) => {
                if let Some(why) = unrecorded {
                    tracing::warn!("{why}");
                }
                Err(e)
            }
        }
    }

    /// The `k` nearest rows of the vector index `index` to each of `queries`, as
    /// `vector_search` returns them, without a statement: the in-process API a search service
    /// calls ([`vector::search::nearest`]). Runs beside this session's statements.
    pub async fn search_vectors(
        &self,
        index: &str,
        queries: &[Vec<f32>],
        k: usize,
        filter: Option<&vector::filter::RowFilter>,
    ) -> Result<Vec<RecordBatch>> {
        vector::search::nearest(self, index, queries, k, filter).await
    }

    /// Calls the session's scalar function `name` (a model function such as `clip_text_embed`,
    /// with the session's models and settings) over one column of values, outside any
    /// statement: how a service embeds its queries without writing them into SQL text. Runs on
    /// the caller's thread; a model function is CPU-bound, so call it where blocking is fine.
    pub fn call_function(&self, name: &str, values: ArrayRef) -> Result<ArrayRef> {
        let function = datafusion::execution::FunctionRegistry::udf(&self.ctx, name)?;
        let arg_fields = vec![Arc::new(Field::new(
            "value",
            values.data_type().clone(),
            true,
        ))];
        let return_field = function.return_field_from_args(ReturnFieldArgs {
            arg_fields: &arg_fields,
            scalar_arguments: &[None],
        })?;
        let rows = values.len();
        let out = function.invoke_with_args(ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(values)],
            arg_fields,
            number_rows: rows,
            return_field,
            config_options: Arc::clone(self.ctx.state().config_options()),
        })?;
        Ok(out.into_array(rows)?)
    }

    /// `CREATE TEMPORARY VIEW IF NOT EXISTS v`: `None` when the session already has a `v`, else
    /// the statement without its `IF NOT EXISTS` (which DataFusion does not take).
    fn unless_view_exists(&self, statement: Statement) -> Result<Option<Statement>> {
        match statement {
            Statement::CreateView(mut view) if view.if_not_exists => {
                if self.ctx.table_exist(view.name.to_string().as_str())? {
                    return Ok(None);
                }
                view.if_not_exists = false;
                Ok(Some(Statement::CreateView(view)))
            }
            other => Ok(Some(other)),
        }
    }

    async fn execute_statement(&self, sql: &str) -> Result<StatementResult> {
        self.refresh().await?;
        let statement = parse_statement(sql)?;
        tracing::debug!(?statement, "executing");
        match statement {
            VitrineStatement::Query(statement) => {
                let Some(statement) = self.unless_view_exists(*statement)? else {
                    return Ok(StatementResult::message("view exists".to_string()));
                };
                let mut df = self.plan_statement(statement).await?;
                let parameters = self.parameters.lock().expect("parameters lock").clone();
                if !parameters.is_empty() {
                    df = df.with_param_values(parameters)?;
                }
                StatementResult::collect(df).await
            }
            VitrineStatement::Copy(sql) => {
                StatementResult::collect(self.copy_to(&sql).await?).await
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
            } => views::create(self, &name, or_replace, if_not_exists, comment, *query).await,
            VitrineStatement::Optimize { table, zorder_by } => {
                write::optimize(self, &table, &zorder_by).await
            }
            VitrineStatement::Restore { table, version } => {
                write::restore(self, &table, version).await
            }
            VitrineStatement::CreateVectorIndex(create) => {
                vector::statements::create(self, *create).await
            }
            VitrineStatement::SyncIndex { name } => vector::statements::sync(self, &name).await,
            VitrineStatement::CreateModel(create) => {
                models::statements::create(self, *create).await
            }
            VitrineStatement::ShowModels { schema } => models::statements::show(self, schema).await,
            VitrineStatement::DescribeModel { name } => {
                models::statements::describe(self, &name).await
            }
            VitrineStatement::DropModel { name, if_exists } => {
                models::statements::drop(self, &name, if_exists).await
            }
            VitrineStatement::DropIndex { name, if_exists } => {
                vector::statements::drop(self, &name, if_exists).await
            }
            VitrineStatement::ShowIndexes { schema } => {
                vector::statements::show(self, schema).await
            }
            VitrineStatement::CreateScalarIndex(create) => {
                table_indexes::create(self, *create).await
            }
            VitrineStatement::DropScalarIndex {
                name,
                table,
                if_exists,
            } => table_indexes::drop(self, &name, &table, if_exists).await,
            VitrineStatement::ShowTableIndexes { table } => table_indexes::show(self, &table).await,
            VitrineStatement::DescribeIndex { name } => {
                vector::statements::describe(self, &name).await
            }
            VitrineStatement::CreateCatalog {
                name,
                if_not_exists,
            } => catalog_ops::create_catalog(self, name, if_not_exists).await,
            VitrineStatement::CreateSchema {
                catalog,
                name,
                if_not_exists,
            } => catalog_ops::create_schema(self, catalog, name, if_not_exists).await,
            VitrineStatement::DropSchema {
                catalog,
                name,
                if_exists,
                cascade,
            } => catalog_ops::drop_schema(self, catalog, name, if_exists, cascade).await,
            VitrineStatement::Use { kind, name } => catalog_ops::use_schema(self, kind, name).await,
            VitrineStatement::ShowCatalogs => catalog_ops::show_catalogs(self).await,
            VitrineStatement::ShowSchemas { catalog } => {
                catalog_ops::show_schemas(self, catalog).await
            }
            VitrineStatement::ShowTables { schema } => catalog_ops::show_tables(self, schema).await,
            VitrineStatement::ShowTblProperties { table } => {
                catalog_ops::show_tbl_properties(self, table).await
            }
            VitrineStatement::DescribeHistory { table } => {
                catalog_ops::describe_history(self, table, self.engine.history()).await
            }
            VitrineStatement::DropTable { table, if_exists } => {
                catalog_ops::drop_table(self, table, if_exists).await
            }
            VitrineStatement::DropView { name, if_exists } => {
                catalog_ops::drop_view(self, name, if_exists).await
            }
            VitrineStatement::SetTblProperties { table, properties } => {
                catalog_ops::set_tbl_properties(self, table, properties).await
            }
            VitrineStatement::UnsetTblProperties { table, keys } => {
                catalog_ops::unset_tbl_properties(self, table, keys).await
            }
            VitrineStatement::CommentOnTable { table, comment } => {
                catalog_ops::comment_on_table(self, table, comment).await
            }
            VitrineStatement::Describe { table, extended } => {
                catalog_ops::describe(self, &table, extended).await
            }
        }
    }

    /// Opens the tables a statement's placeholders stand for, registers them while `plan` runs,
    /// and removes them after (the plan holds its own references).
    async fn with_requested_tables(
        &self,
        requests: Vec<TableRequest>,
        statement: Statement,
    ) -> Result<DataFrame> {
        let (catalog, schema) = self.current_schema();
        let mut registered = Vec::new();
        let mut opened = Ok(());
        for request in &requests {
            let provider = match self.open_request(&request.kind).await {
                Ok(provider) => provider,
                Err(e) => {
                    opened = Err(e);
                    break;
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
        let result = match opened {
            Ok(()) => self.plan_rewritten(statement).await,
            Err(e) => Err(e),
        };
        for name in &registered {
            self.catalogs.deregister_session_table(name);
        }
        result
    }

    /// `COPY (query | table) TO 'path' [STORED AS …] [OPTIONS (…)]`, written by DataFusion: the
    /// source is planned as any query is (Spark's rewrites, table versions), then given the types
    /// tables store, so that Spark reads what is written (microsecond timestamps, not
    /// nanoseconds).
    async fn copy_to(&self, sql: &str) -> Result<DataFrame> {
        let mut statements = DFParserBuilder::new(sql)
            .with_dialect(&DatabricksDialect {})
            .build()?
            .parse_statements()?;
        let (Some(DFStatement::CopyTo(mut copy)), None) =
            (statements.pop_front(), statements.pop_front())
        else {
            return Ok(self.ctx.sql(sql).await?);
        };
        let (catalog, schema) = self.current_schema();
        let placeholder = QualifiedName {
            catalog,
            schema,
            table: COPY_SOURCE.to_string(),
        };
        let relation = ObjectName::from(vec![Ident::new(COPY_SOURCE)]);
        let query = match std::mem::replace(&mut copy.source, CopyToSource::Relation(relation)) {
            CopyToSource::Query(query) => query,
            CopyToSource::Relation(table) => Parser::new(&DatabricksDialect {})
                .try_with_sql(&format!("SELECT * FROM {table}"))?
                .parse_query()?,
        };
        let source = self.plan_statement(Statement::Query(query)).await?;
        let source = conform::to_storage(source)?;
        self.catalogs
            .register_session_table(placeholder.clone(), source.into_view());
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DFStatement::CopyTo(copy))
            .await;
        self.catalogs.deregister_session_table(&placeholder);
        Ok(self.ctx.execute_logical_plan(plan?).await?)
    }

    async fn plan_rewritten(&self, statement: Statement) -> Result<DataFrame> {
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DFStatement::Statement(Box::new(statement)))
            .await?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// The table a placeholder stands for.
    async fn open_request(
        &self,
        request: &TableRequestKind,
    ) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
        match request {
            TableRequestKind::Version { table, version } => {
                let (name, entry) = self.table_entry(table)?;
                self.catalogs
                    .read_table(&name, &entry, Some(*version))
                    .await
                    .map_err(|e| e.context(format!("reading {name} VERSION AS OF {version}")))
            }
            TableRequestKind::AsOfTime { table, timestamp } => {
                let (name, entry) = self.table_entry(table)?;
                let version = self.version_at(&name, &entry, timestamp).await?;
                self.catalogs.read_table(&name, &entry, Some(version)).await
            }
            TableRequestKind::ReadFiles { path, options } => {
                let mut options = options.clone();
                let format = options
                    .remove("format")
                    .unwrap_or_else(|| path.rsplit('.').next().unwrap_or("csv").to_string());
                let format = TableFormat::parse(&format)?;
                let location = self.warehouse().resolve_path(path);
                self.catalogs.open_files(&location, format, &options).await
            }
            // Boxed: evaluating the arguments plans queries, which may search again.
            TableRequestKind::VectorSearch { arguments } => {
                Box::pin(vector::search::search(self, arguments)).await
            }
            TableRequestKind::RetrievalQuality { arguments } => {
                Box::pin(quality::table_function::retrieval_quality(self, arguments)).await
            }
            TableRequestKind::LateralVectorSearch {
                arguments,
                query_argument,
                left,
                key,
            } => {
                Box::pin(vector::search::lateral_search(
                    self,
                    arguments,
                    query_argument,
                    left,
                    key,
                ))
                .await
            }
        }
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
            .and_then(|b| b.column(0).as_any().downcast_ref::<Int64Array>())
            .filter(|a| a.len() == 1 && !a.is_null(0))
            .map(|a| a.value(0))
            .ok_or_else(|| {
                VitrineError::Plan(format!("TIMESTAMP AS OF {timestamp}: not a time"))
            })?;
        let history = storage::history(name, entry).await?;
        history
            .iter()
            .filter(|h| h.timestamp.timestamp_micros() <= micros)
            .map(|h| h.version)
            .max()
            .ok_or_else(|| {
                VitrineError::NotFound(format!("{name} has no version at or before {timestamp}"))
            })
    }

    /// Applies a changed copy of the settings to the session and its model functions.
    fn update_settings(
        &self,
        change: impl FnOnce(&mut SessionSettings) -> Result<()>,
    ) -> Result<()> {
        let mut settings = self.settings.lock().expect("settings lock");
        let mut changed = settings.clone();
        change(&mut changed)?;
        if changed.core.time_zone() != settings.core.time_zone() {
            self.apply_time_zone(changed.core.time_zone())?;
        }
        self.functions
            .set_settings(changed.models.clone(), changed.choices.chosen().clone());
        *settings = changed;
        Ok(())
    }

    /// Gives DataFusion the session time zone, and its functions that read it (`now()`,
    /// `to_timestamp()`, …) the new configuration, as DataFusion's own `SET` does.
    fn apply_time_zone(&self, zone: &str) -> Result<()> {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state.config_mut().options_mut().execution.time_zone = Some(zone.to_string());
        let options = state.config().options();
        let updated: Vec<_> = state
            .scalar_functions()
            .values()
            .filter_map(|f| f.inner().with_updated_config(options).map(Arc::new))
            .collect();
        for function in updated {
            state.register_udf(function)?;
        }
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
        let startup = self.engine.startup.values();
        self.update_settings(|settings| settings.reset(key, startup))?;
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
                self.update_settings(|settings| settings.set(&key, &value))?;
                Ok(StatementResult::message(format!("{key} = {value}")))
            }
            (key, None) => {
                let settings = self.settings();
                let rows: Vec<Vec<Option<String>>> = settings
                    .values()
                    .iter()
                    .filter(|(k, _)| key.as_ref().is_none_or(|want| want == *k))
                    .map(|(k, v)| vec![Some(k.clone()), Some(v.clone())])
                    .collect();
                StatementResult::strings(&["key", "value"], rows)
            }
            (None, Some(_)) => Err(VitrineError::Parse("SET needs a key".into())),
        }
    }
}

#[async_trait]
impl Session for EngineSession {
    fn warehouse(&self) -> &Arc<Warehouse> {
        &self.engine.warehouse
    }

    fn catalogs(&self) -> &WarehouseCatalogList {
        &self.catalogs
    }

    fn datafusion(&self) -> &SessionContext {
        &self.ctx
    }

    async fn refresh(&self) -> Result<()> {
        self.catalogs.refresh().await.map(|_| ())
    }

    fn settings(&self) -> SessionSettings {
        self.settings.lock().expect("settings lock").clone()
    }

    fn model_functions(&self) -> &FunctionContext {
        &self.functions
    }

    fn write_progress(&self) -> Option<WriteProgress> {
        self.write_progress.lock().expect("progress lock").clone()
    }

    fn parameter(&self, position: usize) -> Option<ScalarValue> {
        let parameters = self.parameters.lock().expect("parameters lock");
        position
            .checked_sub(1)
            .and_then(|i| parameters.get(i))
            .cloned()
    }

    fn statement(&self) -> RunningStatement {
        self.running_statement
            .lock()
            .expect("statement lock")
            .clone()
    }

    fn record_write(&self, write: TableWrite) {
        self.writes.lock().expect("writes lock").push(write);
    }

    fn record_rows_read(&self, rows: u64) {
        self.rows_read
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
    }

    async fn plan_statement(&self, mut statement: Statement) -> Result<DataFrame> {
        let requests = rewrite_statement(&mut statement)?;
        if requests.is_empty() {
            return self.plan_rewritten(statement).await;
        }
        self.with_requested_tables(requests, statement).await
    }
}
