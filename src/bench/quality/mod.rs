//! The embedding-quality benchmark: how well two vector indexes answer the same queries, judged
//! by graded relevance, with confidence intervals.
//!
//! - [`extraction`]: phase 1's extracted attributes against the ground truth.
//! - [`metrics`]: Recall, Precision, nDCG, MRR and MAP per query (trec_eval's and ranx's
//!   definitions; checked against ranx by `tests/it/quality.rs`).
//! - [`queries`]: queries drawn from a labelled catalog, with graded judgments.
//! - [`stats`]: bootstrap intervals and the paired test.
//! - [`trec`]: TREC qrels and run files, read and written.
//! - [`run`](mod@run): the benchmark in a session: the labelled catalog, both indexes searched
//!   with `vector_search`, the figures over all queries and per kind.
//! - [`report`]: `metrics.json`, `report.md`, qrels, runs and queries in a folder.
//! - [`html`]: `report.html`, one self-contained page with the charts.
//! - [`record`]: each run as a row of `embedding_benchmark_runs`, with what it read.

pub mod extraction;
pub mod html;
pub mod metrics;
pub mod queries;
pub mod record;
pub mod report;
pub mod run;
pub mod stats;
pub mod trec;

pub use run::{run, LabelSource, QualityOptions, QualityReport, QuerySource};
