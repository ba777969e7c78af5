//! The session settings a query carries to the workers: every `vitrine.*` setting of the
//! coordinator's session but the device (a worker runs models on its own), and the running
//! statement's seed, so that `rand()` and the model functions behave on a worker as they would on
//! the coordinator.
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

use crate::config::SessionSettings;

/// The key under which the statement's seed travels (not a setting: it is drawn per statement).
const STATEMENT_SEED: &str = "statement_seed";

/// The settings that stay with each process: where it runs models.
const LOCAL_TO_EACH_PROCESS: &[&str] = &["vitrine.device"];

/// A query's `vitrine.*` settings (keys without their `vitrine.` prefix) and its statement seed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerySettings {
    values: BTreeMap<String, String>,
}

impl QuerySettings {
    /// The settings `settings` holds, for a statement drawing from `seed`.
    pub fn new(settings: &SessionSettings, seed: u64) -> Self {
        let mut values: BTreeMap<String, String> = settings
            .values()
            .iter()
            .filter(|(key, _)| !LOCAL_TO_EACH_PROCESS.contains(&key.as_str()))
            .filter_map(|(key, value)| {
                let key = key.strip_prefix("vitrine.")?;
                Some((key.to_string(), value.clone()))
            })
            .collect();
        values.insert(STATEMENT_SEED.to_string(), seed.to_string());
        Self { values }
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
        self.values.get(STATEMENT_SEED)?.parse().ok()
    }

    /// `settings` (a worker's own) with the settings sent applied over them: a key this worker
    /// does not know fails, naming it.
    pub fn apply_to(&self, settings: &mut SessionSettings) -> crate::error::Result<()> {
        for (key, value) in self.values.iter().filter(|(k, _)| *k != STATEMENT_SEED) {
            settings.set(&format!("vitrine.{key}"), value)?;
        }
        Ok(())
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
        if key.is_empty() {
            return Err(DataFusionError::Configuration(
                "a vitrine setting needs a name".into(),
            ));
        }
        self.values.insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        self.values
            .iter()
            .map(|(key, value)| ConfigEntry {
                key: key.clone(),
                value: Some(value.clone()),
                description: "a vitrine setting sent to the workers",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_travel_without_the_device_and_come_back_as_they_were() {
        let mut settings = SessionSettings::default();
        settings.set("vitrine.model.clip", "/models/clip").unwrap();
        settings.set("vitrine.udf.batch_size", "7").unwrap();
        settings.set("vitrine.device", "cuda:1").unwrap();
        let sent = QuerySettings::new(&settings, 42);

        // What datafusion-distributed puts in a task's headers.
        let mut headers = HeaderMap::new();
        for entry in sent.entries() {
            let name = format!("x-datafusion-distributed-config-vitrine.{}", entry.key);
            headers.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                entry.value.unwrap().parse().unwrap(),
            );
        }
        let received = QuerySettings::from_headers(&headers).unwrap();
        assert_eq!(received, sent);
        assert_eq!(received.seed(), Some(42));
        let mut on_worker = SessionSettings::default();
        on_worker.set("vitrine.device", "cpu").unwrap();
        received.apply_to(&mut on_worker).unwrap();
        assert_eq!(on_worker.models.batch_size, 7);
        assert_eq!(on_worker.models.device, "cpu");
        assert_eq!(
            on_worker
                .values()
                .get("vitrine.model.clip")
                .map(String::as_str),
            Some("/models/clip")
        );
    }
}
