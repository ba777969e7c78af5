//! Training SmolVLM: the whole network over variables, trained on (image, prompt, answer) rows
//! with transformers' causal-LM loss on the answer's tokens; saved under transformers' names
//! beside the base's configuration, tokenizer and processor files.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::model::{AnswerExample, SmolVlm};
use crate::runtime::placement::Placement;
use crate::runtime::source::ModelSource;
use crate::train::Trainable;
use crate::ModelError;

/// A SmolVLM whose every weight is a variable.
pub struct SmolVlmTraining {
    variables: VarMap,
    model: SmolVlm,
}

impl SmolVlmTraining {
    /// The model in `source`, its weights loaded into variables on `placement`'s device (in f32).
    pub fn from_weights(source: &ModelSource, placement: &Placement) -> Result<Self, ModelError> {
        let (config, processor, tokenizer) = SmolVlm::read_parts(source)?;
        let variables = VarMap::new();
        let vb = VarBuilder::from_varmap(&variables, DType::F32, &placement.device);
        let placement = Placement {
            device: placement.device.clone(),
            dtype: DType::F32,
        };
        let model = SmolVlm::new(vb, config, processor, tokenizer, placement)
            .map_err(|e| ModelError::file(&source.weights, e))?;
        let mut training = Self { variables, model };
        training
            .variables
            .load(&source.weights)
            .map_err(|e| ModelError::file(&source.weights, e))?;
        Ok(training)
    }

    /// The network (for preprocessing and, after training, generation).
    pub fn model(&self) -> &SmolVlm {
        &self.model
    }

    /// Every variable by transformers' name of the weight.
    pub fn named_variables(&self) -> BTreeMap<String, Var> {
        let data = self.variables.data().lock().expect("variables lock");
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Writes every weight to `path` (safetensors, transformers' names).
    pub fn save(&self, path: &std::path::Path) -> Result<(), ModelError> {
        self.variables
            .save(path)
            .map_err(|e| ModelError::file(path, e))
    }
}

impl Trainable<AnswerExample> for SmolVlmTraining {
    fn loss(&self, batch: &[&AnswerExample]) -> candle_core::Result<Tensor> {
        self.model.answer_loss(batch)
    }

    fn variables(&self) -> BTreeMap<String, Var> {
        self.named_variables()
    }
}
