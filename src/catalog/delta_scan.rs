//! Delta tables read in pieces a cluster can share out: a scan by data file, described by what a
//! worker needs to run it elsewhere (location, version, columns, files).
//!
//! [`DeltaTable`] is the DataFusion table of a Delta table version. On one node it plans as
//! `deltalake` plans. In a session that runs plans across workers it plans a
//! [`DeltaFileScanExec`]: the files `deltalake`'s own scan keeps for the query's filters (its
//! statistics prune them on the coordinator), one output partition per file, under DataFusion's
//! own filter. A worker plans `deltalake`'s scan of the same version again and keeps only its
//! partition's files, so deletion vectors, column mapping and partition values are read as
//! `deltalake` reads them.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::delta_table;
use super::runs_across_workers;
use super::version::OpenedTable;
use super::worker_scan::{columns_to_read, filter_and_keep};

/// The most output partitions one scan is split into (files are grouped beyond it).
const MAX_PARTITIONS: usize = 64;

/// The DataFusion table over the Delta table at `location` at its latest version, or at
/// `version`; registers the table's object store with `session`.
pub async fn provider(
    location: &str,
    version: Option<u64>,
    session: &dyn Session,
) -> crate::error::Result<OpenedTable> {
    let opened = delta_table::provider(location, version, session).await?;
    let (inner, version) = (opened.provider, opened.version.unwrap_or_default());
    Ok(OpenedTable {
        provider: Arc::new(DeltaTable {
            inner,
            location: location.to_string(),
            version,
        }),
        version: Some(version),
    })
}

/// The DataFusion table of one version of a Delta table.
#[derive(Debug)]
pub struct DeltaTable {
    /// `deltalake`'s own table: how a single node reads it.
    inner: Arc<dyn TableProvider>,
    location: String,
    version: u64,
}

#[async_trait]
impl TableProvider for DeltaTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    /// As `deltalake` says, but never exact: across workers the filters are applied above the
    /// file scan.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(self
            .inner
            .supports_filters_pushdown(filters)?
            .into_iter()
            .map(|p| match p {
                TableProviderFilterPushDown::Exact => TableProviderFilterPushDown::Inexact,
                other => other,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !runs_across_workers(state) {
            return self.inner.scan(state, projection, filters, limit).await;
        }
        // The columns asked for and those the filters read; the filters go above.
        let (read, asked) = columns_to_read(&self.schema(), projection, filters);
        let local = self.inner.scan(state, Some(&read), filters, None).await?;
        let files: Vec<String> = data_files(&local)?
            .iter()
            .map(|file| in_table(&self.location, file))
            .collect();
        let scan: Arc<dyn ExecutionPlan> = if files.is_empty() {
            Arc::new(EmptyExec::new(local.schema()))
        } else {
            let groups = files.len().min(MAX_PARTITIONS);
            let partitions = (0..groups)
                .map(|g| files[g * files.len() / groups..(g + 1) * files.len() / groups].to_vec())
                .collect();
            let spec = DeltaScanSpec {
                location: self.location.clone(),
                version: self.version,
                columns: read,
                partitions,
            };
            Arc::new(DeltaFileScanExec::new(spec, local.schema()))
        };
        filter_and_keep(state, scan, filters, asked, None)
    }
}

/// The data files the file scans of `plan` read, in order.
fn data_files(plan: &Arc<dyn ExecutionPlan>) -> Result<Vec<String>> {
    let mut files = Vec::new();
    plan.apply(|node| {
        if let Some(config) = file_scan(node) {
            files.extend(
                config
                    .file_groups
                    .iter()
                    .flat_map(|g| g.iter())
                    .map(|f| f.object_meta.location.to_string()),
            );
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(files)
}

/// `file` (an object-store path) relative to the folder of the table at `location`, when it
/// lies in it: the name a worker matches against its own scan of the table, wherever it has the
/// warehouse.
fn in_table(location: &str, file: &str) -> String {
    let folder = match url::Url::parse(location) {
        Ok(url) if url.scheme().len() > 1 => url.path().to_string(),
        _ => location.to_string(),
    };
    let folder = folder.trim_matches('/');
    file.strip_prefix(folder)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(file)
        .to_string()
}

/// The file scan configuration of `node`, if it scans files.
fn file_scan(node: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    node.as_any()
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .as_any()
        .downcast_ref::<FileScanConfig>()
}

/// `plan` with its file scans reading only `keep`, as one group.
fn keep_files(
    plan: Arc<dyn ExecutionPlan>,
    location: &str,
    keep: &HashSet<String>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(config) = file_scan(&node) else {
            return Ok(Transformed::no(node));
        };
        let kept: Vec<PartitionedFile> = config
            .file_groups
            .iter()
            .flat_map(|g| g.iter())
            .filter(|f| keep.contains(&in_table(location, f.object_meta.location.as_ref())))
            .cloned()
            .collect();
        let config = FileScanConfigBuilder::from(config.clone())
            .with_file_groups(vec![FileGroup::new(kept)])
            .build();
        Ok(Transformed::yes(DataSourceExec::from_data_source(config)))
    })
    .map(|t| t.data)
}

/// What a worker needs to read its share of a Delta table version: serialised by the
/// cluster's plan codec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaScanSpec {
    /// The table's location, as the catalog holds it (a path or a URL every worker reaches).
    pub location: String,
    /// The version read.
    pub version: u64,
    /// The columns read (indexes into the table's schema), in output order.
    pub columns: Vec<usize>,
    /// The data files each output partition reads, as the object store names them, relative
    /// to the table's folder.
    pub partitions: Vec<Vec<String>>,
}

/// Reads data files of one Delta table version: partition `i` reads the files
/// `spec.partitions[i]`.
#[derive(Debug)]
pub struct DeltaFileScanExec {
    spec: DeltaScanSpec,
    properties: Arc<PlanProperties>,
}

impl DeltaFileScanExec {
    /// A scan of `spec` producing `schema`.
    pub fn new(spec: DeltaScanSpec, schema: SchemaRef) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(spec.partitions.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            spec,
            properties: Arc::new(properties),
        }
    }

    /// What the scan reads.
    pub fn spec(&self) -> &DeltaScanSpec {
        &self.spec
    }
}

impl DisplayAs for DeltaFileScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "DeltaFileScanExec: {} version {}, {} files in {} partitions",
            self.spec.location,
            self.spec.version,
            self.spec.partitions.iter().map(Vec::len).sum::<usize>(),
            self.spec.partitions.len()
        )
    }
}

impl ExecutionPlan for DeltaFileScanExec {
    fn name(&self) -> &str {
        "DeltaFileScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let spec = self.spec.clone();
        let keep: HashSet<String> = spec
            .partitions
            .get(partition)
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "DeltaFileScanExec has {} partitions, not {}",
                    spec.partitions.len(),
                    partition + 1
                ))
            })?
            .iter()
            .cloned()
            .collect();
        let batches = futures::stream::once(async move {
            let session = SessionStateBuilder::new()
                .with_config(context.session_config().clone())
                .with_runtime_env(context.runtime_env())
                .build();
            let external = |e: crate::error::VitrineError| DataFusionError::External(Box::new(e));
            let table = delta_table::provider(&spec.location, Some(spec.version), &session)
                .await
                .map_err(external)?
                .provider;
            let plan = table.scan(&session, Some(&spec.columns), &[], None).await?;
            let mut plan = keep_files(plan, &spec.location, &keep)?;
            if plan.output_partitioning().partition_count() != 1 {
                plan = Arc::new(CoalescePartitionsExec::new(plan));
            }
            plan.execute(0, context)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches.boxed(),
        )))
    }
}
