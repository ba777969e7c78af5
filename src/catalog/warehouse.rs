//! The warehouse layout and its metadata entries.
//!
//! ```text
//! <root>/_catalog/<catalog>/_catalog.json          a catalog exists
//! <root>/_catalog/<catalog>/<schema>/_schema.json  a schema exists
//! <root>/_catalog/<catalog>/<schema>/<table>.json  a table's TableEntry
//! <root>/<catalog>/<schema>/<table>/               a managed table's data (Lance or Delta)
//! <root>/Volumes/<catalog>/<schema>/<volume>/…     files behind /Volumes/… paths
//! <root>/<kind>/<catalog>/<schema>/<name>.json     entries of objects kept beside the tables
//!                                                  (`_indexes/…`: vector indexes)
//! ```
//!
//! A `location` in an entry that lies under the root is stored relative to it
//! (`main/fashion_demo/products`) and read back under the root the warehouse is opened at, so
//! a warehouse folder copied or mounted elsewhere is a whole warehouse there, not a catalog
//! pointing at the original's data. Locations outside the root (external tables) stay as given.
//!
//! Entries are written with one `put` each, which object stores (and the local store, through a
//! rename) make atomic, so a reader never sees half an entry.
//!
//! Every write or removal of an entry then rewrites `<root>/_catalog/_changes.json` with a new
//! token. A reader that finds that file's version tag unchanged knows no entry changed since its
//! last read, and answers from memory after one `head` instead of listing and reading the
//! catalog (a statement's catalog refresh falls from a listing to a stat). A warehouse written
//! before the marker existed has none until its next write, and is listed every time.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

use super::{QualifiedName, TableEntry};
use crate::error::{Result, ResultExt, VitrineError};

const CATALOG_DIR: &str = "_catalog";
const CATALOG_MARKER: &str = "_catalog.json";
const SCHEMA_MARKER: &str = "_schema.json";
/// The file every entry write rewrites: see the module's text.
const CHANGES_MARKER: &str = "_changes.json";

/// What a reader keeps between reads of one entry file: the changes marker's tag when it was
/// read, and the parsed entry.
type KnownObject = (String, Arc<dyn std::any::Any + Send + Sync>);

/// Catalogs, their schemas and their tables, as read from the warehouse at one moment.
#[derive(Debug, Default, Clone)]
pub struct CatalogSnapshot {
    /// catalog → schema → table → entry.
    pub catalogs: BTreeMap<String, BTreeMap<String, BTreeMap<String, TableEntry>>>,
}

impl CatalogSnapshot {
    /// The entry of a table, if it exists.
    pub fn table(&self, name: &QualifiedName) -> Option<&TableEntry> {
        self.catalogs
            .get(&name.catalog)?
            .get(&name.schema)?
            .get(&name.table)
    }

    /// Whether the schema exists.
    pub fn has_schema(&self, catalog: &str, schema: &str) -> bool {
        self.catalogs
            .get(catalog)
            .is_some_and(|c| c.contains_key(schema))
    }
}

/// A warehouse root: a local folder or an object-store URL.
#[derive(Debug)]
pub struct Warehouse {
    /// The root as given by the user, for messages.
    display: String,
    /// The root as a URL (`file:///…`, `s3://…`, `memory:///`).
    url: Url,
    /// The root as a local folder, when it is one.
    local_root: Option<PathBuf>,
    store: Arc<dyn ObjectStore>,
    /// The root's path inside `store`.
    prefix: Path,
    /// The table entries last read, by path, with the version tag of the file read: a
    /// [`load_snapshot`](Self::load_snapshot) reads again only the files that changed.
    entries: std::sync::Mutex<std::collections::HashMap<Path, (String, TableEntry)>>,
    /// The last snapshot read, with the changes marker's tag at the time.
    snapshot: std::sync::Mutex<Option<(String, Arc<CatalogSnapshot>)>>,
    /// Entries beside the tables last read by [`entry`](Self::entry), by path.
    objects: std::sync::Mutex<std::collections::HashMap<Path, KnownObject>>,
    /// Makes each changes token this process writes distinct from the last.
    changes: std::sync::atomic::AtomicU64,
}

/// What identifies one state of a stored file: its ETag (a content hash on S3; inode, time and
/// size on a local disk), or its time and size where the store gives none.
fn version_tag(meta: &object_store::ObjectMeta) -> String {
    meta.e_tag
        .clone()
        .unwrap_or_else(|| format!("{}-{}", meta.last_modified.to_rfc3339(), meta.size))
}

impl Warehouse {
    /// Opens (creating if needed) the warehouse at `uri`: a local path, or a `file://`, `s3://`,
    /// `gs://`, `az://` or `memory://` URL. Object-store credentials come from the usual
    /// environment variables (`AWS_ACCESS_KEY_ID`, `GOOGLE_SERVICE_ACCOUNT`, …). Fails with a clear
    /// message when the location cannot be reached.
    pub async fn open(uri: &str) -> Result<Self> {
        let (url, local_root) = match Url::parse(uri) {
            Ok(url) if url.scheme().len() > 1 && url.scheme() != "file" => (url, None),
            Ok(url) if url.scheme() == "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| VitrineError::Plan(format!("invalid file URL '{uri}'")))?;
                (url, Some(path))
            }
            _ => {
                let path = absolute(FsPath::new(uri));
                let url = Url::from_directory_path(&path)
                    .map_err(|_| VitrineError::Plan(format!("invalid warehouse path '{uri}'")))?;
                (url, Some(path))
            }
        };
        let (store, prefix): (Arc<dyn ObjectStore>, Path) = match &local_root {
            Some(path) => {
                std::fs::create_dir_all(path)
                    .context(|| format!("creating warehouse folder '{}'", path.display()))?;
                (
                    Arc::new(LocalFileSystem::new_with_prefix(path)?),
                    Path::default(),
                )
            }
            None => {
                let options: Vec<(String, String)> = std::env::vars().collect();
                let (store, prefix) = object_store::parse_url_opts(&url, options)
                    .context(|| format!("opening warehouse '{uri}'"))?;
                (Arc::from(store), prefix)
            }
        };
        let warehouse = Self {
            display: uri.to_string(),
            url,
            local_root,
            store,
            prefix,
            entries: Default::default(),
            snapshot: Default::default(),
            objects: Default::default(),
            changes: Default::default(),
        };
        warehouse
            .store
            .list_with_delimiter(Some(&warehouse.prefix))
            .await
            .context(|| format!("cannot reach warehouse '{uri}'"))?;
        Ok(warehouse)
    }

    /// The root as given.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The object store holding the warehouse (its root at [`Warehouse::store_prefix`]).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// The warehouse root's path inside [`Warehouse::store`].
    pub fn store_prefix(&self) -> &Path {
        &self.prefix
    }

    /// For a warehouse on an object store, the store's URL (`s3://bucket`) under which the
    /// engine registers [`Warehouse::store`], so that queries can read files in it.
    pub fn object_store_url(&self) -> Option<Url> {
        if self.local_root.is_some() {
            return None;
        }
        Url::parse(&format!(
            "{}://{}",
            self.url.scheme(),
            self.url.host_str().unwrap_or_default()
        ))
        .ok()
    }

    fn child(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .fold(self.prefix.clone(), |p, part| p.clone().join(*part))
    }

    /// A location under the warehouse root, as Lance and Delta take it: an absolute local path,
    /// or a URL.
    pub fn location(&self, parts: &[&str]) -> String {
        match &self.local_root {
            Some(root) => parts
                .iter()
                .fold(root.clone(), |p, part| p.join(part))
                .to_string_lossy()
                .into_owned(),
            None => {
                let mut s = self.url.as_str().to_string();
                if !s.ends_with('/') {
                    s.push('/');
                }
                s.push_str(&parts.join("/"));
                s
            }
        }
    }

    /// Where a managed table's data lives.
    pub fn table_location(&self, name: &QualifiedName) -> String {
        self.location(&[&name.catalog, &name.schema, &name.table])
    }

    /// Resolves a path written in SQL: `/Volumes/<catalog>/<schema>/<volume>/…` (or
    /// `dbfs:/Volumes/…`) maps into the warehouse; URLs stay as they are; relative local paths are
    /// made absolute.
    pub fn resolve_path(&self, path: &str) -> String {
        let volume = path.strip_prefix("dbfs:").unwrap_or(path);
        if let Some(rest) = volume.strip_prefix("/Volumes/") {
            let parts: Vec<&str> = std::iter::once("Volumes")
                .chain(rest.split('/').filter(|p| !p.is_empty()))
                .collect();
            return self.location(&parts);
        }
        if Url::parse(path).is_ok_and(|u| u.scheme().len() > 1) {
            return path.to_string();
        }
        absolute(FsPath::new(path)).to_string_lossy().into_owned()
    }

    /// The bytes of a file in the warehouse's volumes, named as SQL names it
    /// (`/Volumes/<catalog>/<schema>/<volume>/…` or `dbfs:/Volumes/…`), for a server that must
    /// never read outside them: any other path, a `.` or `..` step, or (in a local warehouse)
    /// a link leading out of the volumes is refused; `None` when there is no such file.
    pub async fn read_volume_file(&self, path: &str) -> Result<Option<bytes::Bytes>> {
        let refused = |why: &str| Err(VitrineError::Plan(format!("'{path}' {why}")));
        let volume = path.strip_prefix("dbfs:").unwrap_or(path);
        let Some(rest) = volume.strip_prefix("/Volumes/") else {
            return refused("is not in the warehouse's volumes");
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\\'))
        {
            return refused("is not a plain path in the warehouse's volumes");
        }
        if let Some(root) = &self.local_root {
            let volumes = root.join("Volumes");
            let file = parts.iter().fold(volumes.clone(), |p, part| p.join(part));
            let (Ok(volumes), Ok(file)) = (volumes.canonicalize(), file.canonicalize()) else {
                return Ok(None);
            };
            if !file.starts_with(&volumes) {
                return refused("leads out of the warehouse's volumes");
            }
        }
        let mut location = vec!["Volumes"];
        location.extend(&parts);
        match self.store.get(&self.child(&location)).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).context(|| format!("reading '{path}'")),
        }
    }

    /// Reads every catalog, schema and table entry.
    pub async fn load_snapshot(&self) -> Result<Arc<CatalogSnapshot>> {
        let changes = self.changes_tag().await?;
        if let Some(tag) = &changes {
            let known = self.snapshot.lock().expect("snapshot cache lock");
            if let Some((_, snapshot)) = known.as_ref().filter(|(t, _)| t == tag) {
                return Ok(Arc::clone(snapshot));
            }
        }
        let root = self.child(&[CATALOG_DIR]);
        let objects: Vec<_> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .context(|| format!("listing the catalog of warehouse '{}'", self.display))?;
        let mut snapshot = CatalogSnapshot::default();
        let mut tables = Vec::new();
        for meta in objects {
            let parts: Vec<String> = meta
                .location
                .prefix_match(&root)
                .map(|p| p.map(|x| x.as_ref().to_string()).collect())
                .unwrap_or_default();
            match parts.as_slice() {
                [catalog, marker] if marker == CATALOG_MARKER => {
                    snapshot.catalogs.entry(catalog.clone()).or_default();
                }
                [catalog, schema, marker] if marker == SCHEMA_MARKER => {
                    snapshot
                        .catalogs
                        .entry(catalog.clone())
                        .or_default()
                        .entry(schema.clone())
                        .or_default();
                }
                [catalog, schema, file] if file.ends_with(".json") => {
                    let table = file.trim_end_matches(".json").to_string();
                    tables.push((
                        QualifiedName {
                            catalog: catalog.clone(),
                            schema: schema.clone(),
                            table,
                        },
                        version_tag(&meta),
                        meta.location,
                    ));
                }
                _ => {}
            }
        }
        let known = self.entries.lock().expect("entry cache lock").clone();
        let entries =
            futures::future::try_join_all(tables.into_iter().map(|(name, tag, location)| {
                let known = known.get(&location).filter(|(t, _)| *t == tag).cloned();
                async move {
                    if let Some((_, entry)) = known {
                        return Ok::<_, VitrineError>((name, tag, location, entry));
                    }
                    let bytes = self.store.get(&location).await?.bytes().await?;
                    let entry: TableEntry = self
                        .read_stored(&bytes)
                        .context(|| format!("reading the catalog entry of {name}"))?;
                    Ok((name, tag, location, entry))
                }
            }))
            .await?;
        *self.entries.lock().expect("entry cache lock") = entries
            .iter()
            .map(|(_, tag, location, entry)| (location.clone(), (tag.clone(), entry.clone())))
            .collect();
        for (name, _, _, entry) in entries {
            snapshot
                .catalogs
                .entry(name.catalog)
                .or_default()
                .entry(name.schema)
                .or_default()
                .insert(name.table, entry);
        }
        let snapshot = Arc::new(snapshot);
        *self.snapshot.lock().expect("snapshot cache lock") =
            changes.map(|tag| (tag, Arc::clone(&snapshot)));
        Ok(snapshot)
    }

    /// The version tag of the changes marker, `None` while the warehouse has none.
    async fn changes_tag(&self) -> Result<Option<String>> {
        match self
            .store
            .head(&self.child(&[CATALOG_DIR, CHANGES_MARKER]))
            .await
        {
            Ok(meta) => Ok(Some(version_tag(&meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => {
                Err(e).context(|| format!("reading the catalog of warehouse '{}'", self.display))
            }
        }
    }

    /// Rewrites the changes marker after an entry was written or removed, so every reader reads
    /// the catalog again. The token differs at every write (a content-hashed ETag must change
    /// too).
    async fn mark_changed(&self) -> Result<()> {
        let token = format!(
            "{}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
            self.changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.put_json(
            self.child(&[CATALOG_DIR, CHANGES_MARKER]),
            &serde_json::json!({ "token": token }),
        )
        .await
    }

    /// Records that a catalog exists.
    pub async fn put_catalog(&self, catalog: &str) -> Result<()> {
        self.write_entry(
            self.child(&[CATALOG_DIR, catalog, CATALOG_MARKER]),
            &serde_json::json!({ "name": catalog }),
        )
        .await
    }

    /// Records that a schema exists.
    pub async fn put_schema(&self, catalog: &str, schema: &str) -> Result<()> {
        self.write_entry(
            self.child(&[CATALOG_DIR, catalog, schema, SCHEMA_MARKER]),
            &serde_json::json!({ "name": schema }),
        )
        .await
    }

    /// Removes a schema's marker (its tables must have been dropped first).
    pub async fn delete_schema(&self, catalog: &str, schema: &str) -> Result<()> {
        self.remove_entry(&self.child(&[CATALOG_DIR, catalog, schema, SCHEMA_MARKER]))
            .await
    }

    /// Writes a table's entry, replacing any earlier one in one atomic put.
    pub async fn put_table(&self, name: &QualifiedName, entry: &TableEntry) -> Result<()> {
        let file = format!("{}.json", name.table);
        self.write_entry(
            self.child(&[CATALOG_DIR, &name.catalog, &name.schema, &file]),
            entry,
        )
        .await
    }

    /// Removes a table's entry and, for a managed table, its data.
    pub async fn delete_table(&self, name: &QualifiedName, entry: &TableEntry) -> Result<()> {
        let file = format!("{}.json", name.table);
        self.remove_entry(&self.child(&[CATALOG_DIR, &name.catalog, &name.schema, &file]))
            .await?;
        if entry.managed {
            self.delete_data(name).await?;
        }
        Ok(())
    }

    /// Removes the data folder of a managed object (`<catalog>/<schema>/<name>/`).
    pub async fn delete_data(&self, name: &QualifiedName) -> Result<()> {
        self.delete_files(&[&name.catalog, &name.schema, &name.table])
            .await
    }

    /// The root as a local folder, when it is one.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// Copies the files of the local folder `dir` (not its subfolders) under `parts` of the
    /// warehouse, each in one atomic put.
    pub async fn put_files(&self, parts: &[&str], dir: &FsPath) -> Result<()> {
        let entries = std::fs::read_dir(dir).context(|| format!("reading '{}'", dir.display()))?;
        for entry in entries {
            let path = entry
                .context(|| format!("reading '{}'", dir.display()))?
                .path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).context(|| format!("reading '{}'", path.display()))?;
            let mut target: Vec<&str> = parts.to_vec();
            target.push(name);
            self.store
                .put(&self.child(&target), PutPayload::from(bytes))
                .await
                .context(|| format!("writing '{name}' in warehouse '{}'", self.display))?;
        }
        Ok(())
    }

    /// Copies the files under `parts` of the warehouse into the local folder `into`.
    pub async fn fetch_files(&self, parts: &[&str], into: &FsPath) -> Result<()> {
        std::fs::create_dir_all(into).context(|| format!("creating '{}'", into.display()))?;
        let prefix = self.child(parts);
        let files: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        for meta in files {
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let bytes = self.store.get(&meta.location).await?.bytes().await?;
            let path = into.join(name);
            std::fs::write(&path, &bytes).context(|| format!("writing '{}'", path.display()))?;
        }
        Ok(())
    }

    /// Removes every file under `parts` of the warehouse.
    pub async fn delete_files(&self, parts: &[&str]) -> Result<()> {
        let prefix = self.child(parts);
        let files: Vec<_> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        for file in files {
            self.store.delete(&file).await?;
        }
        if let Some(root) = &self.local_root {
            let dir = parts.iter().fold(root.clone(), |p, part| p.join(part));
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .context(|| format!("removing '{}'", dir.display()))?;
            }
        }
        Ok(())
    }

    /// The names of the folders directly under `parts` of the warehouse.
    pub async fn folders(&self, parts: &[&str]) -> Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.child(parts)))
            .await?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Writes the entry of an object kept beside the tables (a vector index, say) under
    /// `<kind_dir>/<catalog>/<schema>/<name>.json`, replacing any earlier one in one atomic put.
    pub async fn put_entry(
        &self,
        kind_dir: &str,
        name: &QualifiedName,
        entry: &impl serde::Serialize,
    ) -> Result<()> {
        let file = format!("{}.json", name.table);
        self.write_entry(
            self.child(&[kind_dir, &name.catalog, &name.schema, &file]),
            entry,
        )
        .await
    }

    /// The entry [`put_entry`](Self::put_entry) wrote for `name`, if there is one. While the
    /// catalog's changes marker is unchanged, an entry read before is answered from memory.
    pub async fn entry<T>(&self, kind_dir: &str, name: &QualifiedName) -> Result<Option<T>>
    where
        T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let file = format!("{}.json", name.table);
        let path = self.child(&[kind_dir, &name.catalog, &name.schema, &file]);
        let changes = self.changes_tag().await?;
        if let Some(tag) = &changes {
            let known = self.objects.lock().expect("entry cache lock");
            if let Some((_, object)) = known.get(&path).filter(|(t, _)| t == tag) {
                if let Some(entry) = object.downcast_ref::<Option<T>>() {
                    return Ok(entry.clone());
                }
            }
        }
        let entry: Option<T> = match self.store.get(&path).await {
            Ok(found) => {
                let bytes = found.bytes().await?;
                Some(
                    self.read_stored(&bytes)
                        .context(|| format!("reading entry '{path}'"))?,
                )
            }
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(tag) = changes {
            self.objects
                .lock()
                .expect("entry cache lock")
                .insert(path, (tag, Arc::new(entry.clone())));
        }
        Ok(entry)
    }

    /// Every entry of `kind_dir` in a schema, by name.
    pub async fn entries<T>(
        &self,
        kind_dir: &str,
        catalog: &str,
        schema: &str,
    ) -> Result<Vec<(String, T)>>
    where
        T: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let dir = self.child(&[kind_dir, catalog, schema]);
        let objects: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        let mut out = Vec::new();
        for meta in objects {
            let Some(object) = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
            else {
                continue;
            };
            let name = QualifiedName {
                catalog: catalog.to_string(),
                schema: schema.to_string(),
                table: object.to_string(),
            };
            if let Some(entry) = self.entry(kind_dir, &name).await? {
                out.push((object.to_string(), entry));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Removes the entry of an object kept beside the tables.
    pub async fn delete_entry(&self, kind_dir: &str, name: &QualifiedName) -> Result<()> {
        let file = format!("{}.json", name.table);
        self.remove_entry(&self.child(&[kind_dir, &name.catalog, &name.schema, &file]))
            .await
    }

    /// Writes one entry file, its location made portable ([`Self::portable_location`]), and
    /// marks the catalog changed.
    async fn write_entry(&self, path: Path, value: &impl serde::Serialize) -> Result<()> {
        let mut value = serde_json::to_value(value)?;
        if let Some(location) = value.get_mut("location") {
            if let Some(portable) = location.as_str().map(|l| self.portable_location(l)) {
                *location = serde_json::Value::String(portable);
            }
        }
        self.put_json(path, &value).await?;
        self.mark_changed().await
    }

    /// Parses an entry file, its location resolved under the root ([`Self::resolve_location`]).
    fn read_stored<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> serde_json::Result<T> {
        let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
        if let Some(location) = value.get_mut("location") {
            if let Some(resolved) = location.as_str().map(|l| self.resolve_location(l)) {
                *location = serde_json::Value::String(resolved);
            }
        }
        serde_json::from_value(value)
    }

    /// `location` as entries store it and scans travel to workers: relative to the root
    /// (`main/fashion_demo/products`) when it lies under it, else as it is.
    pub fn portable_location(&self, location: &str) -> String {
        self.relative_location(location)
            .unwrap_or_else(|| location.to_string())
    }

    /// A location [`Self::portable_location`] gave, resolved under this warehouse's root (an
    /// absolute path or a URL stays as it is).
    pub fn resolve_location(&self, portable: &str) -> String {
        if is_relative_location(portable) {
            self.location(&portable.split('/').collect::<Vec<_>>())
        } else {
            portable.to_string()
        }
    }

    /// `location` relative to the root (`/`-separated), when it lies under it.
    fn relative_location(&self, location: &str) -> Option<String> {
        let relative = match &self.local_root {
            Some(root) => {
                let rest = FsPath::new(location).strip_prefix(root).ok()?;
                let parts: Vec<&str> = rest
                    .components()
                    .map(|c| match c {
                        std::path::Component::Normal(part) => part.to_str(),
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                parts.join("/")
            }
            None => {
                let root = self.location(&[]);
                location.strip_prefix(root.as_str())?.to_string()
            }
        };
        (!relative.is_empty()).then_some(relative)
    }

    /// Removes one entry file and marks the catalog changed.
    async fn remove_entry(&self, path: &Path) -> Result<()> {
        self.store
            .delete(path)
            .await
            .context(|| format!("removing '{path}' in warehouse '{}'", self.display))?;
        self.mark_changed().await
    }

    async fn put_json(&self, path: Path, value: &impl serde::Serialize) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value)?;
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .context(|| format!("writing '{path}' in warehouse '{}'", self.display))?;
        Ok(())
    }
}

/// Whether a stored location is relative to the warehouse root: neither an absolute path nor a
/// URL (nor empty, as a view's is).
fn is_relative_location(location: &str) -> bool {
    !location.is_empty()
        && !FsPath::new(location).is_absolute()
        && !Url::parse(location).is_ok_and(|u| u.scheme().len() > 1)
}

fn absolute(path: &FsPath) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
