//! Writes: each statement is one new version, history is kept, and a failed or killed write
//! leaves the table as it was.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::TestWarehouse;

async fn ids(wh: &TestWarehouse, sql: &str) -> Vec<String> {
    wh.rows(sql)
        .await
        .into_iter()
        .map(|r| r.join(","))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn insert_update_delete_and_merge_follow_databricks_semantics() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE t (id INT, name STRING, score DOUBLE)")
        .await;
    wh.sql("INSERT INTO t VALUES (1, 'a', 1.0), (2, 'b', 2.0), (3, 'c', NULL)")
        .await;
    wh.sql("INSERT INTO t (id, name) SELECT 4, 'd'").await;
    assert_eq!(
        ids(&wh, "SELECT * FROM t ORDER BY id").await,
        ["1,a,1.0", "2,b,2.0", "3,c,NULL", "4,d,NULL"]
    );

    let updated = wh
        .rows("UPDATE t SET score = score * 10, name = UPPER(name) WHERE id <= 2")
        .await;
    assert_eq!(updated, vec![vec!["2".to_string()]]);
    assert_eq!(
        ids(&wh, "SELECT * FROM t ORDER BY id").await,
        ["1,A,10.0", "2,B,20.0", "3,c,NULL", "4,d,NULL"]
    );

    // A NULL predicate deletes nothing.
    let deleted = wh.rows("DELETE FROM t WHERE score > 15").await;
    assert_eq!(deleted, vec![vec!["1".to_string()]]);
    assert_eq!(
        ids(&wh, "SELECT id FROM t ORDER BY id").await,
        ["1", "3", "4"]
    );

    wh.sql("CREATE TABLE s AS SELECT * FROM (VALUES (1, 'one', 100.0), (3, 'gone', 0.0), (7, 'seven', 7.0)) AS v(id, name, score)").await;
    let merged = wh
        .rows(
            "MERGE INTO t AS tgt USING s AS src ON tgt.id = src.id \
             WHEN MATCHED AND src.name = 'gone' THEN DELETE \
             WHEN MATCHED THEN UPDATE SET * \
             WHEN NOT MATCHED THEN INSERT *",
        )
        .await;
    assert_eq!(
        merged,
        vec![vec!["3".to_string(), "1".into(), "1".into(), "1".into()]]
    );
    assert_eq!(
        ids(&wh, "SELECT * FROM t ORDER BY id").await,
        ["1,one,100.0", "4,d,NULL", "7,seven,7.0"]
    );

    wh.sql("MERGE INTO t USING (SELECT 4 AS id, 'dee' AS n) AS u ON t.id = u.id WHEN MATCHED THEN UPDATE SET name = u.n WHEN NOT MATCHED THEN INSERT (id, name) VALUES (u.id, u.n)").await;
    assert_eq!(
        ids(&wh, "SELECT id, name FROM t WHERE id = 4").await,
        ["4,dee"]
    );

    let dup = "MERGE INTO t USING (SELECT 4 AS id UNION ALL SELECT 4) AS u ON t.id = u.id WHEN MATCHED THEN DELETE";
    let err = wh.error(dup).await;
    assert!(
        err.contains("several source rows match the same target row"),
        "{err}"
    );
    assert_eq!(ids(&wh, "SELECT id FROM t WHERE id = 4").await, ["4"]);
    // Duplicates in the source are fine when nothing but inserts can happen.
    wh.sql("MERGE INTO t USING (SELECT 8 AS id UNION ALL SELECT 8) AS u ON t.id = u.id WHEN NOT MATCHED THEN INSERT (id) VALUES (u.id)").await;
    assert_eq!(wh.value("SELECT COUNT(*) FROM t WHERE id = 8").await, "2");

    wh.sql("INSERT OVERWRITE t SELECT 9, 'nine', 9.0").await;
    assert_eq!(ids(&wh, "SELECT id FROM t").await, ["9"]);
}

/// The data files of table `name` in the default schema, with their sizes.
fn data_files(wh: &TestWarehouse, name: &str) -> std::collections::BTreeMap<String, u64> {
    let dir = wh.path().join("main/default").join(name).join("data");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

/// A MERGE that upserts by key (`UPDATE SET *`, `INSERT *`) into a Lance table writes only the
/// source's rows, leaving the table's other data files as they were, with the result a rewrite
/// gives; NULL or repeated keys in the source keep Databricks' meaning (inserted, never matched).
#[tokio::test(flavor = "multi_thread")]
async fn an_upsert_by_key_writes_only_the_rows_it_changes() {
    let wh = TestWarehouse::new().await;
    wh.sql(
        "CREATE TABLE big AS SELECT CAST(value AS INT) AS id, \
         concat('v', CAST(value AS STRING)) AS name, CAST(value AS DOUBLE) AS score \
         FROM range(200000)",
    )
    .await;
    let before = data_files(&wh, "big");
    let upsert = |rows: &str| {
        format!(
            "MERGE INTO big AS t USING (SELECT * FROM (VALUES {rows}) AS v(id, name, score)) AS s \
             ON t.id = s.id WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        )
    };
    let merged = wh
        .rows(&upsert("(5, 'five', 0.5), (200000, 'new', 1.0)"))
        .await;
    assert_eq!(
        merged,
        vec![vec!["2".to_string(), "1".into(), "0".into(), "1".into()]]
    );
    assert_eq!(
        ids(
            &wh,
            "SELECT * FROM big WHERE id IN (4, 5, 200000) ORDER BY id"
        )
        .await,
        ["4,v4,4.0", "5,five,0.5", "200000,new,1.0"]
    );
    assert_eq!(wh.value("SELECT COUNT(*) FROM big").await, "200001");
    assert_eq!(wh.rows("DESCRIBE HISTORY big").await[0][2], "MERGE");
    // An upsert of no rows changes nothing and writes no version.
    let versions = wh.rows("DESCRIBE HISTORY big").await.len();
    let nothing = wh
        .rows(
            "MERGE INTO big AS t USING (SELECT * FROM big WHERE id < 0) AS s ON t.id = s.id \
             WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
        )
        .await;
    assert_eq!(
        nothing,
        vec![vec!["0".to_string(), "0".into(), "0".into(), "0".into()]]
    );
    assert_eq!(wh.rows("DESCRIBE HISTORY big").await.len(), versions);
    // Every data file is still there, and what was added is a small fraction of them.
    let after = data_files(&wh, "big");
    for (file, size) in &before {
        assert_eq!(after.get(file), Some(size), "{file} was rewritten");
    }
    let table: u64 = before.values().sum();
    let added: u64 = after
        .iter()
        .filter(|(f, _)| !before.contains_key(*f))
        .map(|(_, size)| size)
        .sum();
    assert!(added * 100 < table, "{added} bytes added to {table}");
    // A NULL key matches nothing: the row is added, each time.
    for _ in 0..2 {
        wh.sql(&upsert("(CAST(NULL AS INT), 'nobody', 0.0)")).await;
    }
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM big WHERE name = 'nobody'")
            .await,
        "2"
    );
    // Two source rows with a new key are both added; with a key in the table, refused.
    wh.sql(&upsert("(300000, 'x', 0.0), (300000, 'y', 0.0)"))
        .await;
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM big WHERE id = 300000").await,
        "2"
    );
    let err = wh.error(&upsert("(7, 'x', 0.0), (7, 'y', 0.0)")).await;
    assert!(err.contains("several source rows"), "{err}");
    assert_eq!(ids(&wh, "SELECT name FROM big WHERE id = 7").await, ["v7"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn history_time_travel_and_restore() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE t AS SELECT 1 AS id").await;
    wh.sql("INSERT INTO t VALUES (2)").await;
    wh.sql("DELETE FROM t WHERE id = 1").await;
    let history = wh.rows("DESCRIBE HISTORY t").await;
    let summary: Vec<(String, String, String)> = history
        .iter()
        .map(|r| (r[0].clone(), r[2].clone(), r[6].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("3".into(), "DELETE".into(), "1".into()),
            ("2".into(), "WRITE".into(), "2".into()),
            ("1".into(), "CREATE TABLE AS SELECT".into(), "1".into())
        ]
    );
    assert_eq!(
        ids(&wh, "SELECT id FROM t VERSION AS OF 2 ORDER BY id").await,
        ["1", "2"]
    );
    assert_eq!(
        ids(
            &wh,
            "SELECT a.id FROM t VERSION AS OF 1 a JOIN t b ON a.id + 1 = b.id"
        )
        .await,
        ["1"]
    );
    let second: String = wh.rows("DESCRIBE HISTORY t").await[1][1].clone();
    assert_eq!(
        ids(
            &wh,
            &format!("SELECT id FROM t TIMESTAMP AS OF '{second}' ORDER BY id")
        )
        .await,
        ["1", "2"]
    );
    let e = wh
        .error("SELECT * FROM t TIMESTAMP AS OF '2001-01-01'")
        .await;
    assert!(e.contains("no version at or before"), "{e}");
    wh.sql("RESTORE TABLE t TO VERSION AS OF 1").await;
    assert_eq!(ids(&wh, "SELECT id FROM t").await, ["1"]);
    let history = wh.rows("DESCRIBE HISTORY t").await;
    assert_eq!(history.len(), 4);
    // A restore's commit cannot carry its statement: the lineage names it.
    assert_eq!(history[0][2], "RESTORE");
    let restore = wh
        .value("SELECT statement_id FROM system.query.history WHERE statement_type = 'RESTORE'")
        .await;
    assert_eq!(history[0][4], restore);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statement_that_fails_half_way_leaves_the_table_unchanged() {
    let wh = TestWarehouse::new().await;
    wh.sql("SET datafusion.execution.batch_size = 1000").await;
    wh.sql("CREATE TABLE t AS SELECT CAST(value AS INT) AS id, 'v1' AS tag FROM range(50000)")
        .await;
    let before = wh.rows("DESCRIBE HISTORY t").await.len();
    // The first batches are written before row 40000 fails the cast.
    let failing = "CREATE OR REPLACE TABLE t AS SELECT CASE WHEN value < 40000 THEN CAST(value AS INT) ELSE CAST('x' || CAST(value AS STRING) AS INT) END AS id, 'v2' AS tag FROM range(50000)";
    let err = wh.error(failing).await;
    assert!(err.contains("Cast") || err.contains("cast"), "{err}");
    let err = wh
        .session
        .execute("INSERT INTO t SELECT CAST('nope' AS INT), 'v3'")
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    assert_eq!(wh.rows("DESCRIBE HISTORY t").await.len(), before);
    assert_eq!(
        ids(&wh, "SELECT tag, COUNT(*) FROM t GROUP BY tag").await,
        ["v1,50000"]
    );
    // The table still takes writes.
    wh.sql("INSERT INTO t VALUES (-1, 'v4')").await;
    assert_eq!(wh.value("SELECT COUNT(*) FROM t").await, "50001");

    // A new table whose creation fails half-way does not exist, and can be created after.
    let failing_new = failing.replace("OR REPLACE TABLE t", "TABLE fresh");
    assert!(wh.session.execute(&failing_new).await.is_err());
    assert!(wh.rows("SHOW TABLES").await.iter().all(|r| r[1] != "fresh"));
    wh.sql("CREATE TABLE fresh AS SELECT 1 AS id").await;
    assert_eq!(wh.value("SELECT COUNT(*) FROM fresh").await, "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_write_leaves_the_table_unchanged() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE t AS SELECT CAST(value AS INT) AS id FROM range(1000)")
        .await;
    let warehouse = wh.path().to_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(["--warehouse", &warehouse, "run", "-e", "CREATE OR REPLACE TABLE t AS SELECT CAST(value % 1000 AS INT) AS id, repeat('x', 100) AS pad FROM range(300000000)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the write has started putting data files down, then kill it.
    let data = wh.path().join("main/default/t/data");
    let files_before = std::fs::read_dir(&data).unwrap().count();
    let mut waited = Duration::ZERO;
    while std::fs::read_dir(&data).unwrap().count() == files_before
        && waited < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the write finished before it was killed");
    assert_eq!(wh.value("SELECT COUNT(*) FROM t").await, "1000");
    assert_eq!(wh.rows("DESCRIBE t").await.len(), 1, "the schema changed");
    wh.sql("CREATE OR REPLACE TABLE t AS SELECT 1 AS id").await;
    assert_eq!(wh.value("SELECT COUNT(*) FROM t").await, "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_report_rows_as_they_go() {
    let wh = TestWarehouse::new().await;
    wh.sql("SET datafusion.execution.batch_size = 1000").await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    wh.session.on_rows_written(std::sync::Arc::new(move |rows| {
        sink.lock().unwrap().push(rows)
    }));
    wh.sql("CREATE TABLE t AS SELECT value FROM range(5000)")
        .await;
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(*seen.last().unwrap(), 5000);
}

/// A write of a query that ends in `ORDER BY` stores the rows in that order, although the plan
/// deals the sorted rows out to several partitions for the columns' last conversions.
#[tokio::test(flavor = "multi_thread")]
async fn a_written_order_by_is_the_tables_order() {
    use futures::TryStreamExt;
    let wh = TestWarehouse::new().await;
    wh.sql("SET datafusion.execution.target_partitions = 4")
        .await;
    wh.sql(
        "CREATE TABLE t AS SELECT CAST(value AS INT) AS id, concat('row ', CAST(value AS STRING)) \
         AS label FROM range(30000) ORDER BY value % 1000, value DESC",
    )
    .await;
    let dataset = lance::Dataset::open(wh.path().join("main/default/t").to_str().unwrap())
        .await
        .unwrap();
    let batches: Vec<_> = dataset
        .scan()
        .project(&["id"])
        .unwrap()
        .try_into_stream()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<i32> = batches
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_any();
            let ids = ids
                .downcast_ref::<datafusion::arrow::array::Int32Array>()
                .unwrap();
            ids.values().to_vec()
        })
        .collect();
    let mut expected: Vec<i32> = (0..30000).collect();
    expected.sort_by_key(|v| (v % 1000, std::cmp::Reverse(*v)));
    assert_eq!(ids.len(), expected.len());
    assert!(ids == expected, "the rows are not in the query's order");
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_rows_commits_an_insert_in_chunks_in_every_writable_format() {
    for format in ["LANCE", "DELTA"] {
        let wh = TestWarehouse::new().await;
        wh.sql(&format!("CREATE TABLE t (id BIGINT) USING {format}"))
            .await;
        let before = wh.rows("DESCRIBE HISTORY t").await.len();
        wh.sql("SET datafusion.execution.batch_size = 2").await;
        wh.sql("SET vitrine.write.commit_rows = 3").await;
        wh.sql("INSERT INTO t SELECT value FROM range(10)").await;
        assert_eq!(wh.value("SELECT COUNT(*) FROM t").await, "10", "{format}");
        // Batches of 2 rows: commits after 4, 8 and the last 2.
        let history = wh.rows("DESCRIBE HISTORY t").await;
        assert_eq!(history.len(), before + 3, "{format}: {history:?}");
    }
}

/// `CREATE INDEX … USING BTREE` on a Lance table: listed by `SHOW INDEXES ON`, used by lookups
/// and upserts on the column, rows written later counted as unindexed (and still found) until
/// `OPTIMIZE` brings the index up to date, kept through a Z-order rewrite; bad requests are
/// refused naming what is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn a_scalar_index_is_built_kept_up_to_date_and_dropped() {
    let wh = TestWarehouse::new().await;
    wh.sql(
        "CREATE TABLE big AS SELECT CAST(value AS INT) AS id, \
         concat('v', CAST(value AS STRING)) AS name FROM range(20000)",
    )
    .await;
    let created = wh.sql("CREATE INDEX by_id ON big (id) USING BTREE").await;
    assert!(
        created
            .message
            .as_deref()
            .unwrap_or("")
            .contains("BTREE index by_id"),
        "{:?}",
        created.message
    );
    assert_eq!(
        wh.rows("SHOW INDEXES ON big").await,
        [["by_id", "id", "BTree", "20000", "0"]]
    );
    assert_eq!(wh.rows("DESCRIBE HISTORY big").await[0][2], "CREATE INDEX");
    let plan = wh.rows("EXPLAIN SELECT name FROM big WHERE id = 5").await;
    let plan = format!("{plan:?}");
    assert!(plan.contains("ScalarIndexQuery"), "{plan}");

    // An upsert keyed on the indexed column: the changed and new rows are not in the index yet,
    // and are found all the same.
    wh.sql(
        "MERGE INTO big AS t USING (SELECT * FROM (VALUES (5, 'five'), (20000, 'new')) \
         AS v(id, name)) AS s ON t.id = s.id \
         WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *",
    )
    .await;
    let listed = wh.rows("SHOW INDEXES ON big").await;
    assert_eq!(listed[0][4], "2", "{listed:?}");
    assert_eq!(
        ids(
            &wh,
            "SELECT id, name FROM big WHERE id IN (4, 5, 20000) ORDER BY id"
        )
        .await,
        ["4,v4", "5,five", "20000,new"]
    );
    // OPTIMIZE compacts and indexes every row; a Z-order rewrite builds the index again.
    wh.sql("OPTIMIZE big").await;
    assert_eq!(
        wh.rows("SHOW INDEXES ON big").await,
        [["by_id", "id", "BTree", "20001", "0"]]
    );
    wh.sql("OPTIMIZE big ZORDER BY (name)").await;
    assert_eq!(
        wh.rows("SHOW INDEXES ON big").await,
        [["by_id", "id", "BTree", "20001", "0"]]
    );
    assert_eq!(
        ids(&wh, "SELECT name FROM big WHERE id = 5").await,
        ["five"]
    );

    // Refusals name what is wrong; IF [NOT] EXISTS makes the repeat a no-op.
    let err = wh.error("CREATE INDEX by_id ON big (name)").await;
    assert!(err.contains("already has an index named 'by_id'"), "{err}");
    wh.sql("CREATE INDEX IF NOT EXISTS by_id ON big (name)")
        .await;
    let err = wh.error("CREATE INDEX by_x ON big (nope)").await;
    assert!(err.contains("no column 'nope'"), "{err}");
    let err = wh.error("CREATE INDEX by_x ON big (id) USING HNSW").await;
    assert!(err.contains("unknown index kind 'HNSW'"), "{err}");
    let err = wh.error("CREATE INDEX main.default.by_x ON big (id)").await;
    assert!(err.contains("named within its table"), "{err}");
    wh.sql("CREATE TABLE d USING DELTA AS SELECT 1 AS id").await;
    let err = wh.error("CREATE INDEX by_id ON d (id)").await;
    assert!(
        err.contains("only Lance tables keep scalar indexes"),
        "{err}"
    );
    wh.sql("CREATE INDEX by_name ON big (name) USING BITMAP")
        .await;
    assert_eq!(
        wh.rows("SHOW INDEXES ON big")
            .await
            .iter()
            .map(|r| r[0].clone())
            .collect::<Vec<_>>(),
        ["by_id", "by_name"]
    );
    wh.sql("DROP INDEX by_id ON big").await;
    assert_eq!(wh.rows("SHOW INDEXES ON big").await.len(), 1);
    let err = wh.error("DROP INDEX by_id ON big").await;
    assert!(err.contains("has no index named 'by_id'"), "{err}");
    wh.sql("DROP INDEX IF EXISTS by_id ON big").await;
    assert_eq!(wh.value("SELECT COUNT(*) FROM big").await, "20001");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copied_warehouse_folder_is_a_warehouse_of_its_own() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE main.default.t AS SELECT value AS id FROM range(10)")
        .await;
    wh.sql("CREATE TABLE main.default.d USING DELTA AS SELECT value AS id FROM range(5)")
        .await;
    let outside = tempfile::tempdir().unwrap();
    let external = outside.path().join("ext").display().to_string();
    wh.sql(&format!(
        "CREATE TABLE main.default.ext LOCATION '{external}' AS SELECT 1 AS x"
    ))
    .await;
    // The catalog stores managed locations under the root relative to it, external ones whole.
    let entry = |name: &str| -> serde_json::Value {
        let path = wh.path().join(format!("_catalog/main/default/{name}.json"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    };
    assert_eq!(entry("t")["location"], "main/default/t");
    assert_eq!(entry("d")["location"], "main/default/d");
    assert_eq!(entry("ext")["location"], external.as_str());

    let copy = wh.copy().await;
    let location = copy
        .rows("DESCRIBE TABLE EXTENDED main.default.t")
        .await
        .concat()
        .join(" ");
    assert!(
        location.contains(&format!("{}/main/default/t", copy.path().display())),
        "{location}"
    );
    copy.sql("INSERT INTO main.default.t SELECT value + 100 FROM range(5)")
        .await;
    copy.sql("DELETE FROM main.default.d WHERE id < 3").await;
    assert_eq!(
        copy.value("SELECT COUNT(*) FROM main.default.t").await,
        "15"
    );
    assert_eq!(copy.value("SELECT COUNT(*) FROM main.default.d").await, "2");
    // The original is untouched, by writes and by a DROP in the copy.
    copy.sql("DROP TABLE main.default.t").await;
    assert_eq!(wh.value("SELECT COUNT(*) FROM main.default.t").await, "10");
    assert_eq!(wh.value("SELECT COUNT(*) FROM main.default.d").await, "5");
    assert_eq!(
        wh.rows("DESCRIBE HISTORY main.default.t").await.len(),
        1,
        "one version in the original"
    );
}
