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

/// Options of `vitrine bench vectors`.
pub struct VectorBench<'a> {
    /// Where the vectors, the warehouse and the figures go.
    pub dir: &'a Path,
    /// Rows in the indexed table.
    pub rows: usize,
    /// Queries (drawn like the rows, not in the table).
    pub queries: usize,
    /// Vector length.
    pub dimension: usize,
    /// Clusters the vectors are drawn around.
    pub clusters: usize,
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl rand::Rng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// `n` unit vectors around `centers`, each center plus Gaussian noise of norm ≈ 0.8.
fn clustered(rng: &mut impl rand::Rng, centers: &[Vec<f32>], n: usize) -> Vec<Vec<f32>> {
    let dimension = centers[0].len();
    let scale = 0.8 / (dimension as f32).sqrt();
    (0..n)
        .map(|_| {
            let center = &centers[rng.random_range(0..centers.len())];
            unit(center.iter().map(|c| c + scale * normal(rng)).collect())
        })
        .collect()
}

fn write_f32(path: &Path, vectors: &[Vec<f32>]) -> Result<()> {
    let bytes: Vec<u8> = vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The value of `key` in a `DESCRIBE INDEX` result.
fn property(result: &vitrine::StatementResult, key: &str) -> Option<String> {
    use datafusion::arrow::array::AsArray;
    result.batches.iter().find_map(|batch| {
        let (keys, values) = (
            batch.column(0).as_string::<i32>(),
            batch.column(1).as_string::<i32>(),
        );
        (0..batch.num_rows())
            .find(|&i| keys.value(i) == key)
            .map(|i| values.value(i).to_string())
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Generates clustered unit vectors, indexes them with the default parameters and measures build
/// time, recall@10 against exact search, latency percentiles and queries per second through
/// `vector_search`; writes `base.f32`, `queries.f32` and `vitrine.json` (figures, the index's
/// location and each query's top-10) for the FAISS peer and the pylance check.
pub async fn vectors(options: VectorBench<'_>, mut config: EngineConfig) -> Result<()> {
    use datafusion::arrow::array::{FixedSizeListArray, Float32Array, Int64Array};
    use rand::SeedableRng;
    use rayon::prelude::*;

    std::fs::create_dir_all(options.dir)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let centers: Vec<Vec<f32>> = (0..options.clusters)
        .map(|_| unit((0..options.dimension).map(|_| normal(&mut rng)).collect()))
        .collect();
    let base = clustered(&mut rng, &centers, options.rows);
    let queries = clustered(&mut rng, &centers, options.queries);
    write_f32(&options.dir.join("base.f32"), &base)?;
    write_f32(&options.dir.join("queries.f32"), &queries)?;

    let warehouse = options.dir.join("warehouse");
    if warehouse.exists() {
        std::fs::remove_dir_all(&warehouse)?;
    }
    config.warehouse = warehouse.to_string_lossy().into_owned();
    let session = Engine::open(config).await?.session()?;
    let field = Arc::new(Field::new("item", DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::clone(&field), options.dimension as i32),
            false,
        ),
    ]));
    let mut batches = Vec::new();
    for (chunk_index, chunk) in base.chunks(8192).enumerate() {
        let ids =
            Int64Array::from_iter_values((0..chunk.len()).map(|i| (chunk_index * 8192 + i) as i64));
        let values = Float32Array::from_iter_values(chunk.iter().flatten().copied());
        let vectors = FixedSizeListArray::try_new(
            Arc::clone(&field),
            options.dimension as i32,
            Arc::new(values),
            None,
        )?;
        batches.push(RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(ids), Arc::new(vectors)],
        )?);
    }
    // The schema first: a fresh warehouse has no catalog to register the vectors in before.
    session.execute("CREATE SCHEMA main.bench").await?;
    session.datafusion().register_table(
        "bench_vectors",
        Arc::new(MemTable::try_new(schema, vec![batches])?),
    )?;
    session
        .execute("CREATE TABLE main.bench.vectors AS SELECT * FROM bench_vectors")
        .await?;
    let started = Instant::now();
    session
        .execute("CREATE VECTOR INDEX main.bench.vs ON main.bench.vectors (embedding) WITH (primary_key = 'id', columns = (id))")
        .await?;
    let build = started.elapsed().as_secs_f64();

    // Exact top-10 by inner product (the vectors are unit length).
    let truth: Vec<Vec<i64>> = queries
        .par_iter()
        .map(|q| {
            let mut scored: Vec<(f32, i64)> = base
                .iter()
                .enumerate()
                .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), i as i64))
                .collect();
            scored.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(10);
            scored.into_iter().map(|s| s.1).collect()
        })
        .collect();

    let statement = |q: &[f32]| {
        let literal = q
            .iter()
            .map(|x| format!("{x:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT id FROM vector_search(index => 'main.bench.vs', query_vector => make_array({literal}), num_results => 10)"
        )
    };
    // Warm-up: the index's partitions read once, the caches filled.
    for q in queries.iter().take(WARM_UP) {
        session.execute(&statement(q)).await?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let mut hits = 0;
    let mut answers: Vec<Vec<i64>> = Vec::with_capacity(queries.len());
    let all = Instant::now();
    for (q, want) in queries.iter().zip(&truth) {
        let sql = statement(q);
        let started = Instant::now();
        let result = session.execute(&sql).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let mut answer = Vec::new();
        for batch in &result.batches {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .context("id column")?;
            answer.extend_from_slice(ids.values());
        }
        hits += answer.iter().filter(|id| want.contains(id)).count();
        answers.push(answer);
    }
    let qps = queries.len() as f64 / all.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    // What parsing and planning a statement with a 512-float literal costs by itself.
    let mut overhead = Vec::with_capacity(queries.len());
    for q in &queries {
        let literal = q
            .iter()
            .map(|x| format!("{x:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let started = Instant::now();
        session
            .execute(&format!("SELECT array_length(make_array({literal}))"))
            .await?;
        overhead.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    overhead.sort_by(f64::total_cmp);
    let sql_p50 = percentile(&overhead, 0.5);
    let recall = hits as f64 / (10 * queries.len()) as f64;
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let described = session.execute("DESCRIBE INDEX main.bench.vs").await?;
    let parameters = property(&described, "parameters").unwrap_or_default();
    let lance = lance_alone(
        &warehouse.join("main/bench/vs"),
        &parameters,
        &queries,
        &truth,
    )
    .await?;
    let index_type = property(&described, "index_type").unwrap_or_default();
    println!(
        "{index_type} ({parameters}), {} rows × {}, built in {build:.1} s",
        options.rows, options.dimension
    );
    println!("| path | recall@10 | p50 ms | p99 ms | QPS |");
    println!("|---|---:|---:|---:|---:|");
    println!("| SQL statement | {recall:.3} | {p50:.2} | {p99:.2} | {qps:.0} |");
    println!(
        "| Lance scanner alone | {:.3} | {:.2} | {:.2} | {:.0} |",
        lance.recall, lance.p50, lance.p99, lance.qps
    );
    println!("| the same statement without the search | | {sql_p50:.2} | | |");
    std::fs::write(
        options.dir.join("vitrine.json"),
        serde_json::json!({
            "rows": options.rows, "dimension": options.dimension, "queries": options.queries,
            "clusters": options.clusters, "build_s": build, "recall_at_10": recall,
            "index_type": index_type,
            "p50_ms": p50, "p99_ms": p99, "qps": qps, "parameters": parameters,
            "statement_without_search_p50_ms": sql_p50,
            "lance_recall_at_10": lance.recall, "lance_p50_ms": lance.p50,
            "lance_p99_ms": lance.p99, "lance_qps": lance.qps,
            "index": warehouse.join("main/bench/vs").to_string_lossy(),
            "top10": answers,
        })
        .to_string(),
    )?;
    Ok(())
}

/// Searches run before timing, so that the index's partitions are read and caches filled.
const WARM_UP: usize = 20;

/// Recall, latency and rate of one way of searching.
struct SearchFigures {
    recall: f64,
    p50: f64,
    p99: f64,
    qps: f64,
}

/// The same searches straight through a Lance scanner on the index dataset (opened once, the
/// index's measured breadth applied): what the SQL path costs above Lance.
async fn lance_alone(
    location: &Path,
    parameters: &str,
    queries: &[Vec<f32>],
    truth: &[Vec<i64>],
) -> Result<SearchFigures> {
    use datafusion::arrow::array::Int64Array;
    let params: std::collections::BTreeMap<String, String> = parameters
        .split(", ")
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dataset = lance::Dataset::open(&location.to_string_lossy()).await?;
    let search = |q: &[f32]| lance_search(&dataset, &params, q.to_vec());
    for q in queries.iter().take(WARM_UP) {
        search(q).await?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let mut hits = 0;
    let all = Instant::now();
    for (q, want) in queries.iter().zip(truth) {
        let started = Instant::now();
        let batch = search(q).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let ids = batch
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .context("id column")?;
        hits += ids.values().iter().filter(|id| want.contains(id)).count();
    }
    let qps = queries.len() as f64 / all.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(SearchFigures {
        recall: hits as f64 / (10 * queries.len()) as f64,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        qps,
    })
}

/// The 10 nearest rows' ids and distances, straight from the scanner.
async fn lance_search(
    dataset: &lance::Dataset,
    params: &std::collections::BTreeMap<String, String>,
    query: Vec<f32>,
) -> lance::Result<RecordBatch> {
    let mut scanner = dataset.scan();
    scanner.nearest(
        "embedding",
        &datafusion::arrow::array::Float32Array::from(query),
        10,
    )?;
    vitrine::vector::index::apply_breadth(&mut scanner, params, 10);
    scanner.disable_scoring_autoprojection();
    scanner.project(&["id", "_distance"])?;
    scanner.try_into_batch().await
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
