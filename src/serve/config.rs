//! `vitrine serve`'s settings: defaults that serve the plan's indexes, a TOML file
//! (`--config`) over them, and flags over both. `POST /admin/reload` and SIGHUP read the file
//! again (the address and the event log's folder stay as they started).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::variant::Variant;
use crate::error::{Result, ResultExt, VitrineError};

/// Everything `vitrine serve` is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Where to listen; loopback unless told otherwise.
    pub addr: SocketAddr,
    /// A bearer token the admin and event endpoints require, when set (or
    /// `VITRINE_SERVE_TOKEN`).
    pub token: Option<String>,
    /// Seconds between checks of the CONTINUOUS vector indexes' sources.
    pub sync_interval_s: f64,
    /// Which index answers which search, and the A/B test.
    pub search: SearchConfig,
    /// The event log.
    pub events: EventsConfig,
    /// What a request may be.
    pub limits: Limits,
}

/// Which index answers each kind of search, and for whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Whether users are split between the variants; when off, everyone gets `rollout`.
    pub ab_test: bool,
    /// The share of users (0–100) sent to the enriched variant; at 50 the plan's rule (an even
    /// md5 is enriched).
    pub enriched_percent: f64,
    /// The variant everyone gets when the test is off (the plan's phase 6: enriched).
    pub rollout: Variant,
    /// The index text searches of the baseline variant use.
    pub baseline_index: String,
    /// The index text searches of the enriched variant use.
    pub enriched_index: String,
    /// The index image searches use.
    pub image_index: String,
    /// The table product pages and photos are read from.
    pub products_table: String,
    /// Concurrent text queries embedded in one model call, at most.
    pub embed_batch: usize,
    /// Text model calls running at once, at most (default: the cores).
    pub embed_calls: usize,
    /// How long the first query of a batch waits for others, in milliseconds.
    pub embed_wait_ms: u64,
    /// A batch waits longer after long calls: up to the last call's time divided by this (the
    /// clients the last call answered then join the next); 0 keeps the wait at `embed_wait_ms`.
    pub embed_wait_share: u32,
    /// Query embeddings kept for repeated queries.
    pub cached_queries: u64,
}

/// Where events are logged and when they reach the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// The table searches and their events are committed to (the plan's Step 10 columns).
    pub table: String,
    /// The write-ahead log's folder; by default `_serve/events` under a local warehouse.
    pub log_dir: Option<PathBuf>,
    /// Milliseconds between commits of logged events into the table.
    pub commit_interval_ms: u64,
    /// Every this many commits that wrote rows, the events table is compacted (`OPTIMIZE`):
    /// each commit adds a small file, and a table of thousands of them reads slowly. 0 never.
    pub compact_every: u32,
}

/// Bounds on requests; anything beyond is answered 4xx.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest JSON body, in bytes.
    pub max_body_bytes: usize,
    /// The largest image upload, in bytes.
    pub max_upload_bytes: usize,
    /// The longest query text, in characters.
    pub max_query_chars: usize,
    /// Seconds a request may take, reading its body included.
    pub request_timeout_s: f64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            sync_interval_s: 5.0,
            search: SearchConfig::default(),
            events: EventsConfig::default(),
            limits: Limits::default(),
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            ab_test: true,
            enriched_percent: 50.0,
            rollout: Variant::Enriched,
            baseline_index: "main.fashion_demo.vs_hybrid_search".into(),
            enriched_index: "main.fashion_demo.vs_hybrid_search_enriched".into(),
            image_index: "main.fashion_demo.vs_image_search".into(),
            products_table: "main.fashion_demo.products".into(),
            embed_batch: 32,
            embed_calls: std::thread::available_parallelism().map_or(1, |n| n.get()),
            embed_wait_ms: 2,
            embed_wait_share: 8,
            cached_queries: 10_000,
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            table: "main.fashion_demo.search_events".into(),
            log_dir: None,
            commit_interval_ms: 1000,
            compact_every: 300,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_upload_bytes: 8 * 1024 * 1024,
            max_query_chars: 500,
            request_timeout_s: 10.0,
        }
    }
}

impl SearchConfig {
    /// The index text searches of `variant` use.
    pub fn text_index(&self, variant: Variant) -> &str {
        match variant {
            Variant::Baseline => &self.baseline_index,
            Variant::Enriched => &self.enriched_index,
        }
    }
}

impl ServeConfig {
    /// The defaults, with `file`'s settings over them when one is given.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut config = match file {
            None => Self::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .context(|| format!("reading the serve config '{}'", path.display()))?;
                toml::from_str(&text).map_err(|e| {
                    VitrineError::Plan(format!("the serve config '{}': {e}", path.display()))
                })?
            }
        };
        if config.token.is_none() {
            config.token = std::env::var("VITRINE_SERVE_TOKEN")
                .ok()
                .filter(|t| !t.is_empty());
        }
        config.check()?;
        Ok(config)
    }

    /// Refuses settings that cannot work, naming the key.
    pub fn check(&self) -> Result<()> {
        let bad =
            |key: &str, why: &str| Err(VitrineError::Plan(format!("serve config: {key} {why}")));
        if !(0.0..=100.0).contains(&self.search.enriched_percent) {
            return bad("search.enriched_percent", "must be from 0 to 100");
        }
        if self.search.embed_calls == 0 {
            return bad("search.embed_calls", "must be at least 1");
        }
        if self.search.embed_batch == 0 {
            return bad("search.embed_batch", "must be at least 1");
        }
        if self.limits.max_query_chars == 0 || self.limits.max_body_bytes == 0 {
            return bad("limits", "must be above zero");
        }
        if !positive(self.limits.request_timeout_s) {
            return bad("limits.request_timeout_s", "must be above zero");
        }
        if !positive(self.sync_interval_s) {
            return bad("sync_interval_s", "must be above zero");
        }
        Ok(())
    }
}

/// Whether `x` is a finite number above zero.
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}
