//! Functions over embedding vectors (`ARRAY<FLOAT>` or `ARRAY<DOUBLE>` columns).
//!
//! - `cosine_similarity(a, b) → DOUBLE`
//! - `hybrid_embed(image_emb, text_emb [, image_weight = 0.5]) → ARRAY<FLOAT>`, the
//!   L2-normalised `w·image + (1−w)·text` of the plan's hybrid embeddings (of fixed length when
//!   both inputs are).
//!
//! NULL in gives NULL out; vectors of different lengths are an error naming the row.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, Float64Array, ListBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

fn float_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float32, true)))
}

/// Casts a vector argument to `List<Float32>` so that every float width is accepted.
fn as_f32_lists(value: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = value.to_array(rows)?;
    Ok(datafusion::arrow::compute::cast(&array, &float_list())?)
}

fn check_vector_type(name: &str, t: &DataType) -> Result<()> {
    match t {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
            if f.data_type().is_floating() || f.data_type().is_integer() =>
        {
            Ok(())
        }
        DataType::Null => Ok(()),
        other => plan_err!("{name}: expected an ARRAY<FLOAT>, got {other}"),
    }
}

/// The values of row `i`, or None when the row or any element is NULL.
fn row(lists: &datafusion::arrow::array::ListArray, i: usize) -> Option<Vec<f32>> {
    if lists.is_null(i) {
        return None;
    }
    let values = lists.value(i);
    let values = values.as_primitive::<Float32Type>();
    if values.null_count() > 0 {
        return None;
    }
    Some(values.values().to_vec())
}

/// `cosine_similarity(a, b) → DOUBLE`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CosineSimilarity {
    signature: Signature,
}

impl CosineSimilarity {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl Default for CosineSimilarity {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for CosineSimilarity {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "cosine_similarity"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        for t in arg_types {
            check_vector_type(self.name(), t)?;
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let a = as_f32_lists(&args.args[0], args.number_rows)?;
        let b = as_f32_lists(&args.args[1], args.number_rows)?;
        let (a, b) = (a.as_list::<i32>(), b.as_list::<i32>());
        let mut out = Vec::with_capacity(args.number_rows);
        for i in 0..args.number_rows {
            out.push(match (row(a, i), row(b, i)) {
                (Some(x), Some(y)) => {
                    if x.len() != y.len() {
                        return exec_err!(
                            "cosine_similarity: row {i}: vectors of lengths {} and {}",
                            x.len(),
                            y.len()
                        );
                    }
                    let dot: f64 = x.iter().zip(&y).map(|(p, q)| *p as f64 * *q as f64).sum();
                    let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
                    let ny: f64 = y.iter().map(|q| (*q as f64).powi(2)).sum::<f64>().sqrt();
                    if nx == 0.0 || ny == 0.0 {
                        None
                    } else {
                        Some(dot / (nx * ny))
                    }
                }
                _ => None,
            });
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

/// `hybrid_embed(image_emb, text_emb [, image_weight]) → ARRAY<FLOAT>`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HybridEmbed {
    signature: Signature,
}

impl HybridEmbed {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::one_of(
                vec![
                    datafusion::logical_expr::TypeSignature::Any(2),
                    datafusion::logical_expr::TypeSignature::Any(3),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for HybridEmbed {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for HybridEmbed {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "hybrid_embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        check_vector_type(self.name(), &arg_types[0])?;
        check_vector_type(self.name(), &arg_types[1])?;
        if let Some(w) = arg_types.get(2) {
            if !(w.is_numeric() || w.is_null()) {
                return plan_err!("hybrid_embed: image_weight must be a number, got {w}");
            }
        }
        // Two embeddings of one fixed length give one of that length (what a vector index
        // needs); anything else gives a variable-length list.
        Ok(match (&arg_types[0], &arg_types[1]) {
            (DataType::FixedSizeList(_, a), DataType::FixedSizeList(_, b)) if a == b => {
                crate::functions::rows::vector_type(*a as usize)
            }
            _ => float_list(),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let image = as_f32_lists(&args.args[0], rows)?;
        let text = as_f32_lists(&args.args[1], rows)?;
        let weights = match args.args.get(2) {
            Some(w) => datafusion::arrow::compute::cast(&w.to_array(rows)?, &DataType::Float64)?,
            None => Arc::new(Float64Array::from(vec![0.5; rows])),
        };
        let weights = weights.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        let (image, text) = (image.as_list::<i32>(), text.as_list::<i32>());
        let mut out = ListBuilder::new(Float32Builder::new()).with_field(Arc::new(Field::new(
            "item",
            DataType::Float32,
            true,
        )));
        for i in 0..rows {
            let (Some(x), Some(y)) = (row(image, i), row(text, i)) else {
                out.append_null();
                continue;
            };
            if weights.is_null(i) {
                out.append_null();
                continue;
            }
            let w = weights.value(i);
            if !(0.0..=1.0).contains(&w) {
                return exec_err!(
                    "hybrid_embed: row {i}: image_weight must be between 0 and 1, got {w}"
                );
            }
            if x.len() != y.len() {
                return exec_err!(
                    "hybrid_embed: row {i}: image vector has {} values, text vector {}",
                    x.len(),
                    y.len()
                );
            }
            let mixed: Vec<f64> = x
                .iter()
                .zip(&y)
                .map(|(p, q)| w * *p as f64 + (1.0 - w) * *q as f64)
                .collect();
            let norm = mixed.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm == 0.0 {
                out.append_null();
                continue;
            }
            for v in mixed {
                out.values().append_value((v / norm) as f32);
            }
            out.append(true);
        }
        let out: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(datafusion::arrow::compute::cast(
            &out,
            args.return_field.data_type(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    use datafusion::prelude::SessionContext;

    async fn value(sql: &str) -> datafusion::error::Result<String> {
        let ctx = SessionContext::new();
        let context = Arc::new(crate::FunctionContext::new(
            Arc::new(crate::LocalFiles),
            crate::runtime::source::Hub::new("/nonexistent", true),
        ));
        for function in crate::functions(&context) {
            ctx.register_udf(function.udf);
        }
        let batches = ctx.sql(sql).await?.collect().await?;
        let options = FormatOptions::default().with_null("NULL");
        let formatter = ArrayFormatter::try_new(batches[0].column(0).as_ref(), &options)?;
        Ok(formatter.value(0).to_string())
    }

    #[tokio::test]
    async fn hybrid_weight_one_is_the_normalised_image_and_zero_the_text() {
        assert_eq!(
            value("SELECT hybrid_embed([3.0, 4.0], [0.0, 2.0], 1.0)")
                .await
                .unwrap(),
            "[0.6, 0.8]"
        );
        assert_eq!(
            value("SELECT hybrid_embed([3.0, 4.0], [0.0, 2.0], 0.0)")
                .await
                .unwrap(),
            "[0.0, 1.0]"
        );
        assert_eq!(
            value("SELECT hybrid_embed([1.0, 0.0], [0.0, 1.0])")
                .await
                .unwrap(),
            "[0.70710677, 0.70710677]"
        );
    }

    #[tokio::test]
    async fn nulls_give_null_and_mismatches_name_the_row() {
        assert_eq!(
            value("SELECT hybrid_embed(CAST(NULL AS FLOAT[]), [1.0])")
                .await
                .unwrap(),
            "NULL"
        );
        assert_eq!(
            value("SELECT cosine_similarity([1.0, NULL], [1.0, 1.0])")
                .await
                .unwrap(),
            "NULL"
        );
        let err = value("SELECT hybrid_embed([1.0, 2.0], [1.0])")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 0") && err.contains("2 values"), "{err}");
        let err = value("SELECT hybrid_embed([1.0], [1.0], 1.5)")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("between 0 and 1"), "{err}");
        let err = value("SELECT cosine_similarity('a', [1.0])")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("ARRAY<FLOAT>"), "{err}");
    }

    #[tokio::test]
    async fn cosine_of_orthogonal_and_parallel_vectors() {
        assert_eq!(
            value("SELECT cosine_similarity([1.0, 0.0], [0.0, 5.0])")
                .await
                .unwrap(),
            "0.0"
        );
        assert_eq!(
            value("SELECT cosine_similarity([2.0, 2.0], [1.0, 1.0])")
                .await
                .unwrap()
                .parse::<f64>()
                .unwrap()
                .round(),
            1.0
        );
    }
}
