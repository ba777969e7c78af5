//! What a kind of model is to the engine ([`ModelKind`]): its name, its SQL functions and, where
//! it has one, the function that embeds a query text. How its network loads is
//! [`crate::context::LoadedModel`]; the list of kinds is [`crate::models`].

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

use crate::context::FunctionContext;
use crate::train::{TrainingJob, TrainingSummary};
use crate::ModelError;

/// One SQL function of a model kind.
pub struct SqlFunction {
    /// The function.
    pub udf: ScalarUDF,
    /// Whether it runs the model (slow per row): the engine then feeds it batches of
    /// `vitrine.udf.batch_size` rows.
    pub runs_model: bool,
}

/// A kind of model: its name and SQL functions.
pub trait ModelKind: Send + Sync {
    /// The kind's name, as `vitrine.model.<name>` and an index's `embedding_model` give it.
    fn name(&self) -> &'static str;

    /// The kind's SQL functions, each reading its session's settings, files and report through
    /// `context`.
    fn functions(&self, context: &Arc<FunctionContext>) -> Vec<SqlFunction>;

    /// The SQL function that embeds a text into the space of this kind's vectors (one `STRING`
    /// argument), if the kind has one.
    fn text_embedding_function(&self) -> Option<&'static str> {
        None
    }

    /// The function embedding photos into the space of [`Self::text_embedding_function`]'s
    /// vectors, where the kind has one.
    fn image_embedding_function(&self) -> Option<&'static str> {
        None
    }

    /// The model used when `vitrine.model.<name>` names none; none for a kind without weights.
    fn default_model(&self) -> Option<&'static str> {
        None
    }

    /// The files a model folder of this kind holds besides its weights.
    fn files(&self) -> &'static [&'static str] {
        &[]
    }

    /// Trains a model of this kind (`CREATE MODEL … OPTIONS (model_type = '<name>', …)`) and
    /// writes it into `job.output` in the layout the kind loads.
    fn train(&self, job: TrainingJob<'_>) -> Result<TrainingSummary, ModelError> {
        let _ = job;
        Err(ModelError::Config(format!(
            "model_type '{}' cannot be trained",
            self.name()
        )))
    }
}
