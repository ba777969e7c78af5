//! How many rows a model runs as one batch, and one batch at a time on a GPU.
//!
//! `vitrine.udf.batch_size` is a number of rows or `auto`. With `auto`, the CPU runs
//! [`CPU_ROWS`] (the fastest of the batch sizes measured on it, `benches/RESULTS.md`), and a GPU
//! as many rows as [`MEMORY_SHARE`] of its free memory holds at the model's [`RowCost`], up to
//! the batch beyond which the model stops gaining on a GPU (SmolVLM-256M made 45 % more photos a
//! second at 256 rows than at the fixed 32 on an H200).
//!
//! A GPU's batches also take turns ([`one_batch_at_a_time`]): DataFusion runs a statement's
//! partitions side by side, and each calls the model function; on one device their forward
//! passes would only interleave on its stream while each held a batch's activations, so the
//! memory a batch was sized for could be taken several times over. Taking turns, a partition's
//! photos are read and processed while another's batch runs.

use std::sync::Mutex;

use candle_core::Device;

use crate::ModelError;

/// Rows a batch takes on the CPU under `auto`.
pub const CPU_ROWS: usize = 32;

/// The share of a GPU's free memory that `auto` lets one batch take (the rest covers what the
/// per-row estimates leave out and the allocator's rounding).
pub const MEMORY_SHARE: f64 = 0.8;

/// Rows the engine hands a model function at once on a GPU under `auto`: no model's batch is
/// larger, and a function cuts them into its own batches (the next one read and processed while
/// the model works on the current one).
pub const GPU_SLICE_ROWS: usize = 1024;

/// The `vitrine.udf.batch_size` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    /// Chosen for the device and the model (see the module's documentation).
    Auto,
    /// This many rows (above zero).
    Rows(usize),
}

/// What a batch costs a model on a GPU, by its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCost {
    /// Device memory one row needs at the batch's peak, in bytes (activations, attention scores
    /// and cache; the weights are loaded already).
    pub bytes: u64,
    /// Device memory a batch needs whatever its rows (a part of the network that takes a fixed
    /// number of inputs at a time), in bytes.
    pub fixed: u64,
    /// The batch beyond which the model's throughput stopped growing where it was measured.
    pub best_rows: usize,
}

impl BatchSize {
    /// Parses `auto` or a whole number above zero.
    pub fn parse(key: &str, value: &str) -> Result<Self, ModelError> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        match value.parse::<usize>() {
            Ok(rows) if rows > 0 => Ok(Self::Rows(rows)),
            _ => Err(ModelError::Setting(format!(
                "{key} must be 'auto' or a positive integer, got '{value}'"
            ))),
        }
    }

    /// Rows the engine hands a model function on `device` at once.
    pub fn slice_rows(self, device: &Device) -> usize {
        match self {
            Self::Rows(rows) => rows,
            Self::Auto if device.is_cpu() => CPU_ROWS,
            Self::Auto => GPU_SLICE_ROWS,
        }
    }

    /// Rows of one batch of a model whose rows cost `cost()` on `device` (worked out, and the
    /// device's free memory read, only for `auto` on a GPU).
    pub fn model_rows(self, device: &Device, cost: impl FnOnce() -> RowCost) -> usize {
        match self {
            Self::Rows(rows) => rows,
            Self::Auto => match free_memory(device) {
                None => CPU_ROWS,
                Some(free) => rows_in_memory(free, cost()),
            },
        }
    }
}

impl std::fmt::Display for BatchSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Rows(rows) => write!(f, "{rows}"),
        }
    }
}

/// Rows that fit [`MEMORY_SHARE`] of `free` bytes at `cost`, at most `cost.best_rows`, at least
/// one; above eight, a multiple of eight (batches of equal shapes across a run).
pub fn rows_in_memory(free: u64, cost: RowCost) -> usize {
    let room = (free as f64 * MEMORY_SHARE - cost.fixed as f64).max(0.0);
    let fit = (room / cost.bytes.max(1) as f64) as usize;
    let rows = fit.min(cost.best_rows).max(1);
    if rows > 8 {
        rows / 8 * 8
    } else {
        rows
    }
}

/// Bytes one transformer layer's forward pass holds at its peak for a sequence of `tokens`
/// (`element` bytes a value): the attention's scores (in the model's precision, in f32 for the
/// softmax, and its weights back) or the MLP's hidden values, whichever is larger, beside a few
/// copies of the residual stream. The layers run one after another, so this is a network's peak
/// too, less its cache.
pub fn layer_peak_bytes(
    tokens: usize,
    heads: usize,
    width: usize,
    intermediate: usize,
    element: usize,
) -> u64 {
    let (tokens, element) = (tokens as u64, element as u64);
    let scores = heads as u64 * tokens * tokens * (2 * element + 8);
    let mlp = 3 * tokens * intermediate as u64 * element;
    scores.max(mlp) + 6 * tokens * width as u64 * element
}

/// The free memory of a GPU in bytes; `None` for the CPU (or where the driver cannot tell).
pub fn free_memory(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    if let Ok(cuda) = device.as_cuda_device() {
        return cuda
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, _total)| free as u64);
    }
    let _ = device;
    None
}

/// One lock per GPU ordinal that [`one_batch_at_a_time`] has seen.
static GPU_TURNS: Mutex<Vec<&'static Mutex<()>>> = Mutex::new(Vec::new());

/// Runs `work` (a batch's forward passes) while no other batch runs on `device`, when it is a
/// GPU; on the CPU at once (the forward passes share its thread pool).
pub fn one_batch_at_a_time<R>(device: &Device, work: impl FnOnce() -> R) -> R {
    let candle_core::DeviceLocation::Cuda { gpu_id } = device.location() else {
        return work();
    };
    let turn: &'static Mutex<()> = {
        let mut turns = GPU_TURNS.lock().unwrap_or_else(|e| e.into_inner());
        while turns.len() <= gpu_id {
            turns.push(Box::leak(Box::new(Mutex::new(()))));
        }
        turns[gpu_id]
    };
    // A batch that panicked left nothing half-done that the next one reads.
    let _held = turn.lock().unwrap_or_else(|e| e.into_inner());
    work()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_takes_auto_or_rows_and_names_a_bad_value() {
        let key = "vitrine.udf.batch_size";
        assert_eq!(BatchSize::parse(key, "AUTO").unwrap(), BatchSize::Auto);
        assert_eq!(BatchSize::parse(key, " 8 ").unwrap(), BatchSize::Rows(8));
        for bad in ["0", "-3", "many", ""] {
            let err = BatchSize::parse(key, bad).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains(&format!("'{bad}'")),
                "{err}"
            );
        }
        assert_eq!(BatchSize::Auto.to_string(), "auto");
        assert_eq!(BatchSize::Rows(12).to_string(), "12");
    }

    #[test]
    fn the_cpu_takes_its_own_rows_and_a_number_is_kept() {
        let cost = RowCost {
            bytes: 1,
            fixed: 0,
            best_rows: 4096,
        };
        assert_eq!(BatchSize::Auto.slice_rows(&Device::Cpu), CPU_ROWS);
        assert_eq!(BatchSize::Auto.model_rows(&Device::Cpu, || cost), CPU_ROWS);
        assert_eq!(BatchSize::Rows(5).slice_rows(&Device::Cpu), 5);
        assert_eq!(BatchSize::Rows(5).model_rows(&Device::Cpu, || cost), 5);
    }

    #[test]
    fn a_gpu_batch_fills_its_share_of_free_memory_up_to_the_model_best() {
        const GIB: u64 = 1 << 30;
        let row = RowCost {
            bytes: 200 << 20,
            fixed: 0,
            best_rows: 256,
        };
        // 139 GiB free: room for 569 rows, the model gains nothing past 256.
        assert_eq!(rows_in_memory(139 * GIB, row), 256);
        // 20 GiB free: 16 GiB for batches, 81 rows of 200 MiB, rounded down to 80.
        assert_eq!(rows_in_memory(20 * GIB, row), 80);
        // Room for fewer than eight rows: as many as fit, and never none.
        assert_eq!(rows_in_memory(GIB, row), 4);
        assert_eq!(rows_in_memory(0, row), 1);
        // What every batch needs comes off the room first: 16 − 6 GiB is 51 rows, so 48.
        let with_fixed = RowCost {
            fixed: 6 * GIB,
            ..row
        };
        assert_eq!(rows_in_memory(20 * GIB, with_fixed), 48);
        assert_eq!(rows_in_memory(4 * GIB, with_fixed), 1);
    }

    #[test]
    fn a_layer_peaks_at_its_scores_or_its_mlp() {
        // SigLIP at 512 px in bf16: 12 heads over 1,024 patches, 12 bytes a score.
        let siglip = layer_peak_bytes(1024, 12, 768, 3072, 2);
        assert_eq!(siglip, 12 * 1024 * 1024 * 12 + 6 * 1024 * 768 * 2);
        // CLIP's text tower: 77 tokens, where the MLP outweighs the scores.
        let text = layer_peak_bytes(77, 8, 512, 2048, 4);
        assert_eq!(text, 3 * 77 * 2048 * 4 + 6 * 77 * 512 * 4);
    }

    #[test]
    fn batches_on_the_cpu_run_side_by_side() {
        // On the CPU the turn is not taken: a batch inside another's turn does not wait.
        let inner = one_batch_at_a_time(&Device::Cpu, || one_batch_at_a_time(&Device::Cpu, || 7));
        assert_eq!(inner, 7);
    }
}
