//! The Databricks SQL dialect layer: script splitting, statement parsing, Spark types, the AST
//! rewrites that map Spark SQL onto DataFusion, `DELETE`/`UPDATE`/`MERGE` as queries, and Spark
//! functions.

pub mod dml;
pub mod functions;
pub mod parser;
pub mod rewrite;
pub mod script;
pub mod types;
