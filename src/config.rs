//! Configuration: one home for every setting, filled from command-line flags, the environment and
//! `SET vitrine.* = …` statements.

use std::collections::BTreeMap;

use crate::error::{Result, VitrineError};

/// The warehouse used when neither `--warehouse` nor `$VITRINE_WAREHOUSE` says otherwise.
pub const DEFAULT_WAREHOUSE: &str = "./warehouse";
/// The catalog a new session starts in.
pub const DEFAULT_CATALOG: &str = "main";
/// The schema a new session starts in.
pub const DEFAULT_SCHEMA: &str = "default";

/// How an engine is opened.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Warehouse root: a local path or an object-store URL.
    pub warehouse: String,
    /// Session settings given up front (`--model clip=…` becomes `vitrine.model.clip`).
    pub settings: BTreeMap<String, String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            warehouse: DEFAULT_WAREHOUSE.to_string(),
            settings: BTreeMap::new(),
        }
    }
}

impl EngineConfig {
    /// A configuration for the warehouse at `warehouse`.
    pub fn new(warehouse: impl Into<String>) -> Self {
        Self {
            warehouse: warehouse.into(),
            ..Self::default()
        }
    }
}

/// Settings under `vitrine.` that a session accepts, with their defaults and meaning. Model names
/// (`vitrine.model.<name>`) are open-ended and checked by the model registry.
pub const VITRINE_SETTINGS: &[(&str, &str, &str)] = &[
    ("vitrine.device", "auto", "where models run: 'auto' (the first GPU when the build has CUDA and one is present, else the CPU), 'cpu', 'cuda' or 'cuda:N'"),
    ("vitrine.dtype", "auto", "model precision: 'auto' (f32 on the CPU, bf16 on a GPU), 'f32', or on a GPU 'bf16' or 'f16'"),
    ("vitrine.udf.on_error", "null", "what a model function does with a row it cannot process: 'null' (count and report) or 'fail'"),
    ("vitrine.udf.batch_size", "32", "rows per model batch"),
    ("vitrine.smolvlm.longest_edge", "", "SmolVLM's first resize in pixels (512: one tile per photo, faster, less detail); the model's own setting when unset"),
    ("vitrine.write.commit_rows", "", "INSERT INTO a Lance table commits a version every this many rows instead of once at the end, so that a long statement stopped half-way (a failure, Ctrl-C) keeps the rows committed so far; unset: one commit, all or nothing"),
    ("vitrine.smolvlm.temperature", "0", "SmolVLM's decoding: 0 is greedy (the extraction contract's); above 0 it samples at that temperature"),
    ("vitrine.smolvlm.top_p", "1", "when sampling, SmolVLM draws from the most likely tokens whose probabilities reach this share (0 < top_p <= 1)"),
    ("vitrine.smolvlm.seed", "0", "when sampling, seeds each row's draws together with its photo and prompt, so a run repeats"),
    ("vitrine.progress", "auto", "progress bars on long statements: 'auto' (when stderr is a terminal), 'on' or 'off'"),
];

/// Checks that `key` is a `vitrine.` setting there is, so that a typo fails loudly.
pub fn known_vitrine_setting(key: &str) -> Result<()> {
    if key.starts_with("vitrine.model.") || VITRINE_SETTINGS.iter().any(|(k, _, _)| *k == key) {
        return Ok(());
    }
    Err(VitrineError::Plan(format!(
        "unknown setting '{key}': known settings are {} and vitrine.model.<name>",
        VITRINE_SETTINGS
            .iter()
            .map(|(k, _, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Checks a `SET` of a `vitrine.` key: known keys only, with a value they take.
pub fn validate_vitrine_setting(key: &str, value: &str) -> Result<()> {
    known_vitrine_setting(key)?;
    match VITRINE_SETTINGS.iter().find(|(k, _, _)| *k == key) {
        None => Ok(()),
        Some(("vitrine.udf.on_error", _, _)) if !matches!(value, "null" | "fail") => {
            Err(VitrineError::Plan(format!(
                "vitrine.udf.on_error must be 'null' or 'fail', got '{value}'"
            )))
        }
        Some(("vitrine.udf.batch_size", _, _))
            if value.parse::<usize>().map_or(true, |n| n == 0) =>
        {
            Err(VitrineError::Plan(format!(
                "vitrine.udf.batch_size must be a positive integer, got '{value}'"
            )))
        }
        Some(("vitrine.smolvlm.longest_edge", _, _))
            if value.parse::<u32>().map_or(true, |n| n == 0) =>
        {
            Err(VitrineError::Plan(format!(
                "vitrine.smolvlm.longest_edge must be a positive integer, got '{value}'"
            )))
        }
        Some(("vitrine.write.commit_rows", _, _))
            if value.parse::<usize>().map_or(true, |n| n == 0) =>
        {
            Err(VitrineError::Plan(format!(
                "vitrine.write.commit_rows must be a positive integer, got '{value}'"
            )))
        }
        Some(("vitrine.progress", _, _)) if !matches!(value, "auto" | "on" | "off") => {
            Err(VitrineError::Plan(format!(
                "vitrine.progress must be 'auto', 'on' or 'off', got '{value}'"
            )))
        }
        Some(_) => Ok(()),
    }
}
