//! The order `OPTIMIZE … ZORDER BY` writes a Lance dataset's rows in: each row's key
//! interleaves the bits of its dense rank in every column (nulls ranked last), so that sorting
//! by it clusters rows along a Z-order curve.
//!
//! The key is computed in one pass, with no window over the table: one grouped scan of the
//! clustering columns alone reads their distinct combinations first, which give each column's
//! distinct values (a row's rank is its value's place among them, a binary search) and the rows
//! of each key (the histogram the rewrite's buckets are cut from). The rewrite sorts by the key
//! bucket by bucket (`bucket_sort.rs`), in memory bounded by the session's limit.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, UInt64Array};
use datafusion::arrow::compute::{cast, SortOptions};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::{ident, lit, SessionContext};
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

impl Ranks {
    /// The ranks of the distinct values among `values` (one column of the distinct combinations
    /// of the clustering columns: any order, repeats allowed).
    fn from_values(values: &[ArrayRef], data_type: &DataType) -> Result<Self> {
        let converter = RowConverter::new(vec![SortField::new_with_options(
            data_type.clone(),
            SortOptions {
                descending: false,
                nulls_first: false,
            },
        )])?;
        let mut rows = converter.empty_rows(0, 0);
        for array in values {
            converter.append(&mut rows, &[cast(array, data_type)?])?;
        }
        let mut sorted: Vec<_> = rows.iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
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

impl ClusterKey {
    /// The key of each of the `rows` rows whose clustering columns are `arrays`.
    fn keys(&self, arrays: &[ArrayRef], rows: usize) -> Result<UInt64Array> {
        let mut column_ranks = vec![Vec::new(); arrays.len()];
        for ((array, ranks), out) in arrays.iter().zip(&self.ranks).zip(&mut column_ranks) {
            ranks.of(array, out)?;
        }
        let mut values = vec![0u64; arrays.len()];
        Ok((0..rows)
            .map(|row| {
                for (value, ranks) in values.iter_mut().zip(&column_ranks) {
                    *value = ranks[row];
                }
                interleave(&values)
            })
            .collect())
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
        let keys = self
            .keys(&arrays, args.number_rows)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Array(Arc::new(keys)))
    }
}

/// How a rewrite clusters a table along a Z-order curve: each row's key, and how many rows
/// hold each key.
#[derive(Debug)]
pub struct ZOrder {
    /// The expression of each row's key, `__vitrine_z(c1, c2, …)`.
    pub key: Expr,
    /// (key, rows) for every key some row holds, in no particular order.
    pub histogram: Vec<(u64, u64)>,
}

impl ZOrder {
    /// The Z-order over `columns` of `dataset`, from one grouped scan of those columns alone
    /// (read in `context`, the rewrite's, within its memory pool): their distinct combinations
    /// give each column's distinct values (so its ranks) and the rows of each key, so the key
    /// of a row is computed with no window over the table.
    pub async fn of(
        context: &SessionContext,
        dataset: &Arc<Dataset>,
        columns: &[String],
    ) -> Result<Self> {
        let mut data_types = Vec::with_capacity(columns.len());
        for column in columns {
            let field = dataset
                .schema()
                .field(column)
                .ok_or_else(|| VitrineError::Plan(format!("no column '{column}' to Z-order by")))?;
            data_types.push(field.data_type());
        }
        let provider = LanceTableProvider::new(Arc::clone(dataset), false, false);
        let combinations = context
            .read_table(Arc::new(provider))?
            .aggregate(
                columns.iter().map(ident).collect(),
                vec![count(lit(1)).alias("rows")],
            )?
            .collect()
            .await?;
        let mut ranks = Vec::with_capacity(columns.len());
        for (i, data_type) in data_types.iter().enumerate() {
            let values: Vec<ArrayRef> = combinations
                .iter()
                .map(|b| Arc::clone(b.column(i)))
                .collect();
            ranks.push(Ranks::from_values(&values, data_type)?);
        }
        let function = ClusterKey {
            signature: Signature::any(columns.len(), Volatility::Immutable),
            ranks,
        };
        let mut rows_per_key: HashMap<u64, u64> = HashMap::new();
        for batch in &combinations {
            let keys = function.keys(&batch.columns()[..columns.len()], batch.num_rows())?;
            let rows = batch.column(columns.len()).as_primitive::<Int64Type>();
            for (key, rows) in keys.values().iter().zip(rows.values()) {
                *rows_per_key.entry(*key).or_default() += *rows as u64;
            }
        }
        Ok(Self {
            key: ScalarUDF::new_from_impl(function)
                .call(columns.iter().map(ident).collect())
                .alias("__vitrine_z"),
            histogram: rows_per_key.into_iter().collect(),
        })
    }
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
