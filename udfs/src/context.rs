//! What the model functions share with the engine that runs them: settings, file access,
//! progress, and the per-statement report.
//!
//! The engine makes one [`FunctionContext`] per session, forwards `SET vitrine.*` to it, calls
//! [`FunctionContext::begin_statement`] before each statement and
//! [`FunctionContext::finish_statement`] after it, and shows the report's warnings.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::clip::{ClipEmbedder, CLIP_FILES};
use crate::runtime::placement::Placement;
use crate::runtime::registry;
use crate::runtime::source::{Hub, ModelSource};
use crate::runtime::ModelError;
use crate::smolvlm::model::{SmolVlm, SMOLVLM_FILES};
use crate::smolvlm::sampling::Decoding;

/// The CLIP model used when `vitrine.model.clip` is not set.
pub const DEFAULT_CLIP_MODEL: &str = "openai/clip-vit-base-patch32";

/// The SmolVLM model used when `vitrine.model.smolvlm` is not set.
pub const DEFAULT_SMOLVLM_MODEL: &str = "HuggingFaceTB/SmolVLM-256M-Instruct";

/// How many failed rows a statement report names (all are counted).
pub const FAILURES_NAMED: usize = 5;

/// Reads the bytes behind an image argument: a local path, a `/Volumes/…` path, or an
/// object-store URL. The engine supplies one that knows its warehouse.
pub trait BlobReader: Send + Sync {
    /// The bytes at `location`.
    fn read(&self, location: &str) -> Result<Vec<u8>, String>;
}

/// Reads local files only.
#[derive(Debug, Default)]
pub struct LocalFiles;

impl BlobReader for LocalFiles {
    fn read(&self, location: &str) -> Result<Vec<u8>, String> {
        let path = location.strip_prefix("file://").unwrap_or(location);
        std::fs::read(path).map_err(|e| e.to_string())
    }
}

/// What a model function does with a row it cannot process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// NULL for the row; counted and reported at the end of the statement.
    Null,
    /// The statement fails, naming the row.
    Fail,
}

/// The settings the model functions read (`vitrine.model.*`, `vitrine.device`,
/// `vitrine.dtype`, `vitrine.udf.*`).
#[derive(Debug, Clone)]
pub struct FunctionSettings {
    /// Model name (`clip`) → path or hub id.
    pub models: BTreeMap<String, String>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// `auto`, `f32`, `bf16`, `f16`.
    pub dtype: String,
    /// Rows per model batch.
    pub batch_size: usize,
    /// What a failing row does.
    pub on_error: OnError,
    /// `vitrine.smolvlm.longest_edge`: SmolVLM's first resize (fewer tiles when smaller), or
    /// the model's own setting.
    pub smolvlm_longest_edge: Option<u32>,
    /// `vitrine.smolvlm.temperature`: 0 decodes greedily; above, SmolVLM samples.
    pub smolvlm_temperature: f32,
    /// `vitrine.smolvlm.top_p`: the nucleus kept when sampling.
    pub smolvlm_top_p: f32,
    /// `vitrine.smolvlm.seed`: with a row's photo and prompt, seeds its draws.
    pub smolvlm_seed: u64,
}

impl Default for FunctionSettings {
    fn default() -> Self {
        Self {
            models: BTreeMap::new(),
            device: "auto".into(),
            dtype: "auto".into(),
            batch_size: 32,
            on_error: OnError::Null,
            smolvlm_longest_edge: None,
            smolvlm_temperature: 0.0,
            smolvlm_top_p: 1.0,
            smolvlm_seed: 0,
        }
    }
}

impl FunctionSettings {
    /// Applies `SET key = value`; keys that are not the functions' are ignored.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), String> {
        if let Some(name) = key.strip_prefix("vitrine.model.") {
            self.models.insert(name.to_string(), value.to_string());
            return Ok(());
        }
        match key {
            "vitrine.device" | "vitrine.dtype" => {
                let (device, dtype) = if key == "vitrine.device" {
                    (value, self.dtype.as_str())
                } else {
                    (self.device.as_str(), value)
                };
                Placement::parse(device, dtype).map_err(|e| e.to_string())?;
                if key == "vitrine.device" {
                    self.device = value.to_string();
                } else {
                    self.dtype = value.to_string();
                }
            }
            "vitrine.udf.batch_size" => {
                self.batch_size =
                    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("{key} must be a positive integer, got '{value}'")
                    })?;
            }
            "vitrine.smolvlm.longest_edge" => {
                self.smolvlm_longest_edge =
                    Some(value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("{key} must be a positive integer, got '{value}'")
                    })?);
            }
            "vitrine.smolvlm.temperature" | "vitrine.smolvlm.top_p" => {
                let number: f32 = value
                    .parse()
                    .map_err(|_| format!("{key} must be a number, got '{value}'"))?;
                let (temperature, top_p) = if key == "vitrine.smolvlm.temperature" {
                    (number, self.smolvlm_top_p)
                } else {
                    (self.smolvlm_temperature, number)
                };
                Decoding::new(temperature, top_p).map_err(|e| format!("{key}: {e}"))?;
                (self.smolvlm_temperature, self.smolvlm_top_p) = (temperature, top_p);
            }
            "vitrine.smolvlm.seed" => {
                self.smolvlm_seed = value
                    .parse()
                    .map_err(|_| format!("{key} must be a non-negative integer, got '{value}'"))?;
            }
            "vitrine.udf.on_error" => {
                self.on_error = match value {
                    "null" => OnError::Null,
                    "fail" => OnError::Fail,
                    _ => return Err(format!("{key} must be 'null' or 'fail', got '{value}'")),
                };
            }
            _ => {}
        }
        Ok(())
    }

    /// The path or hub id of model `name`.
    pub fn model<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        self.models.get(name).map_or(default, String::as_str)
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
}

/// Receives progress updates (a progress bar, say).
pub type ProgressSink = Arc<dyn Fn(&ProgressUpdate) + Send + Sync>;

/// The model functions' view of their session.
pub struct FunctionContext {
    settings: RwLock<FunctionSettings>,
    blobs: Arc<dyn BlobReader>,
    hub: Hub,
    /// Model names already resolved to files, so that a local folder's weights are hashed once.
    located: Mutex<BTreeMap<String, ModelSource>>,
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
    /// A context reading image paths through `blobs` and models through the Hugging Face
    /// cache of the environment.
    pub fn new(blobs: Arc<dyn BlobReader>) -> Self {
        Self::with_hub(blobs, Hub::from_env())
    }

    /// A context with an explicit model cache.
    pub fn with_hub(blobs: Arc<dyn BlobReader>, hub: Hub) -> Self {
        Self {
            settings: RwLock::new(FunctionSettings::default()),
            blobs,
            hub,
            located: Mutex::new(BTreeMap::new()),
            progress: RwLock::new(None),
            expected_rows: Mutex::new(None),
            report: Mutex::new(StatementReport::default()),
        }
    }

    /// Applies `SET key = value` (keys that are not the functions' are ignored).
    pub fn set(&self, key: &str, value: &str) -> Result<(), String> {
        self.settings
            .write()
            .expect("settings lock")
            .apply(key, value)
    }

    /// The defaults with `settings` applied over them (what a `RESET` leaves).
    pub fn reset_settings<'a>(
        &self,
        settings: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<(), String> {
        let mut fresh = FunctionSettings::default();
        for (key, value) in settings {
            fresh.apply(key, value)?;
        }
        *self.settings.write().expect("settings lock") = fresh;
        Ok(())
    }

    /// The current settings.
    pub fn settings(&self) -> FunctionSettings {
        self.settings.read().expect("settings lock").clone()
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

    /// Reads an image argument's bytes.
    pub(crate) fn read(&self, location: &str) -> Result<Vec<u8>, String> {
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
            });
        }
    }

    /// Records a row that became NULL.
    pub(crate) fn record_failure(&self, failure: RowFailure) {
        let mut report = self.report.lock().expect("report lock");
        report.failed_rows += 1;
        if report.first_failures.len() < FAILURES_NAMED {
            report.first_failures.push(failure);
        }
    }

    /// The CLIP model of the current settings, loaded once per process.
    pub fn clip(&self) -> Result<Arc<ClipEmbedder>, ModelError> {
        Ok(self
            .model("clip", DEFAULT_CLIP_MODEL, CLIP_FILES, ClipEmbedder::load)?
            .0)
    }

    /// The SmolVLM model of the current settings, loaded once per process, and which one it is.
    pub fn smolvlm(&self) -> Result<(Arc<SmolVlm>, ModelUse), ModelError> {
        self.model(
            "smolvlm",
            DEFAULT_SMOLVLM_MODEL,
            SMOLVLM_FILES,
            SmolVlm::load,
        )
    }

    /// Model `name` (`vitrine.model.<name>`, else `default`), loaded once per process with
    /// `load`, and recorded as used by the statement; with its id and revision.
    fn model<M: std::any::Any + Send + Sync>(
        &self,
        name: &str,
        default: &str,
        files: &[&str],
        load: impl FnOnce(&ModelSource, Placement) -> Result<M, ModelError>,
    ) -> Result<(Arc<M>, ModelUse), ModelError> {
        let settings = self.settings();
        let spec = settings.model(name, default);
        let source = self.locate(spec, files)?;
        let placement = Placement::parse(&settings.device, &settings.dtype)?;
        let key = format!(
            "{name}|{}|{}|{}",
            source.dir.display(),
            source.revision,
            placement.describe()
        );
        let model = registry::shared(&key, || load(&source, placement))?;
        let used = ModelUse {
            name: name.into(),
            id: source.id.clone(),
            revision: source.revision.clone(),
        };
        self.record_model(used.clone());
        Ok((model, used))
    }

    fn locate(&self, spec: &str, files: &[&str]) -> Result<ModelSource, ModelError> {
        let mut located = self.located.lock().expect("located models lock");
        if let Some(source) = located.get(spec) {
            return Ok(source.clone());
        }
        let source = self.hub.locate(spec, files)?;
        located.insert(spec.to_string(), source.clone());
        Ok(source)
    }

    fn record_model(&self, model: ModelUse) {
        let mut report = self.report.lock().expect("report lock");
        if !report.models.contains(&model) {
            report.models.push(model);
        }
    }
}
