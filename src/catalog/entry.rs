//! The metadata Vitrine keeps for each table: its format, where its data is, its properties and
//! comment. Stored as one small JSON object per table in the warehouse.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, VitrineError};

/// How a table's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// A Lance dataset (the default): versioned, with native vector indexes.
    Lance,
    /// A Delta Lake table, as Databricks writes them.
    Delta,
    /// CSV files, read-only.
    Csv,
    /// Parquet files, read-only.
    Parquet,
    /// A view: a query stored in the catalog, planned when read.
    View,
}

impl TableFormat {
    /// Parses the name used in `USING …` and in `read_files(format => …)`.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "lance" => Ok(Self::Lance),
            "delta" => Ok(Self::Delta),
            "csv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            "view" => Err(VitrineError::Plan("use CREATE VIEW for views".into())),
            other => Err(VitrineError::Plan(format!(
                "unknown table format '{other}': use LANCE, DELTA, CSV or PARQUET"
            ))),
        }
    }

    /// Whether Vitrine can write tables of this format.
    pub fn is_writable(self) -> bool {
        matches!(self, Self::Lance | Self::Delta)
    }
}

impl fmt::Display for TableFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lance => "lance",
            Self::Delta => "delta",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
            Self::View => "view",
        })
    }
}

/// One table's catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Storage format.
    pub format: TableFormat,
    /// Where the data is: a path or URL. Managed tables live under the warehouse.
    pub location: String,
    /// Whether the warehouse owns the data (and `DROP TABLE` deletes it).
    pub managed: bool,
    /// `TBLPROPERTIES`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Reader options (`OPTIONS (header 'true')` for CSV).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// `COMMENT`.
    #[serde(default)]
    pub comment: Option<String>,
    /// When the table was created (RFC 3339).
    pub created_at: String,
    /// A view's query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_sql: Option<String>,
}
