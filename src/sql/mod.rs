//! The Databricks SQL dialect layer: script splitting, statement parsing, Spark types, the AST
//! rewrites that map Spark SQL onto DataFusion, and Spark functions.

pub mod functions;
pub mod parser;
pub mod rewrite;
pub mod script;
pub mod types;
