//! Row-level machinery of the model functions: reading arguments out of Arrow arrays, turning a
//! failing row into NULL or an error, and building the `ARRAY<FLOAT>` result.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_datafusion_err, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;

use crate::context::{FunctionContext, RowFailure};
use crate::settings::OnError;
use crate::ModelError;

/// The type of an embedding of `dimension` floats.
pub fn vector_type(dimension: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, true)),
        dimension as i32,
    )
}

/// Builds a column of embeddings; `None` rows are NULL.
pub fn vectors(dimension: usize, rows: &[Option<Vec<f32>>]) -> Result<ArrayRef> {
    let mut values = Vec::with_capacity(rows.len() * dimension);
    for row in rows {
        match row {
            Some(v) if v.len() == dimension => values.extend_from_slice(v),
            Some(v) => {
                return Err(exec_datafusion_err!(
                    "embedding of length {} where {dimension} was expected",
                    v.len()
                ))
            }
            None => values.extend(std::iter::repeat_n(0.0, dimension)),
        }
    }
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>());
    Ok(Arc::new(FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        dimension as i32,
        Arc::new(Float32Array::from(values)),
        Some(nulls),
    )?))
}

/// Runs `compute` on the argument as an array and gives back a scalar when the argument was
/// one (a literal query text is embedded once, not once per row).
pub fn per_row(
    argument: &ColumnarValue,
    rows: usize,
    compute: impl FnOnce(&ArrayRef) -> Result<ArrayRef>,
) -> Result<ColumnarValue> {
    match argument {
        ColumnarValue::Scalar(value) => {
            let out = compute(&value.to_array_of_size(1)?)?;
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        }
        ColumnarValue::Array(array) => {
            debug_assert_eq!(array.len(), rows);
            Ok(ColumnarValue::Array(compute(array)?))
        }
    }
}

/// Every argument as an array of `rows` values (literals repeated).
pub fn arrays(args: &[ColumnarValue], rows: usize) -> Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.to_array(rows)).collect()
}

/// The string values of a text argument (any string type).
pub fn strings(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let array = datafusion::arrow::compute::cast(array, &DataType::Utf8)?;
    Ok(array
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect())
}

/// The values of an array-of-strings argument (any list and string types), NULL elements left
/// out; a NULL array is none.
pub fn string_lists(array: &ArrayRef) -> Result<Vec<Option<Vec<String>>>> {
    let list = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().clone(),
        DataType::LargeList(_) | DataType::FixedSizeList(_, _) | DataType::ListView(_) => {
            let field = Arc::new(Field::new_list_field(DataType::Utf8, true));
            let cast = datafusion::arrow::compute::cast(array, &DataType::List(field))?;
            cast.as_list::<i32>().clone()
        }
        other => {
            return Err(exec_datafusion_err!(
                "expected an array of strings, got {other}"
            ))
        }
    };
    list.iter()
        .map(|values| {
            values
                .map(|values| Ok(strings(&values)?.into_iter().flatten().collect()))
                .transpose()
        })
        .collect()
}

/// An image argument: where to read it, or its bytes.
pub enum ImageArgument {
    /// A path or URL.
    Location(String),
    /// The encoded image.
    Bytes(Vec<u8>),
}

/// The values of an image argument: strings are locations, binaries are encoded images.
pub fn images(array: &ArrayRef) -> Result<Vec<Option<ImageArgument>>> {
    match array.data_type() {
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => {
            let array = datafusion::arrow::compute::cast(array, &DataType::Binary)?;
            Ok(array
                .as_binary::<i32>()
                .iter()
                .map(|b| b.map(|b| ImageArgument::Bytes(b.to_vec())))
                .collect())
        }
        _ => Ok(strings(array)?
            .into_iter()
            .map(|s| s.map(ImageArgument::Location))
            .collect()),
    }
}

/// Reads (for a location) and decodes an image argument; the error says why, for the report.
pub fn read_image(
    context: &FunctionContext,
    image: &ImageArgument,
) -> std::result::Result<image::RgbImage, ModelError> {
    let read;
    let bytes = match image {
        ImageArgument::Bytes(b) => b.as_slice(),
        ImageArgument::Location(path) => {
            read = context.read(path)?;
            read.as_slice()
        }
    };
    crate::image::decode::decode_rgb(bytes)
}

/// The name of row `i` in reports: its path, or its position in the statement.
pub fn row_name(images: &[Option<ImageArgument>], i: usize, first_row: u64) -> String {
    match &images[i] {
        Some(ImageArgument::Location(path)) => format!("'{path}'"),
        _ => format!("row {}", first_row + i as u64 + 1),
    }
}

/// Decides what a failed row becomes: recorded and NULL, or the statement's error.
pub fn row_failed(
    context: &FunctionContext,
    on_error: OnError,
    function: &'static str,
    row: String,
    message: String,
) -> Result<()> {
    match on_error {
        OnError::Fail => Err(exec_datafusion_err!(
            "{function}: {row}: {message} (SET vitrine.udf.on_error = 'null' makes such rows NULL)"
        )),
        OnError::Null => {
            context.record_failure(RowFailure {
                function: function.to_string(),
                row,
                message,
            });
            Ok(())
        }
    }
}

/// A model error as a DataFusion error naming the function.
pub fn model_error(function: &str, error: ModelError) -> DataFusionError {
    exec_datafusion_err!("{function}: {error}")
}
