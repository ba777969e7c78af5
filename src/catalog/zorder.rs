//! The order `OPTIMIZE … ZORDER BY` writes a Lance dataset's rows in: each row's key
//! interleaves the bits of its dense rank in every column (nulls ranked last), so that sorting
//! by it clusters rows along a Z-order curve.
//!
//! The key is computed in one pass, with no window over the table: the distinct values of each
//! column are read first (a grouped scan of that column alone), and each row's rank is its
//! value's place among them (a binary search). The rewrite sorts by the key bucket by bucket
//! (`bucket_sort.rs`), in memory bounded by the session's limit.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt64Array};
use datafusion::arrow::compute::{cast, SortOptions};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{ident, SessionContext};
use lance::datafusion::LanceTableProvider;
use lance::Dataset;

use crate::error::{Result, VitrineError};

/// Interleaves the low `64 / values.len()` bits of each value, most significant first.
pub fn interleave(values: &[u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let bits = (64 / values.len()).min(64);
    let mut key = 0u64;
    for bit in (0..bits).rev() {
        for v in values {
            key = (key << 1) | ((v >> bit) & 1);
        }
    }
    key
}

/// The distinct values of one column in ascending order, nulls last, as comparable rows.
#[derive(Debug)]
struct Ranks {
    data_type: DataType,
    converter: RowConverter,
    values: Rows,
}

impl Ranks {
    /// The dense rank (from 1) of each value of `array`, which holds values of the column.
    fn of(&self, array: &ArrayRef, out: &mut Vec<u64>) -> Result<()> {
        let array = cast(array, &self.data_type)?;
        let rows = self.converter.convert_columns(&[array])?;
        out.clear();
        for row in rows.iter() {
            let found = binary_search(&self.values, row);
            out.push(found as u64 + 1);
        }
        Ok(())
    }
}

/// The position of `row` among the sorted `values` (where it would go when absent).
fn binary_search(values: &Rows, row: datafusion::arrow::row::Row<'_>) -> usize {
    let (mut low, mut high) = (0, values.num_rows());
    while low < high {
        let middle = (low + high) / 2;
        if values.row(middle) < row {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// The distinct values of `column` in `dataset`, sorted as ranks count them, read in `context`.
async fn ranks(context: &SessionContext, dataset: &Arc<Dataset>, column: &str) -> Result<Ranks> {
    let field = dataset
        .schema()
        .field(column)
        .ok_or_else(|| VitrineError::Plan(format!("no column '{column}' to Z-order by")))?;
    let data_type = field.data_type();
    let provider = LanceTableProvider::new(Arc::clone(dataset), false, false);
    let batches = context
        .read_table(Arc::new(provider))?
        .aggregate(vec![ident(column)], vec![])?
        .collect()
        .await?;
    let converter = RowConverter::new(vec![SortField::new_with_options(
        data_type.clone(),
        SortOptions {
            descending: false,
            nulls_first: false,
        },
    )])?;
    let mut values = converter.empty_rows(0, 0);
    for batch in &batches {
        let array = cast(batch.column(0), &data_type)?;
        converter.append(&mut values, &[array])?;
    }
    let mut sorted: Vec<_> = values.iter().collect();
    sorted.sort_unstable();
    let mut ordered = converter.empty_rows(sorted.len(), 0);
    for row in sorted {
        ordered.push(row);
    }
    Ok(Ranks {
        data_type: data_type.clone(),
        converter,
        values: ordered,
    })
}

/// `__vitrine_z(c1, c2, …)`: the Z-order key of each row of the columns a rewrite clusters by,
/// from the ranks of their distinct values (read before, [`cluster_key`]).
#[derive(Debug)]
struct ClusterKey {
    signature: Signature,
    ranks: Vec<Ranks>,
}

impl PartialEq for ClusterKey {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for ClusterKey {}

impl std::hash::Hash for ClusterKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self, state);
    }
}

impl ScalarUDFImpl for ClusterKey {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        "__vitrine_z"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut column_ranks = vec![Vec::new(); arrays.len()];
        for ((array, ranks), out) in arrays.iter().zip(&self.ranks).zip(&mut column_ranks) {
            ranks
                .of(array, out)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        }
        let mut values = vec![0u64; arrays.len()];
        let keys: UInt64Array = (0..args.number_rows)
            .map(|row| {
                for (value, ranks) in values.iter_mut().zip(&column_ranks) {
                    *value = ranks[row];
                }
                interleave(&values)
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(keys)))
    }
}

/// The expression of each row's Z-order key over `columns` of `dataset`, for a rewrite to sort
/// by: the distinct values of each column are read first (a grouped scan of that column alone),
/// so the key is one pass with no window over the table. The distinct values are read in
/// `context` (the rewrite's, within its memory pool).
pub async fn cluster_key(
    context: &SessionContext,
    dataset: &Arc<Dataset>,
    columns: &[String],
) -> Result<Expr> {
    let mut all_ranks = Vec::with_capacity(columns.len());
    for column in columns {
        all_ranks.push(ranks(context, dataset, column).await?);
    }
    let function = ClusterKey {
        signature: Signature::any(columns.len(), Volatility::Immutable),
        ranks: all_ranks,
    };
    Ok(ScalarUDF::new_from_impl(function).call(columns.iter().map(ident).collect()))
}

#[cfg(test)]
mod tests {
    use super::interleave;

    #[test]
    fn interleaving_two_values_alternates_their_bits() {
        // x = 0b11, y = 0b00 → key bits x1 y1 x0 y0 = 1010 in the lowest positions.
        assert_eq!(interleave(&[0b11, 0b00]), 0b1010);
        assert_eq!(interleave(&[0b00, 0b11]), 0b0101);
        assert_eq!(interleave(&[5]), 5);
    }

    #[test]
    fn z_order_keeps_neighbours_close() {
        let mut points: Vec<(u64, u64)> =
            (0..4).flat_map(|x| (0..4).map(move |y| (x, y))).collect();
        points.sort_by_key(|&(x, y)| interleave(&[x, y]));
        assert_eq!(&points[..4], &[(0, 0), (0, 1), (1, 0), (1, 1)]);
    }
}
