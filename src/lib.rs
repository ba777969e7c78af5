//! Vitrine: Databricks-style ML data pipelines as plain SQL scripts on Apache DataFusion, with
//! tables stored as Lance datasets or Delta Lake tables.
//!
//! The crate follows a row from storage to a result: [`catalog`] (the warehouse and its tables),
//! [`sql`] (the Databricks dialect), [`engine`] (statement execution), and the [`demo`] catalog
//! generator. The `vitrine` binary (its command line and REPL) is a thin shell over this library.

#![warn(missing_docs)]

pub mod catalog;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod sql;

pub use config::EngineConfig;
pub use engine::{Engine, ScriptError, StatementResult, WriteProgress};
pub use error::{Result, VitrineError};
