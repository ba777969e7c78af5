//! Spark's `split(str, regex [, limit])` → `ARRAY<STRING>`.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use regex::Regex;

/// The function. The pattern must be a constant (as in every script that uses it).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Split {
    signature: Signature,
}

impl Split {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    datafusion::logical_expr::TypeSignature::String(2),
                    datafusion::logical_expr::TypeSignature::Any(3),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for Split {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for Split {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "split"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Utf8,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let pattern = match &args.args[1] {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(p))
                | ScalarValue::Utf8View(Some(p))
                | ScalarValue::LargeUtf8(Some(p)),
            ) => p.clone(),
            _ => return exec_err!("split: the pattern must be a constant string"),
        };
        let limit = match args.args.get(2) {
            None => -1,
            Some(ColumnarValue::Scalar(s)) => match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) => n,
                _ => -1,
            },
            Some(_) => return exec_err!("split: the limit must be a constant"),
        };
        let regex = Regex::new(&pattern).map_err(|e| {
            datafusion::error::DataFusionError::Execution(format!(
                "split: invalid pattern '{pattern}': {e}"
            ))
        })?;
        let text = datafusion::arrow::compute::cast(
            &args.args[0].to_array(args.number_rows)?,
            &DataType::Utf8,
        )?;
        let text = text.as_string::<i32>();
        let mut out = ListBuilder::new(StringBuilder::new());
        for i in 0..text.len() {
            if text.is_null(i) {
                out.append_null();
                continue;
            }
            let parts: Vec<&str> = if limit > 0 {
                regex.splitn(text.value(i), limit as usize).collect()
            } else {
                regex.split(text.value(i)).collect()
            };
            for part in parts {
                out.values().append_value(part);
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
