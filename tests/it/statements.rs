//! Catalog statements and Spark semantics.

use crate::support::TestWarehouse;
use vitrine::Session as _;

#[tokio::test(flavor = "multi_thread")]
async fn catalogs_schemas_and_tables_persist_across_engines() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE CATALOG IF NOT EXISTS shop").await;
    wh.sql("CREATE SCHEMA shop.sales").await;
    wh.sql("CREATE TABLE shop.sales.orders (id INT, tags ARRAY<STRING>, attrs STRUCT<a: INT, b: STRING>, at TIMESTAMP)").await;
    wh.sql("INSERT INTO shop.sales.orders VALUES (1, ARRAY('x', 'y'), NAMED_STRUCT('a', 5, 'b', 'q'), CURRENT_TIMESTAMP())").await;

    let other = vitrine::Engine::open(vitrine::EngineConfig::new(wh.path().to_str().unwrap()))
        .await
        .unwrap()
        .session()
        .unwrap();
    let result = other
        .execute("SELECT id, tags[2], attrs.b FROM shop.sales.orders")
        .await
        .unwrap();
    assert_eq!(
        crate::support::rows(&result.batches),
        vec![vec!["1".to_string(), "y".into(), "q".into()]]
    );

    assert_eq!(
        wh.rows("SHOW CATALOGS").await,
        vec![vec!["main".to_string()], vec!["shop".to_string()]]
    );
    assert_eq!(
        wh.rows("SHOW SCHEMAS IN shop").await,
        vec![vec!["default".to_string()], vec!["sales".to_string()]]
    );
    wh.sql("USE shop.sales").await;
    assert_eq!(wh.value("SELECT COUNT(*) FROM orders").await, "1");
    assert_eq!(
        wh.rows("SHOW TABLES").await,
        vec![vec!["sales".to_string(), "orders".into(), "lance".into()]]
    );
    let described = wh.rows("DESCRIBE orders").await;
    let types: Vec<(String, String)> = described
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("id".into(), "int".into()),
            ("tags".into(), "array<string>".into()),
            ("attrs".into(), "struct<a:int,b:string>".into()),
            ("at".into(), "timestamp".into())
        ]
    );
    wh.sql("DROP TABLE orders").await;
    assert!(wh.rows("SHOW TABLES").await.is_empty());
    assert!(
        !wh.path().join("shop/sales/orders").exists(),
        "managed data must be deleted"
    );
    wh.sql("DROP TABLE IF EXISTS orders").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spark_semantics_for_division_size_and_friends() {
    let wh = TestWarehouse::new().await;
    assert_eq!(wh.value("SELECT 7 / 2").await, "3.5");
    assert_eq!(
        wh.value("SELECT CAST(7 AS BIGINT) / CAST(2 AS INT)").await,
        "3.5"
    );
    assert_eq!(wh.value("SELECT 7.0 / 2").await, "3.5");
    assert_eq!(
        wh.value("SELECT SIZE(CAST(NULL AS ARRAY<INT>))").await,
        "-1"
    );
    assert_eq!(wh.value("SELECT SIZE(ARRAY(1, 2, 3))").await, "3");
    assert_eq!(
        wh.value("SELECT ARRAY_JOIN(ARRAY('a', 'b'), ' ')").await,
        "a b"
    );
    assert_eq!(
        wh.value("SELECT CONCAT_WS('-', 'a', NULL, 'b')").await,
        "a-b"
    );
    // CONCAT, unlike CONCAT_WS, is NULL when any argument is.
    assert_eq!(wh.value("SELECT CONCAT('a', NULL, 'b')").await, "NULL");
    assert_eq!(wh.value("SELECT CONCAT('a', 1, 'b')").await, "a1b");
    assert_eq!(
        wh.value("SELECT CONCAT(ARRAY(1, 2), ARRAY(3))").await,
        "[1, 2, 3]"
    );
    assert_eq!(
        wh.value("SELECT GET_JSON_OBJECT('{\"a\": {\"b\": [1, 2]}}', '$.a.b[1]')")
            .await,
        "2"
    );
    assert_eq!(
        wh.value("SELECT GET_JSON_OBJECT('not json', '$.a')").await,
        "NULL"
    );
    assert_eq!(
        wh.value(
            "SELECT FROM_JSON('{\"material\": \"metal\", \"n\": 3}', 'material STRING, n INT').n"
        )
        .await,
        "3"
    );
    assert_eq!(
        wh.value("SELECT FROM_JSON('{broken', 'material STRING') IS NULL")
            .await,
        "true"
    );
    assert_eq!(wh.value("SELECT SIZE(SPLIT('a|b|c', '[|]'))").await, "3");
    for (expression, spark_type) in [
        ("CAST(1 AS INT)", "int"),
        ("'x'", "string"),
        ("ARRAY('a')", "array<string>"),
        ("NAMED_STRUCT('x', CAST(1 AS INT))", "struct<x:int>"),
        ("CAST(NULL AS DOUBLE)", "double"),
        ("NULL", "void"),
    ] {
        assert_eq!(
            wh.value(&format!("SELECT TYPEOF({expression})")).await,
            spark_type,
            "{expression}"
        );
    }
    assert_eq!(
        wh.value("SELECT NAMED_STRUCT('x', 1, 'y', 'z').y").await,
        "z"
    );
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM (SELECT EXPLODE(ARRAY(1, 2, 3)) AS v)")
            .await,
        "3"
    );
    assert_eq!(
        wh.value("SELECT SIZE(COLLECT_LIST(v)) FROM (SELECT EXPLODE(ARRAY(1, 2, 2)) AS v)")
            .await,
        "3"
    );
    assert_eq!(wh.value("SELECT RAND() < 1.0").await, "true");
    assert_eq!(
        wh.value("SELECT CURRENT_TIMESTAMP() IS NOT NULL").await,
        "true"
    );
    let shares = wh.rows("SELECT k, SUM(COUNT(*)) OVER () FROM (SELECT EXPLODE(ARRAY('a', 'a', 'b')) AS k) GROUP BY k ORDER BY k").await;
    assert_eq!(
        shares,
        vec![
            vec!["a".to_string(), "3".into()],
            vec!["b".to_string(), "3".into()]
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_views_are_session_views() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE OR REPLACE TEMP VIEW v AS SELECT 1 AS a UNION ALL SELECT 2")
        .await;
    wh.sql("CREATE OR REPLACE TEMPORARY VIEW v AS SELECT 3 AS a")
        .await;
    assert_eq!(wh.value("SELECT SUM(a) FROM v").await, "3");
    // IF NOT EXISTS keeps the session's view, and creates one that is missing.
    wh.sql("CREATE TEMPORARY VIEW IF NOT EXISTS v AS SELECT 4 AS a")
        .await;
    assert_eq!(wh.value("SELECT SUM(a) FROM v").await, "3");
    wh.sql("CREATE TEMPORARY VIEW IF NOT EXISTS w AS SELECT 5 AS a")
        .await;
    assert_eq!(wh.value("SELECT SUM(a) FROM w").await, "5");
    let other = vitrine::Engine::open(vitrine::EngineConfig::new(wh.path().to_str().unwrap()))
        .await
        .unwrap()
        .session()
        .unwrap();
    assert!(
        other.execute("SELECT * FROM v").await.is_err(),
        "a view belongs to its session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn views_persist_in_the_warehouse_and_follow_their_tables() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE t AS SELECT CAST(value AS INT) AS id FROM range(10)")
        .await;
    wh.sql("CREATE VIEW evens AS SELECT id, id / 2 AS half FROM t WHERE id % 2 = 0")
        .await;
    assert_eq!(wh.value("SELECT SUM(id) FROM evens").await, "20");
    wh.sql("INSERT INTO t VALUES (10)").await;
    let other = vitrine::Engine::open(vitrine::EngineConfig::new(wh.path().to_str().unwrap()))
        .await
        .unwrap()
        .session()
        .unwrap();
    let result = other
        .execute("SELECT COUNT(*), MAX(half) FROM main.default.evens")
        .await
        .unwrap();
    assert_eq!(
        crate::support::rows(&result.batches),
        vec![vec!["6".to_string(), "5.0".into()]]
    );
    assert_eq!(wh.rows("DESCRIBE evens").await.len(), 2);
    assert!(wh
        .session
        .execute("CREATE VIEW evens AS SELECT 1")
        .await
        .is_err());
    wh.sql("CREATE OR REPLACE VIEW evens AS SELECT 1 AS one")
        .await;
    assert_eq!(wh.value("SELECT one FROM evens").await, "1");
    let e = wh.error("INSERT INTO evens VALUES (2)").await;
    assert!(e.contains("read-only"), "{e}");
    wh.sql("DROP VIEW evens").await;
    assert!(wh.session.execute("SELECT * FROM evens").await.is_err());
    let e = wh.error("CREATE VIEW broken AS SELECT nope FROM t").await;
    assert!(e.contains("nope"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn distribute_by_sort_by_limit_runs() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE t AS SELECT CAST(value AS INT) AS id, CAST(value % 3 AS INT) AS g FROM range(100)").await;
    let rows = wh
        .rows("SELECT id, g FROM t DISTRIBUTE BY g SORT BY id DESC LIMIT 3")
        .await;
    assert_eq!(
        rows,
        vec![
            vec!["99".to_string(), "0".into()],
            vec!["98".into(), "2".into()],
            vec!["97".into(), "1".into()]
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn properties_and_comments_are_kept_and_shown() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE t (id INT) COMMENT 'first' TBLPROPERTIES ('owner' = 'ml')")
        .await;
    wh.sql("ALTER TABLE t SET TBLPROPERTIES (delta.enableChangeDataFeed = true)")
        .await;
    wh.sql("COMMENT ON TABLE t IS 'second'").await;
    let props = wh.rows("SHOW TBLPROPERTIES t").await;
    assert_eq!(
        props,
        vec![
            vec!["delta.enableChangeDataFeed".to_string(), "true".into()],
            vec!["owner".into(), "ml".into()]
        ]
    );
    wh.sql("ALTER TABLE t UNSET TBLPROPERTIES ('owner')").await;
    assert_eq!(wh.rows("SHOW TBLPROPERTIES t").await.len(), 1);
    let extended = wh.rows("DESCRIBE TABLE EXTENDED t").await;
    assert!(
        extended.contains(&vec!["Comment".to_string(), "second".into(), "NULL".into()]),
        "{extended:?}"
    );
    // CREATE OR REPLACE keeps properties and comment unless it gives new ones.
    wh.sql("CREATE OR REPLACE TABLE t AS SELECT 1 AS id").await;
    assert_eq!(wh.rows("SHOW TBLPROPERTIES t").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn set_accepts_known_vitrine_settings_only() {
    let wh = TestWarehouse::new().await;
    wh.sql("SET vitrine.udf.on_error = 'fail'").await;
    wh.sql("SET vitrine.model.clip = '/models/clip'").await;
    assert_eq!(
        wh.session.setting("vitrine.udf.on_error").as_deref(),
        Some("fail")
    );
    assert_eq!(
        wh.rows("SET vitrine.model.clip").await,
        vec![vec![
            "vitrine.model.clip".to_string(),
            "/models/clip".into()
        ]]
    );
    let err = wh.error("SET vitrine.udf.on_eror = 'fail'").await;
    assert!(
        err.contains("unknown setting 'vitrine.udf.on_eror'"),
        "{err}"
    );
    wh.sql("SET datafusion.execution.batch_size = 1024").await;
    wh.sql("SET spark.sql.shuffle.partitions = 8").await;
}

/// `vitrine.model.<name>` takes the kinds the model registry knows, and a refused `SET` leaves
/// the setting as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_model_kind_that_does_not_exist_is_refused_by_name() {
    let wh = TestWarehouse::new().await;
    let before = wh.session.setting("vitrine.model.clip");
    let err = wh.error("SET vitrine.model.clp = '/models/clip'").await;
    assert!(err.contains("unknown model kind 'clp'"), "{err}");
    assert!(err.contains("clip, smolvlm"), "{err}");
    let err = wh.error("SET vitrine.udf.batch_size = 0").await;
    assert!(err.contains("positive integer"), "{err}");
    assert_eq!(wh.session.setting("vitrine.udf.batch_size"), None);
    assert_eq!(wh.session.setting("vitrine.model.clip"), before);
    assert_eq!(wh.session.setting("vitrine.model.clp"), None);
}

/// `RESET key` goes back to the value the session started with (here the command-line model) or
/// to the default, for the model functions too; `RESET` resets every key.
#[tokio::test(flavor = "multi_thread")]
async fn reset_goes_back_to_the_start() {
    let wh = TestWarehouse::new().await;
    let startup = wh.session.setting("vitrine.model.clip").unwrap();
    let embed = "SELECT SIZE(clip_text_embed('red dress'))";
    let width = wh.value(embed).await;
    wh.sql("SET vitrine.write.commit_rows = 64").await;
    wh.sql("SET vitrine.model.clip = '/nowhere/clip'").await;
    assert!(wh.error(embed).await.contains("/nowhere/clip"));
    wh.sql("RESET vitrine.write.commit_rows").await;
    assert_eq!(wh.session.setting("vitrine.write.commit_rows"), None);
    wh.sql("RESET vitrine.model.clip").await;
    assert_eq!(
        wh.session.setting("vitrine.model.clip"),
        Some(startup.clone())
    );
    assert_eq!(wh.value(embed).await, width);

    wh.sql("SET vitrine.model.clip = '/nowhere/clip'").await;
    wh.sql("SET vitrine.udf.batch_size = 3").await;
    wh.sql("RESET").await;
    assert_eq!(wh.session.setting("vitrine.udf.batch_size"), None);
    assert_eq!(wh.value(embed).await, width);

    let err = wh.error("RESET vitrine.udf.batchsize").await;
    assert!(
        err.contains("unknown setting 'vitrine.udf.batchsize'"),
        "{err}"
    );
    let err = wh.error("RESET datafusion.execution.batch_size").await;
    assert!(
        err.contains("SET datafusion.execution.batch_size ="),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_files_and_csv_tables_read_volumes() {
    let wh = TestWarehouse::new().await;
    let volume = wh.path().join("Volumes/main/default/files");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("a.csv"), "Id,Name\n1,x\n2,y\n").unwrap();
    assert_eq!(wh.value("SELECT SUM(id) FROM read_files('/Volumes/main/default/files/a.csv', format => 'csv', header => true)").await, "3");
    wh.sql("CREATE TABLE a USING CSV OPTIONS (header = true) LOCATION '/Volumes/main/default/files/a.csv'").await;
    assert_eq!(wh.value("SELECT name FROM a WHERE id = 2").await, "y");
    wh.sql("CREATE TABLE p AS SELECT * FROM a").await;
    assert_eq!(wh.value("SELECT COUNT(*) FROM p").await, "2");
    let parquet = volume.join("a.parquet");
    wh.sql(&format!(
        "COPY (SELECT id * 10 AS id FROM a) TO '{}' STORED AS PARQUET",
        parquet.display()
    ))
    .await;
    wh.sql("CREATE TABLE pq USING PARQUET LOCATION '/Volumes/main/default/files/a.parquet'")
        .await;
    assert_eq!(wh.value("SELECT SUM(id) FROM pq").await, "30");
    let e = wh.error("INSERT INTO pq VALUES (1)").await;
    assert!(e.contains("read-only"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn map_struct_and_nested_array_columns_round_trip() {
    let wh = TestWarehouse::new().await;
    wh.sql(
        "CREATE TABLE n (m MAP<STRING, INT>, s STRUCT<a: INT, b: ARRAY<STRING>>, v ARRAY<FLOAT>)",
    )
    .await;
    wh.sql("INSERT INTO n VALUES (MAP(['k'], [7]), NAMED_STRUCT('a', 1, 'b', ARRAY('x', 'y')), ARRAY(0.5, 1.5))").await;
    assert_eq!(
        wh.rows("SELECT m['k'], s.b[2], v[2] FROM n").await,
        vec![vec!["7".to_string(), "y".into(), "1.5".into()]]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn optimize_compacts_small_appends() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE t (id INT)").await;
    for i in 0..6 {
        wh.sql(&format!("INSERT INTO t VALUES ({i})")).await;
    }
    let metrics = wh.rows("OPTIMIZE t").await;
    assert!(
        metrics[0][1].contains("numFilesBefore: 6") && metrics[0][1].contains("numFilesAfter: 1"),
        "{metrics:?}"
    );
    assert_eq!(wh.value("SELECT SUM(id) FROM t").await, "15");
    assert_eq!(wh.rows("DESCRIBE HISTORY t").await[0][2], "OPTIMIZE");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_warehouse_holds_tables_and_volumes() {
    let engine = vitrine::Engine::open(vitrine::EngineConfig::new("memory:///"))
        .await
        .unwrap()
        .session()
        .unwrap();
    let options = vitrine::demo::DemoOptions {
        products: 120,
        seed: 4,
        images: false,
        progress: false,
    };
    vitrine::demo::generate(engine.warehouse(), &options)
        .await
        .unwrap();
    engine
        .run_file(&crate::support::repo_path("sql/00_load_products.sql"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    engine.execute("INSERT INTO main.fashion_demo.products SELECT * FROM main.fashion_demo.products WHERE product_id < 10010").await.unwrap();
    let count = engine
        .execute("SELECT COUNT(*) FROM main.fashion_demo.products")
        .await
        .unwrap();
    assert_eq!(
        crate::support::rows(&count.batches),
        vec![vec!["130".to_string()]]
    );
}

/// Spark functions Vitrine computes as DataFusion expressions give the results of Spark's own
/// documentation examples.
#[tokio::test(flavor = "multi_thread")]
async fn spark_functions_give_the_results_of_sparks_examples() {
    let wh = TestWarehouse::new().await;
    let examples = [
        ("dayofweek(DATE '2009-07-30')", "5"),
        ("weekday(DATE '2009-07-30')", "3"),
        ("dayofmonth(DATE '2009-07-30')", "30"),
        ("dayofyear(DATE '2016-04-09')", "100"),
        ("month(DATE '2016-07-30')", "7"),
        ("quarter(DATE '2016-08-31')", "3"),
        // (Spark's examples write '\\d': Vitrine's string literals keep backslashes as they are.)
        ("regexp_extract('100-200', '(\\d+)-(\\d+)', 1)", "100"),
        ("regexp_extract('100-200', '(\\d+)-(\\d+)', 0)", "100-200"),
        ("regexp_extract('100-200', '(\\d+)-(\\d+)')", "100"),
        ("regexp_extract('foo', '(\\d+)', 1)", ""),
        (
            "rlike('%SystemDrive%\\Users\\John', '%SystemDrive%.*')",
            "true",
        ),
        ("locate('bar', 'foobarbar')", "4"),
        ("isnull(1)", "false"),
        ("isnotnull(1)", "true"),
        ("equal_null(NULL, NULL)", "true"),
        ("try_divide(3, 2)", "1.5"),
        ("try_divide(1, 0)", "NULL"),
        ("hypot(3, 4)", "5.0"),
        ("log1p(0)", "0.0"),
        ("ceiling(-0.1)", "-0.0"),
        ("sign(40)", "1.0"),
        ("sequence(1, 5)", "[1, 2, 3, 4, 5]"),
        ("sequence(5, 1, -1)", "[5, 4, 3, 2, 1]"),
        ("sequence(5, 1)", "[5, 4, 3, 2, 1]"),
        (
            "sort_array(array('b', 'd', NULL, 'c', 'a'), false)",
            "[d, c, b, a, NULL]",
        ),
        ("locate('bar', 'foobarbar', 5)", "7"),
        (
            "timestamp_seconds(1230219000.123)",
            "2008-12-25T15:30:00.123Z",
        ),
        (
            "sort_array(array('b', 'd', NULL, 'c', 'a'))",
            "[NULL, a, b, c, d]",
        ),
        ("array_size(array('b', 'd', 'c', 'a'))", "4"),
        ("int('42') + 1", "43"),
        ("date('2016-07-30')", "2016-07-30"),
        ("timestamp_seconds(1230219000)", "2008-12-25T15:30:00Z"),
        (
            "unix_timestamp(TIMESTAMP '2016-04-08 00:00:00')",
            "1460073600",
        ),
        ("lcase('SparkSql')", "sparksql"),
        ("startswith('Spark SQL', 'Spark')", "true"),
    ];
    for (call, want) in examples {
        assert_eq!(wh.value(&format!("SELECT {call}")).await, want, "{call}");
    }
    let aggregates = [
        ("count_if(x % 2 = 0)", "2"),
        ("max_by(k, x)", "c"),
        ("min_by(k, x)", "a"),
        ("every(x > 0)", "true"),
        ("some(x > 2)", "true"),
    ];
    for (call, want) in aggregates {
        assert_eq!(
            wh.value(&format!(
                "SELECT {call} FROM VALUES ('a', 1), ('b', 2), ('c', 4), ('d', NULL) AS t(k, x)"
            ))
            .await,
            want,
            "{call}"
        );
    }
}
