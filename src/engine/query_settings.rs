//! The session settings a query carries to the workers: every setting of the coordinator's
//! session (`vitrine.*`, the session time zone) but the device (a worker runs models on its
//! own), and the running statement's seed, so that `rand()`, the model functions and time zone
//! conversions behave on a worker as they would on the coordinator.
//!
//! They travel as a DataFusion config extension, which `datafusion-distributed` sends as request
//! headers with every task and a worker reads back ([`QuerySettings::from_headers`]).

use std::any::Any;
use std::collections::BTreeMap;

use datafusion::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionConfig;
use datafusion_distributed::DistributedExt;
use http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::config::SessionSettings;

/// The one entry the settings travel in: header names are case-insensitive and header values
/// plain ASCII, so the settings go as one hex-encoded JSON value.
const ENTRY: &str = "query";

/// The settings that stay with each process: where it runs models.
const LOCAL_TO_EACH_PROCESS: &[&str] = &["vitrine.device"];

/// A query's session settings (`vitrine.*`, the session time zone) and its statement's seed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuerySettings {
    settings: BTreeMap<String, String>,
    seed: Option<u64>,
}

impl QuerySettings {
    /// The settings `settings` holds, for a statement drawing from `seed`.
    pub fn new(settings: &SessionSettings, seed: u64) -> Self {
        Self {
            settings: settings
                .values()
                .iter()
                .filter(|(key, _)| !LOCAL_TO_EACH_PROCESS.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            seed: Some(seed),
        }
    }

    /// The settings a worker's task was sent, read from its request headers (none when the
    /// coordinator sent none).
    pub fn from_headers(headers: &HeaderMap) -> DFResult<Self> {
        let mut config = SessionConfig::new();
        config.set_distributed_option_extension_from_headers::<Self>(headers)?;
        Ok(config
            .options()
            .extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_default())
    }

    /// Makes sessions built by `builder` send their query settings with every task (these ones
    /// until [`replace_in`](Self::replace_in) changes them).
    pub fn send_from(self, builder: SessionStateBuilder) -> SessionStateBuilder {
        builder.with_distributed_option_extension(self)
    }

    /// Replaces the settings the queries of `config` send (a config set up by
    /// [`send_from`](Self::send_from)).
    pub fn replace_in(self, config: &mut SessionConfig) {
        config.options_mut().extensions.insert(self);
    }

    /// The statement's seed, if one was sent.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// `settings` (a worker's own) with the settings sent applied over them: a key this worker
    /// does not know fails, naming it.
    pub fn apply_to(&self, settings: &mut SessionSettings) -> crate::error::Result<()> {
        for (key, value) in &self.settings {
            settings.set(key, value)?;
        }
        Ok(())
    }

    /// The settings as the entry's value: JSON, hex-encoded.
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("settings serialise");
        json.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The settings from an entry's value.
    fn decode(value: &str) -> DFResult<Self> {
        let invalid = |why: String| {
            DataFusionError::Configuration(format!("the query settings sent to a worker: {why}"))
        };
        let bytes = (0..value.len())
            .step_by(2)
            .map(|i| {
                value
                    .get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| invalid(format!("not hex at {i}")))
            })
            .collect::<DFResult<Vec<u8>>>()?;
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))
    }
}

impl ConfigExtension for QuerySettings {
    const PREFIX: &'static str = "vitrine";
}

impl ExtensionOptions for QuerySettings {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    fn set(&mut self, key: &str, value: &str) -> DFResult<()> {
        if key != ENTRY {
            return Err(DataFusionError::Configuration(format!(
                "vitrine.{key}: settings travel to workers as vitrine.{ENTRY}"
            )));
        }
        *self = Self::decode(value)?;
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        vec![ConfigEntry {
            key: ENTRY.to_string(),
            value: Some(self.encode()),
            description: "the session settings and statement seed sent to the workers",
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitrine_udfs::runtime::batching::BatchSize;

    #[test]
    fn settings_travel_without_the_device_and_come_back_as_they_were() {
        let mut settings = SessionSettings::default();
        settings
            .set("vitrine.model.clip", "/models/MyClip é")
            .unwrap();
        settings.set("vitrine.udf.batch_size", "7").unwrap();
        settings.set("vitrine.device", "cpu").unwrap();
        settings
            .set("spark.sql.session.timeZone", "Europe/Paris")
            .unwrap();
        let sent = QuerySettings::new(&settings, 42);

        // What datafusion-distributed puts in a task's headers (names are lowercased).
        let mut headers = HeaderMap::new();
        for entry in sent.entries() {
            let name = format!("x-datafusion-distributed-config-vitrine.{}", entry.key);
            headers.insert(
                http::HeaderName::from_bytes(name.to_lowercase().as_bytes()).unwrap(),
                entry.value.unwrap().parse().unwrap(),
            );
        }
        let received = QuerySettings::from_headers(&headers).unwrap();
        assert_eq!(received, sent);
        assert_eq!(received.seed(), Some(42));
        let mut on_worker = SessionSettings::default();
        received.apply_to(&mut on_worker).unwrap();
        assert_eq!(on_worker.models.batch_size, BatchSize::Rows(7));
        assert_eq!(on_worker.models.device, "auto");
        assert_eq!(on_worker.core.time_zone(), "Europe/Paris");
        assert_eq!(
            on_worker
                .values()
                .get("vitrine.model.clip")
                .map(String::as_str),
            Some("/models/MyClip é")
        );
        assert!(QuerySettings::decode("7b2").is_err());
    }
}
