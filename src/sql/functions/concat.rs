//! Spark's `concat(a, b, …)`: NULL when any argument is NULL (DataFusion's skips NULLs, as
//! `concat_ws` does), and arguments of other types cast to strings first (`concat('a', 1)`).
//! The NULL rule is `datafusion-spark`'s function; this adds Spark's implicit casts.

use std::any::Any;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
};
use datafusion_spark::function::string::concat::SparkConcat;

/// The function.
#[derive(Debug, PartialEq, Eq, Hash, Default)]
pub struct Concat {
    spark: SparkConcat,
}

impl Concat {
    /// The function.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ScalarUDFImpl for Concat {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "concat"
    }

    fn signature(&self) -> &Signature {
        self.spark.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(arg_types
            .iter()
            .map(|t| match t {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                    t.clone()
                }
                _ => DataType::Utf8,
            })
            .collect())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.spark.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<FieldRef> {
        self.spark.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.spark.invoke_with_args(args)
    }
}
