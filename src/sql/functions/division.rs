//! Spark's `/`: dividing two integers gives a double (`7 / 2 = 3.5`), where DataFusion truncates.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::expr::BinaryExpr;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{cast, Expr, ExprSchemable, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;

/// An analyzer rule, run before type coercion, that casts both sides of an integer division to
/// `DOUBLE`.
#[derive(Debug, Default)]
pub struct SparkIntegerDivision;

impl AnalyzerRule for SparkIntegerDivision {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = merge_schema(&plan.inputs());
            let rewritten = plan.map_expressions(|expr| {
                expr.transform_up(|e| match e {
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::Divide,
                        right,
                    }) => {
                        let is_int = |e: &Expr| e.get_type(&schema).is_ok_and(|t| t.is_integer());
                        if is_int(&left) && is_int(&right) {
                            let divided = Expr::BinaryExpr(BinaryExpr::new(
                                Box::new(cast(*left, DataType::Float64)),
                                Operator::Divide,
                                Box::new(cast(*right, DataType::Float64)),
                            ));
                            Ok(Transformed::yes(divided))
                        } else {
                            Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                                left,
                                op: Operator::Divide,
                                right,
                            })))
                        }
                    }
                    other => Ok(Transformed::no(other)),
                })
            })?;
            if rewritten.transformed {
                rewritten.map_data(|p| p.recompute_schema())
            } else {
                Ok(rewritten)
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "spark_integer_division"
    }
}
