//! What the model functions share with the session that runs them: its settings, file access,
//! progress, and the per-statement report.
//!
//! The engine makes one [`FunctionContext`] per session, hands it the session's
//! [`ModelSettings`] and model choices whenever a `SET` changes them, calls [`FunctionContext::begin_statement`]
//! before each statement and [`FunctionContext::finish_statement`] after it, and shows the
//! report's warnings.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::runtime::placement::Placement;
use crate::runtime::registry;
use crate::runtime::source::{Hub, ModelSource};
use crate::settings::ModelSettings;
use crate::ModelError;

/// How many failed rows a statement report names (all are counted).
pub const FAILURES_NAMED: usize = 5;

/// Reads the bytes behind an image argument: a local path, a `/Volumes/…` path, or an
/// object-store URL. The engine supplies one that knows its warehouse.
pub trait BlobReader: Send + Sync {
    /// The bytes at `location`.
    fn read(&self, location: &str) -> Result<Vec<u8>, ModelError>;
}

/// Reads local files only.
#[derive(Debug, Default)]
pub struct LocalFiles;

impl BlobReader for LocalFiles {
    fn read(&self, location: &str) -> Result<Vec<u8>, ModelError> {
        let path = location.strip_prefix("file://").unwrap_or(location);
        std::fs::read(path).map_err(|e| ModelError::Read {
            location: location.to_string(),
            message: e.to_string(),
        })
    }
}

/// A model a statement used, for the written table's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUse {
    /// The model's name in settings (`clip`).
    pub name: String,
    /// Hub id or folder.
    pub id: String,
    /// Hub commit or weights digest.
    pub revision: String,
}

/// A row a function could not process.
#[derive(Debug, Clone)]
pub struct RowFailure {
    /// The function.
    pub function: String,
    /// The row: its input path, or its position in the statement.
    pub row: String,
    /// Why.
    pub message: String,
}

/// What the model functions did during one statement.
#[derive(Debug, Clone, Default)]
pub struct StatementReport {
    /// Rows each function processed.
    pub rows: BTreeMap<String, u64>,
    /// Rows that became NULL because they failed.
    pub failed_rows: u64,
    /// The first [`FAILURES_NAMED`] failures.
    pub first_failures: Vec<RowFailure>,
    /// Models used.
    pub models: Vec<ModelUse>,
}

impl StatementReport {
    /// One line per function with failed rows, naming the first few.
    pub fn warnings(&self) -> Vec<String> {
        if self.failed_rows == 0 {
            return Vec::new();
        }
        let named: Vec<String> = self
            .first_failures
            .iter()
            .map(|f| format!("{} {}: {}", f.function, f.row, f.message))
            .collect();
        vec![format!(
            "{} row(s) could not be processed and are NULL (SET vitrine.udf.on_error = 'fail' \
             stops at the first); first: {}",
            self.failed_rows,
            named.join("; ")
        )]
    }
}

/// Progress of the model functions in the running statement.
#[derive(Debug, Clone)]
pub struct ProgressUpdate {
    /// The function reporting.
    pub function: &'static str,
    /// Rows it has processed in this statement.
    pub rows: u64,
    /// Rows the statement is expected to process, when the engine can tell.
    pub expected_rows: Option<u64>,
    /// What else to show (a training run's epoch and loss).
    pub detail: Option<String>,
}

/// Receives progress updates (a progress bar, say).
pub type ProgressSink = Arc<dyn Fn(&ProgressUpdate) + Send + Sync>;

/// A model network that a kind loads from its folder: what [`FunctionContext::model`] loads.
pub trait LoadedModel: std::any::Any + Send + Sync + Sized {
    /// The name of its kind (`vitrine.model.<name>`).
    const KIND: &'static str;
    /// The folder or hub id loaded when `vitrine.model.<name>` is not set.
    const DEFAULT_MODEL: &'static str;
    /// The files a model folder holds besides its weights.
    const FILES: &'static [&'static str];

    /// Loads the network from `source` onto `placement`.
    fn load(source: &ModelSource, placement: Placement) -> Result<Self, ModelError>;
}

/// The settings the model functions read: [`ModelSettings`], and the folder or hub id chosen for
/// each model kind (`vitrine.model.<name>`).
#[derive(Debug, Clone, Default)]
struct Settings {
    functions: ModelSettings,
    models: BTreeMap<String, String>,
}

/// The model functions' view of their session.
pub struct FunctionContext {
    settings: RwLock<Settings>,
    blobs: Arc<dyn BlobReader>,
    hub: Hub,
    progress: RwLock<Option<ProgressSink>>,
    expected_rows: Mutex<Option<u64>>,
    report: Mutex<StatementReport>,
}

impl std::fmt::Debug for FunctionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionContext")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl FunctionContext {
    /// A context reading image paths through `blobs` and model files through `hub` (whose
    /// clones share what they located).
    pub fn new(blobs: Arc<dyn BlobReader>, hub: Hub) -> Self {
        Self {
            settings: RwLock::new(Settings::default()),
            blobs,
            hub,
            progress: RwLock::new(None),
            expected_rows: Mutex::new(None),
            report: Mutex::new(StatementReport::default()),
        }
    }

    /// Replaces the settings the functions read, and the model chosen for each kind (kind name
    /// → folder or hub id): the session's, after a `SET` or `RESET`.
    pub fn set_settings(&self, settings: ModelSettings, models: BTreeMap<String, String>) {
        *self.settings.write().expect("settings lock") = Settings {
            functions: settings,
            models,
        };
    }

    /// The current settings.
    pub fn settings(&self) -> ModelSettings {
        self.settings
            .read()
            .expect("settings lock")
            .functions
            .clone()
    }

    /// Sends progress updates to `sink`.
    pub fn on_progress(&self, sink: ProgressSink) {
        *self.progress.write().expect("progress lock") = Some(sink);
    }

    /// Starts a statement's report.
    pub fn begin_statement(&self) {
        *self.report.lock().expect("report lock") = StatementReport::default();
        *self.expected_rows.lock().expect("report lock") = None;
    }

    /// The engine's estimate of the rows the running statement reads, for progress.
    pub fn expect_rows(&self, rows: Option<u64>) {
        *self.expected_rows.lock().expect("report lock") = rows;
    }

    /// The models the running statement has used so far.
    pub fn models_used(&self) -> Vec<ModelUse> {
        self.report.lock().expect("report lock").models.clone()
    }

    /// Ends the statement and returns its report.
    pub fn finish_statement(&self) -> StatementReport {
        std::mem::take(&mut *self.report.lock().expect("report lock"))
    }

    /// Adds what model functions elsewhere did for the running statement (a worker's tasks):
    /// their rows and failed rows counted, their failures named while fewer than
    /// [`FAILURES_NAMED`] are, their models listed once.
    pub fn absorb(&self, other: StatementReport) {
        let mut report = self.report.lock().expect("report lock");
        for (function, rows) in other.rows {
            *report.rows.entry(function).or_default() += rows;
        }
        report.failed_rows += other.failed_rows;
        for failure in other.first_failures {
            if report.first_failures.len() < FAILURES_NAMED {
                report.first_failures.push(failure);
            }
        }
        for model in other.models {
            if !report.models.contains(&model) {
                report.models.push(model);
            }
        }
    }

    /// Reads an image argument's bytes.
    pub(crate) fn read(&self, location: &str) -> Result<Vec<u8>, ModelError> {
        self.blobs.read(location)
    }

    /// Rows `function` has processed so far in this statement.
    pub(crate) fn rows_done(&self, function: &str) -> u64 {
        let report = self.report.lock().expect("report lock");
        report.rows.get(function).copied().unwrap_or(0)
    }

    /// Counts `n` more rows for `function` and reports progress.
    pub(crate) fn count_rows(&self, function: &'static str, n: u64) {
        let rows = {
            let mut report = self.report.lock().expect("report lock");
            let count = report.rows.entry(function.to_string()).or_default();
            *count += n;
            *count
        };
        if let Some(sink) = self.progress.read().expect("progress lock").as_ref() {
            sink(&ProgressUpdate {
                function,
                rows,
                expected_rows: *self.expected_rows.lock().expect("report lock"),
                detail: None,
            });
        }
    }

    /// Reports progress that is not a count of rows (a training run's steps).
    pub fn report_progress(&self, update: &ProgressUpdate) {
        if let Some(sink) = self.progress.read().expect("progress lock").as_ref() {
            sink(update);
        }
    }

    /// Finds the model `spec` names (a model object, a folder or a hub id) with `files`.
    pub fn locate(&self, spec: &str, files: &[&str]) -> Result<ModelSource, ModelError> {
        self.hub.locate(spec, files)
    }

    /// Records a row that became NULL.
    pub(crate) fn record_failure(&self, failure: RowFailure) {
        let mut report = self.report.lock().expect("report lock");
        report.failed_rows += 1;
        if report.first_failures.len() < FAILURES_NAMED {
            report.first_failures.push(failure);
        }
    }

    /// The model of kind `M` that the settings name (`vitrine.model.<kind>`, else the kind's
    /// default), loaded once per process, recorded as used by the statement; with its id and
    /// revision.
    pub fn model<M: LoadedModel>(&self) -> Result<(Arc<M>, ModelUse), ModelError> {
        let (spec, placement) = {
            let settings = self.settings.read().expect("settings lock");
            let spec = settings.models.get(M::KIND).cloned();
            let placement =
                Placement::parse(&settings.functions.device, &settings.functions.dtype)?;
            (
                spec.unwrap_or_else(|| M::DEFAULT_MODEL.to_string()),
                placement,
            )
        };
        let source = self.hub.locate(&spec, M::FILES)?;
        let key = format!(
            "{}|{}|{}|{}",
            M::KIND,
            source.dir.display(),
            source.revision,
            placement.describe()
        );
        let model = registry::shared(&key, || M::load(&source, placement))?;
        let used = ModelUse {
            name: M::KIND.into(),
            id: source.id.clone(),
            revision: source.revision.clone(),
        };
        let mut report = self.report.lock().expect("report lock");
        if !report.models.contains(&used) {
            report.models.push(used.clone());
        }
        Ok((model, used))
    }
}
