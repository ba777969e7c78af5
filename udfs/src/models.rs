//! The model registry: every kind of model Vitrine runs, and what the engine may know of it.
//!
//! A kind ([`ModelKind`]) declares its name (`vitrine.model.<name>`, `embedding_model =>
//! '<name>'`), the model used by default, the files its folder holds, its SQL functions and,
//! where it has one, the function that embeds a query text (what `vector_search(query_text =>
//! …)` calls). The engine registers every kind's functions on each session and asks the registry
//! which function embeds text for an index; it never names a model itself. A kind's network
//! loads through [`LoadedModel`], once per process ([`crate::runtime::registry`]).
//!
//! Adding a kind is adding its folder (network, `functions.rs`, a `ModelKind`) and one line in
//! [`kinds`].

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;

use crate::context::FunctionContext;
use crate::runtime::placement::Placement;
use crate::runtime::source::ModelSource;
use crate::{clip, smolvlm, ModelError};

/// One SQL function of a model kind.
pub struct SqlFunction {
    /// The function.
    pub udf: ScalarUDF,
    /// Whether it runs the model (slow per row): the engine then feeds it batches of
    /// `vitrine.udf.batch_size` rows.
    pub runs_model: bool,
}

/// A kind of model: its name, files and SQL functions.
pub trait ModelKind: Send + Sync {
    /// The kind's name, as `vitrine.model.<name>` and an index's `embedding_model` give it.
    fn name(&self) -> &'static str;

    /// The folder or hub id used when `vitrine.model.<name>` is not set.
    fn default_model(&self) -> &'static str;

    /// The files a model folder holds besides its weights.
    fn files(&self) -> &'static [&'static str];

    /// The kind's SQL functions, each reading its session's settings, files and report through
    /// `context`.
    fn functions(&self, context: &Arc<FunctionContext>) -> Vec<SqlFunction>;

    /// The SQL function that embeds a text into the space of this kind's vectors (one `STRING`
    /// argument), if the kind has one.
    fn text_embedding_function(&self) -> Option<&'static str> {
        None
    }
}

/// A model network that a kind loads from its folder.
pub trait LoadedModel: std::any::Any + Send + Sync + Sized {
    /// The kind this network belongs to.
    fn kind() -> &'static dyn ModelKind;

    /// Loads the network from `source` onto `placement`.
    fn load(source: &ModelSource, placement: Placement) -> Result<Self, ModelError>;
}

/// Every kind of model, in the order their functions are registered.
pub fn kinds() -> &'static [&'static dyn ModelKind] {
    &[&clip::ClipKind, &smolvlm::SmolVlmKind]
}

/// The kind called `name`.
pub fn kind(name: &str) -> Result<&'static dyn ModelKind, ModelError> {
    kinds()
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .ok_or_else(|| {
            ModelError::Setting(format!(
                "unknown model kind '{name}': the kinds are {}",
                names().join(", ")
            ))
        })
}

/// The function embedding query texts for vectors made by model kind `name`.
pub fn text_embedding_function(name: &str) -> Result<&'static str, ModelError> {
    kind(name)?.text_embedding_function().ok_or_else(|| {
        let embedders: Vec<&str> = kinds()
            .iter()
            .filter(|k| k.text_embedding_function().is_some())
            .map(|k| k.name())
            .collect();
        ModelError::Setting(format!(
            "model kind '{name}' does not embed texts; those that do: {}",
            embedders.join(", ")
        ))
    })
}

fn names() -> Vec<&'static str> {
    kinds().iter().map(|k| k.name()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_distinct_names_and_clip_embeds_texts() {
        let mut names = names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), kinds().len());
        assert_eq!(text_embedding_function("clip").unwrap(), "clip_text_embed");
        assert!(text_embedding_function("smolvlm").is_err());
        let unknown = kind("bert").err().expect("no kind 'bert'").to_string();
        assert!(unknown.contains("clip, smolvlm"), "{unknown}");
    }
}
