//! The order `OPTIMIZE … ZORDER BY` writes a Lance dataset's rows in: each row's key
//! interleaves the bits of its dense rank in every column (nulls ranked last), so that sorting
//! by it clusters rows along a Z-order curve.
//!
//! Computed without materialising the table: the distinct values of each column first (a
//! grouped scan of that column alone), then one scan of the Z-order columns giving each row's
//! key by binary search among them, then a sort of (key, position) pairs — 16 bytes a row. The
//! rewrite then takes the rows in that order, a chunk at a time.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{cast, SortOptions};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::prelude::{ident, SessionContext};
use futures::TryStreamExt;
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
struct Ranks {
    converter: RowConverter,
    values: Rows,
}

impl Ranks {
    /// The dense rank (from 1) of each value of `array`, which holds values of the column.
    fn of(&self, array: &ArrayRef, out: &mut Vec<u64>) -> Result<()> {
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(array))?;
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

/// The distinct values of `column` in `dataset`, sorted as ranks count them.
async fn ranks(dataset: &Arc<Dataset>, column: &str) -> Result<Ranks> {
    let field = dataset
        .schema()
        .field(column)
        .ok_or_else(|| VitrineError::Plan(format!("no column '{column}' to Z-order by")))?;
    let data_type = field.data_type();
    let context = SessionContext::new();
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
        converter,
        values: ordered,
    })
}

/// The positions (0-based, in scan order) of `dataset`'s rows in Z-order of `columns`; rows of
/// one key keep their order.
pub async fn clustered_order(dataset: &Arc<Dataset>, columns: &[String]) -> Result<Vec<u64>> {
    let mut all_ranks = Vec::with_capacity(columns.len());
    for column in columns {
        all_ranks.push(ranks(dataset, column).await?);
    }
    // In the dataset's order: the positions `Dataset::take` reads by.
    let mut scanner = dataset.scan();
    scanner.project(columns)?.scan_in_order(true);
    let mut stream = scanner.try_into_stream().await?;
    let mut keyed: Vec<(u64, u64)> = Vec::new();
    let mut column_ranks: Vec<Vec<u64>> = vec![Vec::new(); columns.len()];
    let mut values = vec![0u64; columns.len()];
    while let Some(batch) = stream.try_next().await? {
        let batch: RecordBatch = batch;
        for (i, ranks) in all_ranks.iter().enumerate() {
            ranks.of(batch.column(i), &mut column_ranks[i])?;
        }
        for row in 0..batch.num_rows() {
            for (value, ranks) in values.iter_mut().zip(&column_ranks) {
                *value = ranks[row];
            }
            let position = keyed.len() as u64;
            keyed.push((interleave(&values), position));
        }
    }
    keyed.sort_unstable();
    Ok(keyed.into_iter().map(|(_, position)| position).collect())
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
