//! Where model objects live: the entry at `_models/<catalog>/<schema>/<name>.json`, the files of
//! each revision under `_models/<catalog>/<schema>/<name>/<revision>/` (apart from the tables'
//! managed data, so that a model and a table may share a name). A new revision's files are
//! written before the entry names them, and the old ones removed after, so that a failed
//! `CREATE OR REPLACE MODEL` leaves the previous model whole.

use std::path::{Path, PathBuf};

use super::entry::{revision_folder, ModelEntry};
use crate::catalog::{QualifiedName, Warehouse};
use crate::error::{Result, ResultExt};

const MODEL_DIR: &str = "_models";

fn parts<'a>(name: &'a QualifiedName, revision: Option<&'a str>) -> Vec<&'a str> {
    let mut parts = vec![MODEL_DIR, &name.catalog, &name.schema, &name.table];
    parts.extend(revision);
    parts
}

/// A model's entry, if the model exists.
pub async fn get(warehouse: &Warehouse, name: &QualifiedName) -> Result<Option<ModelEntry>> {
    warehouse.entry(MODEL_DIR, name).await
}

/// The models of a schema, by name.
pub async fn list(
    warehouse: &Warehouse,
    catalog: &str,
    schema: &str,
) -> Result<Vec<(String, ModelEntry)>> {
    warehouse.entries(MODEL_DIR, catalog, schema).await
}

/// Where a revision's files go: a local path or a URL.
pub fn location(warehouse: &Warehouse, name: &QualifiedName, revision: &str) -> String {
    let folder = revision_folder(revision);
    warehouse.location(&parts(name, Some(&folder)))
}

/// Copies the files of the local folder `files` in as the revision of `entry`, then writes
/// `entry`, then removes the model's other revisions.
pub async fn publish(
    warehouse: &Warehouse,
    name: &QualifiedName,
    files: &Path,
    entry: &ModelEntry,
) -> Result<()> {
    let folder = entry.revision_folder();
    warehouse
        .put_files(&parts(name, Some(&folder)), files)
        .await?;
    warehouse.put_entry(MODEL_DIR, name, entry).await?;
    for other in warehouse.folders(&parts(name, None)).await? {
        if other != folder {
            warehouse.delete_files(&parts(name, Some(&other))).await?;
        }
    }
    Ok(())
}

/// Removes a model: its entry, then its files.
pub async fn delete(warehouse: &Warehouse, name: &QualifiedName) -> Result<()> {
    warehouse.delete_entry(MODEL_DIR, name).await?;
    warehouse.delete_files(&parts(name, None)).await
}

/// A local folder holding the files of `entry`: the warehouse's own folder when the warehouse
/// is local, else a copy fetched once per revision into `cache`.
pub async fn local_files(
    warehouse: &Warehouse,
    name: &QualifiedName,
    entry: &ModelEntry,
    cache: &Path,
) -> Result<PathBuf> {
    let folder = entry.revision_folder();
    let parts = parts(name, Some(&folder));
    if let Some(root) = warehouse.local_root() {
        return Ok(parts
            .iter()
            .fold(root.to_path_buf(), |p, part| p.join(part)));
    }
    let local = parts
        .iter()
        .fold(cache.to_path_buf(), |p, part| p.join(part));
    if !local.join("config.json").is_file() {
        let partial = local.with_extension("partial");
        warehouse.fetch_files(&parts, &partial).await?;
        std::fs::rename(&partial, &local)
            .context(|| format!("moving '{}' into place", partial.display()))?;
    }
    Ok(local)
}

/// A local folder for a training run's checkpoints and output, kept between attempts: under the
/// warehouse when it is local, else under `cache`.
pub fn scratch(warehouse: &Warehouse, name: &QualifiedName, cache: &Path) -> PathBuf {
    let root = warehouse
        .local_root()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cache.join("training"));
    root.join("_training")
        .join(&name.catalog)
        .join(&name.schema)
        .join(&name.table)
}
