//! Spark's JSON functions: `get_json_object(json, '$.path')` and `from_json(json, schema)`.
//!
//! Both follow Spark in returning NULL for malformed input rather than failing the statement:
//! the model replies they parse are not always valid JSON.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, StringBuilder, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::common::{exec_err, plan_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use serde_json::Value;

use crate::sql::types::parse_spark_schema;

/// `get_json_object(json STRING, path STRING) → STRING`: the value at a JSONPath (`$.a.b`,
/// `$.a[0]`, `$['a']`); strings come back unquoted, objects and arrays as JSON text.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GetJsonObject {
    signature: Signature,
}

impl GetJsonObject {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::string(2, Volatility::Immutable),
        }
    }
}

impl Default for GetJsonObject {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for GetJsonObject {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "get_json_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let json = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let path = datafusion::arrow::compute::cast(&arrays[1], &DataType::Utf8)?;
        let (json, path) = (json.as_string::<i32>(), path.as_string::<i32>());
        let mut out = StringBuilder::with_capacity(json.len(), json.len() * 8);
        for i in 0..json.len() {
            if json.is_null(i) || path.is_null(i) {
                out.append_null();
                continue;
            }
            let value = serde_json::from_str::<Value>(json.value(i))
                .ok()
                .and_then(|v| json_path(&v, path.value(i)).cloned());
            match value {
                None | Some(Value::Null) => out.append_null(),
                Some(Value::String(s)) => out.append_value(s),
                Some(other) => out.append_value(other.to_string()),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Follows a Spark JSONPath (`$`, `.key`, `['key']`, `[index]`) into `value`.
fn json_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut current = value;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            current = current.get(&after[..end])?;
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let key = after[..end].trim();
            current =
                if let Some(quoted) = key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')) {
                    current.get(quoted)?
                } else {
                    current.get(key.parse::<usize>().ok()?)?
                };
            rest = &after[end + 1..];
        } else {
            return None;
        }
    }
    Some(current)
}

/// `from_json(json STRING, schema STRING) → STRUCT<…>`, the schema being a literal such as
/// `'material STRING, details ARRAY<STRING>'` or `'STRUCT<a: INT>'`. Malformed JSON gives NULL;
/// a field whose value does not fit its type gives NULL for that row.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FromJson {
    signature: Signature,
}

impl FromJson {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::new(TypeSignature::Any(2), Volatility::Immutable),
        }
    }
}

impl Default for FromJson {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for FromJson {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "from_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("from_json: the return type depends on the schema argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let schema = match args.scalar_arguments.get(1) {
            Some(Some(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
            )) => s,
            _ => {
                return plan_err!(
                    "from_json: the schema must be a string literal, e.g. 'a INT, b STRING'"
                )
            }
        };
        let fields = parse_spark_schema(schema)
            .map_err(|e| datafusion::error::DataFusionError::Plan(format!("from_json: {e}")))?;
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Struct(fields),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::Struct(fields) = args.return_field.data_type().clone() else {
            return exec_err!("from_json: return type is not a struct");
        };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let json = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        Ok(ColumnarValue::Array(decode_rows(
            json.as_string::<i32>(),
            &fields,
        )?))
    }
}

/// Decodes each row on its own, so that one bad row becomes NULL instead of failing the batch.
fn decode_rows(json: &datafusion::arrow::array::StringArray, fields: &Fields) -> Result<ArrayRef> {
    let schema = Arc::new(Schema::new(fields.clone()));
    let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(json.len()); fields.len()];
    let mut valid = Vec::with_capacity(json.len());
    for i in 0..json.len() {
        let decoded = if json.is_null(i) {
            None
        } else {
            decode_one(json.value(i), &schema)
        };
        valid.push(decoded.is_some());
        for (c, field) in fields.iter().enumerate() {
            let column = match &decoded {
                Some(batch) => Arc::clone(batch.column(c)),
                None => new_null_array(field.data_type(), 1),
            };
            columns[c].push(column);
        }
    }
    let columns = columns
        .iter()
        .map(|parts| {
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            Ok(datafusion::arrow::compute::concat(&refs)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let nulls = NullBuffer::from(valid);
    Ok(Arc::new(StructArray::try_new(
        fields.clone(),
        columns,
        Some(nulls),
    )?))
}

fn decode_one(text: &str, schema: &Arc<Schema>) -> Option<datafusion::arrow::array::RecordBatch> {
    if !serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()) {
        return None;
    }
    let mut decoder = ReaderBuilder::new(Arc::clone(schema))
        .with_batch_size(1)
        .build_decoder()
        .ok()?;
    decoder.decode(text.as_bytes()).ok()?;
    decoder.flush().ok().flatten().filter(|b| b.num_rows() == 1)
}

/// `to_json(value) → STRING`: a struct as a JSON object (NULL fields left out, as Spark does),
/// an array or map as JSON; a NULL value gives NULL. With `named_struct`, how a model's target
/// answer is written from labelled columns.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToJson {
    signature: Signature,
}

impl ToJson {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::new(TypeSignature::Any(1), Volatility::Immutable),
        }
    }
}

impl Default for ToJson {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for ToJson {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "to_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array(encode_rows(&arrays[0])?))
    }
}

/// Each row of `values` as JSON text: written as the field `v` of a one-column batch of
/// JSON lines, then taken out of it.
fn encode_rows(values: &ArrayRef) -> Result<ArrayRef> {
    use datafusion::arrow::json::LineDelimitedWriter;

    let schema = Arc::new(Schema::new(vec![Field::new(
        "v",
        values.data_type().clone(),
        true,
    )]));
    let batch = datafusion::arrow::array::RecordBatch::try_new(schema, vec![Arc::clone(values)])?;
    let mut lines = Vec::new();
    {
        let mut writer = LineDelimitedWriter::new(&mut lines);
        writer.write(&batch)?;
        writer.finish()?;
    }
    let text = String::from_utf8_lossy(&lines);
    let rows: Vec<Option<String>> = text
        .lines()
        .zip(0..values.len())
        .map(|(line, i)| {
            if values.is_null(i) {
                return Ok(None);
            }
            let object: Value = serde_json::from_str(line).map_err(|e| {
                datafusion::error::DataFusionError::Execution(format!("to_json: {e}"))
            })?;
            Ok(object.get("v").map(|v| v.to_string()))
        })
        .collect::<Result<_>>()?;
    Ok(Arc::new(datafusion::arrow::array::StringArray::from(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_json_writes_structs_arrays_and_leaves_out_null_fields() {
        let ctx = datafusion::prelude::SessionContext::new();
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            ToJson::new(),
        ));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let batches = rt
            .block_on(async {
                ctx.sql(
                    "SELECT to_json(named_struct('material', 'knit fabric', 'n', 1, 'none', CAST(NULL AS INT), \
                     'tags', make_array('a', 'b'))) AS s, to_json(make_array(1, 2)) AS a, \
                     to_json(CAST(NULL AS INT)) AS z",
                )
                .await?
                .collect()
                .await
            })
            .unwrap();
        let text = |c: usize| {
            let column =
                datafusion::arrow::compute::cast(batches[0].column(c), &DataType::Utf8).unwrap();
            let column = column.as_string::<i32>();
            (!column.is_null(0)).then(|| column.value(0).to_string())
        };
        assert_eq!(
            text(0).as_deref(),
            Some(r#"{"material":"knit fabric","n":1,"tags":["a","b"]}"#)
        );
        assert_eq!(text(1).as_deref(), Some("[1,2]"));
        assert_eq!(text(2), None);
    }

    #[test]
    fn json_paths_follow_keys_and_indexes() {
        let v: Value = serde_json::from_str(r#"{"a": {"b": [10, {"c": "x"}]}, "k y": 1}"#).unwrap();
        assert_eq!(json_path(&v, "$.a.b[0]"), Some(&Value::from(10)));
        assert_eq!(json_path(&v, "$.a.b[1].c"), Some(&Value::from("x")));
        assert_eq!(json_path(&v, "$['k y']"), Some(&Value::from(1)));
        assert_eq!(json_path(&v, "$.missing"), None);
        assert_eq!(json_path(&v, "a.b"), None);
    }
}
