//! Vitrine's SQL functions over embeddings and, later, models.
//!
//! The engine never knows which model runs: it registers this crate's functions on its
//! DataFusion session through [`register`]. Today the crate holds the vector functions the
//! embedding phase needs ([`vector`]): `cosine_similarity` and `hybrid_embed`.

#![warn(missing_docs)]

pub mod vector;

use std::sync::Arc;

use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;

/// Registers every function of the crate.
pub fn register(registry: &mut dyn FunctionRegistry) -> datafusion::error::Result<()> {
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        vector::CosineSimilarity::new(),
    )))?;
    registry.register_udf(Arc::new(ScalarUDF::new_from_impl(
        vector::HybridEmbed::new(),
    )))?;
    Ok(())
}
