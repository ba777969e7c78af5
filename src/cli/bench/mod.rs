//! `vitrine bench clip DIR` and `vitrine bench vectors DIR`: throughput of the CLIP functions
//! and of vector search through SQL, for `benches/RESULTS.md`; `vitrine bench quality`: how well
//! two vector indexes retrieve ([`vitrine::quality`], its report by [`vitrine::bench`]).
//!
//! For `clip`, `DIR` is what `benches/peers/clip_peers.py` prepares and measures transformers on: `model/` (a
//! CLIP folder), `texts.txt` (one text per line) and `images.txt` (one photo path per line). For
//! each batch size the command times `SELECT COUNT(clip_text_embed(text))` over the texts and
//! `SELECT COUNT(clip_image_embed(path))` over the photos (reading, decoding, preprocessing and
//! the model), after one warm-up statement that loads the model, and prints rows per second.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use vitrine::{Engine, EngineConfig, EngineSession, Session};

mod vectors;

pub use vectors::{vectors, VectorBench};

/// Options of `vitrine bench clip`.
pub struct ClipBench<'a> {
    /// The prepared folder.
    pub dir: &'a Path,
    /// Batch sizes to measure.
    pub batch_sizes: &'a [usize],
    /// Timed runs per measurement; the best is reported.
    pub repeat: usize,
}

fn lines(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

fn register(session: &EngineSession, name: &str, column: &str, values: Vec<String>) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(values))],
    )?;
    session.datafusion().register_table(
        name,
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;
    Ok(())
}

/// Best rows per second of `sql` over `rows` rows.
async fn rate(session: &EngineSession, sql: &str, rows: usize, repeat: usize) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        session.execute(sql).await?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(rows as f64 / best)
}

/// Runs the benchmark and prints a Markdown table.
pub async fn clip(options: ClipBench<'_>, mut config: EngineConfig) -> Result<()> {
    let model = options.dir.join("model");
    config.warehouse = "memory:///".into();
    config.settings.insert(
        "vitrine.model.clip".into(),
        model.to_string_lossy().into_owned(),
    );
    let session = Engine::open(config).await?.session()?;
    // The tables below are registered outside a statement: the catalog must be read first.
    session.refresh().await?;
    let texts = lines(&options.dir.join("texts.txt"))?;
    let images = lines(&options.dir.join("images.txt"))?;
    let (n_texts, n_images) = (texts.len(), images.len());
    register(&session, "bench_texts", "text", texts)?;
    register(&session, "bench_images", "path", images)?;
    session.execute("SELECT clip_text_embed('warm up')").await?;
    println!("| batch | texts/s | images/s |");
    println!("|---:|---:|---:|");
    for &batch in options.batch_sizes {
        session
            .execute(&format!("SET vitrine.udf.batch_size = {batch}"))
            .await?;
        let texts = rate(
            &session,
            "SELECT COUNT(clip_text_embed(text)) FROM bench_texts",
            n_texts,
            options.repeat,
        )
        .await?;
        let images = rate(
            &session,
            "SELECT COUNT(clip_image_embed(path)) FROM bench_images",
            n_images,
            options.repeat,
        )
        .await?;
        println!("| {batch} | {texts:.1} | {images:.1} |");
    }
    Ok(())
}

/// `vitrine bench quality`: runs the benchmark, writes its report into `out` and prints the
/// headline.
pub async fn quality(
    options: &vitrine::quality::QualityOptions,
    out: &Path,
    config: EngineConfig,
) -> Result<()> {
    use vitrine::bench::{record, report};
    let session = Engine::open(config).await?.session()?;
    let result = vitrine::quality::run(&session, options).await?;
    report::write(&result, out)?;
    let (table, run_id) = record::record(&session, &result).await?;
    println!("{}", report::markdown(&result));
    eprintln!("{}", report::headline(&result));
    eprintln!(
        "report written to {}; run {run_id} recorded in {table}",
        out.display()
    );
    Ok(())
}
