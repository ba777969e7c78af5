//! Retrieval quality: how well two vector indexes answer the same queries, judged by graded
//! relevance, with confidence intervals; and how well phase 1 extracted the attributes the
//! enriched index is built from. Used by `vitrine bench quality` and by the SQL table function
//! `retrieval_quality(…)`.
//!
//! - [`extraction`]: phase 1's extracted attributes against the ground truth.
//! - [`metrics`]: Recall, Precision, nDCG, MRR and MAP per query (trec_eval's and ranx's
//!   definitions; checked against ranx by `tests/it/quality.rs`).
//! - [`queries`]: queries drawn from a labelled catalog, with graded judgments.
//! - [`stats`]: bootstrap intervals and the paired test.
//! - [`trec`]: TREC qrels and run files, read and written.
//! - [`run`](mod@run): the measurement in a session: the labelled catalog, both indexes searched
//!   with `vector_search`, the figures over all queries and per kind.
//! - [`table_function`]: `retrieval_quality(…)`, the figures as a SQL table.

pub mod extraction;
pub mod metrics;
pub mod queries;
pub mod run;
pub mod stats;
pub mod table_function;
pub mod trec;

pub use run::{run, LabelSource, QualityOptions, QualityReport, QuerySource};
