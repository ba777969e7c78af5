//! Hash joins that keep to the session's memory limit: a build side too large for it is spilled
//! by a hash of the join keys into bucket files, and joined a group of buckets at a time (a
//! "grace" hash join).
//!
//! DataFusion 53's hash join holds its whole build side in memory, concatenated once more into
//! one batch (so twice, while the pool counts it once), and cannot spill: under `SET
//! datafusion.runtime.memory_limit` a join of two 10M-row tables either fails or holds twice the
//! limit. [`SpillLargeJoins`] wraps each hash join in a [`GraceHashJoinExec`], which decides
//! when the statement runs:
//!
//! - no memory limit: the join runs as planned;
//! - a limit, and the build side fits in a share of it ([`BUILD_SHARE`]): the build side is
//!   read into memory, counted against the pool, and the join runs as planned over those rows;
//! - a limit, and the build side outgrows the share: both sides are dealt into buckets by a hash
//!   of their join keys (the hash that repartitions rows for a partitioned join, so each output
//!   partition holds the rows it held as planned), written to spill files of the runtime's disk
//!   manager, and each output partition joins its buckets in groups whose build side fits its
//!   part of the share. Each row is written and read back once.
//!
//! A bucket larger than a group's share (one key holding most rows) is joined alone and may
//! still exceed the limit: the pool then refuses it with DataFusion's error.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{take_record_batch, BatchCoalescer};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::disk_manager::RefCountedTempFile;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryReservation};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::repartition::{RepartitionExec, REPARTITION_RANDOM_STATE};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use crate::catalog::spill::{self, SpillWriter};

/// The share of the memory limit the build side may take in memory: the join's hash table, its
/// concatenated copy of the build side, the probe side's batches and the operators above the
/// join (a table writer's column buffers) need the rest.
pub const BUILD_SHARE: usize = 8;

/// Buckets the rows are dealt into when they spill (rounded up to a multiple of the join's
/// output partitions); a group joins one or more of them.
const BUCKETS: usize = 64;

/// Rows per batch written to a bucket's spill file.
const SPILL_BATCH_ROWS: usize = 4096;

/// The physical optimizer rule: a [`GraceHashJoinExec`] over each hash join whose rows can be
/// dealt into buckets without changing what it returns.
#[derive(Debug, Default)]
pub struct SpillLargeJoins;

impl PhysicalOptimizerRule for SpillLargeJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.as_any().downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if !can_spill(join) {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(Arc::new(GraceHashJoinExec::new(node))))
        })
        .data()
    }

    fn name(&self) -> &str {
        "spill_large_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `join` can run bucket by bucket: an equi-join whose output promises no order, no
/// row limit and no null-aware anti-join semantics (which look at the whole build side), and
/// whose output partitions are either the hash partitions of its keys (a partitioned join) or
/// promise nothing (a join that collects its build side).
fn can_spill(join: &HashJoinExec) -> bool {
    let partitioned = match join.partition_mode() {
        PartitionMode::Partitioned => true,
        PartitionMode::CollectLeft => false,
        PartitionMode::Auto => return false,
    };
    join.fetch().is_none()
        && !join.null_aware
        && join.properties().output_ordering().is_none()
        && (partitioned
            || !matches!(
                join.properties().output_partitioning(),
                Partitioning::Hash(..)
            ))
}

/// A hash join that keeps to the session's memory limit (see the module's documentation). Its
/// one child is the join as planned.
#[derive(Debug)]
pub struct GraceHashJoinExec {
    join: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    /// How the join runs under a memory limit, decided by the first partition to start.
    prepared: Arc<tokio::sync::OnceCell<Prepared>>,
    metrics: ExecutionPlanMetricsSet,
}

impl GraceHashJoinExec {
    /// Wraps `join`, a [`HashJoinExec`] that [`SpillLargeJoins`] found can run bucket by bucket.
    pub fn new(join: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            properties: Arc::clone(join.properties()),
            join,
            prepared: Arc::default(),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

/// `plan` as the hash join it is.
fn hash_join(plan: &Arc<dyn ExecutionPlan>) -> Result<&HashJoinExec> {
    plan.as_any()
        .downcast_ref::<HashJoinExec>()
        .ok_or_else(|| DataFusionError::Internal("GraceHashJoinExec over a non-join".into()))
}

impl DisplayAs for GraceHashJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "GraceHashJoinExec: build side in memory up to 1/{BUILD_SHARE} of the memory limit, else {BUCKETS} spilled buckets"
        )
    }
}

impl ExecutionPlan for GraceHashJoinExec {
    fn name(&self) -> &str {
        "GraceHashJoinExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.join]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let join = children.swap_remove(0);
        Ok(match join.as_any().downcast_ref::<HashJoinExec>() {
            Some(hash_join) if can_spill(hash_join) => Arc::new(Self::new(join)),
            _ => join,
        })
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let limit = match context.memory_pool().memory_limit() {
            MemoryLimit::Finite(limit) => limit,
            MemoryLimit::Infinite | MemoryLimit::Unknown => {
                return self.join.execute(partition, context);
            }
        };
        hash_join(&self.join)?;
        let join = Arc::clone(&self.join);
        let prepared = Arc::clone(&self.prepared);
        let metrics = DealMetrics::new(&self.metrics, partition);
        let schema = self.schema();
        let output_schema = Arc::clone(&schema);
        let stream = futures::stream::once(async move {
            let prepared = prepared
                .get_or_try_init(|| prepare(join, limit, Arc::clone(&context), metrics))
                .await?;
            prepared.execute(partition, context, output_schema)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// What the dealing counts, shown by `EXPLAIN ANALYZE`.
#[derive(Clone)]
struct DealMetrics {
    spill_count: Count,
    spilled_rows: Count,
    spilled_bytes: Count,
    build_rows_spilled: Count,
}

impl DealMetrics {
    fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        let counter = |name: &'static str| MetricBuilder::new(metrics).counter(name, partition);
        Self {
            spill_count: counter("spill_count"),
            spilled_rows: counter("spilled_rows"),
            spilled_bytes: counter("spilled_bytes"),
            build_rows_spilled: counter("build_rows_spilled"),
        }
    }
}

/// How the join runs once the build side has been read.
#[derive(Debug)]
enum Prepared {
    /// The build side fitted: the join as planned, over the rows read.
    InMemory(Arc<dyn ExecutionPlan>),
    /// Both sides dealt into buckets: each output partition's groups of buckets (taken by the
    /// partition that joins them), and the join each group runs.
    Spilled {
        groups: Mutex<Vec<Option<Vec<Group>>>>,
        join: Arc<dyn ExecutionPlan>,
    },
}

/// The rows of a group of buckets, read back from their spill files.
#[derive(Debug)]
struct Group {
    build: Arc<dyn ExecutionPlan>,
    probe: Arc<dyn ExecutionPlan>,
}

impl Group {
    /// Joins the group's rows as `join` (a [`HashJoinExec`]) joins, collecting the build side.
    /// The plan is dropped once started: its hash table goes with the stream.
    fn execute(
        self,
        join: &HashJoinExec,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        join.builder()
            .reset_state()
            .with_partition_mode(PartitionMode::CollectLeft)
            .with_new_children(vec![self.build, self.probe])?
            .recompute_properties()
            .build_exec()?
            .execute(0, context)
    }
}

impl Prepared {
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
        schema: SchemaRef,
    ) -> Result<SendableRecordBatchStream> {
        match self {
            Self::InMemory(join) => join.execute(partition, context),
            Self::Spilled { groups, join } => {
                let groups = groups
                    .lock()
                    .expect("groups lock")
                    .get_mut(partition)
                    .and_then(Option::take)
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!(
                            "partition {partition} of a grace hash join ran twice"
                        ))
                    })?;
                let join = Arc::clone(join);
                let joined = futures::stream::iter(groups)
                    .map(move |group| group.execute(hash_join(&join)?, Arc::clone(&context)))
                    .try_flatten();
                Ok(Box::pin(RecordBatchStreamAdapter::new(schema, joined)))
            }
        }
    }
}

/// Reads the build side of `join` into memory under a share of `limit`; when it outgrows the
/// share, deals both sides into bucket files and plans the groups each partition joins.
async fn prepare(
    join: Arc<dyn ExecutionPlan>,
    limit: usize,
    context: Arc<TaskContext>,
    metrics: DealMetrics,
) -> Result<Prepared> {
    let planned = Arc::clone(&join);
    let join = hash_join(&planned)?;
    let (build_chain, build_input) = strip_exchanges(join.left());
    let (_, probe_input) = strip_exchanges(join.right());
    let partitions = join
        .properties()
        .output_partitioning()
        .partition_count()
        .max(1);
    let buckets = BUCKETS.div_ceil(partitions) * partitions;
    let budget = (limit / BUILD_SHARE).max(1);
    let build = Side::new(&build_input, join.on().iter().map(|(l, _)| l), buckets);
    let probe = Side::new(&probe_input, join.on().iter().map(|(_, r)| r), buckets);
    let gate = Arc::new(Gate::new(
        MemoryConsumer::new("GraceHashJoin[build]").register(context.memory_pool()),
        budget,
    ));

    let build_readers = (0..build_input.output_partitioning().partition_count())
        .map(|p| {
            let stream = build_input.execute(p, Arc::clone(&context))?;
            let side = build.clone();
            let gate = Arc::clone(&gate);
            let metrics = metrics.clone();
            Ok(SpawnedTask::spawn(read_build(
                stream,
                side,
                gate,
                context.runtime_env(),
                metrics,
            )))
        })
        .collect::<Result<Vec<_>>>()?;
    let built = futures::future::try_join_all(build_readers);
    tokio::pin!(built);
    // The probe side is dealt as soon as the build side is known not to fit, beside it.
    let (built, probe_dealers) = tokio::select! {
        built = &mut built => (built, None),
        () = gate.spilling() => {
            let dealers = deal_side(&probe, &probe_input, &context, &metrics)?;
            (built.await, Some(dealers))
        }
    };
    let built = built.map_err(|e| DataFusionError::External(Box::new(e)))?;
    let read = built.into_iter().collect::<Result<Vec<_>>>()?;
    if !gate.is_spilling() {
        gate.release();
        let batches = read
            .into_iter()
            .flat_map(|r| match r {
                BuildRead::Held(batches) => batches,
                BuildRead::Dealt(_) => Vec::new(),
            })
            .collect();
        let rows: Arc<dyn ExecutionPlan> = Arc::new(StreamingTableExec::try_new(
            build_input.schema(),
            vec![Arc::new(OnceBatches::new(build_input.schema(), batches))],
            None,
            Vec::new(),
            false,
            None,
        )?);
        let left = rebuild(&build_chain, rows)?;
        let right = Arc::clone(join.right());
        let join = join
            .builder()
            .reset_state()
            .with_new_children(vec![left, right])?
            .recompute_properties()
            .build_exec()?;
        return Ok(Prepared::InMemory(join));
    }

    // Spilled: whatever a reader still held (it finished before another outgrew the share)
    // is dealt too, then the probe side (if the build side spilled before it was read).
    let mut build_files = BucketFiles::new(buckets);
    for read in read {
        match read {
            BuildRead::Dealt(files) => build_files.extend(files),
            BuildRead::Held(batches) => {
                let mut writer = BucketWriter::new(&build, context.runtime_env(), &metrics);
                for batch in &batches {
                    writer.push(batch)?;
                }
                build_files.extend(writer.finish()?);
            }
        }
    }
    gate.release();
    let probe_dealers = match probe_dealers {
        Some(dealers) => dealers,
        None => deal_side(&probe, &probe_input, &context, &metrics)?,
    };
    let mut probe_files = BucketFiles::new(buckets);
    for dealt in futures::future::try_join_all(probe_dealers)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
    {
        probe_files.extend(dealt?);
    }
    metrics
        .build_rows_spilled
        .add(build_files.rows.iter().sum::<usize>());
    tracing::debug!(
        buckets,
        build_rows = build_files.rows.iter().sum::<usize>(),
        build_bytes = build_files.bytes.iter().sum::<usize>(),
        probe_rows = probe_files.rows.iter().sum::<usize>(),
        "grace hash join: both sides spilled into buckets"
    );

    // Partition p holds the buckets b with b % partitions == p, joined in groups of at most
    // its part of the share.
    let group_budget = (budget / partitions).max(1);
    let mut plans = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        let mut groups = Vec::new();
        let mut group: Vec<usize> = Vec::new();
        let mut bytes = 0;
        for bucket in (partition..buckets).step_by(partitions) {
            if !group.is_empty() && bytes + build_files.bytes[bucket] > group_budget {
                groups.push(std::mem::take(&mut group));
                bytes = 0;
            }
            bytes += build_files.bytes[bucket];
            group.push(bucket);
        }
        groups.push(group);
        let groups = groups
            .iter()
            .map(|group| {
                Ok(Group {
                    build: build_files.scan(&build, group)?,
                    probe: probe_files.scan(&probe, group)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        plans.push(Some(groups));
    }
    Ok(Prepared::Spilled {
        groups: Mutex::new(plans),
        join: planned,
    })
}

/// The plan under `plan`'s exchanges (repartitions and partition merges), and those exchanges
/// from the top down.
fn strip_exchanges(
    plan: &Arc<dyn ExecutionPlan>,
) -> (Vec<Arc<dyn ExecutionPlan>>, Arc<dyn ExecutionPlan>) {
    let mut chain = Vec::new();
    let mut plan = Arc::clone(plan);
    while plan.as_any().is::<RepartitionExec>() || plan.as_any().is::<CoalescePartitionsExec>() {
        let child = Arc::clone(plan.children()[0]);
        chain.push(plan);
        plan = child;
    }
    (chain, plan)
}

/// `chain` (exchanges, from the top down) put back over `input`.
fn rebuild(
    chain: &[Arc<dyn ExecutionPlan>],
    input: Arc<dyn ExecutionPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    chain.iter().rev().try_fold(input, |input, node| {
        Arc::clone(node).with_new_children(vec![input])
    })
}

/// One side of the join as it is dealt: its rows' schema, join keys and bucket count.
#[derive(Clone)]
struct Side {
    schema: SchemaRef,
    keys: Vec<PhysicalExprRef>,
    buckets: usize,
}

impl Side {
    fn new<'a>(
        input: &Arc<dyn ExecutionPlan>,
        keys: impl Iterator<Item = &'a PhysicalExprRef>,
        buckets: usize,
    ) -> Self {
        Self {
            schema: input.schema(),
            keys: keys.cloned().collect(),
            buckets,
        }
    }

    /// The bucket of each row of `batch`: the hash a partitioned join's repartition computes,
    /// modulo the bucket count (a multiple of the partition count, so a bucket's rows all
    /// belong to one output partition).
    fn buckets_of(&self, batch: &RecordBatch, hashes: &mut Vec<u64>) -> Result<()> {
        let keys = self
            .keys
            .iter()
            .map(|key| key.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>>>()?;
        hashes.clear();
        hashes.resize(batch.num_rows(), 0);
        create_hashes(&keys, REPARTITION_RANDOM_STATE.random_state(), hashes)?;
        let buckets = self.buckets as u64;
        hashes.iter_mut().for_each(|h| *h %= buckets);
        Ok(())
    }
}

/// Whether the build side still fits its share of the memory limit: the batches held count
/// against the pool until the join takes them over or they are spilled.
struct Gate {
    reservation: Mutex<MemoryReservation>,
    budget: usize,
    spilling: AtomicBool,
    spilled: tokio::sync::Notify,
}

impl Gate {
    fn new(reservation: MemoryReservation, budget: usize) -> Self {
        Self {
            reservation: Mutex::new(reservation),
            budget,
            spilling: AtomicBool::new(false),
            spilled: tokio::sync::Notify::new(),
        }
    }

    /// Counts `bytes` more held in memory, unless the build side is spilling or they do not
    /// fit (then it spills from now on).
    fn admit(&self, bytes: usize) -> bool {
        if self.is_spilling() {
            return false;
        }
        let reservation = self.reservation.lock().expect("reservation lock");
        if reservation.size() + bytes <= self.budget && reservation.try_grow(bytes).is_ok() {
            return true;
        }
        drop(reservation);
        self.spilling.store(true, Ordering::SeqCst);
        self.spilled.notify_waiters();
        false
    }

    fn is_spilling(&self) -> bool {
        self.spilling.load(Ordering::SeqCst)
    }

    /// Waits until the build side spills.
    async fn spilling(&self) {
        loop {
            let notified = self.spilled.notified();
            if self.is_spilling() {
                return;
            }
            notified.await;
        }
    }

    /// Stops counting held batches (the join took them over, or they were spilled).
    fn release(&self) {
        self.reservation.lock().expect("reservation lock").free();
    }
}

/// What reading one partition of the build side left: its batches in memory, or (once the
/// side outgrew its share) its rows dealt into bucket files.
enum BuildRead {
    Held(Vec<RecordBatch>),
    Dealt(BucketFiles),
}

async fn read_build(
    mut input: SendableRecordBatchStream,
    side: Side,
    gate: Arc<Gate>,
    runtime: Arc<RuntimeEnv>,
    metrics: DealMetrics,
) -> Result<BuildRead> {
    let mut held = Vec::new();
    let mut writer: Option<BucketWriter> = None;
    while let Some(batch) = input.try_next().await? {
        if let Some(writer) = &mut writer {
            writer.push(&batch)?;
            continue;
        }
        if gate.admit(batch.get_array_memory_size()) {
            held.push(batch);
            continue;
        }
        let mut spilling = BucketWriter::new(&side, Arc::clone(&runtime), &metrics);
        for batch in held.drain(..).chain([batch]) {
            spilling.push(&batch)?;
        }
        writer = Some(spilling);
    }
    Ok(match writer {
        Some(writer) => BuildRead::Dealt(writer.finish()?),
        None => BuildRead::Held(held),
    })
}

/// Starts dealing every partition of `input` into bucket files, one task per partition (ended
/// when its handle drops: the statement was cancelled or failed).
fn deal_side(
    side: &Side,
    input: &Arc<dyn ExecutionPlan>,
    context: &Arc<TaskContext>,
    metrics: &DealMetrics,
) -> Result<Vec<SpawnedTask<Result<BucketFiles>>>> {
    (0..input.output_partitioning().partition_count())
        .map(|p| {
            let mut stream = input.execute(p, Arc::clone(context))?;
            let mut writer = BucketWriter::new(side, context.runtime_env(), metrics);
            Ok(SpawnedTask::spawn(async move {
                while let Some(batch) = stream.try_next().await? {
                    writer.push(&batch)?;
                }
                writer.finish()
            }))
        })
        .collect()
}

/// Deals rows into buckets: each bucket's rows gathered into batches of [`SPILL_BATCH_ROWS`]
/// and appended to a spill file of its own (opened with its first batch).
struct BucketWriter {
    side: Side,
    runtime: Arc<RuntimeEnv>,
    metrics: DealMetrics,
    gathering: Vec<BatchCoalescer>,
    files: Vec<Option<SpillWriter>>,
    dealt: BucketFiles,
    hashes: Vec<u64>,
}

impl BucketWriter {
    fn new(side: &Side, runtime: Arc<RuntimeEnv>, metrics: &DealMetrics) -> Self {
        Self {
            gathering: (0..side.buckets)
                .map(|_| BatchCoalescer::new(Arc::clone(&side.schema), SPILL_BATCH_ROWS))
                .collect(),
            files: (0..side.buckets).map(|_| None).collect(),
            dealt: BucketFiles::new(side.buckets),
            side: side.clone(),
            runtime,
            metrics: metrics.clone(),
            hashes: Vec::new(),
        }
    }

    /// Sends each row of `batch` to its bucket.
    fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        self.side.buckets_of(batch, &mut self.hashes)?;
        // The rows in bucket order (a counting sort), gathered once, then cut per bucket.
        let mut starts = vec![0u32; self.side.buckets + 1];
        for bucket in &self.hashes {
            starts[*bucket as usize + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; self.hashes.len()];
        for (row, bucket) in self.hashes.iter().enumerate() {
            let slot = &mut next[*bucket as usize];
            order[*slot as usize] = row as u32;
            *slot += 1;
        }
        let ordered = take_record_batch(batch, &UInt32Array::from(order))?;
        for bucket in 0..self.side.buckets {
            let (start, end) = (starts[bucket] as usize, starts[bucket + 1] as usize);
            if start == end {
                continue;
            }
            self.gathering[bucket].push_batch(ordered.slice(start, end - start))?;
            while let Some(full) = self.gathering[bucket].next_completed_batch() {
                self.write(bucket, &full)?;
            }
        }
        Ok(())
    }

    fn write(&mut self, bucket: usize, batch: &RecordBatch) -> Result<()> {
        let file = match &mut self.files[bucket] {
            Some(file) => file,
            slot => {
                self.metrics.spill_count.add(1);
                slot.insert(SpillWriter::create(
                    &self.runtime,
                    &self.side.schema,
                    "a bucket of a grace hash join",
                )?)
            }
        };
        file.write(batch)?;
        let bytes = batch.get_array_memory_size();
        self.metrics.spilled_rows.add(batch.num_rows());
        self.metrics.spilled_bytes.add(bytes);
        self.dealt.rows[bucket] += batch.num_rows();
        self.dealt.bytes[bucket] += bytes;
        Ok(())
    }

    /// Writes what each bucket still gathers and closes the files.
    fn finish(mut self) -> Result<BucketFiles> {
        for bucket in 0..self.side.buckets {
            self.gathering[bucket].finish_buffered_batch()?;
            while let Some(last) = self.gathering[bucket].next_completed_batch() {
                self.write(bucket, &last)?;
            }
        }
        for (bucket, file) in std::mem::take(&mut self.files).into_iter().enumerate() {
            if let Some(file) = file {
                self.dealt.files[bucket].push(file.finish()?);
            }
        }
        Ok(self.dealt)
    }
}

/// Each bucket's spill files (one per partition dealt), rows and bytes in memory.
struct BucketFiles {
    files: Vec<Vec<RefCountedTempFile>>,
    rows: Vec<usize>,
    bytes: Vec<usize>,
}

impl BucketFiles {
    fn new(buckets: usize) -> Self {
        Self {
            files: vec![Vec::new(); buckets],
            rows: vec![0; buckets],
            bytes: vec![0; buckets],
        }
    }

    fn extend(&mut self, other: BucketFiles) {
        for (bucket, files) in other.files.into_iter().enumerate() {
            self.files[bucket].extend(files);
            self.rows[bucket] += other.rows[bucket];
            self.bytes[bucket] += other.bytes[bucket];
        }
    }

    /// A one-partition scan of the rows of `buckets`, read back from their files.
    fn scan(&self, side: &Side, buckets: &[usize]) -> Result<Arc<dyn ExecutionPlan>> {
        let files = buckets
            .iter()
            .flat_map(|b| self.files[*b].iter().cloned())
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            Arc::clone(&side.schema),
            vec![Arc::new(SpilledRows {
                schema: Arc::clone(&side.schema),
                files,
            })],
            None,
            Vec::new(),
            false,
            None,
        )?))
    }
}

/// Rows read back from spill files, one file after another.
struct SpilledRows {
    schema: SchemaRef,
    files: Vec<RefCountedTempFile>,
}

impl fmt::Debug for SpilledRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpilledRows({} files)", self.files.len())
    }
}

impl PartitionStream for SpilledRows {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        spill::stream(self.files.clone(), Arc::clone(&self.schema))
    }
}

/// Batches already in memory, handed to the first reader (the join collecting its build side)
/// and dropped with it.
struct OnceBatches {
    schema: SchemaRef,
    batches: Mutex<Vec<RecordBatch>>,
}

impl OnceBatches {
    fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self {
            schema,
            batches: Mutex::new(batches),
        }
    }
}

impl fmt::Debug for OnceBatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnceBatches")
    }
}

impl PartitionStream for OnceBatches {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = std::mem::take(&mut *self.batches.lock().expect("batches lock"));
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            futures::stream::iter(batches.into_iter().map(Ok)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// A table `name` of `ids` (`None`: a null id) with a text column `text` of about 80
    /// bytes a row, in 4 partitions of batches of 500 rows.
    fn table(ids: Vec<Option<i64>>, text: &str) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new(text, DataType::Utf8, true),
        ]));
        let batches: Vec<RecordBatch> = ids
            .chunks(500)
            .map(|ids| {
                let texts: StringArray = ids
                    .iter()
                    .map(|id| id.map(|id| format!("{text} of {id}, with words enough to carry a row past eighty bytes in all")))
                    .collect();
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(texts)],
                )
                .unwrap()
            })
            .collect();
        let partitions: Vec<Vec<RecordBatch>> = (0..4)
            .map(|p| batches.iter().skip(p).step_by(4).cloned().collect())
            .collect();
        Arc::new(MemTable::try_new(schema, partitions).unwrap())
    }

    /// A session over `products` (ids 0..20,000) and `attributes` (every id not divisible by
    /// 3, twice for ids divisible by 7, and two null ids), with the rule, under `limit` bytes
    /// if any, planning partitioned joins when `partitioned` (else joins that collect their
    /// build side).
    fn session(limit: Option<usize>, partitioned: bool) -> SessionContext {
        let threshold = if partitioned {
            0
        } else {
            u64::MAX as usize / 2
        };
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold",
                threshold,
            )
            .set_usize(
                "datafusion.optimizer.hash_join_single_partition_threshold_rows",
                threshold,
            );
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = limit {
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(Arc::new(runtime.build().unwrap()))
            .with_physical_optimizer_rule(Arc::new(SpillLargeJoins))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let products = table((0..20_000).map(Some).collect(), "name");
        let mut attribute_ids: Vec<Option<i64>> = (0..20_000)
            .filter(|id| id % 3 != 0)
            .flat_map(|id| match id % 7 {
                0 => vec![Some(id), Some(id)],
                _ => vec![Some(id)],
            })
            .collect();
        attribute_ids.extend([None, None]);
        ctx.register_table("products", products).unwrap();
        ctx.register_table("attributes", table(attribute_ids, "material"))
            .unwrap();
        ctx
    }

    /// The rows `sql` returns in `ctx`, sorted, as text; and the spilled rows its grace hash
    /// joins counted.
    async fn run(ctx: &SessionContext, sql: &str) -> (Vec<String>, usize) {
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let batches = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap();
        let mut rows: Vec<String> = pretty_format_batches(&batches)
            .unwrap()
            .to_string()
            .lines()
            .skip(3)
            .filter(|line| !line.starts_with('+'))
            .map(str::to_string)
            .collect();
        rows.sort();
        let mut spilled = 0;
        let mut joins = 0;
        plan.apply(|node| {
            if let Some(grace) = node.as_any().downcast_ref::<GraceHashJoinExec>() {
                joins += 1;
                let metrics = grace.metrics().unwrap();
                spilled += metrics
                    .sum_by_name("build_rows_spilled")
                    .map_or(0, |m| m.as_usize());
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        assert_eq!(joins, 1, "one grace hash join in the plan");
        (rows, spilled)
    }

    const LEFT_JOIN: &str = "SELECT p.id, p.name, a.material FROM products p \
                             LEFT JOIN attributes a ON p.id = a.id";
    // Grouped by the join key: over a partitioned join the aggregate relies on the join's hash
    // partitions (no repartition between them).
    const GROUPED: &str =
        "SELECT a.id, count(*) AS n, max(p.name), max(a.material) FROM products p \
                           JOIN attributes a ON p.id = a.id GROUP BY a.id";
    const FULL_JOIN: &str = "SELECT p.id, p.name, a.id, a.material FROM products p \
                             FULL JOIN attributes a ON p.id = a.id";

    #[tokio::test]
    async fn a_build_side_over_its_share_spills_and_the_join_returns_the_same_rows() {
        for partitioned in [true, false] {
            for sql in [LEFT_JOIN, GROUPED, FULL_JOIN] {
                let (want, _) = run(&session(None, partitioned), sql).await;
                let (got, spilled) = run(&session(Some(8 << 20), partitioned), sql).await;
                // The build side is the smaller: the attributes' 15,240 rows, or the products'.
                assert!(
                    spilled == 15_240 || spilled == 20_000,
                    "{sql} (partitioned {partitioned}): {spilled} build rows spilled"
                );
                assert_eq!(got.len(), want.len(), "{sql} (partitioned {partitioned})");
                assert!(
                    got == want,
                    "{sql} (partitioned {partitioned}): rows differ"
                );
            }
        }
        let (rows, _) = run(&session(Some(8 << 20), true), LEFT_JOIN).await;
        // 20,000 products, one more row for each of the 1,905 ids not divisible by 3 but by 7.
        assert_eq!(rows.len(), 20_000 + 1_905);
    }

    #[tokio::test]
    async fn a_build_side_within_its_share_is_joined_in_memory() {
        for partitioned in [true, false] {
            let (want, _) = run(&session(None, partitioned), LEFT_JOIN).await;
            let (got, spilled) = run(&session(Some(1 << 30), partitioned), LEFT_JOIN).await;
            assert_eq!(spilled, 0);
            assert!(got == want, "partitioned {partitioned}: rows differ");
        }
    }
}
