//! Printing result sets: aligned tables, CSV or JSON lines.

use std::io::Write;

use clap::ValueEnum;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::util::pretty::pretty_format_batches;
use vitrine::StatementResult;

/// How result sets are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned text tables.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Prints a statement's result set to stdout and its message and warnings to stderr.
pub fn print_result(result: &StatementResult, format: OutputFormat) -> anyhow::Result<()> {
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
    match format {
        OutputFormat::Table => {
            writeln!(out, "{}", pretty_format_batches(&result.batches)?)?;
            writeln!(out, "({} rows)", result.num_rows())?;
        }
        OutputFormat::Csv => {
            let mut writer = WriterBuilder::new().with_header(true).build(&mut out);
            for batch in &result.batches {
                writer.write(batch)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = LineDelimitedWriter::new(&mut out);
            for batch in &result.batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
    }
    Ok(())
}
