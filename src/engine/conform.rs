//! Making query output fit what a table stores.
//!
//! DataFusion produces view types (`Utf8View`) and dictionary types that Lance and Delta do not
//! store, and nanosecond timestamps that Spark does not read; `INSERT` must also match the
//! table's column types and order. Both are casts, planned as
//! one projection so that a value that does not fit fails with the column's name.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, TimeUnit};
use datafusion::common::Column;
use datafusion::logical_expr::{cast, lit, Expr, ExprSchemable};
use datafusion::prelude::DataFrame;
use datafusion::scalar::ScalarValue;

use crate::error::{Result, VitrineError};
use crate::sql::types::spark_type_name;

/// The type a new table stores for a query's `data_type`: view and dictionary types become plain
/// ones, and timestamps become Spark's: microseconds, as instants in UTC when they have a zone
/// (`TIMESTAMP`), without one otherwise (`TIMESTAMP_NTZ`).
pub fn storage_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(_, zone) => DataType::Timestamp(
            TimeUnit::Microsecond,
            zone.as_ref().map(|_| Arc::from("UTC")),
        ),
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, value) => storage_type(value),
        DataType::List(f) | DataType::ListView(f) => DataType::List(storage_field(f)),
        DataType::LargeList(f) | DataType::LargeListView(f) => {
            DataType::LargeList(storage_field(f))
        }
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(storage_field(f), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(storage_field).collect::<Fields>())
        }
        DataType::Map(f, sorted) => DataType::Map(storage_field(f), *sorted),
        other => other.clone(),
    }
}

fn storage_field(field: &FieldRef) -> FieldRef {
    Arc::new(Field::new(
        field.name(),
        storage_type(field.data_type()),
        field.is_nullable(),
    ))
}

/// Casts every column of `df` to its storage type.
pub fn to_storage(df: DataFrame) -> Result<DataFrame> {
    let exprs: Vec<Expr> = df
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let col = Expr::Column(Column::new(qualifier.cloned(), field.name()));
            let target = storage_type(field.data_type());
            let name = storage_name(field.name());
            if &target == field.data_type() && name == *field.name() {
                col
            } else {
                cast(col, target).alias(name)
            }
        })
        .collect();
    Ok(df.select(exprs)?)
}

/// The name a table stores for a column: an unaliased expression is named as Spark names it,
/// without table qualifiers (`clip_image_embed(image_path)`, not
/// `clip_image_embed(main.s.products.image_path)`), and any dot left becomes `_` (Lance keeps
/// dots for nested fields).
pub fn storage_name(name: &str) -> String {
    static QUALIFIED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\b(?:[A-Za-z_][A-Za-z0-9_]*\.)+([A-Za-z_][A-Za-z0-9_]*)\b")
            .expect("valid pattern")
    });
    if !name.contains('.') {
        return name.to_string();
    }
    QUALIFIED.replace_all(name, "$1").replace('.', "_")
}

/// Describes the columns of `df` whose type differs from `table`'s (`id (string → int)`), so that
/// a value failing its cast at run time can be traced to its column.
pub fn casts(df: &DataFrame, table: &Schema, columns: &[String]) -> Vec<String> {
    let targets: Vec<&str> = if columns.is_empty() {
        table.fields().iter().map(|f| f.name().as_str()).collect()
    } else {
        columns.iter().map(String::as_str).collect()
    };
    df.schema()
        .fields()
        .iter()
        .zip(targets)
        .filter_map(|(from, to)| {
            let to_type = table.field_with_name(to).ok()?.data_type();
            (storage_type(from.data_type()) != *to_type).then(|| {
                format!(
                    "{to} ({} → {})",
                    spark_type_name(from.data_type()),
                    spark_type_name(to_type)
                )
            })
        })
        .collect()
}

/// Shapes `df` into `table`'s columns: by position, or by the `columns` list of an `INSERT`
/// (columns it leaves out are NULL). Fails naming the column when counts or types do not match.
pub fn to_table(
    df: DataFrame,
    table: &Schema,
    columns: &[String],
    table_name: &str,
) -> Result<DataFrame> {
    let source: Vec<Expr> = df
        .schema()
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect();
    let targets: Vec<usize> = if columns.is_empty() {
        (0..table.fields().len()).collect()
    } else {
        columns
            .iter()
            .map(|c| {
                table.index_of(c).map_err(|_| {
                    VitrineError::Plan(format!("table {table_name} has no column '{c}'"))
                })
            })
            .collect::<Result<_>>()?
    };
    if source.len() != targets.len() {
        return Err(VitrineError::Plan(format!(
            "INSERT into {table_name}: the query gives {} columns but {} are expected ({})",
            source.len(),
            targets.len(),
            targets
                .iter()
                .map(|&i| table.field(i).name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let schema = df.schema().clone();
    let exprs = table
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let value = match targets.iter().position(|&t| t == i) {
                Some(p) => {
                    let from = source[p].get_type(&schema)?;
                    if !datafusion::arrow::compute::can_cast_types(&from, field.data_type()) {
                        return Err(VitrineError::Plan(format!(
                            "INSERT into {table_name}: column '{}' is {} but the query gives {from}",
                            field.name(),
                            field.data_type()
                        )));
                    }
                    cast(source[p].clone(), field.data_type().clone())
                }
                None => lit(ScalarValue::try_from(field.data_type())?),
            };
            Ok(value.alias(field.name()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(df.select(exprs)?)
}

#[cfg(test)]
mod tests {
    use super::storage_name;

    #[test]
    fn stored_names_drop_qualifiers_and_dots() {
        assert_eq!(storage_name("price"), "price");
        assert_eq!(
            storage_name("clip_image_embed(main.fashion_demo.products.image_path)"),
            "clip_image_embed(image_path)"
        );
        assert_eq!(storage_name("p.a + q.b"), "a + b");
        assert_eq!(storage_name("round(x, 1.5)"), "round(x, 1_5)");
    }
}
