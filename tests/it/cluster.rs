//! The same statements across workers: a coordinator engine planning over two in-process
//! `vitrine worker` servers on loopback, against one warehouse.

use std::sync::Arc;

use vitrine::cluster::Workers;
use vitrine::{Engine, EngineConfig, EngineSession};

use std::path::Path;
use std::time::Duration;

use crate::support::{clip_fixture, repo_path, rows, Server, TestWarehouse};

/// An engine over `wh`'s warehouse with the test CLIP, planning across `workers` when given.
async fn engine(wh: &TestWarehouse, workers: Option<Workers>) -> Arc<Engine> {
    let mut config = EngineConfig::new(wh.path().to_str().unwrap());
    config
        .settings
        .insert("vitrine.model.clip".into(), clip_fixture("tiny-a"));
    config.workers = workers;
    Engine::open(config).await.expect("open engine")
}

/// Two workers serving on free loopback ports; their engines count the plans they are sent.
async fn start_workers(wh: &TestWarehouse) -> (Workers, Vec<Arc<Engine>>) {
    let mut urls = Vec::new();
    let mut engines = Vec::new();
    for _ in 0..2 {
        let engine = engine(wh, None).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}", listener.local_addr().unwrap()));
        let serving = Arc::clone(&engine);
        tokio::spawn(async move { serving.serve_worker(listener).await });
        engines.push(engine);
    }
    (
        Workers::parse(urls.iter().map(String::as_str)).unwrap(),
        engines,
    )
}

/// `main.default.sales`: 55,000 rows in 8 fragments (each append is one), 37 items in the first
/// and 11 in the others.
async fn sales(wh: &TestWarehouse) {
    wh.sql(
        "CREATE TABLE main.default.sales AS SELECT CAST(value AS INT) AS id, \
         concat('item ', CAST(value % 37 AS STRING)) AS item, CAST(value % 7 AS DOUBLE) AS price \
         FROM range(20000) ORDER BY id",
    )
    .await;
    // Each ORDER BY makes its query one stream, so each write adds one fragment whatever the
    // number of cores (a write's partitions are written side by side, one fragment each).
    for i in 1..8 {
        wh.sql(&format!(
            "INSERT INTO main.default.sales SELECT CAST(value AS INT) + {base}, \
             concat('item ', CAST(value % 11 AS STRING)), CAST(value % 5 AS DOUBLE) FROM range(5000) ORDER BY 1",
            base = i * 100_000
        ))
        .await;
    }
}

/// Every file under `folder`, at any depth.
fn walk(folder: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

async fn query(session: &EngineSession, sql: &str) -> Vec<Vec<String>> {
    let result = session
        .execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}\nfailed: {e}"));
    rows(&result.batches)
}

#[tokio::test(flavor = "multi_thread")]
async fn queries_run_across_two_workers_with_the_results_of_one_node() {
    let wh = TestWarehouse::new().await;
    sales(&wh).await;
    wh.sql(
        "CREATE TABLE main.default.items AS SELECT concat('item ', CAST(value AS STRING)) AS item, \
         CASE WHEN value % 2 = 0 THEN 'even' ELSE 'odd' END AS kind FROM range(40)",
    )
    .await;
    wh.sql(
        "CREATE TABLE main.default.regions USING DELTA AS SELECT CAST(value AS INT) AS id, \
            CASE WHEN value % 2 = 0 THEN 'north' ELSE 'south' END AS region FROM range(100)",
    )
    .await;
    // A Delta table of three data files (one per write).
    wh.sql(
        "CREATE TABLE main.default.visits USING DELTA AS SELECT CAST(value AS INT) AS id, \
         value % 7 AS k FROM range(10000)",
    )
    .await;
    for modulo in [5, 3] {
        wh.sql(&format!(
            "INSERT INTO main.default.visits SELECT CAST(value AS INT), value % {modulo} \
             FROM range(5000)"
        ))
        .await;
    }
    let (workers, worker_engines) = start_workers(&wh).await;
    let local = engine(&wh, None).await.session().unwrap();
    let distributed = engine(&wh, Some(workers)).await.session().unwrap();

    let queries = [
        "SELECT k, COUNT(*), SUM(id) FROM main.default.visits GROUP BY k ORDER BY k",
        "SELECT COUNT(*), MAX(k) FROM main.default.visits WHERE id > 4000 AND k < 2",
        "SELECT k, COUNT(*) FROM main.default.visits VERSION AS OF 1 GROUP BY k ORDER BY k",
        "SELECT v.k, COUNT(*) FROM main.default.visits v JOIN main.default.sales s ON v.id = s.id \
         GROUP BY v.k ORDER BY v.k",
        "SELECT item, COUNT(*) AS n, SUM(price) AS total, MAX(id) AS last FROM main.default.sales \
         GROUP BY item ORDER BY item",
        "SELECT i.kind, COUNT(*), ROUND(AVG(s.price), 6) FROM main.default.sales s \
         JOIN main.default.items i ON s.item = i.item WHERE s.id % 3 = 0 GROUP BY i.kind ORDER BY 1",
        "SELECT COUNT(*), SUM(id) FROM main.default.sales WHERE price > 2",
        "SELECT size(collect_list(id)) FROM main.default.sales WHERE item = 'item 3'",
        "SELECT COUNT(*) FROM (SELECT id FROM main.default.sales WHERE price = 1 LIMIT 3000)",
        // Which rows a LIMIT keeps is not defined, how many is.
        "SELECT COUNT(*), COUNT(DISTINCT item) > 0 FROM \
         (SELECT id, item FROM main.default.sales WHERE price = 1 LIMIT 3000)",
        "SELECT COUNT(*) FROM main.default.sales",
        "SELECT r.region, COUNT(*) FROM main.default.sales s JOIN main.default.regions r \
         ON s.id % 100 = r.id GROUP BY r.region ORDER BY 1",
    ];
    for sql in queries {
        assert_eq!(
            query(&distributed, sql).await,
            query(&local, sql).await,
            "{sql}"
        );
    }
    // The plan has stages joined by network boundaries.
    let explained = format!(
        "{:?}",
        query(&distributed, &format!("EXPLAIN {}", queries[4])).await
    );
    assert!(explained.contains("DistributedExec"), "{explained}");
    assert!(
        explained.contains("NetworkShuffleExec") || explained.contains("NetworkCoalesceExec"),
        "{explained}"
    );
    // The first fragment (20,000 rows) is read in 9 slices, each later one (5,000) in 2.
    assert!(
        explained.contains("LanceScanExec") && explained.contains("8 fragments in 23 partitions"),
        "{explained}"
    );
    let explained = format!(
        "{:?}",
        query(&distributed, &format!("EXPLAIN {}", queries[0])).await
    );
    assert!(
        explained.contains("DeltaFileScanExec") && explained.contains("3 files in 3 partitions"),
        "{explained}"
    );
    // Both workers ran tasks.
    for (i, worker) in worker_engines.iter().enumerate() {
        assert!(worker.worker_plans() > 0, "worker {i} ran nothing");
    }
    // A write runs its query across the workers and commits here.
    distributed
        .execute(
            "CREATE TABLE main.default.totals AS SELECT item, SUM(price) AS total \
             FROM main.default.sales GROUP BY item",
        )
        .await
        .unwrap();
    assert_eq!(
        query(
            &local,
            "SELECT COUNT(*), SUM(total) FROM main.default.totals"
        )
        .await,
        query(
            &local,
            "SELECT COUNT(DISTINCT item), SUM(price) FROM main.default.sales"
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_may_have_the_warehouse_at_another_path() {
    let wh = TestWarehouse::new().await;
    sales(&wh).await;
    wh.sql(
        "CREATE TABLE main.default.visits USING DELTA AS SELECT CAST(value AS INT) AS id, \
         value % 7 AS k FROM range(10000)",
    )
    .await;
    wh.sql("INSERT INTO main.default.visits SELECT CAST(value AS INT), value % 5 FROM range(5000)")
        .await;
    // The workers' warehouse is the same data at another path (a mount elsewhere).
    let mounted = wh.copy().await;
    let (workers, worker_engines) = start_workers(&mounted).await;
    let local = engine(&wh, None).await.session().unwrap();
    let queries = [
        "SELECT item, COUNT(*), SUM(price) FROM main.default.sales GROUP BY item ORDER BY item",
        "SELECT k, COUNT(*), SUM(id) FROM main.default.visits GROUP BY k ORDER BY k",
        "SELECT v.k, COUNT(*) FROM main.default.visits v JOIN main.default.sales s ON v.id = s.id \
         GROUP BY v.k ORDER BY v.k",
    ];
    let mut expected = Vec::new();
    for sql in queries {
        expected.push(query(&local, sql).await);
    }
    // The coordinator plans from its tables' metadata; the rows must come from the workers' own
    // path: the coordinator's data files are removed.
    let remove_data = |folder: &Path, extension: &str| {
        for file in walk(folder) {
            if file.extension().is_some_and(|e| e == extension) {
                std::fs::remove_file(&file).unwrap();
            }
        }
    };
    remove_data(&wh.path().join("main/default/sales/data"), "lance");
    remove_data(&wh.path().join("main/default/visits"), "parquet");
    assert!(
        local.execute(queries[0]).await.is_err(),
        "the data files are gone here"
    );
    let distributed = engine(&wh, Some(workers)).await.session().unwrap();
    for (sql, expected) in queries.iter().zip(&expected) {
        assert_eq!(&query(&distributed, sql).await, expected, "{sql}");
    }
    for (i, worker) in worker_engines.iter().enumerate() {
        assert!(worker.worker_plans() > 0, "worker {i} ran nothing");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_worker_is_reported_before_anything_runs() {
    let wh = TestWarehouse::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let workers = Workers::parse([format!("127.0.0.1:{port}").as_str()]).unwrap();
    let mut config = EngineConfig::new(wh.path().to_str().unwrap());
    config.workers = Some(workers);
    let err = Engine::open(config).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("worker http://127.0.0.1:{port}/ is unreachable")),
        "{err}"
    );
}

/// Whether two results are equal, floats (alone or in lists) to 1e-4 relative: a model's
/// batches can be cut differently across workers, which moves the last bits of its outputs.
fn assert_same_rows(distributed: &[Vec<String>], local: &[Vec<String>], what: &str) {
    fn numbers(cell: &str) -> Option<Vec<f64>> {
        let inner = cell
            .strip_prefix('[')
            .and_then(|c| c.strip_suffix(']'))
            .unwrap_or(cell);
        inner.split(", ").map(|v| v.parse().ok()).collect()
    }
    assert_eq!(distributed.len(), local.len(), "{what}: row counts");
    for (d, l) in distributed.iter().zip(local) {
        assert_eq!(d.len(), l.len(), "{what}");
        for (a, b) in d.iter().zip(l) {
            if a == b {
                continue;
            }
            let close = match (numbers(a), numbers(b)) {
                (Some(x), Some(y)) => {
                    x.len() == y.len()
                        && x.iter()
                            .zip(&y)
                            .all(|(x, y)| (x - y).abs() <= 1e-4 * x.abs().max(y.abs()).max(1.0))
                }
                _ => false,
            };
            assert!(
                close,
                "{what}: {a} (distributed) != {b} (one node)\nrow {d:?}\nvs  {l:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_and_seeds_travel_with_each_task() {
    let wh = TestWarehouse::new().await;
    sales(&wh).await;
    // The workers start with CLIP tiny-a; the coordinator's session switches to tiny-b.
    let (workers, worker_engines) = start_workers(&wh).await;
    let local = engine(&wh, None).await.session().unwrap();
    let distributed = engine(&wh, Some(workers)).await.session().unwrap();
    let tiny_b = format!("SET vitrine.model.clip = '{}'", clip_fixture("tiny-b"));
    query(&local, &tiny_b).await;
    query(&distributed, &tiny_b).await;
    let embed = "SELECT id, clip_text_embed(item) FROM main.default.sales WHERE id % 997 = 0 \
                 ORDER BY id";
    let before = worker_engines.iter().map(|w| w.worker_plans()).sum::<u64>();
    assert_same_rows(
        &query(&distributed, embed).await,
        &query(&local, embed).await,
        embed,
    );
    assert!(
        worker_engines.iter().map(|w| w.worker_plans()).sum::<u64>() > before,
        "the workers embedded nothing"
    );
    // The session time zone reads zone-less timestamp text on the workers too.
    for session in [&local, &distributed] {
        query(session, "SET TIME ZONE 'America/Los_Angeles'").await;
    }
    let zoned =
        "SELECT id, CAST(CAST(concat('2026-03-10 ', lpad(CAST(id % 24 AS STRING), 2, '0'), \
                 ':30:00') AS TIMESTAMP) AS BIGINT) FROM main.default.sales WHERE id % 991 = 0 \
                 ORDER BY id";
    let in_zone = query(&distributed, zoned).await;
    assert_eq!(in_zone, query(&local, zoned).await);
    query(&local, "SET TIME ZONE 'UTC'").await;
    assert_ne!(
        in_zone,
        query(&local, zoned).await,
        "the zone changes nothing"
    );
    // Every task draws its own values: none repeats across the 8 fragments' tasks.
    let drawn = query(
        &distributed,
        "SELECT COUNT(*), COUNT(DISTINCT r) FROM (SELECT rand() AS r FROM main.default.sales)",
    )
    .await;
    assert_eq!(drawn, vec![vec!["55000".to_string(), "55000".to_string()]]);
}

/// Rows a model function fails on become NULL on the workers as on one node, and the
/// statement's warning counts and names them there too; a table written by model functions on
/// the workers records the model, as one written on one node does.
#[tokio::test(flavor = "multi_thread")]
async fn what_model_functions_did_on_workers_reaches_the_statements_report() {
    let wh = TestWarehouse::new().await;
    sales(&wh).await;
    let (workers, worker_engines) = start_workers(&wh).await;
    let local = engine(&wh, None).await.session().unwrap();
    let distributed = engine(&wh, Some(workers)).await.session().unwrap();
    let missing = "SELECT id, clip_image_embed(concat('/no/such/photo-', CAST(id AS STRING), \
                   '.jpg')) IS NULL FROM main.default.sales WHERE id % 997 = 0 ORDER BY id";
    let before = worker_engines.iter().map(|w| w.worker_plans()).sum::<u64>();
    let (spread, alone) = (
        distributed.execute(missing).await.unwrap(),
        local.execute(missing).await.unwrap(),
    );
    assert!(
        worker_engines.iter().map(|w| w.worker_plans()).sum::<u64>() > before,
        "the workers ran nothing"
    );
    let all_null = rows(&alone.batches);
    assert!(all_null.len() > 40 && all_null.iter().all(|r| r[1] == "true"));
    assert_eq!(rows(&spread.batches), all_null);
    let count = format!("{} row(s) could not be processed", all_null.len());
    for (how, result) in [("one node", &alone), ("workers", &spread)] {
        assert_eq!(result.warnings.len(), 1, "{how}: {:?}", result.warnings);
        let warning = &result.warnings[0];
        assert!(warning.starts_with(&count), "{how}: {warning}");
        assert!(
            warning.contains("clip_image_embed") && warning.contains("/no/such/photo-"),
            "{how}: {warning}"
        );
    }
    // The model a table's vectors come from, recorded from the workers' tasks.
    for (session, table) in [(&local, "alone"), (&distributed, "spread")] {
        query(
            session,
            &format!(
                "CREATE TABLE main.default.{table} AS SELECT id, clip_text_embed(item) AS v \
                 FROM main.default.sales WHERE id % 997 = 0"
            ),
        )
        .await;
    }
    let models = |shown: Vec<Vec<String>>| {
        let mut models: Vec<Vec<String>> = shown
            .into_iter()
            .filter(|r| r[0].starts_with("vitrine.model."))
            .collect();
        models.sort();
        models
    };
    let recorded = models(query(&local, "SHOW TBLPROPERTIES main.default.alone").await);
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(
        models(query(&local, "SHOW TBLPROPERTIES main.default.spread").await),
        recorded
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn phase_scripts_give_the_same_tables_across_workers_as_on_one_node() {
    const PHASES: [&str; 6] = [
        "00_load_products.sql",
        "01_extract_attributes.sql",
        "01_quality_report.sql",
        "02_join_enriched_attributes.sql",
        "03_generate_embeddings.sql",
        "04_vector_indexes.sql",
    ];
    let setup = [
        format!(
            "SET vitrine.model.smolvlm = '{}'",
            repo_path("tests/fixtures/smolvlm/scripted").display()
        ),
        "SET vitrine.clock = '2026-01-01T00:00:00Z'".to_string(),
    ];
    // The same demo catalog in two warehouses: one runs the phases alone, the other across two
    // workers (which know neither SET: they come with each task).
    let (alone, _) = TestWarehouse::with_demo_catalog(150, 23, true).await;
    let (spread, _) = TestWarehouse::with_demo_catalog(150, 23, true).await;
    let (workers, worker_engines) = start_workers(&spread).await;
    let local = engine(&alone, None).await.session().unwrap();
    let distributed = engine(&spread, Some(workers)).await.session().unwrap();
    for session in [&local, &distributed] {
        for statement in &setup {
            query(session, statement).await;
        }
        for phase in PHASES {
            session
                .run_file(&repo_path("sql").join(phase))
                .await
                .unwrap_or_else(|e| panic!("{phase}: {e}"));
        }
    }
    for (i, worker) in worker_engines.iter().enumerate() {
        assert!(worker.worker_plans() > 0, "worker {i} ran nothing");
    }
    let tables = "SHOW TABLES IN main.fashion_demo";
    let names = query(&local, tables).await;
    assert_eq!(query(&distributed, tables).await, names);
    assert!(names.len() >= 5, "{names:?}");
    for table in names.iter().map(|row| row[1].clone()) {
        let contents = format!("SELECT * FROM main.fashion_demo.{table}");
        let (mut d, mut l) = (
            query(&distributed, &contents).await,
            query(&local, &contents).await,
        );
        d.sort();
        l.sort();
        assert_same_rows(&d, &l, &table);
    }
}

/// A `vitrine worker` child process on a free loopback port of `wh`, logging into `log`, and
/// its URL.
async fn worker_process(wh: &TestWarehouse, log: &str) -> (Server, String) {
    let log = wh.path().join(log);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .arg("--warehouse")
        .arg(wh.path())
        .arg("--model")
        .arg(format!("clip={}", clip_fixture("tiny-a")))
        .args(["worker", "--addr", "127.0.0.1:0"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let server = Server(child);
    for _ in 0..600 {
        if let Some(url) = listening_address(&log) {
            return (server, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the worker did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// The address a worker printed, once its line is whole.
fn listening_address(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let rest = text.split("worker listening on ").nth(1)?;
    let (address, _) = rest.split_once('\n')?;
    Some(address.trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_query_fails_the_statement_naming_it_and_changes_nothing() {
    let wh = TestWarehouse::new().await;
    sales(&wh).await;
    wh.sql("CREATE TABLE main.default.pair_totals (item STRING, total DOUBLE)")
        .await;
    let (first, first_url) = worker_process(&wh, "worker-0.log").await;
    let (mut second, second_url) = worker_process(&wh, "worker-1.log").await;
    let workers = Workers::parse([first_url.as_str(), second_url.as_str()]).unwrap();
    let distributed = engine(&wh, Some(workers)).await.session().unwrap();
    let history = "DESCRIBE HISTORY main.default.pair_totals";
    let versions = wh.rows(history).await.len();

    // A self-join of ~160 million pairs: long enough to kill a worker while it runs.
    let statement = tokio::spawn(async move {
        distributed
            .execute(
                "INSERT INTO main.default.pair_totals SELECT a.item, SUM(b.price) \
                 FROM main.default.sales a JOIN main.default.sales b ON a.item = b.item \
                 GROUP BY a.item",
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !statement.is_finished(),
        "the join ended before a worker could be killed: {:?}",
        statement.await
    );
    second.0.kill().unwrap();
    second.0.wait().unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(120), statement)
        .await
        .expect("the statement hung after its worker died")
        .unwrap();
    let err = outcome.expect_err("the statement succeeded without one of its workers");
    // Url::to_string of http://127.0.0.1:PORT ends in '/'.
    let named = format!("worker {}", second_url.trim_end_matches('/'));
    assert!(err.contains(&named), "{err}");
    assert!(
        !err.contains(&format!("worker {}", first_url.trim_end_matches('/'))),
        "{err}"
    );
    // Nothing was committed.
    assert_eq!(wh.rows(history).await.len(), versions);
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM main.default.pair_totals")
            .await,
        "0"
    );
    drop(first);
}
