//! Low-rank adapters (LoRA, as PEFT's `LoraConfig`): chosen linear layers of a frozen model get
//! `W x + (alpha / rank) · B A x`, with `A` (rank × in, uniform in ±1/√in as PEFT's
//! Kaiming-uniform start, drawn from the run's seed) and `B` (out × rank, zeros) the only
//! variables trained. After training they are merged into the
//! weights, so the saved model is a plain checkpoint of its kind.

use std::collections::{BTreeMap, HashMap};

use std::sync::Mutex;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{Init, Linear, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dense;

/// Which layers get adapters, and how large.
pub struct Lora {
    rank: usize,
    alpha: f64,
    targets: Vec<String>,
    variables: VarMap,
    device: Device,
    /// Draws the adapters' starting values, so that a run repeats.
    rng: Mutex<ChaCha8Rng>,
}

impl Lora {
    /// Adapters of `rank` scaled by `alpha / rank` on the linear layers whose name ends with
    /// one of `targets` (`q_proj`, `v_proj`, …), created on `device` from `seed`.
    pub fn new(rank: usize, alpha: f64, targets: Vec<String>, device: &Device, seed: u64) -> Self {
        Self {
            rank,
            alpha,
            targets,
            variables: VarMap::new(),
            device: device.clone(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// `base` (the layer at `path`, transformers' name without `.weight`), with an adapter when
    /// the path is a target.
    pub fn wrap(&self, path: &str, base: Linear) -> Result<Projection> {
        let last = path.rsplit('.').next().unwrap_or(path);
        if !self.targets.iter().any(|t| t == last) {
            return Ok(Projection::Plain(base));
        }
        let (out, input) = base.weight().dims2()?;
        let bound = 1.0 / (input as f32).sqrt();
        let values: Vec<f32> = {
            let mut rng = self.rng.lock().expect("adapter rng lock");
            (0..self.rank * input)
                .map(|_| rng.random_range(-bound..bound))
                .collect()
        };
        let down = Var::from_tensor(&Tensor::from_vec(values, (self.rank, input), &self.device)?)?;
        self.variables
            .data()
            .lock()
            .expect("adapters lock")
            .insert(format!("{path}.lora_A.weight"), down.clone());
        let down = down.as_tensor().clone();
        let up = self.variables.get(
            (out, self.rank),
            &format!("{path}.lora_B.weight"),
            Init::Const(0.0),
            DType::F32,
            &self.device,
        )?;
        Ok(Projection::Adapted {
            base,
            down,
            up,
            scale: self.scale(),
        })
    }

    /// The adapters by name (`<layer>.lora_A.weight`, `<layer>.lora_B.weight`).
    pub fn variables(&self) -> BTreeMap<String, Var> {
        let data = self.variables.data().lock().expect("adapters lock");
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// `weights` (a checkpoint's tensors by name) with every adapter merged into its layer's
    /// weight.
    pub fn merge(&self, mut weights: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
        let adapters = self.variables();
        for (name, down) in &adapters {
            let Some(layer) = name.strip_suffix(".lora_A.weight") else {
                continue;
            };
            let up = &adapters[&format!("{layer}.lora_B.weight")];
            let key = format!("{layer}.weight");
            let Some(weight) = weights.get(&key) else {
                candle_core::bail!("no weight '{key}' to merge an adapter into");
            };
            let delta = (up.as_tensor().matmul(down.as_tensor())? * self.scale())?;
            let merged = (weight.to_dtype(DType::F32)? + delta.to_device(weight.device())?)?
                .to_dtype(weight.dtype())?;
            weights.insert(key, merged);
        }
        Ok(weights)
    }
}

/// A linear layer without bias, perhaps with an adapter.
pub enum Projection {
    /// As loaded.
    Plain(Linear),
    /// With a low-rank adapter.
    Adapted {
        /// The frozen layer.
        base: Linear,
        /// `A`: rank × in.
        down: Tensor,
        /// `B`: out × rank.
        up: Tensor,
        /// `alpha / rank`.
        scale: f64,
    },
}

impl Projection {
    /// The layer with an adapter when `lora` targets `path`, else as it is.
    pub fn new(path: &str, base: Linear, lora: Option<&Lora>) -> Result<Self> {
        match lora {
            Some(lora) => lora.wrap(path, base),
            None => Ok(Projection::Plain(base)),
        }
    }
}

impl crate::dense::MaybePlain for Projection {
    fn plain(&self) -> Option<&Linear> {
        match self {
            Projection::Plain(linear) => Some(linear),
            Projection::Adapted { .. } => None,
        }
    }
}

impl Module for Projection {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        // Over rows, so that a weight's gradient is one product (see `dense::over_rows`).
        dense::over_rows(xs, |xs| match self {
            Projection::Plain(linear) => linear.forward(xs),
            Projection::Adapted {
                base,
                down,
                up,
                scale,
            } => {
                let dtype = xs.dtype();
                let low = xs
                    .to_dtype(DType::F32)?
                    .matmul(&down.t()?)?
                    .matmul(&up.t()?)?;
                base.forward(xs)? + (low * *scale)?.to_dtype(dtype)?
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adapter_starts_as_the_identity_change_and_merges_into_the_weight() {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 1.0, (6, 4), &device).unwrap();
        let lora = Lora::new(2, 4.0, vec!["q_proj".into()], &device, 7);
        let plain = lora
            .wrap(
                "layers.0.self_attn.k_proj",
                Linear::new(weight.clone(), None),
            )
            .unwrap();
        assert!(matches!(plain, Projection::Plain(_)));
        let adapted = lora
            .wrap(
                "layers.0.self_attn.q_proj",
                Linear::new(weight.clone(), None),
            )
            .unwrap();
        let xs = Tensor::randn(0f32, 1.0, (3, 4), &device).unwrap();
        let base = xs.matmul(&weight.t().unwrap()).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(
            diff(&adapted.forward(&xs).unwrap(), &base),
            0.0,
            "B starts at zero"
        );
        // Once B moves, the merged weight computes what the adapted layer computes.
        let up = &lora.variables()["layers.0.self_attn.q_proj.lora_B.weight"];
        up.set(&Tensor::randn(0f32, 1.0, (6, 2), &device).unwrap())
            .unwrap();
        let merged = lora
            .merge(HashMap::from([(
                "layers.0.self_attn.q_proj.weight".to_string(),
                weight.clone(),
            )]))
            .unwrap();
        let merged = &merged["layers.0.self_attn.q_proj.weight"];
        let through_merged = xs.matmul(&merged.t().unwrap()).unwrap();
        assert!(diff(&adapted.forward(&xs).unwrap(), &through_merged) < 1e-5);
        assert!(diff(&through_merged, &base) > 1e-3);
    }
}
