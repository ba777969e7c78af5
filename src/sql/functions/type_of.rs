//! Spark's `typeof(expr)`: the Spark name of the argument's type (`int`, `array<string>`, …).

use std::any::Any;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::sql::types::spark_type_name;

/// The function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TypeOf {
    signature: Signature,
}

impl TypeOf {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for TypeOf {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for TypeOf {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = match args.arg_fields[0].data_type() {
            // Spark's type of an untyped NULL.
            DataType::Null => "void".to_string(),
            other => spark_type_name(other),
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}
