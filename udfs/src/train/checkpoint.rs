//! A checkpoint per epoch: the weights and the optimizer's state in `epoch-<n>/`, then
//! `progress.json` naming it, replaced by a rename, so that an interruption at any point leaves
//! the previous checkpoint whole. A run resumes from it when it was made with the same options
//! on the same rows (counted); otherwise it starts over.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::optimizer::AdamW;
use super::{EpochRecord, TrainingOptions};
use crate::ModelError;

/// What a checkpoint must match to be resumed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The run's options.
    pub options: TrainingOptions,
    /// Rows trained on.
    pub train_rows: usize,
    /// Rows held out.
    pub eval_rows: usize,
    /// Training rows batched by their `batch_key`.
    #[serde(default)]
    pub grouped_rows: usize,
}

#[derive(Serialize, Deserialize)]
struct Progress {
    fingerprint: Fingerprint,
    epochs: Vec<EpochRecord>,
}

const PROGRESS: &str = "progress.json";
const WEIGHTS: &str = "weights.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";

fn io(path: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::file(path, e)
}

fn epoch_dir(dir: &Path, epoch: usize) -> std::path::PathBuf {
    dir.join(format!("epoch-{epoch}"))
}

/// Saves the state after the last of `epochs`, then drops the checkpoint before it.
pub fn save(
    dir: &Path,
    fingerprint: &Fingerprint,
    variables: &BTreeMap<String, Var>,
    optimizer: &AdamW,
    epochs: &[EpochRecord],
) -> Result<(), ModelError> {
    let epoch = epochs.len();
    let folder = epoch_dir(dir, epoch);
    std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
    let weights: HashMap<String, Tensor> = variables
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let path = folder.join(WEIGHTS);
    candle_core::safetensors::save(&weights, &path).map_err(|e| io(&path, e))?;
    let state: HashMap<String, Tensor> = optimizer.state()?.into_iter().collect();
    let path = folder.join(OPTIMIZER);
    candle_core::safetensors::save(&state, &path).map_err(|e| io(&path, e))?;
    let progress = Progress {
        fingerprint: fingerprint.clone(),
        epochs: epochs.to_vec(),
    };
    let temporary = dir.join(format!("{PROGRESS}.tmp"));
    let text = serde_json::to_string_pretty(&progress).map_err(|e| io(&temporary, e))?;
    std::fs::write(&temporary, text).map_err(|e| io(&temporary, e))?;
    let path = dir.join(PROGRESS);
    std::fs::rename(&temporary, &path).map_err(|e| io(&path, e))?;
    if epoch > 1 {
        let previous = epoch_dir(dir, epoch - 1);
        if previous.exists() {
            std::fs::remove_dir_all(&previous).map_err(|e| io(&previous, e))?;
        }
    }
    Ok(())
}

/// A checkpoint as read back: the optimizer's state and the epochs done.
pub struct Restored {
    /// The optimizer's state ([`AdamW::state`]).
    pub optimizer: BTreeMap<String, Tensor>,
    /// The epochs done, the loss curve so far.
    pub epochs: Vec<EpochRecord>,
}

/// Restores `variables` from the last checkpoint in `dir` made under `fingerprint`; none when
/// there is no such checkpoint.
pub fn load(
    dir: &Path,
    fingerprint: &Fingerprint,
    variables: &BTreeMap<String, Var>,
) -> Result<Option<Restored>, ModelError> {
    let path = dir.join(PROGRESS);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let progress: Progress = serde_json::from_str(&text).map_err(|e| io(&path, e))?;
    if progress.fingerprint != *fingerprint || progress.epochs.is_empty() {
        return Ok(None);
    }
    let folder = epoch_dir(dir, progress.epochs.len());
    let device = variables
        .values()
        .next()
        .map(|v| v.device().clone())
        .unwrap_or(Device::Cpu);
    let path = folder.join(WEIGHTS);
    let weights = candle_core::safetensors::load(&path, &device).map_err(|e| io(&path, e))?;
    for (name, variable) in variables {
        let saved = weights
            .get(name)
            .ok_or_else(|| io(&path, format!("no weight '{name}'")))?;
        variable.set(saved).map_err(|e| io(&path, e))?;
    }
    let path = folder.join(OPTIMIZER);
    let state = candle_core::safetensors::load(&path, &device).map_err(|e| io(&path, e))?;
    Ok(Some(Restored {
        optimizer: state.into_iter().collect(),
        epochs: progress.epochs,
    }))
}
