//! The engine's error type.
//!
//! Each variant says which layer failed; messages carry what was being done and with what
//! (`opening table main.fashion_demo.products at '…': …`). The command line adds the script
//! position on top (`FILE:LINE: statement N: …`).

use datafusion::error::DataFusionError;

/// Result with [`VitrineError`].
pub type Result<T, E = VitrineError> = std::result::Result<T, E>;

/// Everything that can go wrong while running a statement.
#[derive(Debug, thiserror::Error)]
pub enum VitrineError {
    /// The statement is well-formed SQL that cannot be carried out as written (bad name, bad type,
    /// an option Vitrine does not know).
    #[error("{0}")]
    Plan(String),
    /// The statement could not be parsed.
    #[error("syntax error: {0}")]
    Parse(String),
    /// A catalog, schema, table or index that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A catalog, schema or table that exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// DataFusion failed while planning or running a query.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// A Lance dataset operation failed.
    #[error("lance: {0}")]
    Lance(#[from] lance::Error),
    /// A Delta Lake operation failed.
    #[error("delta: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    /// The warehouse's object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Local file input or output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Some error, with a sentence saying what was being done.
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// What went wrong.
        source: Box<VitrineError>,
    },
}

impl VitrineError {
    /// Wraps the error with a sentence saying what was being done.
    pub fn context(self, context: impl Into<String>) -> Self {
        VitrineError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

/// Adds `.context(…)` to results whose error converts into [`VitrineError`].
pub trait ResultExt<T> {
    /// Wraps the error with a sentence saying what was being done.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<VitrineError>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

impl From<VitrineError> for DataFusionError {
    fn from(e: VitrineError) -> Self {
        match e {
            VitrineError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<datafusion::arrow::error::ArrowError> for VitrineError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        VitrineError::DataFusion(e.into())
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for VitrineError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        VitrineError::Parse(
            e.to_string()
                .trim_start_matches("sql parser error: ")
                .to_string(),
        )
    }
}

impl From<datafusion::sql::sqlparser::tokenizer::TokenizerError> for VitrineError {
    fn from(e: datafusion::sql::sqlparser::tokenizer::TokenizerError) -> Self {
        VitrineError::Parse(e.to_string())
    }
}

impl From<serde_json::Error> for VitrineError {
    fn from(e: serde_json::Error) -> Self {
        VitrineError::Plan(format!("invalid JSON: {e}"))
    }
}
