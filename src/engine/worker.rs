//! `vitrine worker`: runs the plan fragments a coordinator sends ([`crate::cluster`]), with
//! every SQL function a session of this engine registers. Model functions follow the settings
//! each task was sent (the coordinator's `SET`s) and load their models on this worker's device.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion::physical_plan::{displayable, ExecutionPlan};
use datafusion_distributed::{DistributedExt, Worker, WorkerQueryContext, WorkerSessionBuilder};
use tokio::net::TcpListener;
use vitrine_udfs::context::FunctionContext;

use super::model_batches::SliceBatchesCodec;
use super::query_settings::QuerySettings;
use super::worker_reports::TaskFunctions;
use super::Engine;
use crate::cluster::codec::TableScanCodec;
use crate::error::{Result, VitrineError};
use crate::session::Session as _;
use crate::sql::functions::statement_inputs::{self, StatementInputs};

/// Builds the session each task of a worker runs in: the functions of a session of its engine,
/// with the model functions and `rand()` set up from the settings the task was sent.
#[derive(Debug, Clone)]
struct WorkerSessions {
    engine: Arc<Engine>,
    scalar: Vec<Arc<ScalarUDF>>,
    aggregate: Vec<Arc<AggregateUDF>>,
    window: Vec<Arc<WindowUDF>>,
}

impl WorkerSessions {
    /// The model functions and `random` of a task sent `sent`, and the context its model
    /// functions report to: they follow this worker's own settings with the coordinator's over
    /// them (the device excepted).
    fn task_functions(
        &self,
        sent: &QuerySettings,
    ) -> std::result::Result<(Vec<Arc<ScalarUDF>>, Arc<FunctionContext>), DataFusionError> {
        let mut settings = self.engine.startup.clone();
        sent.apply_to(&mut settings).map_err(|e| {
            DataFusionError::Configuration(format!("the settings sent to this worker: {e}"))
        })?;
        let context = Arc::new(FunctionContext::new(
            self.engine.files.clone(),
            self.engine.hub.clone(),
        ));
        context.set_settings(settings.models.clone(), settings.choices.chosen().clone());
        let inputs = Arc::new(StatementInputs::default());
        inputs.begin_share(sent.seed().unwrap_or_default());
        let mut functions: Vec<_> = vitrine_udfs::functions(&context)
            .into_iter()
            .map(|f| Arc::new(f.udf))
            .collect();
        functions.push(Arc::new(statement_inputs::seeded_random(&inputs)));
        Ok((functions, context))
    }
}

#[async_trait]
impl WorkerSessionBuilder for WorkerSessions {
    async fn build_session_state(
        &self,
        ctx: WorkerQueryContext,
    ) -> std::result::Result<SessionState, DataFusionError> {
        let sent = QuerySettings::from_headers(&ctx.headers)?;
        let (task_functions, reports_to) = self.task_functions(&sent)?;
        // Built on the context's builder, which carries the task's place in its stage.
        let mut builder = ctx
            .builder
            .with_distributed_user_codec(TableScanCodec::new(Arc::clone(&self.engine.warehouse)))
            .with_distributed_user_codec(SliceBatchesCodec);
        if let Some(config) = builder.config() {
            config.set_extension(Arc::new(TaskFunctions(reports_to)));
        }
        // Later functions of one name replace earlier ones.
        builder
            .scalar_functions()
            .get_or_insert_default()
            .extend(self.scalar.iter().cloned().chain(task_functions));
        builder
            .aggregate_functions()
            .get_or_insert_default()
            .extend(self.aggregate.iter().cloned());
        builder
            .window_functions()
            .get_or_insert_default()
            .extend(self.window.iter().cloned());
        Ok(builder.build())
    }
}

/// Serves plan fragments on `listener` until the process ends, counting them in `plans`.
pub(super) async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    plans: Arc<AtomicU64>,
) -> Result<()> {
    let session = engine.session()?;
    let state = session.datafusion().state();
    let sessions = WorkerSessions {
        engine: Arc::clone(&engine),
        scalar: state.scalar_functions().values().cloned().collect(),
        aggregate: state.aggregate_functions().values().cloned().collect(),
        window: state.window_functions().values().cloned().collect(),
    };
    let mut worker =
        Worker::from_session_builder(sessions).with_runtime_env(session.datafusion().runtime_env());
    worker.add_on_plan_hook(move |plan| {
        plans.fetch_add(1, Ordering::Relaxed);
        tracing::info!("task received: {}", tables_read(&plan));
        plan
    });
    tonic::transport::Server::builder()
        .add_service(worker.into_worker_server())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .map_err(|e| VitrineError::Plan(format!("the worker stopped: {e}")))
}

/// The table scans of a task's plan, one line each, for the worker's log.
fn tables_read(plan: &Arc<dyn ExecutionPlan>) -> String {
    let mut scans = Vec::new();
    // Visiting cannot fail: the closure never errs.
    let _ = plan.apply(|node| {
        if node.children().is_empty() {
            scans.push(displayable(node.as_ref()).one_line().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    scans.join("; ").trim().to_string()
}
