//! Settings: how each part of Vitrine declares, documents and validates the `vitrine.*` keys it
//! owns.
//!
//! A part owns a typed [`SettingGroup`]: a struct with its defaults, the list of its keys with
//! their meaning ([`SettingSpec`]), and an [`apply`](SettingGroup::apply) that parses and checks
//! one `SET key = value`. The engine holds one value of each group per session and routes every
//! `SET vitrine.*` to the group that [`owns`](SettingGroup::owns) the key, so that a key is
//! validated in one place and a typo fails loudly. This crate's groups are [`ModelSettings`]
//! (`vitrine.device`, `vitrine.dtype`, `vitrine.udf.*`, `vitrine.smolvlm.*`) and
//! [`crate::models::ModelChoices`] (`vitrine.model.<name>`).

use std::collections::BTreeMap;

use crate::runtime::batching::BatchSize;
use crate::runtime::placement::Placement;
use crate::smolvlm::sampling::Decoding;
use crate::ModelError;

/// One setting: its key, its default as `SET` would show it (empty when unset means "the model's
/// own"), and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    /// The key, e.g. `vitrine.udf.batch_size`; a family of keys ends in `<name>`
    /// (`vitrine.model.<name>`).
    pub key: &'static str,
    /// The default value.
    pub default: &'static str,
    /// What the setting does, for `SET` listings and error messages.
    pub doc: &'static str,
}

impl SettingSpec {
    /// Whether `key` is this setting, or one of its family.
    pub fn matches(&self, key: &str) -> bool {
        match self.key.strip_suffix("<name>") {
            Some(prefix) => key.len() > prefix.len() && key.starts_with(prefix),
            None => self.key == key,
        }
    }
}

/// A typed group of settings, owned by one part of Vitrine.
pub trait SettingGroup: Default + Clone + Send + Sync {
    /// Every key of the group, with its default and meaning.
    fn specs() -> &'static [SettingSpec];

    /// Whether `key` belongs to this group.
    fn owns(key: &str) -> bool {
        Self::specs().iter().any(|s| s.matches(key))
    }

    /// Applies `SET key = value` for one of the group's keys, refusing a value the key does not
    /// take (the group is left as it was).
    fn apply(&mut self, key: &str, value: &str) -> Result<(), ModelError>;

    /// The defaults with every pair of `settings` that the group owns applied over them.
    fn from_settings(settings: &BTreeMap<String, String>) -> Result<Self, ModelError> {
        let mut group = Self::default();
        for (key, value) in settings.iter().filter(|(k, _)| Self::owns(k)) {
            group.apply(key, value)?;
        }
        Ok(group)
    }
}

/// What a model function does with a row it cannot process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// NULL for the row; counted and reported at the end of the statement.
    Null,
    /// The statement fails, naming the row.
    Fail,
}

/// The settings the model functions read.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// `auto`, `f32`, `bf16`, `f16`.
    pub dtype: String,
    /// Rows per model batch, or `auto` (chosen for the device and the model).
    pub batch_size: BatchSize,
    /// What a failing row does.
    pub on_error: OnError,
    /// SmolVLM's first resize (fewer tiles when smaller), or the model's own setting.
    pub smolvlm_longest_edge: Option<u32>,
    /// SmolVLM's temperature: 0 decodes greedily; above, SmolVLM samples.
    pub smolvlm_temperature: f32,
    /// The nucleus SmolVLM keeps when sampling.
    pub smolvlm_top_p: f32,
    /// With a row's photo and prompt, seeds SmolVLM's draws when it samples.
    pub smolvlm_seed: u64,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            device: "auto".into(),
            dtype: "auto".into(),
            batch_size: BatchSize::Auto,
            on_error: OnError::Null,
            smolvlm_longest_edge: None,
            smolvlm_temperature: 0.0,
            smolvlm_top_p: 1.0,
            smolvlm_seed: 0,
        }
    }
}

const MODEL_SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: "vitrine.device",
        default: "auto",
        doc: "where models run: 'auto' (the first GPU when the build has CUDA and one is present, else the CPU), 'cpu', 'cuda' or 'cuda:N'",
    },
    SettingSpec {
        key: "vitrine.dtype",
        default: "auto",
        doc: "model precision: 'auto' (f32 on the CPU, bf16 on a GPU), 'f32', or on a GPU 'bf16' or 'f16'",
    },
    SettingSpec {
        key: "vitrine.udf.on_error",
        default: "null",
        doc: "what a model function does with a row it cannot process: 'null' (count and report) or 'fail'",
    },
    SettingSpec {
        key: "vitrine.udf.batch_size",
        default: "auto",
        doc: "rows per model batch: 'auto' (32 on the CPU; on a GPU as many as 80 % of its free memory holds, up to the model's best measured batch) or a positive integer",
    },
    SettingSpec {
        key: "vitrine.smolvlm.longest_edge",
        default: "",
        doc: "SmolVLM's first resize in pixels (512: one tile per photo, faster, less detail); the model's own setting when unset",
    },
    SettingSpec {
        key: "vitrine.smolvlm.temperature",
        default: "0",
        doc: "SmolVLM's decoding: 0 is greedy (the extraction contract's); above 0 it samples at that temperature",
    },
    SettingSpec {
        key: "vitrine.smolvlm.top_p",
        default: "1",
        doc: "when sampling, SmolVLM draws from the most likely tokens whose probabilities reach this share (0 < top_p <= 1)",
    },
    SettingSpec {
        key: "vitrine.smolvlm.seed",
        default: "0",
        doc: "when sampling, seeds each row's draws together with its photo and prompt, so a run repeats",
    },
];

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    key: &str,
    value: &str,
) -> Result<T, ModelError> {
    value
        .parse()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| {
            ModelError::Setting(format!("{key} must be a positive integer, got '{value}'"))
        })
}

impl SettingGroup for ModelSettings {
    fn specs() -> &'static [SettingSpec] {
        MODEL_SETTINGS
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), ModelError> {
        match key {
            "vitrine.device" => {
                Placement::parse(value, &self.dtype)?;
                self.device = value.to_string();
            }
            "vitrine.dtype" => {
                Placement::parse(&self.device, value)?;
                self.dtype = value.to_string();
            }
            "vitrine.udf.batch_size" => self.batch_size = BatchSize::parse(key, value)?,
            "vitrine.smolvlm.longest_edge" => {
                self.smolvlm_longest_edge = Some(positive(key, value)?);
            }
            "vitrine.smolvlm.temperature" | "vitrine.smolvlm.top_p" => {
                let number: f32 = value.parse().map_err(|_| {
                    ModelError::Setting(format!("{key} must be a number, got '{value}'"))
                })?;
                let (temperature, top_p) = if key == "vitrine.smolvlm.temperature" {
                    (number, self.smolvlm_top_p)
                } else {
                    (self.smolvlm_temperature, number)
                };
                Decoding::new(temperature, top_p)
                    .map_err(|e| ModelError::Setting(format!("{key}: {e}")))?;
                (self.smolvlm_temperature, self.smolvlm_top_p) = (temperature, top_p);
            }
            "vitrine.smolvlm.seed" => {
                self.smolvlm_seed = value.parse().map_err(|_| {
                    ModelError::Setting(format!(
                        "{key} must be a non-negative integer, got '{value}'"
                    ))
                })?;
            }
            "vitrine.udf.on_error" => {
                self.on_error = match value {
                    "null" => OnError::Null,
                    "fail" => OnError::Fail,
                    _ => {
                        return Err(ModelError::Setting(format!(
                            "{key} must be 'null' or 'fail', got '{value}'"
                        )))
                    }
                };
            }
            _ => {
                return Err(ModelError::Setting(format!(
                    "'{key}' is not a model setting"
                )))
            }
        }
        Ok(())
    }
}

impl ModelSettings {
    /// Rows the engine hands a model function at once: [`BatchSize::slice_rows`] on the device
    /// these settings choose.
    pub fn slice_rows(&self) -> usize {
        let device = Placement::parse(&self.device, &self.dtype)
            .map_or(candle_core::Device::Cpu, |p| p.device);
        self.batch_size.slice_rows(&device)
    }

    /// SmolVLM's decoding rule (the values were checked when set).
    pub fn smolvlm_decoding(&self) -> Decoding {
        Decoding::new(self.smolvlm_temperature, self.smolvlm_top_p).unwrap_or(Decoding::Greedy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_value_leaves_the_group_as_it_was() {
        let mut settings = ModelSettings::default();
        settings.apply("vitrine.udf.batch_size", "8").unwrap();
        assert!(settings.apply("vitrine.udf.batch_size", "0").is_err());
        assert!(settings.apply("vitrine.smolvlm.top_p", "1.5").is_err());
        assert_eq!(settings.batch_size, BatchSize::Rows(8));
        assert_eq!(settings.smolvlm_decoding(), Decoding::Greedy);
    }

    #[test]
    fn families_match_their_members_only() {
        let family = SettingSpec {
            key: "vitrine.model.<name>",
            default: "",
            doc: "",
        };
        assert!(family.matches("vitrine.model.clip"));
        assert!(!family.matches("vitrine.model."));
        assert!(ModelSettings::owns("vitrine.smolvlm.seed"));
        assert!(!ModelSettings::owns("vitrine.write.commit_rows"));
    }
}
