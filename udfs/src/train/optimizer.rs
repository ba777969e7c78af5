//! AdamW as `torch.optim.AdamW` computes it (decoupled weight decay, bias-corrected moments),
//! over named variables, with its state readable and restorable so that a checkpoint resumes
//! training exactly. candle-nn's `AdamW` computes the same step but keeps its moments private.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// The optimizer's settings, PyTorch's defaults but for the learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    /// The learning rate.
    pub learning_rate: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self {
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

struct Moments {
    variable: Var,
    first: Tensor,
    second: Tensor,
}

/// AdamW over a model's variables, by name.
pub struct AdamW {
    moments: BTreeMap<String, Moments>,
    steps: u64,
    settings: AdamWSettings,
}

impl AdamW {
    /// An optimizer at step 0 over `variables` (name → variable).
    pub fn new(variables: BTreeMap<String, Var>, settings: AdamWSettings) -> Result<Self> {
        let moments = variables
            .into_iter()
            .map(|(name, variable)| {
                let zeros = variable.as_tensor().zeros_like()?;
                Ok((
                    name,
                    Moments {
                        variable,
                        first: zeros.clone(),
                        second: zeros,
                    },
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            moments,
            steps: 0,
            settings,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &AdamWSettings {
        &self.settings
    }

    /// Sets the learning rate of the next steps (a schedule's).
    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        self.settings.learning_rate = learning_rate;
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Back-propagates `loss` and takes one step.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let gradients = loss.backward()?;
        self.step(&gradients)
    }

    /// One step with `gradients`; variables without a gradient keep their value and moments.
    pub fn step(&mut self, gradients: &GradStore) -> Result<()> {
        self.steps += 1;
        let s = self.settings;
        let t = self.steps as i32;
        let (correction1, correction2) = (1.0 - s.beta1.powi(t), 1.0 - s.beta2.powi(t));
        for moments in self.moments.values_mut() {
            let theta = moments.variable.as_tensor();
            let Some(g) = gradients.get(theta) else {
                continue;
            };
            let first = ((&moments.first * s.beta1)? + (g * (1.0 - s.beta1))?)?;
            let second = ((&moments.second * s.beta2)? + (g.sqr()? * (1.0 - s.beta2))?)?;
            let denominator = ((&second / correction2)?.sqrt()? + s.eps)?;
            let update = ((&first / correction1)? / denominator)?;
            let decayed = (theta * (1.0 - s.learning_rate * s.weight_decay))?;
            moments
                .variable
                .set(&(decayed - (update * s.learning_rate)?)?)?;
            moments.first = first.detach();
            moments.second = second.detach();
        }
        Ok(())
    }

    /// The moments by `first.<name>` and `second.<name>`, and the step count as `steps`.
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut state = BTreeMap::new();
        for (name, m) in &self.moments {
            state.insert(format!("first.{name}"), m.first.clone());
            state.insert(format!("second.{name}"), m.second.clone());
        }
        let device = self
            .moments
            .values()
            .next()
            .map(|m| m.first.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        state.insert("steps".into(), Tensor::new(&[self.steps as i64], &device)?);
        Ok(state)
    }

    /// Continues from a [`AdamW::state`] of the same variables.
    pub fn restore(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let missing = |key: &str| candle_core::Error::Msg(format!("optimizer state lacks '{key}'"));
        for (name, m) in self.moments.iter_mut() {
            for (prefix, slot) in [("first", &mut m.first), ("second", &mut m.second)] {
                let key = format!("{prefix}.{name}");
                let saved = state.get(&key).ok_or_else(|| missing(&key))?;
                if saved.dims() != slot.dims() {
                    candle_core::bail!(
                        "optimizer state '{key}' has shape {:?}, the variable {:?}",
                        saved.dims(),
                        slot.dims()
                    );
                }
                *slot = saved.to_device(slot.device())?.to_dtype(slot.dtype())?;
            }
        }
        let steps = state.get("steps").ok_or_else(|| missing("steps"))?;
        self.steps = steps.to_vec1::<i64>()?.first().copied().unwrap_or(0) as u64;
        Ok(())
    }
}
