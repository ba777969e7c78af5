//! Spark SQL functions and semantics on top of DataFusion's.
//!
//! - [`register`] adds the `datafusion-spark` functions DataFusion lacks (`collect_list`, …), Spark's
//!   `size` (which returns -1 for NULL), JSON helpers from `datafusion-functions-json`, and
//!   Vitrine's own `concat` (NULL when any argument is), `get_json_object`, `from_json`,
//!   `to_json`, `split` and `typeof`.
//! - [`statement_inputs`] gives the clock functions and `rand()` the running statement's start
//!   time and seed.
//! - [`SparkIntegerDivision`] makes `/` between integers return a double, as Spark does.
//! - [`expand`] turns calls of Spark functions that DataFusion computes as another expression
//!   (`isnull`, `month`, `count_if`, `regexp_extract`, …) into that expression.

mod concat;
mod division;
mod expansions;
mod json;
mod split;
pub mod statement_inputs;
mod type_of;

use std::sync::Arc;

use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

pub use concat::Concat;
pub use division::SparkIntegerDivision;
pub use expansions::expand;
pub use json::{FromJson, GetJsonObject, ToJson};
pub use split::Split;
pub use type_of::TypeOf;

use crate::error::Result;

/// Spark functions that replace DataFusion's function of the same name, because their semantics
/// differ in a way the workflow's SQL relies on.
const SPARK_OVERRIDES: &[&str] = &["size"];

/// Registers the Spark functions on `ctx`.
pub fn register(ctx: &mut SessionContext) -> Result<()> {
    for udf in datafusion_spark::all_default_scalar_functions() {
        if SPARK_OVERRIDES.contains(&udf.name()) || ctx.udf(udf.name()).is_err() {
            ctx.register_udf(udf)?;
        }
    }
    for udaf in datafusion_spark::all_default_aggregate_functions() {
        if ctx.udaf(udaf.name()).is_err() {
            ctx.register_udaf(udaf)?;
        }
    }
    datafusion_functions_json::register_all(ctx)?;
    ctx.register_udf(Arc::new(ScalarUDF::new_from_impl(Concat::new())))?;
    ctx.register_udf(Arc::new(ScalarUDF::new_from_impl(GetJsonObject::new())))?;
    ctx.register_udf(Arc::new(ScalarUDF::new_from_impl(FromJson::new())))?;
    ctx.register_udf(Arc::new(ScalarUDF::new_from_impl(ToJson::new())))?;
    ctx.register_udf(Arc::new(ScalarUDF::new_from_impl(Split::new())))?;
    ctx.register_udf(Arc::new(ScalarUDF::new_from_impl(TypeOf::new())))?;
    Ok(())
}
