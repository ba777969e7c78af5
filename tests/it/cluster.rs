//! The same statements across workers: a coordinator engine planning over two in-process
//! `vitrine worker` servers on loopback, against one warehouse.

use std::sync::Arc;

use vitrine::cluster::Workers;
use vitrine::{Engine, EngineConfig, EngineSession};

use crate::support::{clip_fixture, rows, TestWarehouse};

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
    wh.sql(
        "CREATE TABLE main.default.sales AS SELECT CAST(value AS INT) AS id, \
         concat('item ', CAST(value % 37 AS STRING)) AS item, CAST(value % 7 AS DOUBLE) AS price \
         FROM range(20000)",
    )
    .await;
    // More fragments: each append is one.
    for i in 1..8 {
        wh.sql(&format!(
            "INSERT INTO main.default.sales SELECT CAST(value AS INT) + {base}, \
             concat('item ', CAST(value % 11 AS STRING)), CAST(value % 5 AS DOUBLE) FROM range(5000)",
            base = i * 100_000
        ))
        .await;
    }
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
    let (workers, worker_engines) = start_workers(&wh).await;
    let local = engine(&wh, None).await.session().unwrap();
    let distributed = engine(&wh, Some(workers)).await.session().unwrap();

    let queries = [
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
        query(&distributed, &format!("EXPLAIN {}", queries[0])).await
    );
    assert!(explained.contains("DistributedExec"), "{explained}");
    assert!(
        explained.contains("NetworkShuffleExec") || explained.contains("NetworkCoalesceExec"),
        "{explained}"
    );
    assert!(explained.contains("LanceScanExec"), "{explained}");
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
