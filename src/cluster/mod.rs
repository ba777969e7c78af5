//! Beyond one machine: the same statements with their reads, projections (model functions
//! included), joins and aggregations run by `vitrine worker` processes, through
//! `datafusion-distributed`.
//!
//! The coordinator (any `vitrine` command given `--workers`) plans each query as on one node,
//! then [`distribute`]'s physical optimizer rule cuts the plan into stages at its shuffles and
//! merges and sends each stage's tasks to the workers; the coordinator reads the last stage's
//! output. Writes, commits, DDL and `vector_search` stay on the coordinator: a write executes its
//! query across the workers and commits what comes back. A Lance table read by such a plan
//! becomes a scan by fragment ([`crate::catalog::lance_scan`]), a Delta table a scan by data file
//! ([`crate::catalog::delta_scan`]), which [`TableScanTasks`] shares
//! out and [`codec::TableScanCodec`] sends; the engine adds the codecs of its own nodes and
//! serves workers (`Engine::serve_worker`), with every SQL function of an engine over the same
//! warehouse. Each task carries the session's settings and the statement's seed (the engine's
//! query settings), so that a worker's model functions and `rand()` follow the coordinator's
//! `SET`s.

pub mod codec;

use std::sync::Arc;
use std::time::Duration;

use datafusion::config::ConfigOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion_distributed::{
    DistributedExt, DistributedPhysicalOptimizerRule, PartitionIsolatorExec, TaskEstimation,
    TaskEstimator, WorkerResolver,
};
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use url::Url;

use crate::catalog::delta_scan::DeltaFileScanExec;
use crate::catalog::lance_scan::LanceScanExec;
use crate::catalog::Warehouse;
use crate::error::{Result, VitrineError};

/// The workers a coordinator sends tasks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workers(Vec<Url>);

impl Workers {
    /// Parses `http://host:port` URLs (a bare `host:port` is taken as `http://`).
    pub fn parse<'a>(urls: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        urls.into_iter()
            .map(|u| {
                let text = if u.contains("://") {
                    u.to_string()
                } else {
                    format!("http://{u}")
                };
                Url::parse(&text)
                    .map_err(|e| VitrineError::Plan(format!("worker address '{u}': {e}")))
            })
            .collect::<Result<Vec<_>>>()
            .map(Self)
    }

    /// The workers' URLs.
    pub fn urls(&self) -> &[Url] {
        &self.0
    }

    /// Fails naming the first worker that does not accept a connection within 5 seconds, so
    /// that an unreachable worker is reported before anything runs.
    pub async fn check(&self) -> Result<()> {
        for url in &self.0 {
            if let Err(why) = accepts(url, Duration::from_secs(5)).await {
                return Err(VitrineError::Plan(format!(
                    "worker {url} {why}; nothing was run"
                )));
            }
        }
        Ok(())
    }

    /// `error`, a statement's, naming the workers that no longer accept connections: a worker
    /// that dies mid-query shows in DataFusion's error only as a broken stream. Errors found
    /// before anything ran (syntax, names) are returned as they are.
    pub async fn name_stopped(&self, error: VitrineError) -> VitrineError {
        if matches!(
            error,
            VitrineError::Parse(_) | VitrineError::NotFound(_) | VitrineError::AlreadyExists(_)
        ) {
            return error;
        }
        // A killed worker's port can accept for a moment after its streams broke: look twice.
        let mut stopped = self.stopped().await;
        if stopped.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stopped = self.stopped().await;
        }
        match stopped.as_slice() {
            [] => error,
            [one] => error.context(format!(
                "worker {one} stopped answering during the statement"
            )),
            many => error.context(format!(
                "workers {} stopped answering during the statement",
                many.join(", ")
            )),
        }
    }

    /// The workers that do not accept a connection now.
    async fn stopped(&self) -> Vec<String> {
        let mut stopped = Vec::new();
        for url in &self.0 {
            if accepts(url, Duration::from_secs(2)).await.is_err() {
                stopped.push(url.to_string());
            }
        }
        stopped
    }
}

/// Whether the worker at `url` accepts a connection within `wait`; if not, why not.
async fn accepts(url: &Url, wait: Duration) -> std::result::Result<(), String> {
    let host = url.host_str().unwrap_or("localhost");
    let port = url.port_or_known_default().unwrap_or(80);
    match tokio::time::timeout(wait, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("is unreachable ({e})")),
        Err(_) => Err(format!("did not answer within {} s", wait.as_secs())),
    }
}

impl WorkerResolver for Workers {
    fn get_urls(&self) -> std::result::Result<Vec<Url>, DataFusionError> {
        Ok(self.0.clone())
    }
}

/// Makes sessions built by `builder` (whose config is already set) plan across `workers`,
/// sending table scans of `warehouse` and the nodes `codecs` encode.
pub fn distribute(
    builder: SessionStateBuilder,
    workers: &Workers,
    warehouse: &Arc<Warehouse>,
    codecs: &[Arc<dyn PhysicalExtensionCodec>],
) -> Result<SessionStateBuilder> {
    let builder = builder
        .with_distributed_worker_resolver(workers.clone())
        .with_distributed_user_codec(codec::TableScanCodec::new(Arc::clone(warehouse)))
        .with_distributed_task_estimator(TableScanTasks)
        .with_physical_optimizer_rule(Arc::new(DistributedPhysicalOptimizerRule))
        .with_distributed_files_per_task(1)?
        // Workers send each task's metrics back: they carry what its model functions did.
        .with_distributed_metrics_collection(true)?;
    let mut builder = builder;
    // Joins partitioned by key on both sides: a join that collects one side whole (DataFusion's
    // choice for small inputs) runs in one task, on the coordinator, with every model function
    // above it (phase 1's `smolvlm_extract` over the products left to do).
    if let Some(config) = builder.config() {
        let optimizer = &mut config.options_mut().optimizer;
        optimizer.hash_join_single_partition_threshold = 0;
        optimizer.hash_join_single_partition_threshold_rows = 0;
    }
    for codec in codecs {
        builder = builder.with_distributed_user_codec_arc(Arc::clone(codec));
    }
    Ok(builder)
}

/// How many tasks a table scan ([`LanceScanExec`], [`DeltaFileScanExec`]) is worth: one per
/// output partition (a group of fragments, or files), each task reading its share of them.
#[derive(Debug, Clone, Copy)]
pub struct TableScanTasks;

/// The output partitions of `plan` if it is one of the table scans workers run.
fn table_scan_partitions(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    let any = plan.as_any();
    (any.is::<LanceScanExec>() || any.is::<DeltaFileScanExec>())
        .then(|| plan.output_partitioning().partition_count())
}

impl TaskEstimator for TableScanTasks {
    fn task_estimation(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        _cfg: &ConfigOptions,
    ) -> Option<TaskEstimation> {
        let partitions = table_scan_partitions(plan)?;
        Some(TaskEstimation::desired(partitions))
    }

    fn scale_up_leaf_node(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        task_count: usize,
        _cfg: &ConfigOptions,
    ) -> Option<Arc<dyn ExecutionPlan>> {
        table_scan_partitions(plan)?;
        Some(Arc::new(PartitionIsolatorExec::new(
            Arc::clone(plan),
            task_count,
        )))
    }
}
