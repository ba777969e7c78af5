//! What every model function shares: finding a model's files ([`source`]), choosing the device
//! and precision ([`placement`]), and loading each model once per process ([`registry`]).

pub mod placement;
pub mod registry;
pub mod source;

use std::path::Path;

/// Why a model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model's files are not where it was named, nor in the cache, nor downloadable.
    #[error("{0}")]
    NotFound(String),
    /// A file exists but cannot be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A setting (device, precision) is not valid here.
    #[error("{0}")]
    Setting(String),
    /// The tokenizer refused a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The tensor library failed.
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    /// An I/O or parse failure on `path`.
    pub fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.display().to_string(),
            message: message.to_string(),
        }
    }

    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::file(path, error)
    }
}
