//! Vitrine's SQL functions over models and embeddings.
//!
//! The engine never knows which model runs: it registers this crate's functions on its
//! DataFusion session through [`register`], handing over a [`FunctionContext`] that carries the
//! session's settings, file access and progress. The crate holds the SQL functions
//! ([`functions`]), the model runtime every model shares ([`runtime`]: finding files, device and
//! precision, one load per process), the layers the models share ([`nn`], [`cpu_ops`]), images
//! ([`image`]), CLIP ([`clip`]) and SmolVLM ([`smolvlm`]).

#![warn(missing_docs)]

pub mod clip;
pub mod context;
pub mod cpu_ops;
pub mod functions;
pub mod image;
pub mod nn;
pub mod runtime;
pub mod smolvlm;

use std::sync::Arc;

use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;

pub use context::{BlobReader, FunctionContext, LocalFiles, StatementReport};

/// The functions that run a model: slow per row, so the engine feeds them model-sized batches.
pub const MODEL_FUNCTIONS: &[&str] = &[
    "clip_text_embed",
    "clip_image_embed",
    "smolvlm_generate",
    "smolvlm_extract",
];

/// Registers every function of the crate; the model functions read `context`.
pub fn register(
    registry: &mut dyn FunctionRegistry,
    context: Arc<FunctionContext>,
) -> datafusion::error::Result<()> {
    use functions::{clip, vector};
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        vector::CosineSimilarity::new(),
    )))?;
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        vector::HybridEmbed::new(),
    )))?;
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        clip::ClipTextEmbed::new(Arc::clone(&context)),
    )))?;
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        clip::ClipImageEmbed::new(Arc::clone(&context)),
    )))?;
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        functions::smolvlm::SmolvlmGenerate::new(Arc::clone(&context)),
    )))?;
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        functions::smolvlm::SmolvlmExtract::new(context),
    )))?;
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        functions::smolvlm::SmolvlmVocabulary::new(),
    )))?;
    Ok(())
}
