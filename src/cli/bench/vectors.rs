//! `vitrine bench vectors DIR`: vector search on clustered unit vectors, every way an
//! application reaches it, against exact search.
//!
//! It generates the vectors (and a `bucket` column, `id % 100`, for filters), indexes them with
//! the default parameters and measures, after a warm-up, recall@10, p50, p99 and queries per
//! second: through a SQL statement with the query vector as `$1` (the headline figures), with
//! the vector as 512 literals, through the in-process API one query per call and all in one
//! call, and straight through a Lance scanner; the time of each step of the statement; a
//! sweep of the search breadth; filters keeping 1 % and 10 % of the rows; 1, 2 and 4 callers at
//! once; and, with `--syncs N`, the same after N syncs of 1 % changes. It writes `base.f32`,
//! `queries.f32` and `vitrine.json` (figures, the index's location and each query's top-10) for
//! `benches/peers/vector_peers.py` and `benches/peers/pylance_check.py`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use datafusion::arrow::array::{
    AsArray, FixedSizeListArray, Float32Array, Int64Array, ListArray, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Int64Type, Schema};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use rand::SeedableRng;
use rayon::prelude::*;
use serde_json::json;
use vitrine::catalog::TableName;
use vitrine::sql::parser::{parse_statement, VitrineStatement};
use vitrine::sql::rewrite::rewrite_statement;
use vitrine::vector::filter::RowFilter;
use vitrine::vector::{resident, statements::index_entry};
use vitrine::{Engine, EngineConfig, EngineSession, Session};

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
    /// Syncs of 1 % changes applied before the last measurement (0: none).
    pub syncs: usize,
}

/// Searches run before timing, so that the index is read and caches filled.
const WARM_UP: usize = 20;
/// The index measured.
const INDEX: &str = "main.bench.vs";
/// The depth recall is measured at.
const K: usize = 10;
/// Rows per bucket value: `bucket = 7` keeps 1 % of the rows, `bucket < 10` 10 %.
const BUCKETS: i64 = 100;
/// The filters measured, with the buckets each keeps.
const FILTERS: [(&str, i64); 2] = [("bucket = 7", 1), ("bucket < 10", 10)];

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

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}

/// The rows of the bench table: `id`, `bucket` and `embedding`.
fn table(
    ids: &[i64],
    vectors: &[Vec<f32>],
    dimension: usize,
) -> Result<(Arc<Schema>, Vec<RecordBatch>)> {
    let field = Arc::new(Field::new("item", DataType::Float32, true));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("bucket", DataType::Int64, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::clone(&field), dimension as i32),
            false,
        ),
    ]));
    let mut batches = Vec::new();
    for (ids, vectors) in ids.chunks(8192).zip(vectors.chunks(8192)) {
        let values = Float32Array::from_iter_values(vectors.iter().flatten().copied());
        let embeddings = FixedSizeListArray::try_new(
            Arc::clone(&field),
            dimension as i32,
            Arc::new(values),
            None,
        )?;
        batches.push(RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(Int64Array::from_iter_values(
                    ids.iter().map(|i| i % BUCKETS),
                )),
                Arc::new(embeddings),
            ],
        )?);
    }
    Ok((schema, batches))
}

/// The exact top-10 ids of each query by inner product (the vectors are unit length), among the
/// rows whose bucket `keep` keeps.
fn exact(
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    keep: impl Fn(i64) -> bool + Sync,
) -> Vec<Vec<i64>> {
    queries
        .par_iter()
        .map(|q| {
            let mut scored: Vec<(f32, i64)> = base
                .iter()
                .enumerate()
                .filter(|(i, _)| keep(*i as i64 % BUCKETS))
                .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), i as i64))
                .collect();
            let k = K.min(scored.len());
            if k > 0 {
                scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            }
            scored.truncate(k);
            scored.into_iter().map(|s| s.1).collect()
        })
        .collect()
}

/// Which rows a filter keeps, by bucket.
fn keeps(filter: &str) -> impl Fn(i64) -> bool + Sync {
    let seven = filter == "bucket = 7";
    move |bucket| if seven { bucket == 7 } else { bucket < 10 }
}

/// Recall, latency and rate of one way of searching.
#[derive(Default, Clone, Copy)]
struct SearchFigures {
    recall: f64,
    p50: f64,
    p99: f64,
    qps: f64,
}

impl SearchFigures {
    fn row(&self, path: &str) -> String {
        format!(
            "| {path} | {:.3} | {:.3} | {:.3} | {:.0} |",
            self.recall, self.p50, self.p99, self.qps
        )
    }

    fn json(&self) -> serde_json::Value {
        json!({"recall_at_10": self.recall, "p50_ms": self.p50, "p99_ms": self.p99, "qps": self.qps})
    }
}

/// The share of `truth` found in `answers`.
fn recall(answers: &[Vec<i64>], truth: &[Vec<i64>]) -> f64 {
    let found: usize = answers
        .iter()
        .zip(truth)
        .map(|(got, want)| got.iter().filter(|id| want.contains(id)).count())
        .sum();
    let wanted: usize = truth.iter().map(Vec::len).sum();
    found as f64 / wanted.max(1) as f64
}

/// Runs `search` on every query after a warm-up and measures it; returns the figures and the
/// answers.
async fn measure<F, Fut>(
    queries: &[Vec<f32>],
    truth: &[Vec<i64>],
    mut search: F,
) -> Result<(SearchFigures, Vec<Vec<i64>>)>
where
    F: FnMut(Vec<f32>) -> Fut,
    Fut: Future<Output = Result<Vec<i64>>>,
{
    for q in queries.iter().take(WARM_UP) {
        search(q.clone()).await?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let mut answers = Vec::with_capacity(queries.len());
    let all = Instant::now();
    for q in queries {
        let q = q.clone();
        let started = Instant::now();
        answers.push(search(q).await?);
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let qps = queries.len() as f64 / all.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let figures = SearchFigures {
        recall: recall(&answers, truth),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        qps,
    };
    Ok((figures, answers))
}

/// The `id` column of search results.
fn ids(batches: &[RecordBatch]) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for batch in batches {
        let column = batch.column_by_name("id").context("an id column")?;
        ids.extend_from_slice(column.as_primitive::<Int64Type>().values());
    }
    Ok(ids)
}

/// A query vector as a statement parameter.
fn parameter(query: &[f32]) -> ScalarValue {
    ScalarValue::List(Arc::new(
        ListArray::from_iter_primitive::<Float32Type, _, _>([Some(query.iter().map(|x| Some(*x)))]),
    ))
}

/// The statement searched with the query vector as `$1`, and `filter` if any.
fn statement(filter: Option<&str>) -> String {
    let filter = filter.map_or(String::new(), |f| format!(", filters => '{f}'"));
    format!("SELECT id FROM vector_search(index => '{INDEX}', query_vector => $1, num_results => {K}{filter})")
}

/// The statement with the query vector as literals.
fn literal_statement(query: &[f32]) -> String {
    let literal: Vec<String> = query.iter().map(|x| format!("{x:?}")).collect();
    format!(
        "SELECT id FROM vector_search(index => '{INDEX}', query_vector => make_array({}), num_results => {K})",
        literal.join(", ")
    )
}

async fn sql_search(
    session: &EngineSession,
    filter: Option<&str>,
    q: Vec<f32>,
) -> Result<Vec<i64>> {
    let result = session
        .execute_with_parameters(&statement(filter), vec![parameter(&q)])
        .await?;
    ids(&result.batches)
}

async fn api_search(
    session: &EngineSession,
    filter: Option<&str>,
    q: Vec<f32>,
) -> Result<Vec<i64>> {
    let filter = filter.map(|f| RowFilter::Sql(f.to_string()));
    ids(&session
        .search_vectors(INDEX, &[q], K, filter.as_ref())
        .await?)
}

/// Generates the vectors, indexes them and measures every way of searching; prints the tables
/// for `benches/RESULTS.md` and writes `vitrine.json`.
pub async fn vectors(options: VectorBench<'_>, mut config: EngineConfig) -> Result<()> {
    std::fs::create_dir_all(options.dir)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let centers: Vec<Vec<f32>> = (0..options.clusters)
        .map(|_| unit((0..options.dimension).map(|_| normal(&mut rng)).collect()))
        .collect();
    let mut base = clustered(&mut rng, &centers, options.rows);
    let queries = clustered(&mut rng, &centers, options.queries);
    write_f32(&options.dir.join("base.f32"), &base)?;
    write_f32(&options.dir.join("queries.f32"), &queries)?;

    let warehouse = options.dir.join("warehouse");
    if warehouse.exists() {
        std::fs::remove_dir_all(&warehouse)?;
    }
    config.warehouse = warehouse.to_string_lossy().into_owned();
    let engine = Engine::open(config).await?;
    let session = Arc::new(engine.session()?);
    let all_ids: Vec<i64> = (0..options.rows as i64).collect();
    let (schema, batches) = table(&all_ids, &base, options.dimension)?;
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
        .execute(&format!("CREATE VECTOR INDEX {INDEX} ON main.bench.vectors (embedding) WITH (primary_key = 'id', columns = (id, bucket))"))
        .await?;
    let build = started.elapsed().as_secs_f64();
    let described = session.execute(&format!("DESCRIBE INDEX {INDEX}")).await?;
    let parameters = property(&described, "parameters").unwrap_or_default();
    let index_type = property(&described, "index_type").unwrap_or_default();
    println!(
        "{index_type} ({parameters}), {} rows × {}, built in {build:.1} s",
        options.rows, options.dimension
    );

    let truth = exact(&base, &queries, |_| true);
    let paths = paths(&session, &queries, &truth, &warehouse, &parameters).await?;
    let steps = steps(&session, &queries, paths.sql.p50).await?;
    let sweep = sweep(&session, &queries, &truth).await?;
    let mut filtered = Vec::new();
    for (filter, _) in FILTERS {
        let truth = exact(&base, &queries, keeps(filter));
        let (sql, _) = measure(&queries, &truth, |q| sql_search(&session, Some(filter), q)).await?;
        let (api, _) = measure(&queries, &truth, |q| api_search(&session, Some(filter), q)).await?;
        filtered.push((filter, sql, api));
    }
    let concurrency = concurrency(&engine, &session, &queries).await?;

    println!("| path | recall@10 | p50 ms | p99 ms | QPS |");
    println!("|---|---:|---:|---:|---:|");
    println!("{}", paths.sql.row("SQL statement, query vector as $1"));
    println!("{}", paths.literal.row("SQL statement, 512 literals"));
    println!("{}", paths.api.row("in-process API, one query per call"));
    println!(
        "| in-process API, {} queries in one call | {:.3} | | | {:.0} |",
        queries.len(),
        paths.batch.recall,
        paths.batch.qps
    );
    println!("{}", paths.lance.row("Lance scanner alone"));
    for (filter, sql, api) in &filtered {
        println!("{}", sql.row(&format!("SQL, filters '{filter}'")));
        println!("{}", api.row(&format!("in-process, filters '{filter}'")));
    }
    println!("\n| step of the $1 statement | p50 ms |\n|---|---:|");
    for (step, ms) in &steps {
        println!("| {step} | {ms:.3} |");
    }
    println!("\n| probes | recall@10 | p50 ms (in memory) |\n|---:|---:|---:|");
    for (probes, recall, p50) in &sweep {
        println!("| {probes} | {recall:.3} | {p50:.3} |");
    }
    println!("\n| callers | in-process QPS | SQL QPS |\n|---:|---:|---:|");
    for (callers, api, sql) in &concurrency {
        println!("| {callers} | {api:.0} | {sql:.0} |");
    }

    let mut after_syncs = serde_json::Value::Null;
    if options.syncs > 0 {
        let (seconds, figures) = syncs(
            &session,
            &options,
            &centers,
            &mut base,
            &queries,
            &warehouse,
            &parameters,
        )
        .await?;
        println!(
            "\nafter {} syncs of 1 % changes ({seconds:.2} s per sync):",
            options.syncs
        );
        for (path, f) in &figures {
            println!("{}", f.row(path));
        }
        after_syncs = json!({
            "syncs": options.syncs, "seconds_per_sync": seconds,
            "paths": figures.iter().map(|(p, f)| (p.to_string(), f.json())).collect::<BTreeMap<_, _>>(),
        });
    }

    std::fs::write(
        options.dir.join("vitrine.json"),
        json!({
            "rows": options.rows, "dimension": options.dimension, "queries": options.queries,
            "clusters": options.clusters, "build_s": build, "index_type": index_type,
            "parameters": parameters,
            "recall_at_10": paths.sql.recall, "p50_ms": paths.sql.p50, "p99_ms": paths.sql.p99,
            "qps": paths.sql.qps,
            "literal": paths.literal.json(), "in_process": paths.api.json(),
            "in_process_one_call_qps": paths.batch.qps,
            "lance_recall_at_10": paths.lance.recall, "lance_p50_ms": paths.lance.p50,
            "lance_p99_ms": paths.lance.p99, "lance_qps": paths.lance.qps,
            "steps_p50_ms": steps.iter().map(|(s, ms)| (s.to_string(), *ms)).collect::<BTreeMap<_, _>>(),
            "sweep": sweep.iter().map(|(p, r, ms)| json!({"nprobes": p, "recall_at_10": r, "p50_ms": ms})).collect::<Vec<_>>(),
            "filtered": filtered.iter().map(|(f, sql, api)| json!({"filter": f, "sql": sql.json(), "in_process": api.json()})).collect::<Vec<_>>(),
            "concurrency": concurrency.iter().map(|(c, api, sql)| json!({"callers": c, "in_process_qps": api, "sql_qps": sql})).collect::<Vec<_>>(),
            "after_syncs": after_syncs,
            "index": warehouse.join("main/bench/vs").to_string_lossy(),
            "top10": paths.answers,
        })
        .to_string(),
    )?;
    Ok(())
}

/// The figures of each way of searching without a filter.
struct Paths {
    sql: SearchFigures,
    literal: SearchFigures,
    api: SearchFigures,
    batch: SearchFigures,
    lance: SearchFigures,
    /// The top-10 of each query through the `$1` statement.
    answers: Vec<Vec<i64>>,
}

async fn paths(
    session: &EngineSession,
    queries: &[Vec<f32>],
    truth: &[Vec<i64>],
    warehouse: &Path,
    parameters: &str,
) -> Result<Paths> {
    let (sql, answers) = measure(queries, truth, |q| sql_search(session, None, q)).await?;
    let (literal, _) = measure(queries, truth, |q| async move {
        ids(&session.execute(&literal_statement(&q)).await?.batches)
    })
    .await?;
    let (api, _) = measure(queries, truth, |q| api_search(session, None, q)).await?;
    let started = Instant::now();
    let found = session.search_vectors(INDEX, queries, K, None).await?;
    let batch_qps = queries.len() as f64 / started.elapsed().as_secs_f64();
    let answers_in_one_call: Vec<Vec<i64>> = found
        .iter()
        .map(|b| ids(std::slice::from_ref(b)))
        .collect::<Result<_>>()?;
    let batch = SearchFigures {
        recall: recall(&answers_in_one_call, truth),
        qps: batch_qps,
        ..Default::default()
    };
    let lance = lance_alone(&warehouse.join("main/bench/vs"), parameters, queries, truth).await?;
    Ok(Paths {
        sql,
        literal,
        api,
        batch,
        lance,
        answers,
    })
}

/// The p50 of each step of the `$1` statement run alone, and what remains of the statement's
/// p50 (`total`): planning and running the outer query, shaping the result.
async fn steps(
    session: &EngineSession,
    queries: &[Vec<f32>],
    total: f64,
) -> Result<Vec<(&'static str, f64)>> {
    let timed = |started: Instant| started.elapsed().as_secs_f64() * 1000.0;
    let sql = statement(None);
    let (mut parse, mut refresh, mut entry, mut search) = (vec![], vec![], vec![], vec![]);
    let name = TableName::from_parts(&INDEX.split('.').map(str::to_string).collect::<Vec<_>>())?;
    for q in queries {
        let started = Instant::now();
        if let VitrineStatement::Query(mut statement) = parse_statement(&sql)? {
            rewrite_statement(&mut statement)?;
        }
        parse.push(timed(started));
        let started = Instant::now();
        session.refresh().await?;
        refresh.push(timed(started));
        let started = Instant::now();
        let (_, found) = index_entry(session, &name).await?;
        entry.push(timed(started));
        let index = resident::open(&found)
            .await?
            .context("the index is held in memory")?;
        let nprobes = found
            .params
            .get("nprobes")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let started = Instant::now();
        index.nearest(q, K, nprobes, None)?;
        search.push(timed(started));
    }
    let mut steps = vec![
        ("parse and rewrite", median(parse)),
        ("catalog refresh", median(refresh)),
        ("index entry", median(entry)),
        ("search in memory", median(search)),
    ];
    let known: f64 = steps.iter().map(|(_, ms)| ms).sum();
    steps.push((
        "the rest: plan and run the outer query, results",
        total - known,
    ));
    Ok(steps)
}

/// Recall and p50 of the in-memory search at each breadth from 1 probe to every partition.
async fn sweep(
    session: &EngineSession,
    queries: &[Vec<f32>],
    truth: &[Vec<i64>],
) -> Result<Vec<(usize, f64, f64)>> {
    let name = TableName::from_parts(&INDEX.split('.').map(str::to_string).collect::<Vec<_>>())?;
    let (_, entry) = index_entry(session, &name).await?;
    let Some(index) = resident::open(&entry).await? else {
        return Ok(Vec::new());
    };
    let partitions: usize = entry
        .params
        .get("num_partitions")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let mut rows = Vec::new();
    let breadths = std::iter::successors(Some(1usize), |n| Some(n * 2))
        .take_while(|n| *n < partitions)
        .chain([partitions]);
    for nprobes in breadths {
        let (figures, _) = measure(queries, truth, |q| {
            let found = index
                .nearest(&q, K, nprobes, None)
                .map_err(anyhow::Error::from);
            async move { ids(std::slice::from_ref(&found?)) }
        })
        .await?;
        rows.push((nprobes, figures.recall, figures.p50));
    }
    Ok(rows)
}

/// Queries per second with 1, 2 and 4 callers at once, each running every query: through the
/// in-process API (one shared session) and through `$1` statements (a session each).
async fn concurrency(
    engine: &Arc<Engine>,
    session: &Arc<EngineSession>,
    queries: &[Vec<f32>],
) -> Result<Vec<(usize, f64, f64)>> {
    let queries = Arc::new(queries.to_vec());
    let mut rows = Vec::new();
    for callers in [1usize, 2, 4] {
        let mut rates = Vec::new();
        for through_sql in [false, true] {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..callers {
                let queries = Arc::clone(&queries);
                let session = if through_sql {
                    Arc::new(engine.session()?)
                } else {
                    Arc::clone(session)
                };
                tasks.push(tokio::spawn(async move {
                    for q in queries.iter() {
                        if through_sql {
                            sql_search(&session, None, q.clone()).await?;
                        } else {
                            api_search(&session, None, q.clone()).await?;
                        }
                    }
                    Ok::<_, anyhow::Error>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            rates.push((callers * queries.len()) as f64 / started.elapsed().as_secs_f64());
        }
        rows.push((callers, rates[0], rates[1]));
    }
    Ok(rows)
}

/// Applies `options.syncs` rounds of changes to 1 % of the rows (new vectors), each followed by
/// `SYNC INDEX`, then measures again against exact search over the changed vectors; returns the
/// seconds per sync and the figures of each path.
async fn syncs(
    session: &EngineSession,
    options: &VectorBench<'_>,
    centers: &[Vec<f32>],
    base: &mut [Vec<f32>],
    queries: &[Vec<f32>],
    warehouse: &Path,
    parameters: &str,
) -> Result<(f64, Vec<(&'static str, SearchFigures)>)> {
    use rand::Rng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let changed = (options.rows / 100).max(1);
    let mut seconds = 0.0;
    for _ in 0..options.syncs {
        let ids: Vec<i64> = (0..changed)
            .map(|_| rng.random_range(0..options.rows as i64))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let vectors = clustered(&mut rng, centers, ids.len());
        for (id, vector) in ids.iter().zip(&vectors) {
            base[*id as usize] = vector.clone();
        }
        let (schema, batches) = table(&ids, &vectors, options.dimension)?;
        session.datafusion().deregister_table("bench_changes")?;
        session.datafusion().register_table(
            "bench_changes",
            Arc::new(MemTable::try_new(schema, vec![batches])?),
        )?;
        let started = Instant::now();
        session
            .execute("MERGE INTO main.bench.vectors t USING bench_changes s ON t.id = s.id WHEN MATCHED THEN UPDATE SET *")
            .await?;
        session.execute(&format!("SYNC INDEX {INDEX}")).await?;
        seconds += started.elapsed().as_secs_f64();
    }
    let truth = exact(base, queries, |_| true);
    let (sql, _) = measure(queries, &truth, |q| sql_search(session, None, q)).await?;
    let (api, _) = measure(queries, &truth, |q| api_search(session, None, q)).await?;
    let lance = lance_alone(
        &warehouse.join("main/bench/vs"),
        parameters,
        queries,
        &truth,
    )
    .await?;
    Ok((
        seconds / options.syncs as f64,
        vec![
            ("SQL statement, query vector as $1", sql),
            ("in-process API, one query per call", api),
            ("Lance scanner alone", lance),
        ],
    ))
}

/// The same searches straight through a Lance scanner on the index dataset (opened once, the
/// index's measured breadth applied): what Lance alone costs.
async fn lance_alone(
    location: &Path,
    parameters: &str,
    queries: &[Vec<f32>],
    truth: &[Vec<i64>],
) -> Result<SearchFigures> {
    let params: BTreeMap<String, String> = parameters
        .split(", ")
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let dataset = lance::Dataset::open(&location.to_string_lossy()).await?;
    let (figures, _) = measure(queries, truth, |q| {
        let dataset = &dataset;
        let params = &params;
        async move { ids(&[lance_search(dataset, params, q).await?]) }
    })
    .await?;
    Ok(figures)
}

/// The 10 nearest rows' ids and distances, straight from the scanner.
async fn lance_search(
    dataset: &lance::Dataset,
    params: &BTreeMap<String, String>,
    query: Vec<f32>,
) -> lance::Result<RecordBatch> {
    let mut scanner = dataset.scan();
    scanner.nearest("embedding", &Float32Array::from(query), K)?;
    vitrine::vector::index::apply_breadth(&mut scanner, params, K);
    scanner.disable_scoring_autoprojection();
    scanner.project(&["id", "_distance"])?;
    scanner.try_into_batch().await
}
