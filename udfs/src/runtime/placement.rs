//! Where a model runs: `--device auto|cpu|cuda[:N]` and `--dtype auto|f32|bf16|f16`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use candle_core::{DType, Device};

use crate::ModelError;

/// The device and precision a model runs with.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Where the weights live and the work is done.
    pub device: Device,
    /// The weights' precision.
    pub dtype: DType,
}

impl Placement {
    /// f32 on the CPU.
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }

    /// Parses a device and a precision setting. `auto` picks the first CUDA device when the
    /// build has the `cuda` feature and a GPU is present, else the CPU; the precision `auto` is
    /// f32 on the CPU and bf16 on a GPU. Half precisions are refused on the CPU, where they are
    /// slower than f32 and lose accuracy for nothing.
    pub fn parse(device: &str, dtype: &str) -> Result<Self, ModelError> {
        let device = match device.trim().to_ascii_lowercase().as_str() {
            "auto" => auto_device(),
            "cpu" => Device::Cpu,
            d if d == "cuda" || d.starts_with("cuda:") => {
                let ordinal = match d.strip_prefix("cuda:") {
                    Some(n) => n.parse::<usize>().map_err(|_| {
                        ModelError::Setting(format!("device '{device}': expected cuda:N"))
                    })?,
                    None => 0,
                };
                cuda_device(ordinal)?
            }
            other => {
                return Err(ModelError::Setting(format!(
                    "device '{other}': expected auto, cpu, cuda or cuda:N"
                )))
            }
        };
        let dtype = match (dtype.trim().to_ascii_lowercase().as_str(), device.is_cpu()) {
            ("auto", true) | ("f32", _) => DType::F32,
            ("auto", false) | ("bf16", false) => DType::BF16,
            ("f16", false) => DType::F16,
            ("bf16" | "f16", true) => {
                return Err(ModelError::Setting(format!(
                    "dtype '{dtype}' is offered on a GPU only; the CPU runs f32"
                )))
            }
            (other, _) => {
                return Err(ModelError::Setting(format!(
                    "dtype '{other}': expected auto, f32, bf16 or f16"
                )))
            }
        };
        Ok(Self { device, dtype })
    }

    /// A short description, e.g. `cpu f32` or `cuda:0 bf16`.
    pub fn describe(&self) -> String {
        let device = match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".to_string(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        };
        format!("{device} {:?}", self.dtype).to_lowercase()
    }
}

fn auto_device() -> Device {
    if candle_core::utils::cuda_is_available() {
        if let Ok(device) = opened_cuda(0) {
            return device;
        }
    }
    Device::Cpu
}

fn cuda_device(ordinal: usize) -> Result<Device, ModelError> {
    if !candle_core::utils::cuda_is_available() {
        return Err(ModelError::Setting(
            "device cuda: this build has no CUDA support (rebuild with `--features cuda`)".into(),
        ));
    }
    opened_cuda(ordinal).map_err(|e| ModelError::Setting(format!("device cuda:{ordinal}: {e}")))
}

/// The process's one device for CUDA `ordinal`, opened on first use. Settings are parsed for
/// every model call and every planned statement; opening a device each time would make a stream
/// and library handles each time, and a model's calls would not share its stream.
fn opened_cuda(ordinal: usize) -> candle_core::Result<Device> {
    static OPENED: Mutex<BTreeMap<usize, Device>> = Mutex::new(BTreeMap::new());
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(device) = opened.get(&ordinal) {
        return Ok(device.clone());
    }
    let device = Device::new_cuda(ordinal)?;
    without_event_tracking(&device);
    opened.insert(ordinal, device.clone());
    Ok(device)
}

/// Stops cudarc from creating (and destroying) two CUDA events with every buffer of `device`:
/// it consults them only to order work between streams once a context has created a stream of
/// its own, which `Device::new_cuda` does not (candle issues the device's work on the thread's
/// default stream), so they were never consulted and only cost four driver calls per tensor
/// operation, of which a decoding step makes hundreds.
#[cfg(feature = "cuda")]
fn without_event_tracking(device: &Device) {
    if let Ok(cuda) = device.as_cuda_device() {
        // SAFETY: the device was just made, so no buffer exists yet, and its context never
        // enters cudarc's multi-stream mode, the only one in which the events are consulted.
        unsafe { cuda.disable_event_tracking() }
    }
}

#[cfg(not(feature = "cuda"))]
fn without_event_tracking(_: &Device) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_mistakes_are_named() {
        let p = Placement::parse("cpu", "auto").unwrap();
        assert!(p.device.is_cpu());
        assert_eq!(p.dtype, DType::F32);
        assert_eq!(p.describe(), "cpu f32");
        assert!(Placement::parse("auto", "f32").is_ok());
        let err = Placement::parse("cpu", "bf16").unwrap_err().to_string();
        assert!(err.contains("GPU only"), "{err}");
        let err = Placement::parse("tpu", "auto").unwrap_err().to_string();
        assert!(err.contains("'tpu'"), "{err}");
        let err = Placement::parse("cpu", "f64").unwrap_err().to_string();
        assert!(err.contains("'f64'"), "{err}");
        if !candle_core::utils::cuda_is_available() {
            let err = Placement::parse("cuda:0", "auto").unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
