//! `zorder_key(r1, r2, …)`: interleaves the bits of several non-negative ranks into one key, so
//! that sorting by it clusters rows along a Z-order curve (what `OPTIMIZE … ZORDER BY` writes).

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// The function; ranks are cast to unsigned 64-bit integers, and each contributes its low
/// `64 / n` bits.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ZOrderKey {
    signature: Signature,
}

impl ZOrderKey {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic(vec![DataType::UInt64], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ZOrderKey {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "zorder_key"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let ranks: Vec<_> = arrays
            .iter()
            .map(|a| a.as_primitive::<UInt64Type>())
            .collect();
        let keys: UInt64Array = (0..args.number_rows)
            .map(|row| {
                let values: Vec<u64> = ranks
                    .iter()
                    .map(|r| if r.is_null(row) { 0 } else { r.value(row) })
                    .collect();
                Some(interleave(&values))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(keys)))
    }
}

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
