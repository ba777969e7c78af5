//! `vitrine worker`: runs the plan fragments a coordinator sends ([`crate::cluster`]), with
//! every SQL function a session of this engine registers (model functions load their models on
//! this worker's device).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, WindowUDF};
use datafusion_distributed::{DistributedExt, Worker, WorkerQueryContext, WorkerSessionBuilder};
use tokio::net::TcpListener;

use super::model_batches::SliceBatchesCodec;
use super::Engine;
use crate::cluster::codec::LanceScanCodec;
use crate::error::{Result, VitrineError};
use crate::session::Session as _;

/// The functions a worker's tasks can call: those of a session of its engine.
#[derive(Debug, Clone)]
struct WorkerSessions {
    scalar: Vec<Arc<ScalarUDF>>,
    aggregate: Vec<Arc<AggregateUDF>>,
    window: Vec<Arc<WindowUDF>>,
}

#[async_trait]
impl WorkerSessionBuilder for WorkerSessions {
    async fn build_session_state(
        &self,
        ctx: WorkerQueryContext,
    ) -> std::result::Result<SessionState, DataFusionError> {
        // Built on the context's builder, which carries the task's place in its stage.
        let mut builder = ctx
            .builder
            .with_distributed_user_codec(LanceScanCodec)
            .with_distributed_user_codec(SliceBatchesCodec);
        builder
            .scalar_functions()
            .get_or_insert_default()
            .extend(self.scalar.iter().cloned());
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
        scalar: state.scalar_functions().values().cloned().collect(),
        aggregate: state.aggregate_functions().values().cloned().collect(),
        window: state.window_functions().values().cloned().collect(),
    };
    let mut worker =
        Worker::from_session_builder(sessions).with_runtime_env(session.datafusion().runtime_env());
    worker.add_on_plan_hook(move |plan| {
        plans.fetch_add(1, Ordering::Relaxed);
        plan
    });
    tonic::transport::Server::builder()
        .add_service(worker.into_worker_server())
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await
        .map_err(|e| VitrineError::Plan(format!("the worker stopped: {e}")))
}
