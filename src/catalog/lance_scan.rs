//! Lance tables read in pieces a cluster can share out: a scan by fragment, described by what
//! a worker needs to run it elsewhere (location, version, columns, fragments).
//!
//! [`LanceTable`] is the DataFusion table of a Lance dataset version. On one node it plans as
//! Lance plans (its own scan, filters and indexes). In a session that runs plans across workers
//! (`vitrine --workers …`), it plans a [`LanceScanExec`] instead: one output partition per group
//! of fragments, which the distributed planner hands to different workers, under DataFusion's
//! own filter and projection (which travel as standard plan nodes).

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use lance::datafusion::LanceTableProvider;

use super::lance_table;
use super::runs_across_workers;
use super::version::OpenedTable;
use super::worker_scan::{columns_to_read, filter_and_keep};

/// The most output partitions (fragment groups) one scan is split into.
const MAX_PARTITIONS: usize = 64;

/// The DataFusion table over the dataset at `location` at its latest version, or at `version`.
pub async fn provider(location: &str, version: Option<u64>) -> crate::error::Result<OpenedTable> {
    let dataset = lance_table::open(location, version).await?;
    let version = dataset.version().version;
    let fragments = dataset
        .get_fragments()
        .iter()
        .map(|f| {
            let rows = f.metadata().num_rows().unwrap_or_default() as u64;
            (f.id() as u64, rows)
        })
        .collect();
    let lance = Arc::new(LanceTableProvider::new(Arc::new(dataset), false, false));
    Ok(OpenedTable {
        provider: Arc::new(LanceTable::new(
            lance,
            location.to_string(),
            version,
            fragments,
        )),
        version: Some(version),
    })
}

/// The DataFusion table of one version of a Lance dataset.
#[derive(Debug)]
pub struct LanceTable {
    /// Lance's own table: how a single node reads it.
    inner: Arc<dyn TableProvider>,
    location: String,
    version: u64,
    /// The version's fragments, in order, with their rows.
    fragments: Vec<(u64, u64)>,
}

impl LanceTable {
    /// Wraps Lance's table over `location` at `version`, whose fragments (id, rows) are
    /// `fragments`.
    pub fn new(
        inner: Arc<dyn TableProvider>,
        location: String,
        version: u64,
        fragments: Vec<(u64, u64)>,
    ) -> Self {
        Self {
            inner,
            location,
            version,
            fragments,
        }
    }
}

#[async_trait]
impl TableProvider for LanceTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A filtered scan that keeps no column (a `COUNT(*) … WHERE`) stays Lance's own: its
        // rows are counted where they are read, and the stage runs on one node.
        let counts_only = projection.is_some_and(Vec::is_empty) && !filters.is_empty();
        if !runs_across_workers(state) || counts_only {
            return self.inner.scan(state, projection, filters, limit).await;
        }
        // The columns asked for and those the filters read, scanned by fragment; the filters
        // (pushed down as exact) and the projection are applied above, as plan nodes any
        // worker runs.
        let schema = self.schema();
        let (read, asked) = columns_to_read(&schema, projection, filters);
        let read_schema = Arc::new(schema.project(&read)?);
        let scan = LanceScanExec::new(
            LanceScanSpec {
                location: self.location.clone(),
                version: self.version,
                columns: read_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
                partitions: scan_parts(&self.fragments),
                limit: limit.filter(|_| filters.is_empty()),
            },
            read_schema,
        );
        filter_and_keep(state, Arc::new(scan), filters, asked, limit)
    }
}

/// What a worker needs to run a fragment scan: serialised by the cluster's plan codec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LanceScanSpec {
    /// The dataset's location, as the catalog holds it (a path or a URL every worker reaches).
    pub location: String,
    /// The version read.
    pub version: u64,
    /// The columns read, in output order (none: only row counts).
    pub columns: Vec<String>,
    /// What each output partition reads.
    pub partitions: Vec<ScanPart>,
    /// At most this many rows per partition, when nothing filters them.
    pub limit: Option<usize>,
}

/// What one partition of a fragment scan reads: whole fragments, or a slice of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanPart {
    /// The fragment ids, in order.
    pub fragments: Vec<u64>,
    /// Only these rows of them: (offset, count), counted after deleted rows.
    pub rows: Option<(u64, u64)>,
}

/// Fragments with fewer rows are not cut into slices.
const SLICE_ROWS: u64 = 2048;

/// The partitions a scan of `fragments` (id, rows) is cut into: groups of whole fragments when
/// there are many, else each fragment in slices of at least [`SLICE_ROWS`] rows, about
/// [`MAX_PARTITIONS`] in all, so that a table of one large fragment (what a `CREATE TABLE … AS`
/// writes) still spreads over the workers, as a model function's rows must.
fn scan_parts(fragments: &[(u64, u64)]) -> Vec<ScanPart> {
    let whole = |ids: &[(u64, u64)]| ScanPart {
        fragments: ids.iter().map(|(id, _)| *id).collect(),
        rows: None,
    };
    if fragments.is_empty() {
        return vec![whole(&[])];
    }
    if fragments.len() >= MAX_PARTITIONS {
        let n = fragments.len();
        return (0..MAX_PARTITIONS)
            .map(|g| whole(&fragments[g * n / MAX_PARTITIONS..(g + 1) * n / MAX_PARTITIONS]))
            .collect();
    }
    let total: u64 = fragments.iter().map(|(_, rows)| rows).sum::<u64>().max(1);
    let mut parts = Vec::new();
    for &(id, rows) in fragments {
        let share = (MAX_PARTITIONS as u64 * rows / total).max(1);
        let slices = (rows / SLICE_ROWS).clamp(1, share);
        if slices == 1 {
            parts.push(whole(&[(id, rows)]));
            continue;
        }
        for i in 0..slices {
            let (start, end) = (i * rows / slices, (i + 1) * rows / slices);
            parts.push(ScanPart {
                fragments: vec![id],
                rows: Some((start, end - start)),
            });
        }
    }
    parts
}

/// Reads fragments of one Lance dataset version: partition `i` reads `spec.partitions[i]`.
#[derive(Debug)]
pub struct LanceScanExec {
    spec: LanceScanSpec,
    properties: Arc<PlanProperties>,
}

impl LanceScanExec {
    /// A scan of `spec` producing `schema`.
    pub fn new(spec: LanceScanSpec, schema: SchemaRef) -> Self {
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
    pub fn spec(&self) -> &LanceScanSpec {
        &self.spec
    }
}

impl DisplayAs for LanceScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LanceScanExec: {} version {}, columns [{}], {} fragments in {} partitions",
            self.spec.location,
            self.spec.version,
            self.spec.columns.join(", "),
            self.spec
                .partitions
                .iter()
                .flat_map(|p| &p.fragments)
                .collect::<HashSet<_>>()
                .len(),
            self.spec.partitions.len()
        )
    }
}

impl ExecutionPlan for LanceScanExec {
    fn name(&self) -> &str {
        "LanceScanExec"
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
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let spec = self.spec.clone();
        let part = spec.partitions.get(partition).cloned().ok_or_else(|| {
            DataFusionError::Internal(format!(
                "LanceScanExec has {} partitions, not {}",
                spec.partitions.len(),
                partition + 1
            ))
        })?;
        let batches = futures::stream::once(async move {
            let lance = |e: lance::Error| DataFusionError::External(Box::new(e));
            let dataset = lance_table::open(&spec.location, Some(spec.version))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let all = dataset.get_fragments();
            let chosen = part
                .fragments
                .iter()
                .filter_map(|id| all.iter().find(|f| f.id() as u64 == *id))
                .map(|f| f.metadata().clone())
                .collect::<Vec<_>>();
            let mut scanner = dataset.scan();
            scanner.with_fragments(chosen);
            if spec.columns.is_empty() {
                scanner.empty_project().map_err(lance)?;
            } else {
                scanner.project(&spec.columns).map_err(lance)?;
            }
            let (offset, limit) = match part.rows {
                Some((offset, count)) => {
                    scanner.scan_in_order(true);
                    let count = spec.limit.map_or(count, |l| count.min(l as u64));
                    (Some(offset as i64), Some(count as i64))
                }
                None => (None, spec.limit.map(|l| l as i64)),
            };
            scanner.limit(limit, offset).map_err(lance)?;
            let stream = scanner.try_into_stream().await.map_err(lance)?;
            Ok::<_, DataFusionError>(stream.map_err(lance))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            batches.boxed(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_are_cut_by_fragment_or_into_slices_of_one() {
        // One large fragment: slices covering every row once.
        let parts = scan_parts(&[(3, 44_424)]);
        assert_eq!(parts.len(), 21);
        let mut next = 0;
        for part in &parts {
            assert_eq!(part.fragments, [3]);
            let (offset, count) = part.rows.unwrap();
            assert_eq!(offset, next);
            assert!(count >= SLICE_ROWS);
            next += count;
        }
        assert_eq!(next, 44_424);
        // Small fragments stay whole; many fragments are grouped.
        assert_eq!(scan_parts(&[(0, 10), (1, 10)]).len(), 2);
        let many: Vec<(u64, u64)> = (0..200).map(|i| (i, 5_000)).collect();
        let parts = scan_parts(&many);
        assert_eq!(parts.len(), MAX_PARTITIONS);
        assert!(parts.iter().all(|p| p.rows.is_none()));
        assert_eq!(parts.iter().map(|p| p.fragments.len()).sum::<usize>(), 200);
        assert_eq!(
            scan_parts(&[]),
            [ScanPart {
                fragments: vec![],
                rows: None
            }]
        );
    }
}
