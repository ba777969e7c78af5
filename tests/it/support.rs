//! Shared helpers: a temporary warehouse with an engine, the demo catalog, and result readers.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use tempfile::TempDir;
use vitrine::demo::{self, DemoOptions, Product};
use vitrine::{Engine, EngineConfig, EngineSession, Session as _, StatementResult};

/// A warehouse in a temporary folder and a session of an engine on it.
pub struct TestWarehouse {
    pub dir: TempDir,
    pub session: EngineSession,
}

impl TestWarehouse {
    /// An empty warehouse whose CLIP model is the small fixture model `tiny-a` (tests never
    /// download models).
    pub async fn new() -> Self {
        Self::open(tempfile::tempdir().expect("temp dir")).await
    }

    /// A session of an engine (the fixture CLIP) over the warehouse in `dir`.
    async fn open(dir: TempDir) -> Self {
        let mut config = EngineConfig::new(dir.path().to_str().unwrap());
        config
            .settings
            .insert("vitrine.model.clip".into(), clip_fixture("tiny-a"));
        let session = Engine::open(config)
            .await
            .expect("open engine")
            .session()
            .expect("open session");
        Self { dir, session }
    }

    /// A warehouse holding the demo catalog's raw files (no images) for `products` products.
    pub async fn with_demo(products: usize, seed: u64) -> (Self, Vec<Product>) {
        Self::with_demo_catalog(products, seed, false).await
    }

    /// A warehouse holding the demo catalog's raw files and, with `images`, its photos.
    pub async fn with_demo_catalog(
        products: usize,
        seed: u64,
        images: bool,
    ) -> (Self, Vec<Product>) {
        let wh = Self::new().await;
        let options = DemoOptions {
            products,
            seed,
            images,
            progress: false,
        };
        demo::generate(wh.session.warehouse(), &options)
            .await
            .expect("demo data");
        (wh, demo::products(&options))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A copy of this warehouse's folder at another path, with an engine of its own on it.
    pub async fn copy(&self) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_folder(self.path(), dir.path());
        Self::open(dir).await
    }

    /// Runs one statement, panicking with the message on error.
    pub async fn sql(&self, sql: &str) -> StatementResult {
        self.session
            .execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}\nfailed: {e}"))
    }

    /// Runs one statement that must fail and returns its message.
    pub async fn error(&self, sql: &str) -> String {
        match self.session.execute(sql).await {
            Ok(_) => panic!("{sql} should fail"),
            Err(e) => e.to_string(),
        }
    }

    /// Runs one statement and returns its rows as strings (NULL as "NULL").
    pub async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        rows(&self.sql(sql).await.batches)
    }

    /// Runs one statement and returns its single value.
    pub async fn value(&self, sql: &str) -> String {
        let rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "{sql}: expected one row, got {rows:?}");
        assert_eq!(rows[0].len(), 1, "{sql}: expected one column, got {rows:?}");
        rows[0][0].clone()
    }

    /// The embeddings in the first column of a result (`ARRAY<FLOAT>` of fixed size), `None`
    /// for NULL.
    pub async fn vectors(&self, sql: &str) -> Vec<Option<Vec<f32>>> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::Float32Type;
        let mut out = Vec::new();
        for batch in self.sql(sql).await.batches {
            let list = batch.column(0).as_fixed_size_list().clone();
            for i in 0..list.len() {
                out.push((!list.is_null(i)).then(|| {
                    list.value(i)
                        .as_primitive::<Float32Type>()
                        .values()
                        .to_vec()
                }));
            }
        }
        out
    }

    /// Runs a script file of the repository's `sql/` folder.
    pub async fn run_sql_file(&self, name: &str) -> Vec<StatementResult> {
        let path = repo_path("sql").join(name);
        self.session
            .run_file(&path)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Copies the folder `from` (files and subfolders) into `to`.
pub fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Formats every cell of `batches` as a string.
pub fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    out
}

/// The folder of a CLIP fixture model (`tiny-a`, `tiny-b`), written by
/// `tests/fixtures/clip/make_clip_fixtures.py`.
pub fn clip_fixture(name: &str) -> String {
    repo_path("tests/fixtures/clip")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A path inside the repository.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Rounds like SQL's ROUND(x, 1).
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Kills the child process when dropped, so that a failing test leaves no server behind.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
