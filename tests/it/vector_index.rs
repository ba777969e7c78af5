//! Vector index statements on generated vectors: CREATE / SHOW / DESCRIBE / SYNC / DROP INDEX,
//! incremental sync of inserts, updates and deletes, and the bad inputs.

use crate::support::TestWarehouse;

/// A source of `rows` products with 8-d unit vectors that depend on the id.
async fn source(rows: usize) -> TestWarehouse {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE SCHEMA main.shop").await;
    wh.sql(&format!(
        "CREATE TABLE main.shop.items AS SELECT id AS product_id, concat('item ', id) AS name, \
         CASE WHEN id % 2 = 0 THEN 'Women' ELSE 'Men' END AS gender, CAST(id % 97 AS DOUBLE) AS price, \
         arrow_cast(make_array(sin(id), cos(id), sin(2*id), cos(2*id), sin(3*id), cos(3*id), sin(5*id), cos(5*id)), \
                    'FixedSizeList(8, Float32)') AS embedding \
         FROM (SELECT value AS id FROM generate_series(1, {rows}))"
    ))
    .await;
    wh
}

fn describe(rows: &[Vec<String>], key: &str) -> String {
    rows.iter()
        .find(|r| r[0] == key)
        .map(|r| r[1].clone())
        .unwrap_or_else(|| panic!("no {key} in {rows:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_is_created_shown_described_and_dropped() {
    let wh = source(600).await;
    let created = wh
        .sql(
            "CREATE VECTOR INDEX main.shop.vs_items ON main.shop.items (embedding) USING IVF_PQ \
             WITH (primary_key = 'product_id', metric = 'cosine', columns = (name, price), \
                   pipeline_type = 'TRIGGERED', embedding_model = 'clip', endpoint_name = 'vs_endpoint', num_partitions = 4)",
        )
        .await;
    assert!(created.message.unwrap().contains("600 rows"));
    let shown = wh.rows("SHOW INDEXES IN main.shop").await;
    assert_eq!(shown.len(), 1);
    assert_eq!(
        shown[0][..5],
        [
            "main.shop.vs_items",
            "main.shop.items",
            "embedding",
            "IVF_PQ",
            "600"
        ]
    );
    let described = wh.rows("DESCRIBE INDEX main.shop.vs_items").await;
    assert_eq!(describe(&described, "primary_key"), "product_id");
    assert_eq!(describe(&described, "embedding_dimension"), "8");
    assert_eq!(describe(&described, "status"), "in sync");
    assert_eq!(describe(&described, "embedding_model"), "clip");
    let params = describe(&described, "parameters");
    for p in [
        "num_partitions=4",
        "num_sub_vectors=",
        "endpoint_name=vs_endpoint",
    ] {
        assert!(params.contains(p), "{p} in {params}");
    }
    assert_eq!(
        describe(&described, "columns"),
        "embedding, product_id, name, price"
    );
    // Indexes are not tables.
    assert!(wh
        .rows("SHOW TABLES IN main.shop")
        .await
        .iter()
        .all(|r| !r.contains(&"vs_items".to_string())));

    let again = wh.error("CREATE VECTOR INDEX main.shop.vs_items ON main.shop.items (embedding) WITH (primary_key = 'product_id')").await;
    assert!(again.contains("already exists"), "{again}");
    wh.sql("CREATE VECTOR INDEX IF NOT EXISTS main.shop.vs_items ON main.shop.items (embedding) WITH (primary_key = 'product_id')").await;

    wh.sql("DROP INDEX main.shop.vs_items").await;
    assert!(wh.rows("SHOW INDEXES IN main.shop").await.is_empty());
    assert!(
        !wh.path().join("main/shop/vs_items").exists(),
        "the index data is removed"
    );
    let err = wh.error("DROP INDEX main.shop.vs_items").await;
    assert!(
        err.contains("vector index main.shop.vs_items does not exist"),
        "{err}"
    );
    wh.sql("DROP VECTOR INDEX IF EXISTS main.shop.vs_items")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_applies_only_the_rows_that_changed() {
    let wh = source(400).await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) WITH (primary_key = 'product_id', columns = (name, price))").await;
    let index = wh.path().join("main/shop/vs");
    let versions_before = std::fs::read_dir(index.join("_versions")).unwrap().count();

    wh.sql("UPDATE main.shop.items SET price = price + 1000 WHERE product_id <= 10")
        .await;
    wh.sql("DELETE FROM main.shop.items WHERE product_id > 390")
        .await;
    wh.sql(
        "INSERT INTO main.shop.items SELECT product_id + 1000, name, gender, price, embedding \
         FROM main.shop.items WHERE product_id <= 5",
    )
    .await;
    // A change to a column the index does not keep changes nothing in it.
    wh.sql("UPDATE main.shop.items SET gender = 'Unisex' WHERE product_id BETWEEN 100 AND 120")
        .await;
    let status = describe(&wh.rows("DESCRIBE INDEX main.shop.vs").await, "status");
    assert!(status.starts_with("behind"), "{status}");

    let synced = wh.sql("SYNC INDEX main.shop.vs").await.message.unwrap();
    // 10 updated + 5 inserted rows written; 10 updated + 10 deleted keys removed.
    assert!(
        synced.contains("15 rows written, 20 removed (395 rows)"),
        "{synced}"
    );
    assert!(
        std::fs::read_dir(index.join("_versions")).unwrap().count() > versions_before,
        "a sync adds versions instead of rebuilding"
    );
    assert_eq!(
        describe(&wh.rows("DESCRIBE INDEX main.shop.vs").await, "status"),
        "in sync"
    );
    let again = wh.sql("SYNC INDEX main.shop.vs").await.message.unwrap();
    assert!(again.contains("is in sync"), "{again}");
    assert_eq!(
        describe(&wh.rows("DESCRIBE INDEX main.shop.vs").await, "rows"),
        "395"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_sources_and_options_are_clear_errors() {
    let wh = source(50).await;
    let no_key = wh
        .error("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding)")
        .await;
    assert!(no_key.contains("primary_key"), "{no_key}");
    let missing = wh.error("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) WITH (primary_key = 'sku')").await;
    assert!(missing.contains("has no column 'sku'"), "{missing}");
    let not_vector = wh.error("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (name) WITH (primary_key = 'product_id')").await;
    assert!(not_vector.contains("fixed length"), "{not_vector}");
    let metric = wh.error("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) WITH (primary_key = 'product_id', metric = 'hamming')").await;
    assert!(metric.contains("'hamming'"), "{metric}");
    let kind = wh.error("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) USING LSH WITH (primary_key = 'product_id')").await;
    assert!(kind.contains("'LSH'"), "{kind}");
    let dim = wh.error("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) WITH (primary_key = 'product_id', embedding_dimension = 512)").await;
    assert!(dim.contains("8-d"), "{dim}");

    wh.sql("INSERT INTO main.shop.items SELECT product_id, name, gender, price, embedding FROM main.shop.items WHERE product_id = 7").await;
    let duplicate = wh.error("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) WITH (primary_key = 'product_id')").await;
    assert!(
        duplicate.contains("not unique") && duplicate.contains("= 7"),
        "{duplicate}"
    );
    wh.sql("DELETE FROM main.shop.items WHERE product_id = 7")
        .await;
    wh.sql("UPDATE main.shop.items SET embedding = NULL WHERE product_id = 9")
        .await;
    let null = wh.error("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) WITH (primary_key = 'product_id')").await;
    assert!(
        null.contains("product_id = 9") && null.contains("NULL embedding"),
        "{null}"
    );
    assert!(
        wh.rows("SHOW INDEXES IN main.shop").await.is_empty(),
        "no index is left behind by a failure"
    );

    let unknown = wh.error("SYNC INDEX main.shop.nope").await;
    assert!(
        unknown.contains("vector index main.shop.nope does not exist"),
        "{unknown}"
    );
}
