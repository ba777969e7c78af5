//! Model functions see model-sized batches. DataFusion hands a projection whatever batches its
//! input makes: up to 8,192 rows from a scan, or every unmatched row of an anti-join at once. A
//! model function then works for hours inside one call, so that progress, Ctrl-C and
//! `vitrine.write.commit_rows` only see its end. [`SliceModelInputs`] cuts the input of every
//! projection that calls a model function into batches of `vitrine.udf.batch_size` rows (with
//! `auto`, the CPU's batch, or on a GPU as many rows as any model's batch, which the function
//! cuts into its own batches);
//! [`SliceBatchesCodec`] sends the slicer to workers, so that it keeps working there. Across
//! workers, the slicer's input is shuffled first and [`ModelInputTasks`] gives its stage a task
//! on every worker: model work is what a cluster is for.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use datafusion_distributed::{TaskEstimation, TaskEstimator};
use datafusion_proto::physical_plan::PhysicalExtensionCodec;
use futures::StreamExt;
use vitrine_udfs::FunctionContext;

use super::worker_reports::{self, PartitionsLeft};

/// The physical optimizer rule: a [`SliceBatchesExec`] under each projection calling a model
/// function, sized by the session's `vitrine.udf.batch_size` (and device) when the statement is
/// planned.
#[derive(Debug)]
pub struct SliceModelInputs {
    functions: Arc<FunctionContext>,
    model_functions: Vec<String>,
}

impl SliceModelInputs {
    /// The rule for projections calling any of `model_functions`, reading the batch size from
    /// `functions`' settings.
    pub fn new(functions: Arc<FunctionContext>, model_functions: Vec<String>) -> Self {
        Self {
            functions,
            model_functions,
        }
    }

    fn calls_model(&self, expr: &Arc<dyn PhysicalExpr>) -> bool {
        expr.exists(|e| {
            Ok(e.as_any()
                .downcast_ref::<ScalarFunctionExpr>()
                .is_some_and(|f| self.model_functions.iter().any(|m| m == f.name())))
        })
        .unwrap_or(false)
    }
}

impl PhysicalOptimizerRule for SliceModelInputs {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = self.functions.settings().slice_rows();
        let spread = config
            .extensions
            .get::<datafusion_distributed::DistributedConfig>()
            .is_some();
        plan.transform_up(|node| {
            let Some(projection) = node.as_any().downcast_ref::<ProjectionExec>() else {
                return Ok(Transformed::no(node));
            };
            let input = projection.input();
            if input.as_any().is::<SliceBatchesExec>()
                || !projection.expr().iter().any(|p| self.calls_model(&p.expr))
            {
                return Ok(Transformed::no(node));
            }
            let input = match spread {
                true => spread_rows(input, config.execution.target_partitions)?,
                false => Arc::clone(input),
            };
            let sliced: Arc<dyn ExecutionPlan> = Arc::new(SliceBatchesExec::new(input, rows));
            Ok(Transformed::yes(node.with_new_children(vec![sliced])?))
        })
        .data()
    }

    fn name(&self) -> &str {
        "slice_model_inputs"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `input` shuffled by a hash of its plain columns, when it has any and its order does not
/// matter: in a distributed session the shuffle is a stage boundary, so that the model
/// function's projection runs in a stage of its own, on every worker ([`ModelInputTasks`]),
/// whatever the stage below (a join that collects one side runs in one task).
fn spread_rows(
    input: &Arc<dyn ExecutionPlan>,
    partitions: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = input.schema();
    let keys: Vec<Arc<dyn PhysicalExpr>> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.data_type().is_primitive()
                || matches!(
                    f.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                )
        })
        .map(|(i, f)| Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>)
        .collect();
    if keys.is_empty() || input.output_ordering().is_some() {
        return Ok(Arc::clone(input));
    }
    Ok(Arc::new(RepartitionExec::try_new(
        Arc::clone(input),
        Partitioning::Hash(keys, partitions.max(1)),
    )?))
}

/// How many tasks the stage of a model function's projection runs in: as many as there are
/// workers (the planner caps a stage's tasks at the worker count).
#[derive(Debug, Clone, Copy)]
pub struct ModelInputTasks;

impl TaskEstimator for ModelInputTasks {
    fn task_estimation(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        _cfg: &ConfigOptions,
    ) -> Option<TaskEstimation> {
        plan.as_any()
            .is::<SliceBatchesExec>()
            .then(|| TaskEstimation::desired(usize::MAX))
    }

    fn scale_up_leaf_node(
        &self,
        _plan: &Arc<dyn ExecutionPlan>,
        _task_count: usize,
        _cfg: &ConfigOptions,
    ) -> Option<Arc<dyn ExecutionPlan>> {
        None
    }
}

/// Passes its input on in batches of at most `rows` rows (zero-copy slices), in order. On a
/// worker, when its last partition ends, it writes the task's model-function report into its
/// metrics for the coordinator ([`worker_reports`]).
#[derive(Debug)]
pub struct SliceBatchesExec {
    input: Arc<dyn ExecutionPlan>,
    rows: usize,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    left: Arc<PartitionsLeft>,
}

impl SliceBatchesExec {
    /// Slices `input`'s batches to `rows` rows.
    pub fn new(input: Arc<dyn ExecutionPlan>, rows: usize) -> Self {
        let properties = Arc::clone(input.properties());
        let partitions = properties.partitioning.partition_count();
        Self {
            input,
            rows: rows.max(1),
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            left: Arc::new(PartitionsLeft::new(partitions)),
        }
    }
}

impl DisplayAs for SliceBatchesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SliceBatchesExec: rows={}", self.rows)
    }
}

impl ExecutionPlan for SliceBatchesExec {
    fn name(&self) -> &str {
        "SliceBatchesExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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
        Ok(Arc::new(Self::new(Arc::clone(&children[0]), self.rows)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let schema = input.schema();
        let rows = self.rows;
        let metrics = self.metrics.clone();
        let sliced = input.flat_map(move |batch| {
            let pieces: Vec<Result<RecordBatch>> = match batch {
                Ok(batch) => (0..batch.num_rows())
                    .step_by(rows)
                    .map(|offset| Ok(batch.slice(offset, rows.min(batch.num_rows() - offset))))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(pieces)
        });
        // After the input's end the projection above has computed every row it was given.
        let reported = self.left.then_after_last(sliced, move || {
            worker_reports::record_task_report(&context, &metrics)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, reported)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Sends a [`SliceBatchesExec`] to workers: its row count, in 8 bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct SliceBatchesCodec;

impl PhysicalExtensionCodec for SliceBatchesCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (buf.first_chunk::<8>(), inputs) {
            (Some(rows), [input]) if buf.len() == 8 => Ok(Arc::new(SliceBatchesExec::new(
                Arc::clone(input),
                u64::from_le_bytes(*rows) as usize,
            ))),
            _ => Err(DataFusionError::Internal(
                "not a model-batch slicer".to_string(),
            )),
        }
    }

    fn try_encode(&self, node: Arc<dyn ExecutionPlan>, buf: &mut Vec<u8>) -> Result<()> {
        let slicer = node
            .as_any()
            .downcast_ref::<SliceBatchesExec>()
            .ok_or_else(|| DataFusionError::Internal("not a model-batch slicer".to_string()))?;
        buf.extend_from_slice(&(slicer.rows as u64).to_le_bytes());
        Ok(())
    }
}
