//! CSV and Parquet files as read-only tables: `CREATE TABLE … USING CSV LOCATION …` and
//! Databricks' `read_files('path', format => 'csv', header => true)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};

use super::TableFormat;
use crate::error::{Result, ResultExt, VitrineError};

/// Reader options Vitrine understands, by their Spark names.
const CSV_OPTIONS: &[&str] = &[
    "header",
    "sep",
    "delimiter",
    "quote",
    "escape",
    "nullvalue",
    "inferschema",
    "multiline",
];

/// A table over the CSV or Parquet files at `location` (a file, a folder or a glob), with the
/// schema inferred from the files.
pub async fn provider(
    location: &str,
    format: TableFormat,
    options: &BTreeMap<String, String>,
    session: &dyn Session,
) -> Result<Arc<dyn TableProvider>> {
    let url = ListingTableUrl::parse(location).context(|| format!("reading '{location}'"))?;
    let file_format: Arc<dyn FileFormat> = match format {
        TableFormat::Csv => Arc::new(csv_format(options)?),
        TableFormat::Parquet => Arc::new(ParquetFormat::default()),
        other => {
            return Err(VitrineError::Plan(format!(
                "{other} tables are not plain files"
            )))
        }
    };
    let extension = if location.ends_with('/') || !location.contains('.') {
        format!(".{format}")
    } else {
        String::new()
    };
    let listing = ListingOptions::new(file_format).with_file_extension(extension);
    let mut schema = listing
        .infer_schema(session, &url)
        .await
        .context(|| format!("reading {format} files at '{location}'"))?;
    if schema.fields().is_empty() {
        return Err(VitrineError::NotFound(format!(
            "no {format} files at '{location}'"
        )));
    }
    if format == TableFormat::Csv {
        // Spark resolves columns case-insensitively; DataFusion lower-cases unquoted names. CSV
        // columns are read by position, so lower-casing the header names is safe.
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_name(f.name().to_lowercase()))
            .collect();
        schema = std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    }
    let config = ListingTableConfig::new(url)
        .with_listing_options(listing)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

fn csv_format(options: &BTreeMap<String, String>) -> Result<CsvFormat> {
    let get = |key: &str| {
        options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    if let Some((unknown, _)) = options
        .iter()
        .find(|(k, _)| !CSV_OPTIONS.contains(&k.to_ascii_lowercase().as_str()))
    {
        return Err(VitrineError::Plan(format!(
            "unknown CSV option '{unknown}': known options are {}",
            CSV_OPTIONS.join(", ")
        )));
    }
    let byte = |key: &str| -> Result<Option<u8>> {
        match get(key) {
            None => Ok(None),
            Some(v) if v.len() == 1 => Ok(Some(v.as_bytes()[0])),
            Some(v) => Err(VitrineError::Plan(format!(
                "CSV option '{key}' must be one character, got '{v}'"
            ))),
        }
    };
    let flag = |key: &str| get(key).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut format = CsvFormat::default()
        .with_has_header(flag("header"))
        .with_newlines_in_values(flag("multiline"));
    if let Some(sep) = byte("sep")?.or(byte("delimiter")?) {
        format = format.with_delimiter(sep);
    }
    if let Some(quote) = byte("quote")? {
        format = format.with_quote(quote);
    }
    if let Some(escape) = byte("escape")? {
        format = format.with_escape(Some(escape));
    }
    if let Some(null) = get("nullvalue") {
        format = format.with_null_regex(Some(regex_escape(null)));
    }
    Ok(format)
}

fn regex_escape(text: &str) -> String {
    let mut out = String::from("^");
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('$');
    out
}
