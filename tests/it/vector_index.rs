//! Vector index statements on generated vectors: CREATE / SHOW / DESCRIBE / SYNC / DROP INDEX,
//! incremental sync of inserts, updates and deletes, and the bad inputs.

use vitrine::vector::filter::RowFilter;

use crate::support::{Server, TestWarehouse};

/// The SQL of a pseudo-random 8-d vector for the integer expression `seed` (the classic
/// `fract(sin(x) · 43758.5453)` hash, one component per offset).
fn pseudo_random_vector(seed: &str) -> String {
    let parts: Vec<String> = (0..8)
        .map(|j| {
            let x = format!("sin({seed} * 12.9898 + {}.233) * 43758.5453", j * 78);
            format!("({x} - floor({x}) - 0.5)")
        })
        .collect();
    format!("make_array({})", parts.join(", "))
}

/// A source of `rows` products with pseudo-random 8-d vectors.
async fn source(rows: usize) -> TestWarehouse {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE SCHEMA main.shop").await;
    wh.sql(&format!(
        "CREATE TABLE main.shop.items AS SELECT id AS product_id, concat('item ', id) AS name, \
         CASE WHEN id % 2 = 0 THEN 'Women' ELSE 'Men' END AS gender, CAST(id % 97 AS DOUBLE) AS price, \
         arrow_cast({}, 'FixedSizeList(8, Float32)') AS embedding \
         FROM (SELECT value AS id FROM generate_series(1, {rows}))",
        pseudo_random_vector("id")
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

    let err = wh.error("DROP SCHEMA main.shop").await;
    assert!(err.contains("1 vector indexes"), "{err}");
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

/// The ids and scores of a `vector_search` query.
async fn search(wh: &TestWarehouse, sql: &str) -> Vec<(i64, f32)> {
    wh.rows(sql)
        .await
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect()
}

/// The exact top-k by cosine similarity, computed with SQL over the source.
async fn exact(wh: &TestWarehouse, query: &str, k: usize, filter: &str) -> Vec<i64> {
    wh.rows(&format!(
        "SELECT product_id FROM main.shop.items WHERE {filter} \
         ORDER BY cosine_similarity(embedding, {query}) DESC, product_id LIMIT {k}"
    ))
    .await
    .into_iter()
    .map(|r| r[0].parse().unwrap())
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn vector_search_finds_the_nearest_rows_filters_first_and_orders_by_score() {
    let wh = source(2000).await;
    // Tuned to recall@10 0.99 on its build sample, so that five other queries reach 0.9.
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) USING IVF_HNSW_SQ WITH (primary_key = 'product_id', columns = (gender, price), target_recall = 0.99)").await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs_flat ON main.shop.items (embedding) USING FLAT WITH (primary_key = 'product_id', columns = (gender, price))").await;
    let seeds = [3, 777, 1234, 1999, 58];
    let mut found = 0;
    for seed in seeds {
        // The query is the vector of row `seed`.
        let query = pseudo_random_vector(&seed.to_string());
        let want = exact(&wh, &query, 10, "true").await;
        assert_eq!(want[0], seed);
        for index in ["vs", "vs_flat"] {
            let got = search(
                &wh,
                &format!("SELECT product_id, score FROM vector_search(index => 'main.shop.{index}', query_vector => {query}, num_results => 10)"),
            )
            .await;
            let ids: Vec<i64> = got.iter().map(|g| g.0).collect();
            assert_eq!(ids.len(), 10, "{index}");
            if index == "vs_flat" {
                assert_eq!(ids, want, "exact search, query {seed}");
            } else {
                found += ids.iter().filter(|id| want.contains(id)).count();
            }
            assert!(
                got.windows(2).all(|w| w[0].1 >= w[1].1),
                "scores descend: {got:?}"
            );
            assert!(
                (got[0].1 - 1.0).abs() < 1e-4,
                "the query's own row scores 1: {got:?}"
            );
        }
        // The filter applies before the top-k: 10 rows, all matching, the nearest of those.
        let filter = "gender = 'Women' AND price < 50";
        let got = search(
            &wh,
            &format!("SELECT product_id, score FROM vector_search(index => 'main.shop.vs_flat', query_vector => {query}, num_results => 10, filters => \"{filter}\")"),
        )
        .await;
        let ids: Vec<i64> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            ids,
            exact(&wh, &query, 10, filter).await,
            "filtered, query {seed}"
        );
    }
    let recall = found as f64 / (10 * seeds.len()) as f64;
    assert!(
        recall >= 0.9,
        "recall@10 of the IVF_HNSW_SQ index: {recall}"
    );

    // Up to 100 results from an IVF_HNSW_SQ index (graph breadth 100, candidates re-ranked 5×):
    // the breadth grows to reach every candidate.
    let query = pseudo_random_vector("58");
    let got = search(
        &wh,
        &format!("SELECT product_id, score FROM vector_search(index => 'main.shop.vs', query_vector => {query}, num_results => 100)"),
    )
    .await;
    assert_eq!(got.len(), 100);
    let want = exact(&wh, &query, 100, "true").await;
    let found = got.iter().filter(|g| want.contains(&g.0)).count();
    assert!(
        found >= 90,
        "recall@100 of the IVF_HNSW_SQ index: {found} %"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vector_search_embeds_query_text_with_the_index_model() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE SCHEMA main.shop").await;
    wh.sql(
        "CREATE TABLE main.shop.texts AS SELECT column1 AS id, column2 AS description, clip_text_embed(column2) AS embedding \
         FROM (VALUES (1, 'red cotton dress'), (2, 'black leather watch'), (3, 'blue denim jeans'), (4, 'white sneakers'))",
    )
    .await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs_text ON main.shop.texts (embedding) USING FLAT WITH (primary_key = 'id', embedding_model = 'clip')").await;
    // The positional form: index, query text, number of results.
    let positional = search(
        &wh,
        "SELECT id, score FROM vector_search('main.shop.vs_text', 'white sneakers', 1)",
    )
    .await;
    assert_eq!(positional[0].0, 4);
    for (text, id) in [("black leather watch", 2), ("blue denim jeans", 3)] {
        let got = search(&wh, &format!("SELECT id, score FROM vector_search(index => 'main.shop.vs_text', query_text => '{text}', num_results => 2)")).await;
        assert_eq!(got[0].0, id, "{text}: {got:?}");
        assert!((got[0].1 - 1.0).abs() < 1e-5);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn vector_search_refuses_bad_queries_clearly() {
    let wh = source(100).await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) USING FLAT WITH (primary_key = 'product_id')").await;
    let eight = "make_array(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)";
    for (args, expected) in [
        ("index => 'main.shop.nope', query_vector => make_array(1.0)", "vector index main.shop.nope does not exist"),
        ("index => 'main.shop.vs', query_vector => make_array(1.0, 2.0)", "2 values but the index holds 8-d vectors"),
        ("index => 'main.shop.vs', query_vector => CAST(NULL AS ARRAY<FLOAT>)", "NULL"),
        ("index => 'main.shop.vs', query_vector => make_array(1.0, 'NaN'::float, 0, 0, 0, 0, 0, 0)", "NaN"),
        (&format!("index => 'main.shop.vs', query_vector => {eight}, num_results => 0"), "num_results must be an integer from 1 to 10000"),
        (&format!("index => 'main.shop.vs', query_vector => {eight}, num_results => 100000"), "num_results must be an integer from 1 to 10000"),
        (&format!("index => 'main.shop.vs', query_vector => {eight}, top_k => 3"), "unknown argument 'top_k'"),
        ("index => 'main.shop.vs', query_text => 'red dress'", "no embedding_model"),
        (&format!("index => 'main.shop.vs', query_vector => {eight}, query_type => 'FUZZY'"), "query_type 'FUZZY'"),
        (&format!("index => 'main.shop.vs', query_vector => {eight}, filters => 'no_such_column > 1'"), "filters"),
    ] {
        let err = wh.error(&format!("SELECT * FROM vector_search({args})")).await;
        assert!(err.contains(expected), "{args}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lateral_searches_run_one_search_per_row() {
    let wh = source(500).await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) USING FLAT WITH (primary_key = 'product_id', columns = (name))").await;
    // Queries: the vectors of rows 7, 42 and 7 again, and one without a vector.
    wh.sql(&format!(
        "CREATE TABLE main.shop.queries AS SELECT query_id, CASE WHEN query_id = 4 THEN NULL ELSE {} END AS v \
         FROM (SELECT column1 AS query_id, column2 AS row_id FROM (VALUES (1, 7), (2, 42), (3, 7), (4, 1)))",
        pseudo_random_vector("row_id")
    ))
    .await;
    let lateral = wh
        .rows(
            "SELECT q.query_id, r.product_id FROM main.shop.queries q, \
             LATERAL vector_search(index => 'main.shop.vs', query_vector => q.v, num_results => 3) r \
             ORDER BY q.query_id, r.score DESC",
        )
        .await;
    let joined = wh
        .rows(
            "SELECT q.query_id, r.product_id FROM main.shop.queries q \
             JOIN LATERAL vector_search(index => 'main.shop.vs', query_vector => q.v, num_results => 3) r ON true \
             ORDER BY q.query_id, r.score DESC",
        )
        .await;
    assert_eq!(lateral, joined);
    for (query_id, row_id) in [(1, 7), (2, 42), (3, 7)] {
        let single = search(
            &wh,
            &format!(
                "SELECT product_id, score FROM vector_search(index => 'main.shop.vs', query_vector => {}, num_results => 3)",
                pseudo_random_vector(&row_id.to_string())
            ),
        )
        .await;
        let per_row: Vec<i64> = lateral
            .iter()
            .filter(|r| r[0] == query_id.to_string())
            .map(|r| r[1].parse().unwrap())
            .collect();
        assert_eq!(
            per_row,
            single.iter().map(|s| s.0).collect::<Vec<_>>(),
            "query {query_id}"
        );
        assert_eq!(per_row[0], row_id);
    }
    assert!(
        lateral.iter().all(|r| r[0] != "4"),
        "a NULL query finds nothing: {lateral:?}"
    );
    let none = wh
        .rows("SELECT r.product_id FROM (SELECT * FROM main.shop.queries WHERE query_id > 10) q, LATERAL vector_search(index => 'main.shop.vs', query_vector => q.v) r")
        .await;
    assert!(none.is_empty());
    let err = wh
        .error("SELECT * FROM main.shop.queries q, LATERAL vector_search(index => 'main.shop.vs', query_vector => q.v, num_results => q.query_id) r")
        .await;
    assert!(err.contains("num_results must be a constant"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hybrid_search_fuses_bm25_and_ann_by_reciprocal_rank() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE SCHEMA main.shop").await;
    wh.sql(
        "CREATE TABLE main.shop.docs AS SELECT column1 AS id, column2 AS description, \
         arrow_cast(column3, 'FixedSizeList(3, Float32)') AS embedding FROM (VALUES \
         (1, 'red cotton dress', make_array(1.0, 0.0, 0.0)), \
         (2, 'blue denim jeans', make_array(0.9, 0.1, 0.0)), \
         (3, 'black leather watch with a metal strap', make_array(0.0, 0.0, 1.0)), \
         (4, 'white canvas sneakers', make_array(0.0, 1.0, 0.0)))",
    )
    .await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.docs (embedding) USING FLAT WITH (primary_key = 'id', text_column = 'description')").await;
    let query =
        "index => 'main.shop.vs', query_vector => make_array(1.0, 0.0, 0.0), num_results => 2";
    let ann = search(
        &wh,
        &format!("SELECT id, score FROM vector_search({query})"),
    )
    .await;
    assert_eq!(ann.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2]);
    let hybrid = search(
        &wh,
        &format!("SELECT id, score FROM vector_search({query}, query_type => 'HYBRID', query_text => 'leather watch')"),
    )
    .await;
    // Each ranking is 2k = 4 deep. Row 3 is first by BM25 and in the vector ranking's 4 (behind
    // rows 1 and 2): 1/61 + at least 1/64. Row 1 is first by vector only: 1/61.
    assert_eq!(
        hybrid.iter().map(|r| r.0).collect::<Vec<_>>(),
        [3, 1],
        "{hybrid:?}"
    );
    assert!(hybrid[0].1 > (1.0 / 61.0 + 1.0 / 65.0) as f32, "{hybrid:?}");
    assert!((hybrid[1].1 - 1.0 / 61.0).abs() < 1e-6, "{hybrid:?}");

    // The full-text index follows SYNC.
    wh.sql("INSERT INTO main.shop.docs SELECT 5, 'gold watch', arrow_cast(make_array(0.0, 0.7, 0.7), 'FixedSizeList(3, Float32)')").await;
    wh.sql("SYNC INDEX main.shop.vs").await;
    let synced = search(
        &wh,
        "SELECT id, score FROM vector_search(index => 'main.shop.vs', query_vector => make_array(0.0, 0.7, 0.7), query_type => 'HYBRID', query_text => 'gold', num_results => 1)",
    )
    .await;
    assert_eq!(synced[0].0, 5);

    wh.sql("CREATE VECTOR INDEX main.shop.vs_plain ON main.shop.docs (embedding) USING FLAT WITH (primary_key = 'id')").await;
    let err = wh
        .error("SELECT * FROM vector_search(index => 'main.shop.vs_plain', query_vector => make_array(1.0, 0.0, 0.0), query_type => 'HYBRID', query_text => 'x')")
        .await;
    assert!(err.contains("text_column"), "{err}");
    let err = wh
        .error("CREATE VECTOR INDEX main.shop.vs_bad ON main.shop.docs (embedding) WITH (primary_key = 'id', text_column = 'id')")
        .await;
    assert!(err.contains("must be a STRING column"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn vitrine_serve_keeps_continuous_indexes_in_sync() {
    let wh = source(100).await;
    wh.sql("CREATE VECTOR INDEX main.shop.live ON main.shop.items (embedding) USING FLAT WITH (primary_key = 'product_id', pipeline_type = 'CONTINUOUS')").await;
    wh.sql("CREATE VECTOR INDEX main.shop.manual ON main.shop.items (embedding) USING FLAT WITH (primary_key = 'product_id')").await;
    let _server = Server(
        std::process::Command::new(env!("CARGO_BIN_EXE_vitrine"))
            .arg("--warehouse")
            .arg(wh.path())
            .args(["serve", "--addr", "127.0.0.1:0", "--interval", "0.2"])
            .stderr(std::fs::File::create(wh.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    // Both indexes are read into memory at start.
    let log = || std::fs::read_to_string(wh.path().join("serve.log")).unwrap();
    for _ in 0..150 {
        if log().contains("vector index main.shop.live held in memory (100 rows") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for line in [
        "vector index main.shop.live held in memory (100 rows",
        "vector index main.shop.manual held in memory (100 rows",
    ] {
        assert!(log().contains(line), "{line} in {}", log());
    }
    wh.sql("DELETE FROM main.shop.items WHERE product_id > 90")
        .await;
    let mut rows = String::new();
    for _ in 0..150 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let described = wh.rows("DESCRIBE INDEX main.shop.live").await;
        rows = describe(&described, "rows");
        if describe(&described, "status") == "in sync" && rows == "90" {
            break;
        }
    }
    assert_eq!(rows, "90", "the CONTINUOUS index followed its source");
    // The synced index is read again after its sync.
    let synced = "vector index main.shop.live held in memory (90 rows";
    for _ in 0..50 {
        if log().contains(synced) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(log().contains(synced), "{synced} in {}", log());
    // A TRIGGERED index waits for SYNC INDEX.
    let manual = wh.rows("DESCRIBE INDEX main.shop.manual").await;
    assert_eq!(describe(&manual, "rows"), "100");
    assert!(describe(&manual, "status").starts_with("behind"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_sync_leaves_the_index_at_its_last_good_version() {
    let wh = source(50).await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) USING FLAT WITH (primary_key = 'product_id')").await;
    let before = wh.rows("DESCRIBE HISTORY main.shop.items").await.len();
    // The source gains a duplicate key: the sync must refuse it, naming the key.
    wh.sql("INSERT INTO main.shop.items SELECT * FROM main.shop.items WHERE product_id = 12")
        .await;
    wh.sql("DELETE FROM main.shop.items WHERE product_id = 3")
        .await;
    assert!(wh.rows("DESCRIBE HISTORY main.shop.items").await.len() > before);
    let err = wh.error("SYNC INDEX main.shop.vs").await;
    assert!(err.contains("not unique") && err.contains("= 12"), "{err}");
    let described = wh.rows("DESCRIBE INDEX main.shop.vs").await;
    assert_eq!(describe(&described, "rows"), "50");
    assert_eq!(describe(&described, "synced_version"), "1");
    // Searches still see the last good index: row 3 is still there.
    let found = search(
        &wh,
        &format!(
            "SELECT product_id, score FROM vector_search(index => 'main.shop.vs', query_vector => {}, num_results => 1)",
            pseudo_random_vector("3")
        ),
    )
    .await;
    assert_eq!(found[0].0, 3);
    // Fixed at the source, the next sync applies everything.
    wh.sql("DELETE FROM main.shop.items WHERE product_id = 12")
        .await;
    let synced = wh.sql("SYNC INDEX main.shop.vs").await.message.unwrap();
    assert!(synced.contains("(48 rows)"), "{synced}");
}

/// The `name=value` pairs of DESCRIBE INDEX's parameters.
async fn parameters(wh: &TestWarehouse, index: &str) -> std::collections::BTreeMap<String, String> {
    let rows = wh.rows(&format!("DESCRIBE INDEX {index}")).await;
    describe(&rows, "parameters")
        .split(", ")
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_search_breadth_is_measured_to_reach_the_target_recall() {
    let wh = source(4000).await;
    for (name, target) in [("vs_low", "0.5"), ("vs_high", "0.99")] {
        wh.sql(&format!("CREATE VECTOR INDEX main.shop.{name} ON main.shop.items (embedding) WITH (primary_key = 'product_id', target_recall = {target})")).await;
    }
    let low = parameters(&wh, "main.shop.vs_low").await;
    let high = parameters(&wh, "main.shop.vs_high").await;
    let number = |p: &std::collections::BTreeMap<String, String>, key: &str| -> f64 {
        p.get(key)
            .unwrap_or_else(|| panic!("no {key} in {p:?}"))
            .parse()
            .unwrap()
    };
    assert_eq!(high["target_recall"], "0.99");
    let partitions = number(&high, "num_partitions");
    assert!(partitions > 1.0, "{high:?}");
    // The higher target probes at least as many partitions, and reaches it unless it probes
    // them all.
    assert!(
        number(&low, "nprobes") <= number(&high, "nprobes"),
        "{low:?} vs {high:?}"
    );
    assert!(
        number(&high, "measured_recall") >= 0.99 || number(&high, "nprobes") == partitions,
        "{high:?}"
    );
    assert!(number(&low, "measured_recall") >= 0.5, "{low:?}");

    // The measured recall is what searches get: rows other than the query's own, on rows the
    // sample did not hold.
    let (mut found, mut wanted) = (0, 0);
    for seed in [7, 301, 1203, 2222, 3999, 17, 2718, 3141] {
        let query = pseudo_random_vector(&seed.to_string());
        let mut want = exact(&wh, &query, 11, "true").await;
        want.retain(|id| *id != seed);
        let got = search(
            &wh,
            &format!("SELECT product_id, score FROM vector_search(index => 'main.shop.vs_high', query_vector => {query}, num_results => 11)"),
        )
        .await;
        found += got.iter().filter(|g| want.contains(&g.0)).count();
        wanted += want.len();
    }
    let recall = found as f64 / wanted as f64;
    assert!(
        recall >= 0.9,
        "recall@10 of the index tuned to 0.99: {recall}"
    );

    // A breadth given in WITH is kept, and measured.
    wh.sql("CREATE VECTOR INDEX main.shop.vs_given ON main.shop.items (embedding) WITH (primary_key = 'product_id', nprobes = 1)").await;
    let given = parameters(&wh, "main.shop.vs_given").await;
    assert_eq!(given["nprobes"], "1");
    assert!(given.contains_key("measured_recall"), "{given:?}");

    let bad = wh.error("CREATE VECTOR INDEX main.shop.vs_bad ON main.shop.items (embedding) WITH (primary_key = 'product_id', target_recall = 1.5)").await;
    assert!(
        bad.contains("target_recall must be a number above 0 and at most 1, got '1.5'"),
        "{bad}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn equal_vectors_count_as_found_when_the_breadth_is_measured() {
    // 2,000 rows holding 50 distinct vectors: each query has 39 rows at distance 0, of which
    // any 10 are an exact answer.
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE SCHEMA main.shop").await;
    wh.sql(&format!(
        "CREATE TABLE main.shop.copies AS SELECT id AS product_id, \
         arrow_cast({}, 'FixedSizeList(8, Float32)') AS embedding \
         FROM (SELECT value AS id FROM generate_series(1, 2000))",
        pseudo_random_vector("(id % 50)")
    ))
    .await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.copies (embedding) WITH (primary_key = 'product_id')").await;
    let params = parameters(&wh, "main.shop.vs").await;
    let measured: f64 = params["measured_recall"].parse().unwrap();
    assert!(measured >= 0.95, "{params:?}");
    assert!(
        params["nprobes"].parse::<usize>().unwrap()
            < params["num_partitions"].parse::<usize>().unwrap(),
        "{params:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ivf_flat_searches_in_memory_find_filtered_rows_and_see_every_sync() {
    let wh = source(4000).await;
    // Eight partitions and one probed: a filtered search must still look past that partition.
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) USING IVF_FLAT WITH (primary_key = 'product_id', columns = (gender, price), num_partitions = 8, nprobes = 1)").await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs_all ON main.shop.items (embedding) USING IVF_FLAT WITH (primary_key = 'product_id', columns = (gender, price), num_partitions = 8, nprobes = 8)").await;
    let ids = |got: Vec<(i64, f32)>| got.into_iter().map(|g| g.0).collect::<Vec<i64>>();
    let searched = |index: &str, query: &str, filter: Option<&str>| {
        let filter = filter.map_or(String::new(), |f| format!(", filters => \"{f}\""));
        format!("SELECT product_id, score FROM vector_search(index => 'main.shop.{index}', query_vector => {query}, num_results => 10{filter})")
    };
    // price = 3 keeps 41 rows (1 %); gender = 'Women' half of them.
    for filter in ["price = 3", "gender = 'Women' AND price < 80"] {
        for seed in [3, 1167, 2813] {
            let query = pseudo_random_vector(&seed.to_string());
            let got = ids(search(&wh, &searched("vs", &query, Some(filter))).await);
            let want = exact(&wh, &query, 10, filter).await;
            if filter == "price = 3" {
                assert_eq!(got, want, "{filter}, query {seed}");
            } else {
                let found = got.iter().filter(|id| want.contains(id)).count();
                assert!(found >= 8, "{filter}, query {seed}: {got:?} vs {want:?}");
            }
        }
    }
    // Every partition probed: exact, the query's own row first with score 1.
    for seed in [3, 1167, 2813] {
        let query = pseudo_random_vector(&seed.to_string());
        let got = search(&wh, &searched("vs_all", &query, None)).await;
        assert!((got[0].1 - 1.0).abs() < 1e-4, "{got:?}");
        assert_eq!(
            ids(got),
            exact(&wh, &query, 10, "true").await,
            "query {seed}"
        );
    }

    // Deleted, changed and new rows are seen once synced.
    wh.sql("DELETE FROM main.shop.items WHERE product_id = 1167")
        .await;
    wh.sql("UPDATE main.shop.items SET price = 3 WHERE product_id = 2813")
        .await;
    wh.sql(&format!(
        "INSERT INTO main.shop.items SELECT id, concat('item ', id), 'Women', 3.0, \
         arrow_cast({}, 'FixedSizeList(8, Float32)') FROM (SELECT value AS id FROM generate_series(5001, 5050))",
        pseudo_random_vector("id")
    ))
    .await;
    wh.sql("SYNC INDEX main.shop.vs_all").await;
    wh.sql("SYNC INDEX main.shop.vs").await;
    for seed in [1167, 2813, 5025] {
        let query = pseudo_random_vector(&seed.to_string());
        let got = ids(search(&wh, &searched("vs_all", &query, None)).await);
        assert_eq!(got, exact(&wh, &query, 10, "true").await, "query {seed}");
        assert_eq!(got.contains(&seed), seed != 1167, "{got:?}");
        let filtered = ids(search(&wh, &searched("vs", &query, Some("price = 3"))).await);
        assert_eq!(
            filtered,
            exact(&wh, &query, 10, "price = 3").await,
            "query {seed}"
        );
    }

    let bad = wh
        .error(&searched(
            "vs",
            &pseudo_random_vector("1"),
            Some("no_such_column = 1"),
        ))
        .await;
    assert!(bad.contains("filters 'no_such_column = 1'"), "{bad}");
    let bad = wh
        .error(&searched(
            "vs",
            &pseudo_random_vector("1"),
            Some("price + 1"),
        ))
        .await;
    assert!(bad.contains("filters 'price + 1'"), "{bad}");
}

#[tokio::test(flavor = "multi_thread")]
async fn query_vectors_pass_as_parameters_and_through_the_in_process_api() {
    use datafusion::common::ScalarValue;
    let wh = source(2000).await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) WITH (primary_key = 'product_id', columns = (gender, price))").await;
    let queries: Vec<Vec<f32>> = wh
        .vectors("SELECT embedding FROM main.shop.items WHERE product_id IN (5, 1500) ORDER BY product_id")
        .await
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let literal = |q: &[f32]| {
        let values: Vec<String> = q.iter().map(|x| format!("{x:?}")).collect();
        format!("make_array({})", values.join(", "))
    };
    let by_literal = |q: &[f32], filter: &str| {
        format!("SELECT product_id, score FROM vector_search(index => 'main.shop.vs', query_vector => {}, num_results => 10, filters => \"{filter}\")", literal(q))
    };
    let parameterised = "SELECT product_id, score FROM vector_search(index => 'main.shop.vs', \
        query_vector => $1, num_results => 10, filters => \"price < 50\") WHERE score > $2";
    for query in &queries {
        let want = wh.rows(&by_literal(query, "price < 50")).await;
        assert_eq!(want.len(), 10);
        let vector = ScalarValue::List(ScalarValue::new_list_nullable(
            &query
                .iter()
                .map(|x| ScalarValue::Float32(Some(*x)))
                .collect::<Vec<_>>(),
            &datafusion::arrow::datatypes::DataType::Float32,
        ));
        let got = wh
            .session
            .execute_with_parameters(
                parameterised,
                vec![vector, ScalarValue::Float32(Some(-2.0))],
            )
            .await
            .unwrap();
        assert_eq!(crate::support::rows(&got.batches), want);

        // The same search in process, two queries in one call.
        let found = wh
            .session
            .search_vectors(
                "main.shop.vs",
                &[query.clone(), query.clone()],
                10,
                Some(&RowFilter::Sql("price < 50".into())),
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
        for batch in &found {
            assert_eq!(
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>(),
                ["embedding", "product_id", "gender", "price", "score"]
            );
            let got = crate::support::rows(std::slice::from_ref(batch));
            let got: Vec<Vec<String>> = got
                .into_iter()
                .map(|r| vec![r[1].clone(), r[4].clone()])
                .collect();
            assert_eq!(got, want);
        }
    }

    // A filter built from values, never SQL text: the same rows as its SQL form, whole numbers
    // compared with a DOUBLE column.
    let built = RowFilter::each_column_in(vec![
        ("gender".into(), vec![ScalarValue::from("Women")]),
        (
            "price".into(),
            (0..40).map(|p| ScalarValue::Int64(Some(p))).collect(),
        ),
    ]);
    for query in &queries {
        let want = wh
            .rows(&by_literal(query, "gender = 'Women' AND price < 40"))
            .await;
        assert_eq!(want.len(), 10);
        let found = wh
            .session
            .search_vectors(
                "main.shop.vs",
                std::slice::from_ref(query),
                10,
                built.as_ref(),
            )
            .await
            .unwrap();
        let got: Vec<Vec<String>> = crate::support::rows(&found)
            .into_iter()
            .map(|r| vec![r[1].clone(), r[4].clone()])
            .collect();
        assert_eq!(got, want);
    }

    let missing = wh
        .error("SELECT * FROM vector_search(index => 'main.shop.vs', query_vector => $1)")
        .await;
    assert!(
        missing.contains("query_vector => $1: the statement was given no value for $1"),
        "{missing}"
    );
    let short = wh
        .session
        .search_vectors(
            "main.shop.vs",
            &[queries[0].clone(), vec![1.0; 3]],
            10,
            None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        short.contains("query 2 has 3 values but the index holds 8-d vectors"),
        "{short}"
    );
    let unknown = wh
        .session
        .search_vectors("main.shop.nope", &queries, 10, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("main.shop.nope"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn indexes_searched_through_lance_get_filter_indexes_kept_by_sync() {
    let wh = source(3000).await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) USING IVF_HNSW_SQ WITH (primary_key = 'product_id', columns = (name, gender, price))").await;
    let described = wh.rows("DESCRIBE INDEX main.shop.vs").await;
    // name has 3,000 distinct values, gender 2, price 97.
    assert_eq!(
        describe(&described, "filter_indexes"),
        "name (BTREE), gender (BITMAP), price (BITMAP)"
    );
    wh.sql("CREATE VECTOR INDEX main.shop.vs_flat ON main.shop.items (embedding) WITH (primary_key = 'product_id', columns = (gender, price))").await;
    assert_eq!(
        describe(
            &wh.rows("DESCRIBE INDEX main.shop.vs_flat").await,
            "filter_indexes"
        ),
        "",
        "an index searched in memory filters there"
    );

    wh.sql("UPDATE main.shop.items SET price = 1000 WHERE product_id <= 20")
        .await;
    wh.sql("SYNC INDEX main.shop.vs").await;
    let query = pseudo_random_vector("7");
    let got = wh
        .rows(&format!("SELECT product_id, price FROM vector_search(index => 'main.shop.vs', query_vector => {query}, num_results => 10, filters => 'price = 1000')"))
        .await;
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(got.iter().all(|r| r[1] == "1000.0"), "{got:?}");
    assert!(got.iter().any(|r| r[0] == "7"), "{got:?}");
    let dataset = lance::Dataset::open(wh.path().join("main/shop/vs").to_str().unwrap())
        .await
        .unwrap();
    use lance::index::DatasetIndexExt;
    let names: Vec<String> = dataset
        .load_indices()
        .await
        .unwrap()
        .iter()
        .map(|i| i.name.clone())
        .collect();
    for name in ["ann", "filter_name", "filter_gender", "filter_price"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_that_changes_a_tenth_of_the_rows_measures_the_breadth_again() {
    let wh = source(4000).await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) WITH (primary_key = 'product_id', nprobes = 3)").await;
    let before = parameters(&wh, "main.shop.vs").await;
    assert_eq!(before["nprobes"], "3");
    wh.sql(&format!(
        "UPDATE main.shop.items SET embedding = arrow_cast({}, 'FixedSizeList(8, Float32)') WHERE product_id <= 600",
        pseudo_random_vector("(product_id + 100000)")
    ))
    .await;
    let synced = wh.sql("SYNC INDEX main.shop.vs").await.message.unwrap();
    assert!(
        synced.contains("600 rows written, 600 removed (4000 rows); search breadth measured again: nprobes 3 of"),
        "{synced}"
    );
    let after = parameters(&wh, "main.shop.vs").await;
    // The breadth given in WITH is kept; its recall is measured on the changed rows.
    assert_eq!(after["nprobes"], "3");
    assert!(after.contains_key("measured_recall"), "{after:?}");
    let described = wh.rows("DESCRIBE INDEX main.shop.vs").await;
    assert_eq!(describe(&described, "status"), "in sync");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wide_search_split_among_threads_finds_the_exact_rows() {
    // 20,000 rows in one partition: every search compares more vectors than one thread takes.
    let wh = source(20_000).await;
    wh.sql("CREATE VECTOR INDEX main.shop.vs ON main.shop.items (embedding) USING FLAT WITH (primary_key = 'product_id', columns = (price))").await;
    for seed in [11, 9_876, 19_999] {
        let query = pseudo_random_vector(&seed.to_string());
        for filter in [None, Some("price >= 1")] {
            let filters = filter.map_or(String::new(), |f| format!(", filters => '{f}'"));
            let got: Vec<i64> = search(&wh, &format!("SELECT product_id, score FROM vector_search(index => 'main.shop.vs', query_vector => {query}, num_results => 10{filters})"))
                .await
                .into_iter()
                .map(|g| g.0)
                .collect();
            let want = exact(&wh, &query, 10, filter.unwrap_or("true")).await;
            assert_eq!(got, want, "query {seed}, filter {filter:?}");
        }
    }
}
