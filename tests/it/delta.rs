//! Delta Lake: tables written by the `deltalake` crate's own writer attach and read; tables Vitrine
//! writes as Delta read back in `deltalake`.

use std::sync::Arc;

use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use deltalake::DeltaTable;

use crate::support::TestWarehouse;

fn batch(ids: &[i32], names: &[&str]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int32Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names.to_vec())),
        ],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delta_table_written_by_deltalake_attaches_and_reads_at_any_version() {
    let wh = TestWarehouse::new().await;
    let location = wh.path().join("external/products_delta");
    std::fs::create_dir_all(&location).unwrap();
    let url = url::Url::from_directory_path(&location).unwrap();
    let table = DeltaTable::try_from_url(url.clone()).await.unwrap();
    let table = table
        .write(vec![batch(&[1, 2, 3], &["a", "b", "c"])])
        .await
        .unwrap();
    assert_eq!(table.version(), Some(0));

    wh.sql(&format!(
        "CREATE TABLE main.default.ext USING DELTA LOCATION '{}'",
        location.display()
    ))
    .await;
    assert_eq!(wh.value("SELECT SUM(id) FROM main.default.ext").await, "6");
    assert_eq!(
        wh.value("SELECT name FROM main.default.ext WHERE id = 2")
            .await,
        "b"
    );

    let table = DeltaTable::try_from_url(url).await.unwrap();
    table.write(vec![batch(&[4], &["d"])]).await.unwrap();
    assert_eq!(wh.value("SELECT COUNT(*) FROM main.default.ext").await, "4");
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM main.default.ext VERSION AS OF 0")
            .await,
        "3"
    );
    let extended = wh.rows("DESCRIBE TABLE EXTENDED main.default.ext").await;
    assert!(
        extended.contains(&vec!["Type".to_string(), "EXTERNAL".into(), "NULL".into()]),
        "{extended:?}"
    );
    assert!(extended.contains(&vec!["Provider".to_string(), "delta".into(), "NULL".into()]));
    // Dropping an external table keeps its data.
    wh.sql("DROP TABLE main.default.ext").await;
    assert!(location.join("_delta_log").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn vitrine_writes_delta_tables_that_deltalake_reads() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE TABLE d (id INT, name STRING) USING DELTA")
        .await;
    wh.sql("INSERT INTO d VALUES (1, 'a'), (2, 'b')").await;
    wh.sql("INSERT INTO d VALUES (3, 'c')").await;
    wh.sql("UPDATE d SET name = 'B' WHERE id = 2").await;
    assert_eq!(wh.value("SELECT name FROM d WHERE id = 2").await, "B");
    let optimized = wh.rows("OPTIMIZE d ZORDER BY (id)").await;
    assert_eq!(optimized.len(), 1);
    let history = wh.rows("DESCRIBE HISTORY d").await;
    assert!(history.len() >= 4, "{history:?}");
    wh.sql("RESTORE TABLE d TO VERSION AS OF 1").await;
    assert_eq!(wh.value("SELECT COUNT(*) FROM d").await, "2");

    let location = wh.path().join("main/default/d");
    let table = deltalake::open_table(url::Url::from_directory_path(&location).unwrap())
        .await
        .unwrap();
    let files = table.snapshot().unwrap().log_data().num_files();
    assert!(files >= 1);
    assert!(table.version().unwrap() >= 5);
}
