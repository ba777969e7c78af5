//! What every table format shares about versions: how a write relates to the data there
//! ([`Mode`]), one committed version as `DESCRIBE HISTORY` shows it ([`HistoryEntry`]), and what
//! `OPTIMIZE` did ([`OptimizeMetrics`]), and what an upsert in place did ([`Upserted`]).

use chrono::{DateTime, Utc};

/// How a write relates to the data already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new table.
    Create,
    /// Replace all rows, as a new version.
    Overwrite,
    /// Add rows, as a new version.
    Append,
}

/// One committed version of a table, as `DESCRIBE HISTORY` shows it.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The version number.
    pub version: u64,
    /// When it was committed.
    pub timestamp: DateTime<Utc>,
    /// The statement that wrote it (`WRITE`, `MERGE`, `OPTIMIZE ZORDER`, …).
    pub operation: String,
    /// Rows in the table at that version, when known.
    pub num_rows: Option<u64>,
}

/// What `OPTIMIZE` did.
#[derive(Debug, Clone, Default)]
pub struct OptimizeMetrics {
    /// Data files written.
    pub files_added: u64,
    /// Data files (and deletion files) replaced.
    pub files_removed: u64,
    /// Fragments (or files) before.
    pub fragments_before: u64,
    /// Fragments (or files) after.
    pub fragments_after: u64,
}

/// What an upsert in place wrote: the new version and MERGE's row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upserted {
    /// The version committed.
    pub version: u64,
    /// Rows that replaced a row with the same key.
    pub updated: u64,
    /// Rows added because no row had their key.
    pub inserted: u64,
}
