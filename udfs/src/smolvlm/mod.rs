//! SmolVLM (`Idefics3ForConditionalGeneration`): its image processor ([`processor`]), prompts
//! ([`prompt`]), image side ([`vision`]: SigLIP tower and connector) and text side ([`text`]:
//! Llama decoder with a key/value cache), each checked against transformers, and [`model`]
//! tying them to a checkpoint folder with batched generation ([`decoding`]: the loop), its
//! tokens chosen by [`sampling`]; [`extract`] is the attribute-extraction contract (prompt and
//! reply parsing).

pub mod decoding;
pub mod extract;
pub mod functions;
pub mod model;
pub mod processor;
pub mod prompt;
mod rotary;
pub mod sampling;
pub mod text;
pub mod train;
pub mod vision;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

use crate::context::{FunctionContext, LoadedModel};
use crate::kind::{ModelKind, SqlFunction};
use crate::runtime::placement::Placement;
use crate::runtime::source::ModelSource;
use crate::train::{TrainingJob, TrainingSummary};
use crate::ModelError;

/// The SmolVLM model kind: `vitrine.model.smolvlm`, `smolvlm_generate`, `smolvlm_extract` and
/// `smolvlm_vocabulary`.
pub struct SmolVlmKind;

impl ModelKind for SmolVlmKind {
    fn name(&self) -> &'static str {
        <model::SmolVlm as LoadedModel>::KIND
    }

    fn default_model(&self) -> Option<&'static str> {
        Some(<model::SmolVlm as LoadedModel>::DEFAULT_MODEL)
    }

    fn files(&self) -> &'static [&'static str] {
        <model::SmolVlm as LoadedModel>::FILES
    }

    fn functions(&self, context: &Arc<FunctionContext>) -> Vec<SqlFunction> {
        vec![
            SqlFunction {
                udf: ScalarUDF::new_from_impl(functions::SmolvlmGenerate::new(context.clone())),
                runs_model: true,
            },
            SqlFunction {
                udf: ScalarUDF::new_from_impl(functions::SmolvlmExtract::new(context.clone())),
                runs_model: true,
            },
            SqlFunction {
                udf: ScalarUDF::new_from_impl(functions::SmolvlmVocabulary::new()),
                runs_model: false,
            },
        ]
    }

    fn train(&self, job: TrainingJob<'_>) -> Result<TrainingSummary, ModelError> {
        train::train(job)
    }
}

impl LoadedModel for model::SmolVlm {
    const KIND: &'static str = "smolvlm";
    const DEFAULT_MODEL: &'static str = "HuggingFaceTB/SmolVLM-256M-Instruct";
    const FILES: &'static [&'static str] = model::SMOLVLM_FILES;

    fn load(source: &ModelSource, placement: Placement) -> Result<Self, ModelError> {
        model::SmolVlm::load(source, placement)
    }
}
