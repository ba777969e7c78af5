//! What the table scans workers run ([`super::lance_scan`], [`super::delta_scan`]) share: the
//! columns to read (those asked for, then those only the filters read), and the plan above the
//! scan that applies the filters and keeps the asked columns, as DataFusion nodes any worker runs.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

/// The columns of `schema` a scan reads for `projection` and `filters`: the asked ones first,
/// in order, then those only the filters read; and how many were asked.
pub fn columns_to_read(
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
) -> (Vec<usize>, usize) {
    let mut read: Vec<usize> = match projection {
        Some(p) => p.clone(),
        None => (0..schema.fields().len()).collect(),
    };
    let asked = read.len();
    let referenced: HashSet<String> = filters
        .iter()
        .flat_map(|f| f.column_refs().into_iter().map(|c| c.name.clone()))
        .collect();
    for (i, field) in schema.fields().iter().enumerate() {
        if referenced.contains(field.name()) && !read.contains(&i) {
            read.push(i);
        }
    }
    (read, asked)
}

/// `scan` (whose output is the columns [`columns_to_read`] chose) with `filters` applied and
/// the first `asked` columns kept; with filters, `limit` rows at most per partition (the query's
/// own limit above keeps the total).
pub fn filter_and_keep(
    state: &dyn Session,
    scan: Arc<dyn ExecutionPlan>,
    filters: &[Expr],
    asked: usize,
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let read_schema = scan.schema();
    let mut plan = scan;
    if let Some(predicate) = conjunction(filters.to_vec()) {
        let df_schema = DFSchema::try_from(read_schema.as_ref().clone())?;
        let predicate = state.create_physical_expr(predicate, &df_schema)?;
        plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        if let Some(limit) = limit {
            plan = Arc::new(LocalLimitExec::new(plan, limit));
        }
    }
    if read_schema.fields().len() != asked {
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = (0..asked)
            .map(|i| {
                let name = read_schema.field(i).name().clone();
                let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(&name, i));
                (column, name)
            })
            .collect();
        plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
    }
    Ok(plan)
}
