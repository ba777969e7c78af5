//! Printing result sets: aligned tables, CSV, one JSON document per result set, or JSON lines.

use std::io::Write;
use std::sync::Arc;

use clap::ValueEnum;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::json::writer::{JsonArray, LineDelimited, WriterBuilder};
use datafusion::arrow::util::display::FormatOptions;
use datafusion::arrow::util::pretty::pretty_format_batches_with_options;
use serde_json::{json, Map, Value};
use vitrine::sql::types::spark_type_name;
use vitrine::StatementResult;

/// How tables and CSV show a timestamp, as Spark does: `2026-12-01 10:57:40`, with the fraction
/// of a second when there is one. Timestamps with a zone are in the session time zone already;
/// JSON writes them in RFC 3339, with the offset.
const SPARK_TIMESTAMP: &str = "%Y-%m-%d %H:%M:%S%.f";

/// How result sets are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned text tables.
    Table,
    /// CSV with a header line; arrays, structs and maps as JSON text.
    Csv,
    /// One JSON document per result set, on one line: the statement, its columns and types, and
    /// its rows (nulls written out).
    Json,
    /// One JSON object per row (nulls written out), for piping.
    Jsonl,
}

/// Which statement a result set answers.
#[derive(Debug, Clone, Copy)]
pub struct ResultOrigin<'a> {
    /// The script file, or `-e` for a statement given on the command line, or `repl`.
    pub file: &'a str,
    /// 1-based line where the statement starts.
    pub line: usize,
    /// 1-based position of the statement in its script.
    pub statement: usize,
}

/// Prints a statement's result set to stdout and its message and warnings to stderr.
pub fn print_result(
    result: &StatementResult,
    format: OutputFormat,
    origin: ResultOrigin<'_>,
) -> anyhow::Result<()> {
    if let Some(message) = &result.message {
        eprintln!("{message}");
    }
    for warning in &result.warnings {
        eprintln!("warning: {warning}");
    }
    if result.schema.fields().is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    write_result(&mut out, result, format, origin)?;
    out.flush()?;
    Ok(())
}

/// Writes a result set in `format` to `out`.
fn write_result(
    out: &mut impl Write,
    result: &StatementResult,
    format: OutputFormat,
    origin: ResultOrigin<'_>,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Table => {
            let options = FormatOptions::default()
                .with_timestamp_format(Some(SPARK_TIMESTAMP))
                .with_timestamp_tz_format(Some(SPARK_TIMESTAMP));
            writeln!(
                out,
                "{}",
                pretty_format_batches_with_options(&result.batches, &options)?
            )?;
            writeln!(out, "({} rows)", result.num_rows())?;
        }
        OutputFormat::Csv => {
            let mut writer = CsvWriterBuilder::new()
                .with_header(true)
                .with_timestamp_format(SPARK_TIMESTAMP.to_string())
                .with_timestamp_tz_format(SPARK_TIMESTAMP.to_string())
                .build(out);
            if result.num_rows() == 0 {
                // The header alone.
                writer.write(&RecordBatch::new_empty(flat_schema(&result.schema)))?;
            }
            for batch in result.batches.iter().filter(|b| b.num_rows() > 0) {
                writer.write(&nested_as_json_text(batch)?)?;
            }
        }
        OutputFormat::Json => {
            let columns: Vec<Value> = result
                .schema
                .fields()
                .iter()
                .map(|f| json!({ "name": f.name(), "type": spark_type_name(f.data_type()) }))
                .collect();
            let document = json!({
                "file": origin.file,
                "line": origin.line,
                "statement": origin.statement,
                "columns": columns,
                "rows": json_rows(&result.batches)?,
            });
            serde_json::to_writer(&mut *out, &document)?;
            writeln!(out)?;
        }
        OutputFormat::Jsonl => {
            let mut writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, LineDelimited>(out);
            for batch in &result.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}

/// Every row of `batches` as a JSON object, nulls written out.
fn json_rows(batches: &[RecordBatch]) -> anyhow::Result<Vec<Map<String, Value>>> {
    let mut text = Vec::new();
    {
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(&mut text);
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&text)?)
}

fn is_nested(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::Struct(_)
            | DataType::Map(_, _)
            | DataType::Union(_, _)
    )
}

/// `schema` with its nested columns as strings (how CSV shows them).
fn flat_schema(schema: &Schema) -> Arc<Schema> {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                if is_nested(f.data_type()) {
                    Arc::new(Field::new(f.name(), DataType::Utf8, true))
                } else {
                    Arc::clone(f)
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// `batch` with each array, struct or map column replaced by its values as JSON text (NULL
/// stays empty), which CSV can hold.
fn nested_as_json_text(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| is_nested(f.data_type())) {
        return Ok(batch.clone());
    }
    let rows = json_rows(std::slice::from_ref(batch))?;
    let columns = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| -> anyhow::Result<ArrayRef> {
            if !is_nested(field.data_type()) {
                return Ok(Arc::clone(column));
            }
            let mut text = StringBuilder::new();
            for (i, row) in rows.iter().enumerate() {
                match row.get(field.name()) {
                    Some(value) if !column.is_null(i) => {
                        text.append_value(serde_json::to_string(value)?)
                    }
                    _ => text.append_null(),
                }
            }
            Ok(Arc::new(text.finish()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(flat_schema(&schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn result(sql: &str) -> StatementResult {
        let df = SessionContext::new().sql(sql).await.unwrap();
        StatementResult::collect(df).await.unwrap()
    }

    fn written(result: &StatementResult, format: OutputFormat) -> String {
        let origin = ResultOrigin {
            file: "job.sql",
            line: 3,
            statement: 2,
        };
        let mut out = Vec::new();
        write_result(&mut out, result, format, origin).unwrap();
        String::from_utf8(out).unwrap()
    }

    const NESTED: &str = "SELECT * FROM (VALUES \
        (1, make_array(1, 2), named_struct('a', 'x', 'b', CAST(NULL AS INT)), CAST(NULL AS STRING)), \
        (2, CAST(NULL AS INT[]), named_struct('a', 'y', 'b', 5), 'z')) AS t(id, list, pair, name)";

    #[tokio::test]
    async fn csv_writes_nested_values_as_json_text() {
        let csv = written(&result(NESTED).await, OutputFormat::Csv);
        assert_eq!(
            csv,
            "id,list,pair,name\n\
             1,\"[1,2]\",\"{\"\"a\"\":\"\"x\"\",\"\"b\"\":null}\",\n\
             2,,\"{\"\"a\"\":\"\"y\"\",\"\"b\"\":5}\",z\n"
        );
    }

    #[tokio::test]
    async fn json_writes_one_document_per_result_set_with_types_and_nulls() {
        let json = written(&result(NESTED).await, OutputFormat::Json);
        assert_eq!(json.lines().count(), 1);
        let document: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(document["file"], "job.sql");
        assert_eq!(document["line"], 3);
        assert_eq!(document["statement"], 2);
        assert_eq!(
            document["columns"],
            json!([
                {"name": "id", "type": "bigint"},
                {"name": "list", "type": "array<bigint>"},
                {"name": "pair", "type": "struct<a:string,b:bigint>"},
                {"name": "name", "type": "string"},
            ])
        );
        assert_eq!(
            document["rows"],
            json!([
                {"id": 1, "list": [1, 2], "pair": {"a": "x", "b": null}, "name": null},
                {"id": 2, "list": null, "pair": {"a": "y", "b": 5}, "name": "z"},
            ])
        );
    }

    #[tokio::test]
    async fn jsonl_writes_a_row_per_line_with_nulls() {
        let lines = written(&result(NESTED).await, OutputFormat::Jsonl);
        let rows: Vec<Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["name"], Value::Null);
        assert!(rows[0].as_object().unwrap().contains_key("name"));
        assert_eq!(rows[1]["list"], Value::Null);
    }

    #[tokio::test]
    async fn an_empty_result_still_has_its_header_and_columns() {
        let empty = result("SELECT 1 AS a, make_array(1) AS b WHERE false").await;
        assert_eq!(written(&empty, OutputFormat::Csv), "a,b\n");
        let document: Value = serde_json::from_str(&written(&empty, OutputFormat::Json)).unwrap();
        assert_eq!(document["rows"], json!([]));
        assert_eq!(document["columns"].as_array().unwrap().len(), 2);
    }
}
