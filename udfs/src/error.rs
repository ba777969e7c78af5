//! The model crate's error type: why a model, a setting or an input cannot be used.

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
    /// A setting (device, precision, batch size, …) is not valid here.
    #[error("{0}")]
    Setting(String),
    /// A model's configuration, or an option given to it, is outside what it supports.
    #[error("{0}")]
    Config(String),
    /// A prompt does not fit the images it is given with.
    #[error("prompt: {0}")]
    Prompt(String),
    /// The bytes behind an image argument cannot be read.
    #[error("cannot read image: {message}")]
    Read {
        /// The path or URL.
        location: String,
        /// Why.
        message: String,
    },
    /// An image's bytes cannot be decoded or are too large.
    #[error("{0}")]
    Image(#[from] crate::image::decode::DecodeError),
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
