//! Vitrine's SQL functions over models and embeddings.
//!
//! The engine never knows which model runs: it registers this crate's functions on each of its
//! DataFusion sessions through [`functions()`], handing over a [`FunctionContext`] that carries the
//! session's settings, file access and progress. The crate holds the model registry
//! ([`models`]: the kinds, [`kind`]: what a kind is), the settings it owns ([`settings`]),
//! the model runtime every model shares ([`runtime`]: finding files, device and precision, one
//! load per process), the layers the models share ([`nn`], [`attention`], [`cpu_ops`] and the
//! fused linear layers of `dense`), images ([`image`]), the
//! functions that need no model and the row plumbing of those that do ([`mod@functions`]), and one
//! folder per model kind: CLIP ([`clip`]), SmolVLM ([`smolvlm`]) and the weightless hashed bag of
//! words ([`hashing`]). Its errors are
//! [`ModelError`].

#![warn(missing_docs)]

pub mod attention;
pub mod clip;
pub mod context;
pub mod cpu_ops;
pub mod dense;
mod error;
pub mod functions;
#[cfg(feature = "cuda")]
mod gpu;
pub mod hashing;
pub mod image;
pub mod kind;
pub mod models;
pub mod nn;
pub mod runtime;
pub mod settings;
pub mod smolvlm;
pub mod train;

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

pub use context::{BlobReader, FunctionContext, LocalFiles, StatementReport};
pub use error::ModelError;

/// Every SQL function of the crate: those that need no model, then each model kind's (which read
/// their session through `context`).
pub fn functions(context: &Arc<FunctionContext>) -> Vec<kind::SqlFunction> {
    use functions::vector;
    let mut all = vec![
        kind::SqlFunction {
            udf: ScalarUDF::new_from_impl(vector::CosineSimilarity::new()),
            runs_model: false,
        },
        kind::SqlFunction {
            udf: ScalarUDF::new_from_impl(vector::HybridEmbed::new()),
            runs_model: false,
        },
    ];
    for kind in models::kinds() {
        all.extend(kind.functions(context));
    }
    all
}
