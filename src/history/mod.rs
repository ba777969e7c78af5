//! Query history and table lineage: what every statement run against the warehouse did, as
//! Databricks' system tables `system.query.history` and `system.access.table_lineage`.
//!
//! The engine records each statement when it ends ([`record`]: its text, script and line, times,
//! status, rows, settings, seed and engine build; for a write, each table version it wrote with
//! each table version it read and the models it ran) in the warehouse ([`store`]), where every
//! session of every process reads them back as tables. A version's own commit also names its
//! statement ([`crate::catalog::version::CommitInfo`]), so `DESCRIBE HISTORY` and `vitrine
//! reproduce` find the statement behind any version written since history began.

pub mod graph;
pub mod record;
pub mod store;

pub use record::{LineageRecord, ModelRecord, QueryRecord};
pub use store::{HistoryStore, SystemTable, SystemTableProvider};

/// The engine that runs: its version, build profile, and the machine it was built for.
pub fn engine_version() -> String {
    format!(
        "vitrine {} ({}, {}-{}{})",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::env::consts::ARCH,
        std::env::consts::OS,
        if cfg!(feature = "cuda") { ", cuda" } else { "" }
    )
}
