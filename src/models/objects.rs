//! The model functions' view of the warehouse's model objects: `catalog.schema.name` names one
//! wherever a model folder or hub id is accepted.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::runtime::Handle;
use vitrine_udfs::runtime::source::{ModelObject, ModelObjects};
use vitrine_udfs::ModelError;

use super::catalog;
use crate::catalog::{QualifiedName, Warehouse};

/// The engine's [`ModelObjects`]: entries read from the warehouse, files fetched into `cache`
/// when the warehouse is not local.
pub struct WarehouseModels {
    warehouse: Arc<Warehouse>,
    runtime: Handle,
    cache: PathBuf,
}

impl WarehouseModels {
    /// Model objects of `warehouse`, read blocking on `runtime`, fetched into `cache`.
    pub fn new(warehouse: Arc<Warehouse>, runtime: Handle, cache: PathBuf) -> Self {
        Self {
            warehouse,
            runtime,
            cache,
        }
    }
}

/// Where model objects of object-store warehouses are fetched to and training scratch goes
/// for them: `$VITRINE_CACHE`, else `~/.cache/vitrine`.
pub fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("VITRINE_CACHE") {
        return PathBuf::from(dir);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache")
        .join("vitrine")
}

/// The qualified name `spec` writes, when it is `catalog.schema.name` and not a path.
fn object_name(spec: &str) -> Option<QualifiedName> {
    let parts: Vec<&str> = spec.split('.').collect();
    let plain = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    (parts.len() == 3 && parts.iter().all(|p| plain(p)) && !std::path::Path::new(spec).exists())
        .then(|| QualifiedName {
            catalog: parts[0].to_lowercase(),
            schema: parts[1].to_lowercase(),
            table: parts[2].to_lowercase(),
        })
}

impl ModelObjects for WarehouseModels {
    fn locate(&self, spec: &str) -> Result<Option<ModelObject>, ModelError> {
        let Some(name) = object_name(spec) else {
            return Ok(None);
        };
        // On a thread of its own: the caller may be on one of the runtime's threads.
        let found = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.runtime.block_on(async {
                        // No hub id has three dotted parts and no slash: such a name is
                        // a model object or a mistake.
                        let Some(entry) = catalog::get(&self.warehouse, &name).await? else {
                            return Err(crate::error::VitrineError::NotFound(format!(
                                "does not exist (SHOW MODELS IN {}.{} lists the models there)",
                                name.catalog, name.schema
                            )));
                        };
                        let dir = catalog::local_files(&self.warehouse, &name, &entry, &self.cache)
                            .await?;
                        Ok::<_, crate::error::VitrineError>(Some(ModelObject {
                            dir,
                            revision: entry.revision,
                        }))
                    })
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(crate::error::VitrineError::Plan(
                        "reading a model object panicked".into(),
                    ))
                })
        });
        found.map_err(|e| ModelError::NotFound(format!("model {name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::object_name;

    #[test]
    fn three_plain_parts_name_a_model_object() {
        assert_eq!(
            object_name("main.fashion_demo.demo_clip").map(|n| n.to_string()),
            Some("main.fashion_demo.demo_clip".to_string())
        );
        assert!(object_name("openai/clip-vit-base-patch32").is_none());
        assert!(object_name("tests/fixtures/clip/tiny-a").is_none());
        assert!(object_name("a.b").is_none());
        assert!(object_name("model.v1.safetensors/x").is_none());
    }
}
