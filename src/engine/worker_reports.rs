//! What the model functions did on workers reaches the coordinator's statement report: the rows
//! that failed and became NULL (counted, the first few named, for the statement's warning), the
//! rows each function processed, and the models used (for the written table's properties).
//!
//! A worker's task runs its model functions with a [`FunctionContext`] of its own, which
//! [`TaskFunctions`] hands to the task's plan. When the last partition of a task's
//! [`SliceBatchesExec`](super::model_batches::SliceBatchesExec) ends, every row of the projection
//! above it has been computed: the slicer takes the task's report and writes it into its
//! metrics ([`record_task_report`]), which `datafusion-distributed` sends back with the task's
//! last batch. On the coordinator, [`CollectWorkerReports`] puts a [`WorkerReportsExec`] above
//! each distributed plan, which reads those metrics when the plan's output ends and adds them to
//! the session's report ([`FunctionContext::absorb`]).

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricValue};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use datafusion_distributed::{
    rewrite_distributed_plan_with_metrics, DistributedExec, DistributedMetricsFormat,
};
use futures::StreamExt;
use vitrine_udfs::context::{ModelUse, RowFailure, StatementReport};
use vitrine_udfs::FunctionContext;

/// The model functions' context of a worker's task, kept in the task's session config.
#[derive(Debug)]
pub struct TaskFunctions(pub Arc<FunctionContext>);

/// Metric names: a prefix, then what the metric counts.
const FAILED: &str = "vitrine_failed_rows";
const ROWS: &str = "vitrine_rows\t";
const FAILURE: &str = "vitrine_failure\t";
const MODEL: &str = "vitrine_model\t";

/// Counts down the partitions of a node instance still running; the last to end is told so.
#[derive(Debug)]
pub struct PartitionsLeft(AtomicUsize);

impl PartitionsLeft {
    /// `partitions` partitions to run.
    pub fn new(partitions: usize) -> Self {
        Self(AtomicUsize::new(partitions))
    }

    /// `stream`, one partition's, followed by a call of `last` when it ends if it is the last
    /// partition of the node to end.
    pub fn then_after_last<S>(
        self: &Arc<Self>,
        stream: S,
        last: impl FnOnce() + Send + 'static,
    ) -> impl futures::Stream<Item = S::Item> + Send
    where
        S: futures::Stream + Send,
        S::Item: Send,
    {
        let left = Arc::clone(self);
        let end = futures::stream::once(async move {
            if left.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                last();
            }
            None
        })
        .filter_map(futures::future::ready);
        stream.chain(end)
    }
}

/// On a worker (whose task config holds [`TaskFunctions`]): takes what the task's model
/// functions did so far and writes it into `metrics`. Elsewhere does nothing: the session's
/// own functions report to it directly.
pub fn record_task_report(context: &TaskContext, metrics: &ExecutionPlanMetricsSet) {
    let Some(task) = context.session_config().get_extension::<TaskFunctions>() else {
        return;
    };
    let report = task.0.finish_statement();
    let count = |name: String, n: u64| {
        MetricBuilder::new(metrics)
            .global_counter(name)
            .add(n as usize)
    };
    if report.failed_rows > 0 {
        count(FAILED.to_string(), report.failed_rows);
    }
    for (function, rows) in report.rows {
        count(format!("{ROWS}{function}"), rows);
    }
    for failure in report.first_failures {
        // Tabs cannot be in a function name; the row and message have theirs replaced.
        let clean = |s: &str| s.replace('\t', " ");
        count(
            format!(
                "{FAILURE}{}\t{}\t{}",
                failure.function,
                clean(&failure.row),
                clean(&failure.message)
            ),
            1,
        );
    }
    for model in report.models {
        count(
            format!("{MODEL}{}\t{}\t{}", model.name, model.id, model.revision),
            1,
        );
    }
}

/// The reports the tasks under `plan`, a distributed plan that has run, wrote into their
/// metrics, as one report (rows and failures summed, models and named failures listed once).
pub fn reports_in(plan: &Arc<dyn ExecutionPlan>) -> Result<StatementReport> {
    let with_metrics =
        rewrite_distributed_plan_with_metrics(Arc::clone(plan), DistributedMetricsFormat::PerTask)?;
    let mut report = StatementReport::default();
    with_metrics.apply(|node| {
        for metric in node.metrics().iter().flat_map(|m| m.iter().cloned()) {
            if let MetricValue::Count { name, count } = metric.value() {
                read_metric(&mut report, name, count.value() as u64);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(report)
}

/// Adds the metric `name` = `value` to `report` if it is one [`record_task_report`] writes.
fn read_metric(report: &mut StatementReport, name: &str, value: u64) {
    if name == FAILED {
        report.failed_rows += value;
    } else if let Some(function) = name.strip_prefix(ROWS) {
        *report.rows.entry(function.to_string()).or_default() += value;
    } else if let Some(failure) = name.strip_prefix(FAILURE) {
        let mut parts = failure.splitn(3, '\t');
        let mut next = || parts.next().unwrap_or_default().to_string();
        report.first_failures.push(RowFailure {
            function: next(),
            row: next(),
            message: next(),
        });
    } else if let Some(model) = name.strip_prefix(MODEL) {
        let mut parts = model.splitn(3, '\t');
        let mut next = || parts.next().unwrap_or_default().to_string();
        let used = ModelUse {
            name: next(),
            id: next(),
            revision: next(),
        };
        if !report.models.contains(&used) {
            report.models.push(used);
        }
    }
}

/// The coordinator's physical optimizer rule, added after the one that cuts plans into stages:
/// a [`WorkerReportsExec`] reporting to `functions` above each [`DistributedExec`].
#[derive(Debug)]
pub struct CollectWorkerReports {
    functions: Arc<FunctionContext>,
}

impl CollectWorkerReports {
    /// The rule for a session whose model functions report to `functions`.
    pub fn new(functions: Arc<FunctionContext>) -> Self {
        Self { functions }
    }
}

impl PhysicalOptimizerRule for CollectWorkerReports {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if plan.as_any().is::<DistributedExec>() {
            return Ok(Arc::new(WorkerReportsExec::new(
                plan,
                Arc::clone(&self.functions),
            )));
        }
        Ok(plan)
    }

    fn name(&self) -> &str {
        "collect_worker_reports"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes a distributed plan's output on; when the last partition ends, adds the reports of
/// the workers' tasks to the session's ([`reports_in`]).
#[derive(Debug)]
pub struct WorkerReportsExec {
    input: Arc<dyn ExecutionPlan>,
    functions: Arc<FunctionContext>,
    left: Arc<PartitionsLeft>,
}

impl WorkerReportsExec {
    /// Reports `input`'s workers' tasks to `functions`.
    pub fn new(input: Arc<dyn ExecutionPlan>, functions: Arc<FunctionContext>) -> Self {
        let partitions = input.output_partitioning().partition_count();
        Self {
            input,
            functions,
            left: Arc::new(PartitionsLeft::new(partitions)),
        }
    }
}

impl DisplayAs for WorkerReportsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WorkerReportsExec")
    }
}

impl ExecutionPlan for WorkerReportsExec {
    fn name(&self) -> &str {
        "WorkerReportsExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            Arc::clone(&children[0]),
            Arc::clone(&self.functions),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        let (input, functions) = (Arc::clone(&self.input), Arc::clone(&self.functions));
        let reported = self
            .left
            .then_after_last(stream, move || match reports_in(&input) {
                Ok(report) => functions.absorb(report),
                Err(e) => tracing::warn!("the workers' model reports could not be read: {e}"),
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, reported)))
    }
}
