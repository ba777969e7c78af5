//! Many sessions on one engine: concurrent statements, settings and current schemas that stay
//! in their session.

use std::sync::Arc;

use tokio::sync::Barrier;
use vitrine::{Engine, EngineConfig, EngineSession, Session as _};

use crate::support::rows;

const SESSIONS: usize = 16;

/// Session `i`'s statements: its own settings and schema, writes to its own table, reads of a
/// table every session shares, and the settings as it sees them.
fn script(i: usize) -> Vec<String> {
    vec![
        format!("SET vitrine.udf.batch_size = {}", i + 1),
        format!("SET vitrine.write.commit_rows = {}", 10 * i + 5),
        format!("SET spark.sql.session.tag = 'session-{i}'"),
        format!("CREATE SCHEMA main.s{i}"),
        format!("USE main.s{i}"),
        format!(
            "CREATE TABLE t AS SELECT id, id * {i} AS v FROM main.default.shared WHERE id % {SESSIONS} = {i}"
        ),
        "INSERT INTO t SELECT id + 1000, v FROM t".to_string(),
        "UPDATE t SET v = v + 1 WHERE id % 2 = 0".to_string(),
        "SELECT COUNT(*), SUM(v) FROM t".to_string(),
        format!("SELECT COUNT(*), SUM(id) FROM main.default.shared WHERE id % {SESSIONS} = {i}"),
        "SET vitrine.udf.batch_size".to_string(),
        "DELETE FROM t WHERE id > 1000 AND v % 3 = 0".to_string(),
        format!("SET datafusion.execution.batch_size = {}", 100 + i),
        "SET".to_string(),
        "SELECT id, v FROM t ORDER BY id".to_string(),
        "SELECT COUNT(*) FROM t VERSION AS OF 1".to_string(),
        "RESET vitrine.write.commit_rows".to_string(),
        "SET".to_string(),
    ]
}

/// An engine on a new warehouse holding `main.default.shared` (ids 0–159).
async fn engine(dir: &std::path::Path) -> Arc<Engine> {
    let engine = Engine::open(EngineConfig::new(dir.to_str().unwrap()))
        .await
        .unwrap();
    engine
        .session()
        .unwrap()
        .execute("CREATE TABLE main.default.shared AS SELECT CAST(value AS BIGINT) AS id FROM range(160)")
        .await
        .unwrap();
    engine
}

/// Every statement's rows and message, or its error.
async fn run(session: &EngineSession, sql: &str) -> Vec<Vec<String>> {
    match session.execute(sql).await {
        Ok(result) => {
            let mut out = rows(&result.batches);
            out.push(vec![result.message.unwrap_or_default()]);
            out
        }
        Err(e) => vec![vec![format!("error: {e}")]],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_sessions_interleaved_equal_one_at_a_time_and_keep_their_settings() {
    let alone_dir = tempfile::tempdir().unwrap();
    let alone = engine(alone_dir.path()).await;
    let mut expected = Vec::new();
    for i in 0..SESSIONS {
        let session = alone.session().unwrap();
        let mut results = Vec::new();
        for sql in script(i) {
            results.push(run(&session, &sql).await);
        }
        expected.push(results);
    }

    let shared_dir = tempfile::tempdir().unwrap();
    let shared = engine(shared_dir.path()).await;
    let step = Arc::new(Barrier::new(SESSIONS));
    let tasks: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let session = shared.session().unwrap();
            let step = Arc::clone(&step);
            tokio::spawn(async move {
                let mut results = Vec::new();
                for sql in script(i) {
                    // Every session runs statement k before any runs statement k + 1.
                    step.wait().await;
                    results.push(run(&session, &sql).await);
                }
                (session, results)
            })
        })
        .collect();
    let mut sessions = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let (session, results) = task.await.unwrap();
        for (k, (got, want)) in results.iter().zip(&expected[i]).enumerate() {
            assert_eq!(got, want, "session {i}, statement {k}: {}", script(i)[k]);
        }
        sessions.push(session);
    }

    for (i, session) in sessions.iter().enumerate() {
        let counts = &expected[i][8];
        assert_eq!(
            counts[0][0], "20",
            "session {i} sees its own table: {counts:?}"
        );
        assert_eq!(
            session.setting("vitrine.udf.batch_size"),
            Some((i + 1).to_string())
        );
        assert_eq!(
            session.model_functions().settings().batch_size,
            vitrine_udfs::runtime::batching::BatchSize::Rows(i + 1)
        );
        assert_eq!(
            session.settings().core.commit_rows,
            None,
            "RESET in session {i}"
        );
        assert_eq!(
            session.setting("spark.sql.session.tag"),
            Some(format!("session-{i}"))
        );
        assert_eq!(session.current_schema(), ("main".into(), format!("s{i}")));
        let batch = session
            .datafusion()
            .state()
            .config()
            .options()
            .execution
            .batch_size;
        assert_eq!(batch, 100 + i);
    }
    let fresh = shared.session().unwrap();
    assert_eq!(fresh.setting("vitrine.udf.batch_size"), None);
    assert_eq!(fresh.current_schema(), ("main".into(), "default".into()));
}

/// Two engines on one warehouse stand for two processes: each statement sees what the other
/// wrote before it (tables made, replaced and dropped; index entries), whether the catalog is
/// answered from memory or listed again, and a warehouse without a changes marker still works.
#[tokio::test(flavor = "multi_thread")]
async fn engines_sharing_a_warehouse_see_each_others_catalog_changes() {
    let dir = tempfile::tempdir().unwrap();
    let writer = engine(dir.path()).await.session().unwrap();
    let reader = Engine::open(EngineConfig::new(dir.path().to_str().unwrap()))
        .await
        .unwrap()
        .session()
        .unwrap();
    let ask = |sql: &'static str| {
        let reader = &reader;
        async move { run(reader, sql).await }
    };
    assert_eq!(
        ask("SELECT COUNT(*) FROM main.default.shared").await[0],
        ["160"]
    );
    assert!(ask("SELECT * FROM main.default.t").await[0][0].starts_with("error:"));
    run(&writer, "CREATE TABLE main.default.t AS SELECT 1 AS a").await;
    assert_eq!(ask("SELECT * FROM main.default.t").await[0], ["1"]);
    assert_eq!(ask("SELECT * FROM main.default.t").await[0], ["1"]);
    run(
        &writer,
        "CREATE OR REPLACE TABLE main.default.t AS SELECT 2 AS a, 'x' AS b",
    )
    .await;
    assert_eq!(ask("SELECT * FROM main.default.t").await[0], ["2", "x"]);
    run(
        &writer,
        "CREATE TABLE main.default.v AS SELECT CAST(value AS BIGINT) AS id, \
         arrow_cast(make_array(CAST(value AS FLOAT), 1.0), 'FixedSizeList(2, Float32)') AS e FROM range(50)",
    )
    .await;
    run(
        &writer,
        "CREATE VECTOR INDEX main.default.vs ON main.default.v (e) WITH (primary_key = 'id')",
    )
    .await;
    let shown = ask("SHOW INDEXES IN main.default").await;
    assert_eq!(shown.len(), 2, "one index and the message: {shown:?}");
    run(&writer, "DROP VECTOR INDEX main.default.vs").await;
    assert_eq!(ask("SHOW INDEXES IN main.default").await.len(), 1);
    std::fs::remove_file(dir.path().join("_catalog/_changes.json")).unwrap();
    run(&writer, "DROP TABLE main.default.t").await;
    assert!(ask("SELECT * FROM main.default.t").await[0][0].starts_with("error:"));
    std::fs::remove_file(dir.path().join("_catalog/_changes.json")).unwrap();
    std::fs::remove_file(dir.path().join("_catalog/main/default/v.json")).unwrap();
    assert!(
        ask("SELECT * FROM main.default.v").await[0][0].starts_with("error:"),
        "a warehouse without the marker is listed at every statement"
    );
}
