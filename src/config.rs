//! Configuration: how an engine is opened ([`EngineConfig`]) and a session's settings
//! ([`SessionSettings`]), filled from command-line flags, the environment and `SET key = value`.
//!
//! Each part owns its `vitrine.*` keys as a typed [`SettingGroup`]: the engine's are
//! [`CoreSettings`] (here), the model functions' are [`ModelSettings`] and [`ModelChoices`] (in
//! the model crate).
//! [`SessionSettings`] routes every `SET` to the group that owns the key, which validates it.

use std::collections::BTreeMap;

use datafusion::arrow::array::timezone::Tz;
use vitrine_udfs::models::ModelChoices;
use vitrine_udfs::settings::{ModelSettings, SettingGroup, SettingSpec};
use vitrine_udfs::ModelError;

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
    /// Settings every session starts with and `RESET` goes back to (`--model clip=…` becomes
    /// `vitrine.model.clip`).
    pub settings: BTreeMap<String, String>,
    /// `vitrine worker` processes that run the queries' plans (`--workers`); none: this process
    /// runs them.
    pub workers: Option<crate::cluster::Workers>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            warehouse: DEFAULT_WAREHOUSE.to_string(),
            settings: BTreeMap::new(),
            workers: None,
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

/// The engine's own settings.
#[derive(Debug, Clone, Default)]
pub struct CoreSettings {
    /// `vitrine.write.commit_rows`: `INSERT INTO` commits a version every this many rows; `None`
    /// commits once, all or nothing.
    pub commit_rows: Option<usize>,
    /// `spark.sql.session.timeZone` (or `SET TIME ZONE`): the zone timestamps are shown in and
    /// zone-less timestamp text is read in; `None` is UTC, Databricks' default.
    time_zone: Option<String>,
    /// `vitrine.seed`: the seed of every statement's random functions; `None` draws one per
    /// statement (recorded in `system.query.history`).
    pub seed: Option<u64>,
    /// `vitrine.clock`: the instant `now()` and `current_timestamp()` give in every statement;
    /// `None` gives each statement its start time.
    pub clock: Option<chrono::DateTime<chrono::Utc>>,
}

/// The largest seed: seeds are recorded as SQL `BIGINT`s.
pub const MAX_SEED: u64 = i64::MAX as u64;

/// The session time zone's key, as Spark names it.
pub const TIME_ZONE_KEY: &str = "spark.sql.session.timeZone";

const CORE_SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: "vitrine.write.commit_rows",
        default: "",
        doc: "INSERT INTO a Lance or Delta table commits a version every this many rows instead of once at the end, so that a long statement stopped half-way (a failure, Ctrl-C) keeps the rows committed so far; unset: one commit, all or nothing",
    },
    SettingSpec {
        key: TIME_ZONE_KEY,
        default: "UTC",
        doc: "The session time zone (also SET TIME ZONE): TIMESTAMP values are instants, shown in this zone, and timestamp text without an offset is read in it; a region ('America/Los_Angeles') or an offset ('+05:30')",
    },
    SettingSpec {
        key: "vitrine.seed",
        default: "",
        doc: "the seed of rand() in every statement, so that a run repeats; unset: each statement draws one, recorded in system.query.history.seed",
    },
    SettingSpec {
        key: "vitrine.clock",
        default: "",
        doc: "the instant now(), current_timestamp() and current_date() give in every statement (RFC 3339, e.g. '2026-01-01T00:00:00Z'), so that a run repeats; unset: each statement's start time, recorded in system.query.history.start_time",
    },
];

impl CoreSettings {
    /// The session time zone, as Arrow and DataFusion name it.
    pub fn time_zone(&self) -> &str {
        self.time_zone.as_deref().unwrap_or("UTC")
    }
}

impl SettingGroup for CoreSettings {
    fn specs() -> &'static [SettingSpec] {
        CORE_SETTINGS
    }

    fn apply(&mut self, key: &str, value: &str) -> std::result::Result<(), ModelError> {
        match key {
            "vitrine.write.commit_rows" => {
                self.commit_rows =
                    Some(value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        ModelError::Setting(format!(
                            "{key} must be a positive integer, got '{value}'"
                        ))
                    })?);
                Ok(())
            }
            TIME_ZONE_KEY => {
                let zone = match value.trim() {
                    "Z" | "z" => "UTC",
                    zone => zone,
                };
                zone.parse::<Tz>().map_err(|_| {
                    ModelError::Setting(format!(
                        "{key}: '{value}' is not a time zone; give a region such as \
                         'America/Los_Angeles' or 'UTC', or an offset such as '+05:30'"
                    ))
                })?;
                self.time_zone = Some(zone.to_string());
                Ok(())
            }
            "vitrine.clock" => {
                let instant = chrono::DateTime::parse_from_rfc3339(value.trim()).map_err(|e| {
                    ModelError::Setting(format!(
                        "{key} must be an RFC 3339 instant such as '2026-01-01T00:00:00Z', \
                         got '{value}': {e}"
                    ))
                })?;
                self.clock = Some(instant.with_timezone(&chrono::Utc));
                Ok(())
            }
            "vitrine.seed" => {
                self.seed = Some(
                    value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|s| *s <= MAX_SEED)
                        .ok_or_else(|| {
                            ModelError::Setting(format!(
                                "{key} must be an integer from 0 to {MAX_SEED}, got '{value}'"
                            ))
                        })?,
                );
                Ok(())
            }
            _ => Err(ModelError::Setting(format!(
                "'{key}' is not an engine setting"
            ))),
        }
    }
}

/// One session's settings: the values `SET` gave (what `SET` lists), and their typed form for
/// each group. Keys outside `vitrine.` and `datafusion.` (`spark.*`, say) are kept and shown.
#[derive(Debug, Clone, Default)]
pub struct SessionSettings {
    values: BTreeMap<String, String>,
    /// The engine's settings.
    pub core: CoreSettings,
    /// The model functions' settings.
    pub models: ModelSettings,
    /// The model each kind loads (`vitrine.model.<name>`).
    pub choices: ModelChoices,
}

impl SessionSettings {
    /// The defaults with `values` set over them, each checked.
    pub fn from_values(values: &BTreeMap<String, String>) -> Result<Self> {
        let mut settings = Self::default();
        for (key, value) in values {
            settings.set(key, value)?;
        }
        Ok(settings)
    }

    /// `SET key = value`: checked by the group that owns `key`; an unknown `vitrine.` key fails.
    /// On failure the settings are as they were.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let checked = if CoreSettings::owns(key) {
            self.core.apply(key, value)
        } else if ModelSettings::owns(key) {
            self.models.apply(key, value)
        } else if ModelChoices::owns(key) {
            self.choices.apply(key, value)
        } else if key.starts_with("vitrine.") {
            return Err(unknown(key));
        } else {
            Ok(())
        };
        checked.map_err(|e| VitrineError::Plan(e.to_string()))?;
        self.values.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// The value `SET` gave `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Every value `SET` gave, by key.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// `RESET key`, or every key: back to `startup`'s value, or the default.
    pub fn reset(&mut self, key: Option<&str>, startup: &BTreeMap<String, String>) -> Result<()> {
        let mut values = self.values.clone();
        match key {
            Some(key) => {
                if key.starts_with("vitrine.") && !Self::is_known(key) {
                    return Err(unknown(key));
                }
                match startup.get(key) {
                    Some(value) => values.insert(key.to_string(), value.clone()),
                    None => values.remove(key),
                };
            }
            None => values.clone_from(startup),
        }
        *self = Self::from_values(&values)?;
        Ok(())
    }

    fn is_known(key: &str) -> bool {
        CoreSettings::owns(key) || ModelSettings::owns(key) || ModelChoices::owns(key)
    }
}

/// Every setting Vitrine reads (its `vitrine.` keys and Spark's session time zone), with its
/// default and meaning.
pub fn vitrine_settings() -> impl Iterator<Item = &'static SettingSpec> {
    CoreSettings::specs()
        .iter()
        .chain(ModelSettings::specs())
        .chain(ModelChoices::specs())
}

fn unknown(key: &str) -> VitrineError {
    let known: Vec<&str> = vitrine_settings().map(|s| s.key).collect();
    VitrineError::Plan(format!(
        "unknown setting '{key}': known settings are {}",
        known.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_udfs::runtime::batching::BatchSize;

    #[test]
    fn each_key_is_checked_by_its_owner_and_a_typo_fails() {
        let mut settings = SessionSettings::default();
        settings.set("vitrine.write.commit_rows", "64").unwrap();
        settings.set("vitrine.udf.batch_size", "8").unwrap();
        settings.set("spark.sql.shuffle.partitions", "4").unwrap();
        assert_eq!(settings.core.commit_rows, Some(64));
        assert_eq!(settings.models.batch_size, BatchSize::Rows(8));
        assert!(settings.set("vitrine.write.commit_rows", "0").is_err());
        let typo = settings.set("vitrine.udf.batchsize", "8").unwrap_err();
        assert!(
            typo.to_string().contains("vitrine.udf.batch_size"),
            "{typo}"
        );
        assert_eq!(settings.get("vitrine.write.commit_rows"), Some("64"));
    }

    #[test]
    fn reset_goes_back_to_the_startup_value_or_the_default() {
        let startup = BTreeMap::from([("vitrine.udf.batch_size".to_string(), "4".to_string())]);
        let mut settings = SessionSettings::from_values(&startup).unwrap();
        settings.set("vitrine.udf.batch_size", "16").unwrap();
        settings.set("vitrine.write.commit_rows", "2").unwrap();
        settings
            .reset(Some("vitrine.udf.batch_size"), &startup)
            .unwrap();
        assert_eq!(settings.models.batch_size, BatchSize::Rows(4));
        assert_eq!(settings.core.commit_rows, Some(2));
        settings.reset(None, &startup).unwrap();
        assert_eq!(settings.core.commit_rows, None);
        assert_eq!(settings.get("vitrine.udf.batch_size"), Some("4"));
    }
}
