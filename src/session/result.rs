//! What a statement gives back: a result set, a message, or both.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
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
}

impl StatementResult {
    /// Runs `df` to completion.
    pub async fn collect(df: DataFrame) -> Result<Self> {
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        Ok(Self {
            schema,
            batches,
            message: None,
            warnings: Vec::new(),
        })
    }

    /// A statement whose outcome is a sentence.
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            schema: Arc::new(Schema::empty()),
            batches: Vec::new(),
            message: Some(message.into()),
            warnings: Vec::new(),
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
