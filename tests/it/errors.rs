//! Bad input gets one clear message naming what is at fault, and nothing is written.

use crate::support::TestWarehouse;

#[tokio::test(flavor = "multi_thread")]
async fn unknown_names_and_bad_sql_are_named() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE t (id INT)").await;
    let e = wh.error("SELECT * FROM main.default.nope").await;
    assert!(e.contains("nope") && e.contains("not found"), "{e}");
    let e = wh.error("SELECT * FROM nocatalog.s.t").await;
    assert!(e.contains("nocatalog.s.t"), "{e}");
    let e = wh.error("SELECT no_such_function(id) FROM t").await;
    assert!(e.contains("no_such_function"), "{e}");
    let e = wh.error("SELEC id FROM t").await;
    assert!(
        e.contains("line 1, column 1") || e.contains("Line: 1, Column: 1"),
        "{e}"
    );
    let e = wh.error("CREATE TABLE u (id INTEGRAL)").await;
    assert!(e.contains("column 'id'") && e.contains("INTEGRAL"), "{e}");
    let e = wh.error("CREATE TABLE nocatalog.s.u (id INT)").await;
    assert!(e.contains("nocatalog.s"), "{e}");
    let e = wh.error("INSERT INTO t SELECT ARRAY(1, 2)").await;
    assert!(e.contains("column 'id'"), "{e}");
    let e = wh.error("INSERT INTO t VALUES (1, 2)").await;
    assert!(e.contains("2 columns but 1"), "{e}");
    let e = wh.error("INSERT INTO t VALUES ('abc')").await;
    assert!(
        e.contains("converting id (string → int)") && e.contains("'abc'"),
        "{e}"
    );
    let e = wh.error("SELECT id + ARRAY(1) FROM t").await;
    assert!(!e.is_empty());
    let e = wh.error("CREATE TABLE t (id INT)").await;
    assert!(e.contains("already exists"), "{e}");
    let e = wh.error("OPTIMIZE t ZORDER BY (nope)").await;
    assert!(e.contains("'nope'"), "{e}");
    assert_eq!(
        wh.rows("DESCRIBE HISTORY t").await.len(),
        1,
        "a failed statement wrote a version"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_files_are_named_with_the_line_at_fault() {
    let wh = TestWarehouse::new().await;
    let volume = wh.path().join("Volumes/main/default/raw");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("bad.csv"), "id,name\n1,a\n2,b,extra\n3,c\n").unwrap();
    let e = wh.error("CREATE TABLE t AS SELECT * FROM read_files('/Volumes/main/default/raw/bad.csv', format => 'csv', header => true)").await;
    assert!(
        e.contains("bad.csv") && e.contains("line 3") && e.contains("Expected 2"),
        "{e}"
    );
    let e = wh
        .error("SELECT * FROM read_files('/Volumes/main/default/raw/missing.csv', format => 'csv')")
        .await;
    assert!(e.contains("missing.csv"), "{e}");
    let e = wh
        .error("CREATE TABLE m USING DELTA LOCATION '/Volumes/main/default/raw/nothing'")
        .await;
    assert!(e.contains("nothing"), "{e}");
    assert!(
        wh.rows("SHOW TABLES").await.is_empty(),
        "nothing may be written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_warehouse_is_reported() {
    let e = vitrine::Engine::open(vitrine::EngineConfig::new("/proc/no/such/warehouse"))
        .await
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("/proc/no/such/warehouse"), "{e}");
    let e = vitrine::Engine::open(vitrine::EngineConfig::new("unknownscheme://bucket/wh"))
        .await
        .expect_err("must fail")
        .to_string();
    assert!(e.contains("unknownscheme://bucket/wh"), "{e}");
}
