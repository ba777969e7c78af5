//! What a statement gives back: a result set, a message, or both.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::Column;
use datafusion::logical_expr::{cast, Expr};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::DataFrame;

use crate::error::Result;

/// The outcome of one statement.
#[derive(Debug, Clone)]
pub struct StatementResult {
    /// The result set's schema (empty for statements without one).
    pub schema: SchemaRef,
    /// The result set.
    pub batches: Vec<RecordBatch>,
    /// A line for the user, e.g. `created table main.s.t (44424 rows, version 1)`.
    pub message: Option<String>,
    /// What the user should know although the statement succeeded (rows a model function
    /// could not process, say).
    pub warnings: Vec<String>,
    /// Rows the result set's scans read, where they count them.
    pub read_rows: Option<u64>,
}

/// The rows the scans under `plan` produced once it ran, `None` when no scan counts them.
pub fn scanned_rows(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    if plan.children().is_empty() {
        return plan
            .metrics()
            .and_then(|m| m.output_rows())
            .map(|n| n as u64);
    }
    plan.children()
        .into_iter()
        .filter_map(scanned_rows)
        .reduce(|a, b| a + b)
}

impl StatementResult {
    /// Runs `df` to completion. Its timestamps with a zone (Spark's `TIMESTAMP`) come back in
    /// microseconds in the session time zone, as Spark shows them.
    pub async fn collect(df: DataFrame) -> Result<Self> {
        let df = in_session_time_zone(df)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await?;
        let batches = collect(Arc::clone(&plan), task).await?;
        Ok(Self {
            schema,
            batches,
            message: None,
            warnings: Vec::new(),
            read_rows: scanned_rows(&plan),
        })
    }

    /// A statement whose outcome is a sentence.
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            schema: Arc::new(Schema::empty()),
            batches: Vec::new(),
            message: Some(message.into()),
            warnings: Vec::new(),
            read_rows: None,
        }
    }

    /// A result set of strings.
    pub fn strings(columns: &[&str], rows: Vec<Vec<Option<String>>>) -> Result<Self> {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|c| Field::new(*c, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = (0..columns.len())
            .map(|i| {
                Arc::new(
                    rows.iter()
                        .map(|r| r.get(i).cloned().flatten())
                        .collect::<StringArray>(),
                ) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), arrays)?;
        Ok(Self {
            schema,
            batches: vec![batch],
            message: None,
            warnings: Vec::new(),
            read_rows: None,
        })
    }

    /// Adds a message to a result set.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Number of rows in the result set.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// `df` with its zoned timestamp columns as microseconds in the session time zone (the same
/// instants; only how they are shown changes).
fn in_session_time_zone(df: DataFrame) -> Result<DataFrame> {
    let zone: Option<Arc<str>> = df
        .task_ctx()
        .session_config()
        .options()
        .execution
        .time_zone
        .as_deref()
        .map(Arc::from);
    let shown = DataType::Timestamp(TimeUnit::Microsecond, zone.clone());
    let needs = |t: &DataType| matches!(t, DataType::Timestamp(_, Some(_))) && *t != shown;
    if zone.is_none() || !df.schema().fields().iter().any(|f| needs(f.data_type())) {
        return Ok(df);
    }
    let exprs: Vec<Expr> = df
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            if needs(field.data_type()) {
                cast(column, shown.clone()).alias_qualified(qualifier.cloned(), field.name())
            } else {
                column
            }
        })
        .collect();
    Ok(df.select(exprs)?)
}
