//! What the warehouse records of a model object.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vitrine_udfs::train::TrainingSummary;

/// A table a model was trained from, at the version read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRead {
    /// The qualified table.
    pub table: String,
    /// Its version when the training query ran (none for plain files).
    pub version: Option<u64>,
}

/// A trained model: how it was made and where its files are.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    /// The kind (`clip`, `smolvlm`).
    pub model_type: String,
    /// The model it started from, as named (none: trained from scratch).
    pub base: Option<String>,
    /// The base's revision.
    pub base_revision: Option<String>,
    /// The options besides `model_type` and `base`, as given.
    pub options: BTreeMap<String, String>,
    /// The training query.
    pub query: String,
    /// The tables the query read, with their versions.
    pub tables_read: Vec<TableRead>,
    /// Rows, epochs, loss curve.
    pub training: TrainingSummary,
    /// `sha256:` and the first 16 hex digits of the weights' digest.
    pub revision: String,
    /// The folder holding the files (a local path or a URL).
    pub location: String,
    /// When it was trained (RFC 3339).
    pub created_at: String,
    /// Seconds the statement took.
    pub seconds: f64,
    /// The Vitrine version that trained it.
    pub engine_version: String,
}

impl ModelEntry {
    /// The folder name of this revision's files.
    pub fn revision_folder(&self) -> String {
        revision_folder(&self.revision)
    }
}

/// The folder name of a revision's files (its hex digits).
pub fn revision_folder(revision: &str) -> String {
    revision.trim_start_matches("sha256:").to_string()
}
