//! The CLIP functions in SQL on the demo catalog, with the fixture models: NULLs, corrupt and
//! missing photos under both `vitrine.udf.on_error` modes, vector length and norm, image bytes,
//! batch-size independence, hybrid weights, model settings and what a written table records.

use crate::support::{clip_fixture, TestWarehouse};

const PHOTOS: &str = "/Volumes/main/fashion_demo/raw_data/images";

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

async fn catalog_with_photos(products: usize) -> TestWarehouse {
    let (wh, _) = TestWarehouse::with_demo_catalog(products, 3, true).await;
    wh.run_sql_file("00_load_products.sql").await;
    wh
}

#[tokio::test(flavor = "multi_thread")]
async fn embeddings_have_the_model_length_and_unit_norm_and_null_gives_null() {
    let wh = catalog_with_photos(40).await;
    let texts = wh.vectors("SELECT clip_text_embed(CASE WHEN product_id % 5 = 0 THEN NULL ELSE product_display_name END) \
         FROM main.fashion_demo.products ORDER BY product_id",
    )
    .await;
    let images = wh
        .vectors(
            "SELECT clip_image_embed(CASE WHEN product_id % 7 = 0 THEN NULL ELSE image_path END) \
         FROM main.fashion_demo.products ORDER BY product_id",
        )
        .await;
    let ids: Vec<i64> = wh
        .rows("SELECT product_id FROM main.fashion_demo.products ORDER BY product_id")
        .await
        .iter()
        .map(|r| r[0].parse().unwrap())
        .collect();
    assert_eq!(texts.len(), 40);
    for ((id, text), image) in ids.iter().zip(&texts).zip(&images) {
        assert_eq!(text.is_none(), id % 5 == 0, "text of {id}");
        assert_eq!(image.is_none(), id % 7 == 0, "image of {id}");
        for v in text.iter().chain(image) {
            assert_eq!(v.len(), 24, "tiny-a projects to 24 dimensions");
            assert!((norm(v) - 1.0).abs() < 1e-5, "norm {}", norm(v));
        }
    }
    // Different products, different vectors.
    let distinct: std::collections::HashSet<String> =
        images.iter().flatten().map(|v| format!("{v:?}")).collect();
    assert!(
        distinct.len() > 30,
        "{} distinct image embeddings",
        distinct.len()
    );
    assert_eq!(
        wh.value("SELECT arrow_typeof(clip_text_embed('a'))").await,
        "FixedSizeList(24 x Float32)"
    );
    assert_eq!(
        wh.value("SELECT clip_text_embed(NULL) IS NULL").await,
        "true"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_or_missing_photo_is_null_and_reported_or_fails_the_statement() {
    let wh = catalog_with_photos(30).await;
    let victim: String = wh
        .value("SELECT MIN(product_id) FROM main.fashion_demo.products")
        .await;
    let photo = wh.path().join(format!(
        "Volumes/main/fashion_demo/raw_data/images/{victim}.jpg"
    ));
    let bytes = std::fs::read(&photo).unwrap();
    std::fs::write(&photo, &bytes[..bytes.len() / 3]).unwrap();

    let result = wh
        .sql(&format!(
            "CREATE TABLE main.fashion_demo.e AS SELECT product_id, clip_image_embed(image_path) AS v \
             FROM main.fashion_demo.products UNION ALL SELECT -1, clip_image_embed('{PHOTOS}/missing.jpg')"
        ))
        .await;
    assert_eq!(result.warnings.len(), 1, "{:?}", result.warnings);
    let warning = &result.warnings[0];
    assert!(warning.starts_with("2 row(s)"), "{warning}");
    assert!(warning.contains(&format!("{victim}.jpg")), "{warning}");
    assert!(warning.contains("missing.jpg"), "{warning}");
    assert_eq!(
        wh.rows("SELECT product_id FROM main.fashion_demo.e WHERE v IS NULL ORDER BY product_id")
            .await,
        vec![vec!["-1".to_string()], vec![victim.clone()]]
    );
    assert_eq!(
        wh.value("SELECT COUNT(v) FROM main.fashion_demo.e").await,
        "29"
    );

    // With on_error = 'fail' the statement fails naming the photo, and the table is unchanged.
    wh.sql("SET vitrine.udf.on_error = 'fail'").await;
    let error = wh
        .error(
            "INSERT INTO main.fashion_demo.e SELECT product_id, clip_image_embed(image_path) \
             FROM main.fashion_demo.products",
        )
        .await;
    assert!(
        error.contains("clip_image_embed") && error.contains(&format!("{victim}.jpg")),
        "{error}"
    );
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM main.fashion_demo.e").await,
        "31"
    );

    // A statement after a failure starts with a clean report.
    wh.sql("SET vitrine.udf.on_error = 'null'").await;
    let clean = wh.sql("SELECT clip_text_embed('ok')").await;
    assert!(clean.warnings.is_empty(), "{:?}", clean.warnings);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_bytes_embed_like_their_path_and_bad_bytes_are_named_by_row() {
    let wh = catalog_with_photos(5).await;
    let id = wh
        .value("SELECT MIN(product_id) FROM main.fashion_demo.products")
        .await;
    let bytes = std::fs::read(wh.path().join(format!(
        "Volumes/main/fashion_demo/raw_data/images/{id}.jpg"
    )))
    .unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let from_path = wh
        .vectors(&format!("SELECT clip_image_embed('{PHOTOS}/{id}.jpg')"))
        .await;
    let from_bytes = wh
        .vectors(&format!("SELECT clip_image_embed(decode('{hex}', 'hex'))"))
        .await;
    assert_eq!(from_path, from_bytes);
    assert!(from_path[0].is_some());

    let result = wh
        .sql("SELECT clip_image_embed(decode('00ff00ff', 'hex')) IS NULL")
        .await;
    assert!(
        result.warnings[0].contains("row 1") && result.warnings[0].contains("not an image"),
        "{:?}",
        result.warnings
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_do_not_depend_on_the_batch_size() {
    let wh = catalog_with_photos(25).await;
    let query = "SELECT clip_text_embed(product_display_name) FROM main.fashion_demo.products ORDER BY product_id";
    let images =
        "SELECT clip_image_embed(image_path) FROM main.fashion_demo.products ORDER BY product_id";
    wh.sql("SET vitrine.udf.batch_size = 1").await;
    let (t1, i1) = (wh.vectors(query).await, wh.vectors(images).await);
    wh.sql("SET vitrine.udf.batch_size = 7").await;
    let (t7, i7) = (wh.vectors(query).await, wh.vectors(images).await);
    for (a, b) in t1.iter().zip(&t7).chain(i1.iter().zip(&i7)) {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert!(max_diff(a, b) < 1e-6, "{}", max_diff(a, b));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hybrid_weight_zero_is_the_text_and_one_is_the_image() {
    let wh = catalog_with_photos(6).await;
    wh.sql(
        "CREATE TABLE main.fashion_demo.v AS SELECT product_id, \
         clip_image_embed(image_path) AS i, clip_text_embed(product_display_name) AS t \
         FROM main.fashion_demo.products",
    )
    .await;
    let t = wh
        .vectors("SELECT t FROM main.fashion_demo.v ORDER BY product_id")
        .await;
    let i = wh
        .vectors("SELECT i FROM main.fashion_demo.v ORDER BY product_id")
        .await;
    let h0 = wh
        .vectors("SELECT hybrid_embed(i, t, 0.0) FROM main.fashion_demo.v ORDER BY product_id")
        .await;
    let h1 = wh
        .vectors("SELECT hybrid_embed(i, t, 1.0) FROM main.fashion_demo.v ORDER BY product_id")
        .await;
    let half = wh
        .vectors("SELECT hybrid_embed(i, t) FROM main.fashion_demo.v ORDER BY product_id")
        .await;
    for k in 0..t.len() {
        let (t, i) = (t[k].as_ref().unwrap(), i[k].as_ref().unwrap());
        assert!(max_diff(h0[k].as_ref().unwrap(), t) < 1e-6);
        assert!(max_diff(h1[k].as_ref().unwrap(), i) < 1e-6);
        let mixed: Vec<f32> = i.iter().zip(t).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
        let n = norm(&mixed);
        let expected: Vec<f32> = mixed.iter().map(|x| x / n).collect();
        assert!(max_diff(half[k].as_ref().unwrap(), &expected) < 1e-6);
    }
    assert_eq!(
        wh.value("SELECT arrow_typeof(hybrid_embed(i, t)) FROM main.fashion_demo.v LIMIT 1")
            .await,
        "FixedSizeList(24 x Float32)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_setting_switches_models_and_tables_record_the_model() {
    let wh = TestWarehouse::new().await;
    wh.sql("CREATE SCHEMA main.s").await;
    wh.sql("CREATE TABLE main.s.a AS SELECT clip_text_embed('red dress') AS v")
        .await;
    let properties = wh.rows("SHOW TBLPROPERTIES main.s.a").await;
    assert!(
        properties.contains(&vec![
            "vitrine.model.clip".to_string(),
            clip_fixture("tiny-a")
        ]),
        "{properties:?}"
    );
    let revision = properties
        .iter()
        .find(|r| r[0] == "vitrine.model.clip.revision")
        .unwrap();
    assert!(revision[1].starts_with("sha256:"), "{revision:?}");

    wh.sql(&format!(
        "SET vitrine.model.clip = '{}'",
        clip_fixture("tiny-b")
    ))
    .await;
    assert_eq!(
        wh.value("SELECT arrow_typeof(clip_text_embed('red dress'))")
            .await,
        "FixedSizeList(40 x Float32)"
    );
    // A table written without a model records none.
    wh.sql("CREATE TABLE main.s.b AS SELECT 1 AS x").await;
    let properties = wh.rows("SHOW TBLPROPERTIES main.s.b").await;
    assert!(
        properties
            .iter()
            .all(|r| !r[0].starts_with("vitrine.model")),
        "{properties:?}"
    );

    wh.sql("SET vitrine.model.clip = '/nonexistent/clip'").await;
    let error = wh.error("SELECT clip_text_embed('x')").await;
    assert!(
        error.contains("clip_text_embed")
            && error.contains("/nonexistent/clip")
            && error.contains("does not exist"),
        "{error}"
    );

    let error = wh.error("SET vitrine.device = 'tpu'").await;
    assert!(error.contains("tpu"), "{error}");
    let error = wh.error("SET vitrine.dtype = 'bf16'").await;
    assert!(error.contains("GPU only"), "{error}");
    let error = wh.error("SELECT clip_image_embed(42)").await;
    assert!(
        error.contains("image path (STRING) or image bytes (BINARY)"),
        "{error}"
    );
}
