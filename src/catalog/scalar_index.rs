//! Secondary indexes on a table's columns (Lance's scalar indexes), in the storage seam's terms.
//!
//! A scalar index maps a column's values to the rows holding them, so that an equality filter or
//! a MERGE joined on the column reads the matching rows instead of the whole table. Rows written
//! after the index was built are not in it until `OPTIMIZE` brings it up to date; until then they
//! are read in full (answers stay exact).

use std::fmt;
use std::str::FromStr;

use crate::error::VitrineError;

/// How a scalar index is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarIndexKind {
    /// A B-tree of sorted values: for columns of many distinct values (ids, keys, timestamps).
    BTree,
    /// A bitmap per value: for columns of few distinct values (categories, flags).
    Bitmap,
}

impl fmt::Display for ScalarIndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BTree => "BTREE",
            Self::Bitmap => "BITMAP",
        })
    }
}

impl FromStr for ScalarIndexKind {
    type Err = VitrineError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_uppercase().as_str() {
            "BTREE" => Ok(Self::BTree),
            "BITMAP" => Ok(Self::Bitmap),
            other => Err(VitrineError::Parse(format!(
                "unknown index kind '{other}': use BTREE or BITMAP (vector indexes are made by \
                 CREATE VECTOR INDEX)"
            ))),
        }
    }
}

/// One scalar index of a table, as `SHOW INDEXES ON table` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalarIndex {
    /// The index's name, unique within its table.
    pub name: String,
    /// The indexed column.
    pub column: String,
    /// How it is built, as the format names it (`BTree`, `Bitmap`, …).
    pub kind: String,
    /// Rows the index covers.
    pub indexed_rows: u64,
    /// Rows written since, read in full by lookups until `OPTIMIZE`.
    pub unindexed_rows: u64,
}
