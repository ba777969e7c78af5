//! Vitrine: Databricks-style ML data pipelines as plain SQL scripts on Apache DataFusion, with
//! tables stored as Lance datasets or Delta Lake tables.
//!
//! The crate follows a row from storage to a result: [`catalog`] (the warehouse and its tables),
//! [`sql`] (the Databricks dialect), [`engine`] (statement execution), then the front ends:
//! [`cli`], [`repl`] and the [`demo`] catalog generator.

pub mod catalog;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod sql;

pub use config::EngineConfig;
pub use engine::{Engine, ScriptError, StatementResult};
pub use error::{Result, VitrineError};
