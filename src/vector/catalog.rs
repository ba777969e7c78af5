//! Where vector index entries live: `_indexes/<catalog>/<schema>/<index>.json` in the warehouse,
//! beside the table entries of `_catalog/`, and the index's dataset at the managed data path
//! `<catalog>/<schema>/<index>/`.

use super::index::IndexEntry;
use crate::catalog::{QualifiedName, Warehouse};
use crate::error::Result;

const INDEX_DIR: &str = "_indexes";

/// Writes an index's entry.
pub async fn put(warehouse: &Warehouse, name: &QualifiedName, entry: &IndexEntry) -> Result<()> {
    warehouse.put_entry(INDEX_DIR, name, entry).await
}

/// An index's entry, if the index exists.
pub async fn get(warehouse: &Warehouse, name: &QualifiedName) -> Result<Option<IndexEntry>> {
    warehouse.entry(INDEX_DIR, name).await
}

/// The indexes of a schema, by name.
pub async fn list(
    warehouse: &Warehouse,
    catalog: &str,
    schema: &str,
) -> Result<Vec<(String, IndexEntry)>> {
    warehouse.entries(INDEX_DIR, catalog, schema).await
}

/// Removes an index: its entry, then its dataset.
pub async fn delete(warehouse: &Warehouse, name: &QualifiedName) -> Result<()> {
    warehouse.delete_entry(INDEX_DIR, name).await?;
    warehouse.delete_data(name).await
}
