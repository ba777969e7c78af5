//! Spark's timestamps: `TIMESTAMP` is an instant in microseconds, shown in the session time zone;
//! `TIMESTAMP_NTZ` is a wall-clock time; what Vitrine writes (Lance, Delta, Parquet by `COPY`),
//! Spark and the `deltalake` package read with the same types and values.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchIterator, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde_json::{json, Value};

use crate::support::{repo_path, TestWarehouse};

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_are_instants_shown_in_the_session_time_zone() {
    let wh = TestWarehouse::new().await;
    // Text without an offset is read in the session time zone (UTC by default).
    assert_eq!(
        wh.value("SELECT TIMESTAMP '2024-07-01 10:00:00'").await,
        "2024-07-01T10:00:00Z"
    );
    wh.sql("SET TIME ZONE 'America/Los_Angeles'").await;
    wh.sql(
        "CREATE TABLE t AS SELECT CAST(1 AS INT) AS id, TIMESTAMP '2024-07-01 10:00:00.123456' AS ts, \
         CAST('2024-07-01 10:00:00' AS TIMESTAMP_NTZ) AS ntz, current_timestamp() AS now, \
         to_timestamp('2024-01-15 08:30:00') AS parsed",
    )
    .await;
    let types: Vec<(String, String)> = wh
        .rows("DESCRIBE t")
        .await
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let want = [
        ("id", "int"),
        ("ts", "timestamp"),
        ("ntz", "timestamp_ntz"),
        ("now", "timestamp"),
        ("parsed", "timestamp"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect();
    assert_eq!(types, want);
    // Stored as Spark keeps them: microseconds, instants in UTC; wall-clock times without a zone.
    assert_eq!(
        wh.rows("SELECT arrow_typeof(ts), arrow_typeof(ntz), arrow_typeof(now) FROM t")
            .await[0],
        [
            "Timestamp(µs, \"UTC\")",
            "Timestamp(µs)",
            "Timestamp(µs, \"UTC\")"
        ]
    );
    // COPY of a table, or of a query reading an older version, writes the stored types.
    let exported = wh.path().join("exports");
    wh.sql("INSERT INTO t SELECT 2, ts, ntz, now, parsed FROM t")
        .await;
    for (source, file, rows) in [
        ("t", "t.parquet", "2"),
        ("(SELECT * FROM t VERSION AS OF 1)", "t1.parquet", "1"),
    ] {
        let file = exported.join(file);
        wh.sql(&format!(
            "COPY {source} TO '{}' STORED AS PARQUET",
            file.display()
        ))
        .await;
        let read = format!("read_files('{}', format => 'parquet')", file.display());
        assert_eq!(
            wh.rows(&format!(
                "SELECT COUNT(*), MIN(arrow_typeof(ts)), MIN(arrow_typeof(now)) FROM {read}"
            ))
            .await[0],
            [rows, "Timestamp(µs, \"UTC\")", "Timestamp(µs, \"UTC\")"]
        );
    }
    // The instant was read in Los Angeles (UTC-7 in July); shown in each session zone.
    let shown = "SELECT ts, ntz, parsed FROM t WHERE id = 1";
    assert_eq!(
        wh.rows(shown).await[0],
        [
            "2024-07-01T10:00:00.123456-07:00",
            "2024-07-01T10:00:00",
            "2024-01-15T08:30:00-08:00"
        ]
    );
    wh.sql("SET spark.sql.session.timeZone = 'UTC'").await;
    assert_eq!(
        wh.rows(shown).await[0],
        [
            "2024-07-01T17:00:00.123456Z",
            "2024-07-01T10:00:00",
            "2024-01-15T16:30:00Z"
        ]
    );
    wh.sql("SET TIME ZONE '+05:30'").await;
    assert_eq!(
        wh.value("SELECT ts FROM t WHERE id = 1").await,
        "2024-07-01T22:30:00.123456+05:30"
    );
    // Comparisons are between instants, whatever the zone of each side.
    assert_eq!(
        wh.value(
            "SELECT COUNT(*) FROM t WHERE id = 1 AND ts = TIMESTAMP '2024-07-01 22:30:00.123456'"
        )
        .await,
        "1"
    );
    // `now` was the statement's time.
    let age: i64 = wh
        .value("SELECT CAST(date_part('epoch', current_timestamp()) - date_part('epoch', now) AS BIGINT) FROM t WHERE id = 1")
        .await
        .parse()
        .unwrap();
    assert!((0..600).contains(&age), "{age}");
    // A zone that does not exist is refused, naming the setting; the session keeps its zone.
    let err = wh
        .error("SET spark.sql.session.timeZone = 'Mars/Olympus_Mons'")
        .await;
    assert!(
        err.contains("spark.sql.session.timeZone") && err.contains("Mars/Olympus_Mons"),
        "{err}"
    );
    assert_eq!(
        wh.value("SELECT ts FROM t WHERE id = 1").await,
        "2024-07-01T22:30:00.123456+05:30"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_with_nanosecond_timestamps_still_reads_and_takes_rows() {
    let wh = TestWarehouse::new().await;
    let location = wh.path().join("external/nanos");
    let schema = Arc::new(Schema::new(vec![Field::new(
        "at",
        DataType::Timestamp(TimeUnit::Nanosecond, None),
        true,
    )]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(TimestampNanosecondArray::from(vec![
            1_719_828_000_123_456_789,
        ]))],
    )
    .unwrap();
    lance::Dataset::write(
        RecordBatchIterator::new(vec![Ok(batch)], schema),
        location.to_str().unwrap(),
        None,
    )
    .await
    .unwrap();
    wh.sql(&format!(
        "CREATE TABLE nanos USING LANCE LOCATION '{}'",
        location.display()
    ))
    .await;
    wh.sql("INSERT INTO nanos VALUES (TIMESTAMP_NTZ '2024-01-01 00:00:00')")
        .await;
    assert_eq!(
        wh.rows("SELECT at FROM nanos ORDER BY at").await,
        [["2024-01-01T00:00:00"], ["2024-07-01T10:00:00.123456789"]]
    );
    assert_eq!(
        wh.value("SELECT arrow_typeof(at) FROM nanos LIMIT 1").await,
        "Timestamp(ns)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_and_deltalake_read_what_vitrine_writes() {
    let wh = TestWarehouse::new().await;
    let parquet = wh.path().join("exports/parquet_t");
    // (Integer literals are BIGINT in Vitrine, INT in Spark: the casts keep the types Spark's.)
    wh.sql("SET TIME ZONE 'America/Los_Angeles'").await;
    wh.sql(
        "CREATE TEMPORARY VIEW v AS \
         SELECT CAST(1 AS INT) AS id, TIMESTAMP '2024-07-01 10:00:00.123456' AS ts, \
                CAST('2024-07-01 10:00:00' AS TIMESTAMP_NTZ) AS ntz, \
                array('a', 'b') AS tags, map('k', CAST(1.5 AS DOUBLE)) AS scores, \
                named_struct('x', CAST(7 AS INT), 'at', TIMESTAMP '2024-01-01 00:00:00') AS s \
         UNION ALL \
         SELECT CAST(2 AS INT), NULL AS ts, NULL AS ntz, array('c'), map('z', CAST(0.25 AS DOUBLE)), NULL AS s",
    )
    .await;
    let mut warnings = Vec::new();
    for statement in [
        "CREATE TABLE lance_t AS SELECT * FROM v".to_string(),
        "CREATE TABLE delta_t USING DELTA AS SELECT * FROM v".to_string(),
        format!(
            "COPY (SELECT * FROM v) TO '{}/' STORED AS PARQUET",
            parquet.display()
        ),
    ] {
        warnings.extend(wh.sql(&statement).await.warnings);
    }
    assert!(warnings.is_empty(), "{warnings:?}");
    // Managed tables live at <warehouse>/<catalog>/<schema>/<table>.
    let location = |table: &str| {
        let path = wh.path().join("main/default").join(table);
        assert!(path.is_dir(), "{} is not there", path.display());
        path.to_str().unwrap().to_string()
    };
    let output = std::process::Command::new("python3")
        .arg(repo_path("tests/spark/read_back.py"))
        .args(["--lance", &location("lance_t")])
        .args(["--delta", &location("delta_t")])
        .args(["--parquet", parquet.to_str().unwrap()])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "read_back.py failed (pip install pyspark deltalake pylance):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();

    let spark_types = json!({
        "id": "int", "ts": "timestamp", "ntz": "timestamp_ntz", "tags": "array<string>",
        "scores": "map<string,double>", "s": "struct<x:int,at:timestamp>"
    });
    let arrow_types = json!({
        "id": "int32", "ts": "timestamp[us, tz=UTC]", "ntz": "timestamp[us]",
        "tags": "list<string>", "scores": "map<string, double>",
        "s": "struct<x: int32, at: timestamp[us, tz=UTC]>"
    });
    let rows = json!([
        { "id": 1, "ts": "2024-07-01T17:00:00.123456Z", "ntz": "2024-07-01T10:00:00.000000",
          "tags": ["a", "b"], "scores": { "k": 1.5 },
          "s": { "x": 7, "at": "2024-01-01T08:00:00.000000Z" } },
        { "id": 2, "tags": ["c"], "scores": { "z": 0.25 } }
    ]);
    for reader in ["spark_parquet", "spark_delta_files"] {
        assert_eq!(seen[reader]["types"], spark_types, "{reader}");
        assert_eq!(seen[reader]["rows"], rows, "{reader}");
    }
    for reader in ["deltalake", "lance"] {
        assert_eq!(seen[reader]["types"], arrow_types, "{reader}");
        assert_eq!(seen[reader]["rows"], rows, "{reader}");
    }
    // What Databricks sees in the Delta log.
    assert_eq!(seen["delta_schema"]["ts"], "timestamp");
    assert_eq!(seen["delta_schema"]["ntz"], "timestamp_ntz");
    assert_eq!(seen["delta_schema"]["s"]["fields"][1]["type"], "timestamp");
}
