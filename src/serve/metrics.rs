//! The search service's Prometheus metrics (`GET /metrics`): requests and their latency by
//! route, status and variant, the events logged but not yet committed to the table, and how
//! query texts were embedded (texts and time per model call, cache hits).

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What a request is counted under.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's pattern (`/api/v1/search/text`).
    pub route: String,
    /// The response's status code.
    pub status: u16,
    /// The search variant, where the request had one.
    pub variant: String,
}

/// What the query embedder counts: the texts and time of each model call, and the queries
/// answered from its cache.
#[derive(Clone)]
pub struct EmbedderMetrics {
    /// Texts per model call.
    pub batch_sizes: Histogram,
    /// Seconds per model call: over a run, their sum against the run's time says how busy the
    /// model was kept.
    pub call_seconds: Histogram,
    /// Queries whose vector came from the cache.
    pub cache_hits: Counter,
}

/// The service's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    pending: Gauge<i64, AtomicI64>,
    /// The query embedder's.
    pub embedder: EmbedderMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vitrine_serve");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 0.1 ms to about 3 s.
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        let pending = Gauge::<i64, AtomicI64>::default();
        registry.register("requests", "Requests answered", requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time to answer a request",
            latency.clone(),
        );
        registry.register(
            "events_pending_commit",
            "Searches whose logged events are not yet in the events table",
            pending.clone(),
        );
        let embedder = EmbedderMetrics {
            batch_sizes: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            // 1 ms to about 8 s.
            call_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            cache_hits: Counter::default(),
        };
        registry.register(
            "query_embedding_batch_size",
            "Query texts embedded by one model call",
            embedder.batch_sizes.clone(),
        );
        registry.register(
            "query_embedding_call_duration_seconds",
            "Time of one model call embedding query texts",
            embedder.call_seconds.clone(),
        );
        registry.register(
            "query_embedding_cache_hits",
            "Query texts whose vector came from the cache",
            embedder.cache_hits.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            pending,
            embedder,
        }
    }
}

impl Metrics {
    /// Counts one answered request that took `seconds`.
    pub fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Sets the number of searches waiting for their commit.
    pub fn set_pending(&self, searches: usize) {
        self.pending.set(searches as i64);
    }

    /// Every metric in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
