//! Reading the files that SQL names by path (product photos, say) for the model functions.
//!
//! A path is resolved as everywhere else in the engine: `/Volumes/…` maps into the warehouse,
//! relative paths are made absolute, URLs stay URLs. Local files are read directly; object-store
//! URLs go through `object_store` (the warehouse's own store for its bucket, a store built from
//! the environment's credentials for any other), blocking on the engine's runtime from the
//! model functions' worker threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::runtime::Handle;
use url::Url;
use vitrine_udfs::{BlobReader, ModelError};

use super::Warehouse;

/// The engine's [`BlobReader`].
pub struct WarehouseFiles {
    warehouse: Arc<Warehouse>,
    runtime: Handle,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl WarehouseFiles {
    /// Reads through `warehouse`, blocking on `runtime` for object stores.
    pub fn new(warehouse: Arc<Warehouse>, runtime: Handle) -> Self {
        Self {
            warehouse,
            runtime,
            stores: Mutex::new(HashMap::new()),
        }
    }

    fn store_for(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, Path), String> {
        let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        if let Some(own) = self.warehouse.object_store_url() {
            if own.as_str().trim_end_matches('/') == key {
                let path = Path::from_url_path(url.path()).map_err(|e| e.to_string())?;
                return Ok((self.warehouse.store(), path));
            }
        }
        let mut stores = self.stores.lock().expect("store cache lock");
        if let Some(store) = stores.get(&key) {
            let path = Path::from_url_path(url.path()).map_err(|e| e.to_string())?;
            return Ok((Arc::clone(store), path));
        }
        let options: Vec<(String, String)> = std::env::vars().collect();
        let (store, path) =
            object_store::parse_url_opts(url, options).map_err(|e| e.to_string())?;
        let store: Arc<dyn ObjectStore> = Arc::from(store);
        stores.insert(key, Arc::clone(&store));
        Ok((store, path))
    }
}

impl BlobReader for WarehouseFiles {
    fn read(&self, location: &str) -> Result<Vec<u8>, ModelError> {
        self.read_bytes(location)
            .map_err(|message| ModelError::Read {
                location: location.to_string(),
                message,
            })
    }
}

impl WarehouseFiles {
    fn read_bytes(&self, location: &str) -> Result<Vec<u8>, String> {
        let resolved = self.warehouse.resolve_path(location);
        match Url::parse(&resolved) {
            Ok(url) if url.scheme() == "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| format!("invalid file URL '{resolved}'"))?;
                std::fs::read(path).map_err(|e| e.to_string())
            }
            Ok(url) if url.scheme().len() > 1 => {
                let (store, path) = self.store_for(&url)?;
                self.runtime
                    .block_on(async move {
                        let result = store.get(&path).await?;
                        result.bytes().await
                    })
                    .map(|b| b.to_vec())
                    .map_err(|e| e.to_string())
            }
            _ => std::fs::read(&resolved).map_err(|e| e.to_string()),
        }
    }
}
