//! Spark's `concat(a, b, …)`: of strings, NULL when any argument is NULL (DataFusion's skips
//! NULLs, as `concat_ws` does), arguments of other types cast to strings first
//! (`concat('a', 1)`); of arrays, their elements one after the other. The strings' NULL rule is
//! `datafusion-spark`'s function, the arrays' DataFusion's `array_concat`; this adds Spark's
//! implicit casts and the choice between the two.

use std::any::Any;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::Result;
use datafusion::functions_nested::concat::ArrayConcat;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
};
use datafusion_spark::function::string::concat::SparkConcat;

/// The function.
#[derive(Debug, PartialEq, Eq, Hash, Default)]
pub struct Concat {
    spark: SparkConcat,
    arrays: ArrayConcat,
}

/// The types of the argument fields `fields`.
fn types_of(fields: &[FieldRef]) -> Vec<DataType> {
    fields.iter().map(|f| f.data_type().clone()).collect()
}

/// Whether the arguments are arrays (Spark concatenates arrays or strings, not a mix).
fn of_arrays(types: &[DataType]) -> bool {
    types.first().is_some_and(|t| {
        matches!(
            t,
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
        )
    })
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
        if of_arrays(arg_types) {
            return self.arrays.coerce_types(arg_types);
        }
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
        match of_arrays(arg_types) {
            true => self.arrays.return_type(arg_types),
            false => self.spark.return_type(arg_types),
        }
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<FieldRef> {
        match of_arrays(&types_of(args.arg_fields)) {
            true => self.arrays.return_field_from_args(args),
            false => self.spark.return_field_from_args(args),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match of_arrays(&types_of(&args.arg_fields)) {
            true => self.arrays.invoke_with_args(args),
            false => self.spark.invoke_with_args(args),
        }
    }
}
