//! The model registry: every kind of model Vitrine runs, and which one each session chose.
//!
//! A kind ([`ModelKind`]) declares its name (`vitrine.model.<name>`, `embedding_model =>
//! '<name>'`), its SQL functions and, where it has one, the function that embeds a query text
//! (what `vector_search(query_text => …)` calls); its network says which files it loads and how
//! ([`crate::context::LoadedModel`]), once per process ([`crate::runtime::registry`]). The engine
//! registers every kind's functions on each session and asks the registry which function embeds
//! text for an index; it never names a model itself. [`ModelChoices`] holds the
//! `vitrine.model.<name>` settings, checked against the kinds.
//!
//! Adding a kind is adding its folder (network, `functions.rs`, a `ModelKind`) and one line in
//! [`kinds`].

use std::collections::BTreeMap;

use crate::kind::ModelKind;
use crate::settings::{SettingGroup, SettingSpec};
use crate::{clip, hashing, smolvlm, ModelError};

/// Every kind of model, in the order their functions are registered.
pub fn kinds() -> &'static [&'static dyn ModelKind] {
    &[
        &clip::ClipKind,
        &smolvlm::SmolVlmKind,
        &hashing::HashingKind,
    ]
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

/// The function embedding photos for vectors made by model kind `name`.
pub fn image_embedding_function(name: &str) -> Result<&'static str, ModelError> {
    kind(name)?
        .image_embedding_function()
        .ok_or_else(|| ModelError::Setting(format!("model kind '{name}' does not embed photos")))
}

fn names() -> Vec<&'static str> {
    kinds().iter().map(|k| k.name()).collect()
}

/// The `vitrine.model.<name>` settings: the folder or hub id each kind loads instead of its
/// default.
#[derive(Debug, Clone, Default)]
pub struct ModelChoices {
    chosen: BTreeMap<String, String>,
}

const MODEL_CHOICES: &[SettingSpec] = &[SettingSpec {
    key: "vitrine.model.<name>",
    default: "",
    doc: "the folder or Hugging Face hub id (id@revision pins one) of model kind <name>; each kind has its default",
}];

impl SettingGroup for ModelChoices {
    fn specs() -> &'static [SettingSpec] {
        MODEL_CHOICES
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), ModelError> {
        let name = key.strip_prefix("vitrine.model.").unwrap_or(key);
        kind(name)?;
        self.chosen.insert(name.to_string(), value.to_string());
        Ok(())
    }
}

impl ModelChoices {
    /// Kind name → folder or hub id, for the kinds chosen.
    pub fn chosen(&self) -> &BTreeMap<String, String> {
        &self.chosen
    }

    /// The model a kind's functions use: the one chosen, else the kind's default; none for an
    /// unknown kind or one without weights.
    pub fn model(&self, kind: &str) -> Option<String> {
        self.chosen.get(kind).cloned().or_else(|| {
            let kind = self::kind(kind).ok()?;
            kind.default_model().map(str::to_string)
        })
    }
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
        let mut choices = ModelChoices::default();
        assert_eq!(
            choices.model("clip").as_deref(),
            Some("openai/clip-vit-base-patch32")
        );
        assert_eq!(choices.model("hashing"), None, "no weights");
        choices.apply("vitrine.model.clip", "/models/clip").unwrap();
        assert_eq!(choices.model("clip").as_deref(), Some("/models/clip"));
        assert!(text_embedding_function("smolvlm").is_err());
        let unknown = kind("bert").err().expect("no kind 'bert'").to_string();
        assert!(unknown.contains("clip, smolvlm"), "{unknown}");
        let mut choices = ModelChoices::default();
        assert!(choices.apply("vitrine.model.clp", "/m").is_err());
        choices.apply("vitrine.model.clip", "/m").unwrap();
        assert_eq!(choices.chosen().get("clip").map(String::as_str), Some("/m"));
    }
}
