//! The warehouse catalog: where tables live and how DataFusion finds them.
//!
//! A warehouse is a folder (local or on an object store) holding catalogs, schemas and tables in
//! Unity Catalog's three-level namespace. [`Warehouse`] owns the layout and the metadata entries;
//! [`provider`] exposes them to DataFusion; [`mod@storage`] is the seam every table format implements
//! ([`lance_table`], [`delta_table`], [`files`]); [`lance_scan`] and [`delta_scan`] read
//! their tables in pieces workers can share out in the terms of [`version`]; [`blobs`] reads the
//! files behind image paths.

pub mod blobs;
mod bucket_sort;
pub mod delta_scan;
pub mod delta_table;
pub mod entry;
pub mod files;
pub mod lance_scan;
pub mod lance_table;
pub mod provider;
pub mod scalar_index;
pub mod spill;
pub mod storage;
pub mod version;
pub mod warehouse;
pub mod worker_scan;
mod zorder;

use std::fmt;

pub use entry::{TableEntry, TableFormat};
pub use provider::WarehouseCatalogList;
pub use storage::{storage, TableStorage};
pub use warehouse::Warehouse;

use crate::error::{Result, VitrineError};

/// Whether the plans of the session `state` run across workers (`vitrine --workers …`): then
/// tables plan scans a worker can run ([`lance_scan`], [`delta_scan`]).
pub(crate) fn runs_across_workers(state: &dyn datafusion::catalog::Session) -> bool {
    state
        .config_options()
        .extensions
        .get::<datafusion_distributed::DistributedConfig>()
        .is_some()
}

/// A table name as written: one, two or three parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName {
    /// The catalog, when the name has three parts.
    pub catalog: Option<String>,
    /// The schema, when the name has two or three parts.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
}

impl TableName {
    /// Builds a name from its lower-cased parts.
    pub fn from_parts(parts: &[String]) -> Result<Self> {
        match parts {
            [t] => Ok(Self {
                catalog: None,
                schema: None,
                table: t.clone(),
            }),
            [s, t] => Ok(Self {
                catalog: None,
                schema: Some(s.clone()),
                table: t.clone(),
            }),
            [c, s, t] => Ok(Self {
                catalog: Some(c.clone()),
                schema: Some(s.clone()),
                table: t.clone(),
            }),
            _ => Err(VitrineError::Plan(format!(
                "'{}' is not a table name: use [catalog.][schema.]table",
                parts.join(".")
            ))),
        }
    }

    /// Fills the missing parts from the session's current catalog and schema.
    pub fn resolve(&self, default_catalog: &str, default_schema: &str) -> QualifiedName {
        QualifiedName {
            catalog: self
                .catalog
                .clone()
                .unwrap_or_else(|| default_catalog.to_string()),
            schema: self
                .schema
                .clone()
                .unwrap_or_else(|| default_schema.to_string()),
            table: self.table.clone(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [&self.catalog, &self.schema].into_iter().flatten() {
            write!(f, "{part}.")?;
        }
        write!(f, "{}", self.table)
    }
}

/// A fully qualified `catalog.schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    /// The catalog.
    pub catalog: String,
    /// The schema.
    pub schema: String,
    /// The table.
    pub table: String,
}

impl From<QualifiedName> for TableName {
    fn from(name: QualifiedName) -> Self {
        Self {
            catalog: Some(name.catalog),
            schema: Some(name.schema),
            table: name.table,
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.catalog, self.schema, self.table)
    }
}
