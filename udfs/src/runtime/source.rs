//! Finding a model's files: a local folder, the Hugging Face cache, or a hub download.
//!
//! A model is named by a path, a hub id (`openai/clip-vit-base-patch32`, optionally
//! `@revision`) or a model object the engine keeps (`catalog.schema.name`, made by
//! `CREATE MODEL`). Resolution tries, in order: a model object ([`ModelObjects`]); an existing
//! local folder; the Hugging Face cache
//! (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`); a download into that cache
//! unless `HF_HUB_OFFLINE=1`. Whatever is missing is reported in one error that says how to get it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hf_hub::{Cache, Repo, RepoType};
use sha2::{Digest, Sha256};

use crate::ModelError;

/// A file that marks a model folder as made for tests (random or scripted weights): what such a
/// model computes means nothing, and reports that rest on it say so.
pub const TEST_MODEL_MARKER: &str = "TEST_MODEL";

/// Whether `spec` names a model folder made for tests (it holds [`TEST_MODEL_MARKER`]).
pub fn is_test_model(spec: &str) -> bool {
    Path::new(spec).join(TEST_MODEL_MARKER).is_file()
}

/// The weights file names a model folder may hold, in order of preference.
pub const WEIGHT_FILES: &[&str] = &["model.safetensors", "pytorch_model.bin"];

/// A model's files, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// What the user named (a hub id or the folder's path).
    pub id: String,
    /// The hub commit, or for a local folder outside the cache, `sha256:` and the first 16 hex
    /// digits of the weights' digest.
    pub revision: String,
    /// The folder holding the files.
    pub dir: PathBuf,
    /// The weights file inside `dir`.
    pub weights: PathBuf,
}

impl ModelSource {
    /// A file of the model.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// A model object as the engine keeps it: a local folder of the kind's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelObject {
    /// The folder (fetched from the warehouse's object store first, when it lives on one).
    pub dir: PathBuf,
    /// The revision the engine recorded for it (its weights' digest).
    pub revision: String,
}

/// The engine's model objects, which `vitrine.model.<kind>` and `CREATE MODEL`'s `base` may
/// name by `catalog.schema.name`.
pub trait ModelObjects: Send + Sync {
    /// The model object `spec` names, none when `spec` cannot name one (a path, a hub id); an
    /// error when it names one that does not exist.
    fn locate(&self, spec: &str) -> Result<Option<ModelObject>, ModelError>;
}

/// Where hub models are looked up and whether they may be downloaded. Clones share what they
/// have located, so that a local folder's weights are hashed once, whichever session asks.
#[derive(Clone)]
pub struct Hub {
    cache: Cache,
    offline: bool,
    located: Arc<Mutex<Located>>,
    objects: Option<Arc<dyn ModelObjects>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("cache", &self.cache.path())
            .field("offline", &self.offline)
            .finish_non_exhaustive()
    }
}

/// Models found so far, by what named them and the files asked for.
/// The sources found, by spec and files, with their weights file's state when found.
type Located = BTreeMap<(String, Vec<String>), (ModelSource, Option<WeightsState>)>;

/// What identifies one state of a weights file: its modification time and length. A folder
/// whose weights were replaced is located (and hashed) again.
type WeightsState = (std::time::SystemTime, u64);

fn weights_state(path: &Path) -> Option<WeightsState> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Hub {
    /// The cache and offline mode that Hugging Face's own tools would use.
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        Self {
            cache: Cache::from_env(),
            offline,
            located: Arc::default(),
            objects: None,
        }
    }

    /// A cache at `root` (the folder holding `models--org--name`), offline or not.
    pub fn new(root: impl Into<PathBuf>, offline: bool) -> Self {
        Self {
            cache: Cache::new(root.into()),
            offline,
            located: Arc::default(),
            objects: None,
        }
    }

    /// The same hub, looking up `objects` first.
    pub fn with_objects(mut self, objects: Arc<dyn ModelObjects>) -> Self {
        self.objects = Some(objects);
        self
    }

    /// Resolves `spec`, a folder or a hub id, to a folder holding `files` and a weights file;
    /// a success is remembered until its weights file changes.
    pub fn locate(&self, spec: &str, files: &[&str]) -> Result<ModelSource, ModelError> {
        // Not remembered: a model object may be replaced (CREATE OR REPLACE MODEL).
        if let Some(objects) = &self.objects {
            if let Some(object) = objects.locate(spec)? {
                let (dir, weights) = checked_folder(spec, &object.dir, files)?;
                return Ok(ModelSource {
                    id: spec.to_string(),
                    revision: object.revision,
                    dir,
                    weights,
                });
            }
        }
        let key = (
            spec.to_string(),
            files.iter().map(|f| f.to_string()).collect(),
        );
        if let Some((source, state)) = self.located.lock().expect("located models lock").get(&key) {
            if weights_state(&source.weights) == *state {
                return Ok(source.clone());
            }
        }
        let source = self.find(spec, files)?;
        let state = weights_state(&source.weights);
        self.located
            .lock()
            .expect("located models lock")
            .insert(key, (source.clone(), state));
        Ok(source)
    }

    fn find(&self, spec: &str, files: &[&str]) -> Result<ModelSource, ModelError> {
        let path = Path::new(spec);
        if path.is_dir() {
            return local_folder(spec, path, files);
        }
        if looks_like_path(spec) {
            return Err(ModelError::NotFound(format!(
                "model folder '{spec}' does not exist"
            )));
        }
        let (id, revision) = match spec.split_once('@') {
            Some((id, rev)) => (id, rev.to_string()),
            None => (spec, "main".to_string()),
        };
        let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.clone());
        let cached = self.cache.repo(repo.clone());
        let mut wanted: Vec<&str> = files.to_vec();
        let weights = WEIGHT_FILES
            .iter()
            .find(|w| cached.get(w).is_some())
            .copied()
            .unwrap_or(WEIGHT_FILES[0]);
        wanted.push(weights);
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|f| cached.get(f).is_none())
            .collect();
        if !missing.is_empty() {
            self.download(spec, repo, &missing)?;
        }
        let weights_path = cached.get(weights).ok_or_else(|| {
            ModelError::NotFound(format!("model '{spec}': {weights} is not in the cache"))
        })?;
        let dir = weights_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let revision = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or(revision);
        Ok(ModelSource {
            id: id.to_string(),
            revision,
            dir,
            weights: weights_path,
        })
    }

    fn download(&self, spec: &str, repo: Repo, missing: &[&str]) -> Result<(), ModelError> {
        let how = format!(
            "get it on a machine that is online with `huggingface-cli download {id}` and copy \
             {cache}, or pass --model NAME=/path/to/folder (a folder holding {files} and \
             model.safetensors)",
            id = spec.split('@').next().unwrap_or(spec),
            cache = self.cache.path().display(),
            files = missing
                .iter()
                .filter(|f| !WEIGHT_FILES.contains(f))
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
        );
        if self.offline {
            return Err(ModelError::NotFound(format!(
                "model '{spec}' is not a local folder and {} is missing from the Hugging Face \
                 cache ({}), and HF_HUB_OFFLINE forbids downloading it: {how}",
                missing.join(", "),
                self.cache.path().display(),
            )));
        }
        let api = hf_hub::api::sync::ApiBuilder::from_cache(self.cache.clone())
            .with_progress(false)
            .build()
            .map_err(|e| ModelError::NotFound(format!("model '{spec}': {e}")))?;
        let remote = api.repo(repo);
        for file in missing {
            remote.get(file).map_err(|e| {
                ModelError::NotFound(format!(
                    "model '{spec}' is not a local folder, {file} is not in the Hugging Face \
                     cache ({}), and downloading it failed ({e}): {how}",
                    self.cache.path().display()
                ))
            })?;
        }
        Ok(())
    }
}

fn looks_like_path(spec: &str) -> bool {
    spec.starts_with('/')
        || spec.starts_with("./")
        || spec.starts_with("../")
        || spec.starts_with('~')
        || spec.matches('/').count() > 1
}

/// `dir` with its weights file, when it holds `files` and weights.
fn checked_folder(
    spec: &str,
    dir: &Path,
    files: &[&str],
) -> Result<(PathBuf, PathBuf), ModelError> {
    let weights = WEIGHT_FILES
        .iter()
        .map(|w| dir.join(w))
        .find(|p| p.is_file());
    let mut missing: Vec<String> = files
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    if weights.is_none() {
        missing.push(WEIGHT_FILES.join(" or "));
    }
    if !missing.is_empty() {
        return Err(ModelError::NotFound(format!(
            "model folder '{spec}' lacks {}",
            missing.join(", ")
        )));
    }
    let weights = weights.expect("checked above");
    let dir = dir.canonicalize().map_err(|e| ModelError::io(dir, e))?;
    Ok((dir, weights))
}

fn local_folder(spec: &str, dir: &Path, files: &[&str]) -> Result<ModelSource, ModelError> {
    let (dir, weights) = checked_folder(spec, dir, files)?;
    let revision = match snapshot_revision(&dir) {
        Some(rev) => rev,
        None => format!("sha256:{}", digest_prefix(&weights)?),
    };
    Ok(ModelSource {
        id: spec.to_string(),
        revision,
        dir,
        weights,
    })
}

/// The commit of a folder inside a Hugging Face cache (`…/snapshots/<commit>`).
fn snapshot_revision(dir: &Path) -> Option<String> {
    let parent = dir.parent()?;
    (parent.file_name()? == "snapshots")
        .then(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))?
}

/// The first 16 hex digits of the SHA-256 of a file.
pub fn digest_prefix(path: &Path) -> Result<String, ModelError> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let digest = hasher.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: &[&str] = &["config.json", "tokenizer.json"];

    fn folder_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(dir.path().join(f), b"{}").unwrap();
        }
        dir
    }

    #[test]
    fn a_local_folder_is_used_and_fingerprinted() {
        let dir = folder_with(&["config.json", "tokenizer.json", "model.safetensors"]);
        let spec = dir.path().to_str().unwrap();
        let source = Hub::new("/nonexistent", true).locate(spec, FILES).unwrap();
        assert_eq!(source.weights.file_name().unwrap(), "model.safetensors");
        assert!(
            source.revision.starts_with("sha256:"),
            "{}",
            source.revision
        );
        assert_eq!(source.revision.len(), "sha256:".len() + 16);
    }

    #[test]
    fn a_folder_whose_weights_change_is_fingerprinted_again() {
        let dir = folder_with(&["config.json", "tokenizer.json", "model.safetensors"]);
        let spec = dir.path().to_str().unwrap();
        let hub = Hub::new("/nonexistent", true);
        let before = hub.locate(spec, FILES).unwrap().revision;
        assert_eq!(hub.locate(spec, FILES).unwrap().revision, before);
        std::fs::write(dir.path().join("model.safetensors"), b"other weights").unwrap();
        assert_ne!(hub.locate(spec, FILES).unwrap().revision, before);
    }

    #[test]
    fn a_local_folder_names_what_it_lacks() {
        let dir = folder_with(&["config.json"]);
        let err = Hub::new("/nonexistent", true)
            .locate(dir.path().to_str().unwrap(), FILES)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("model.safetensors"),
            "{err}"
        );
        assert!(!err.contains("config.json"), "{err}");
    }

    #[test]
    fn the_hugging_face_cache_is_read_with_its_commit() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--acme--tiny-clip");
        let snapshot = repo.join("snapshots").join("0123abcd");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(snapshot.join(f), b"{}").unwrap();
        }
        let source = Hub::new(cache.path(), true)
            .locate("acme/tiny-clip", FILES)
            .unwrap();
        assert_eq!(source.revision, "0123abcd");
        assert_eq!(source.id, "acme/tiny-clip");
        assert_eq!(source.dir, snapshot);
    }

    #[test]
    fn offline_and_absent_is_one_error_saying_how_to_get_it() {
        let cache = tempfile::tempdir().unwrap();
        let err = Hub::new(cache.path(), true)
            .locate("openai/clip-vit-base-patch32", FILES)
            .unwrap_err()
            .to_string();
        for needle in [
            "openai/clip-vit-base-patch32",
            "HF_HUB_OFFLINE",
            "huggingface-cli download",
            "--model",
            "tokenizer.json",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in: {err}");
        }
    }

    #[test]
    fn a_missing_folder_is_not_mistaken_for_a_hub_id() {
        let err = Hub::new("/nonexistent", true)
            .locate("./models/clip", FILES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }
}
