//! Vitrine: Databricks-style ML data pipelines as plain SQL scripts on Apache DataFusion, with
//! tables stored as Lance datasets or Delta Lake tables.
//!
//! The crate follows a row from storage to a result: [`catalog`] (the warehouse, its tables and
//! the storage formats behind one trait), [`sql`] (the Databricks dialect), [`session`] (the
//! seam statement handlers see), [`vector`] (vector indexes and `vector_search`), [`models`]
//! (models trained by `CREATE MODEL`), [`quality`]
//! (retrieval quality of two indexes, extraction against the ground truth), [`engine`] (an engine
//! shared by many sessions, each running statements), [`config`] (engine options and session
//! settings), [`serve`] (the A/B-tested search service over HTTP), [`bench`](mod@bench) (the
//! benchmark's report and runs table) and the [`demo`] catalog generator. The `vitrine` binary (its command line
//! and REPL) is a thin shell over this library. `ARCHITECTURE.md` draws the layers.

#![warn(missing_docs)]

pub mod bench;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod history;
pub mod models;
pub mod quality;
pub mod reproduce;
pub mod serve;
pub mod session;
pub mod sql;
pub mod vector;

pub use config::EngineConfig;
pub use engine::{Engine, EngineSession, ScriptError};
pub use error::{Result, VitrineError};
pub use session::{Session, StatementResult, WriteProgress};
