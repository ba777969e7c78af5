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
        assert_eq!(session.model_functions().settings().batch_size, i + 1);
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
