//! Which rows a search may return: a SQL condition over the index's columns (`vector_search`'s
//! `filters => '…'`), or a condition a program builds from values it was given (the search
//! service's request filters), which never passes through SQL text.

use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::{lit, Expr};
use datafusion::prelude::SessionContext;
use lance::dataset::scanner::Scanner;
use lance::Dataset;

use crate::error::{Result, VitrineError};

/// A condition on an index's columns; rows where it is false or NULL are left out.
#[derive(Debug, Clone, PartialEq)]
pub enum RowFilter {
    /// A SQL condition, as `vector_search`'s `filters` argument gives it.
    Sql(String),
    /// A condition built as an expression.
    Expr(Expr),
}

impl RowFilter {
    /// Rows where each `column` holds one of its `values` (every column's condition must hold);
    /// `None` when there is no condition.
    pub fn each_column_in(conditions: Vec<(String, Vec<ScalarValue>)>) -> Option<Self> {
        conditions
            .into_iter()
            .map(|(column, values)| {
                let column = Expr::Column(Column::new_unqualified(column));
                let mut values: Vec<Expr> = values.into_iter().map(lit).collect();
                match values.len() {
                    1 => column.eq(values.remove(0)),
                    _ => column.in_list(values, false),
                }
            })
            .reduce(Expr::and)
            .map(Self::Expr)
    }

    /// What identifies the condition, for caches of what it keeps.
    pub fn key(&self) -> String {
        match self {
            Self::Sql(sql) => format!("sql:{sql}"),
            Self::Expr(expr) => format!("expr:{expr:?}"),
        }
    }

    /// The condition as an expression over `schema`.
    pub fn to_expr(&self, context: &SessionContext, schema: &DFSchema) -> Result<Expr> {
        match self {
            Self::Sql(sql) => Ok(context.parse_sql_expr(sql, schema)?),
            Self::Expr(expr) => Ok(expr.clone()),
        }
    }

    /// Makes `scanner` keep only the rows the condition keeps.
    pub fn apply(&self, scanner: &mut Scanner) -> Result<()> {
        match self {
            Self::Sql(sql) => {
                scanner.filter(sql).map_err(|e| self.failed(e))?;
            }
            Self::Expr(expr) => {
                scanner.filter_expr(expr.clone());
            }
        }
        Ok(())
    }

    /// How many rows of `dataset` the condition keeps.
    pub async fn count(&self, dataset: &Dataset) -> Result<u64> {
        let mut scanner = dataset.scan();
        self.apply(&mut scanner)?;
        scanner.count_rows().await.map_err(|e| self.failed(e))
    }

    /// An error about this condition.
    pub fn failed(&self, reason: impl std::fmt::Display) -> VitrineError {
        VitrineError::Plan(format!("vector_search: filters '{self}': {reason}"))
    }
}

impl std::fmt::Display for RowFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sql(sql) => f.write_str(sql),
            Self::Expr(expr) => write!(f, "{expr}"),
        }
    }
}
