//! What `vitrine bench quality` leaves behind after measuring two indexes with
//! [`crate::quality`]: the report's files and a row in the runs table.
//!
//! - [`report`]: `metrics.json`, `report.md`, qrels, runs and queries in a folder.
//! - [`html`]: `report.html`, one self-contained page with the charts.
//! - [`record`]: each run as a row of `embedding_benchmark_runs`, with what it read.

pub mod html;
pub mod record;
pub mod report;
