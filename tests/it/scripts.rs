//! Every script in `sql/` runs on a generated catalog, and what it computes matches what the
//! catalog implies, computed here independently from the generator's products.

use vitrine::demo::Product;

use crate::support::{repo_path, round1, TestWarehouse};

/// The stand-in extraction of `sql/demo/attributes_from_ground_truth.sql`, recomputed in Rust.
pub struct Extraction {
    pub success: bool,
    pub confidence: Option<&'static str>,
    pub material: Option<&'static str>,
}

pub fn extraction(p: &Product) -> Extraction {
    let failure = (p.id as i64 * 7919).rem_euclid(100);
    let confidence = (p.id as i64 * 104729).rem_euclid(100);
    if failure < 7 {
        return Extraction {
            success: false,
            confidence: None,
            material: None,
        };
    }
    let level = if confidence < 60 {
        "high"
    } else if confidence < 85 {
        "medium"
    } else {
        "low"
    };
    let material = if confidence >= 92 {
        "unknown"
    } else {
        p.truth.material
    };
    Extraction {
        success: true,
        confidence: Some(level),
        material: Some(material),
    }
}

/// The material phase 2 keeps: only confident extractions.
pub fn kept_material(p: &Product) -> Option<&'static str> {
    let e = extraction(p);
    (e.success && matches!(e.confidence, Some("high" | "medium")))
        .then_some(e.material)
        .flatten()
}

fn rich_description(p: &Product) -> String {
    let e = extraction(p);
    let a = p.article_type();
    let t = &p.truth;
    let mut parts: Vec<String> = vec![
        p.display_name.clone(),
        a.name.into(),
        p.colour().0.into(),
        p.gender.into(),
    ];
    if let Some(m) = kept_material(p) {
        parts.push(m.into());
    }
    if e.success {
        parts.push(t.pattern.into());
        parts.push(t.formality.into());
        parts.push(t.style_keywords.join(" "));
        if !t.details.is_empty() {
            parts.push(t.details.join(" "));
        }
        if t.collar != "not applicable" {
            parts.push(t.collar.into());
        }
        if t.sleeve != "not applicable" {
            parts.push(t.sleeve.into());
        }
        if t.fit != "cannot determine" {
            parts.push(t.fit.into());
        }
    }
    parts.extend(p.season.map(String::from));
    parts.extend(p.usage.map(String::from));
    parts.join(" ")
}

fn baseline_description(p: &Product) -> String {
    let mut parts: Vec<String> = vec![
        p.display_name.clone(),
        p.article_type().name.into(),
        p.colour().0.into(),
        p.gender.into(),
    ];
    parts.extend(p.season.map(String::from));
    parts.extend(p.usage.map(String::from));
    parts.join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_phase_script_runs_and_computes_what_the_catalog_implies() {
    let (wh, products) = TestWarehouse::with_demo_catalog(1500, 5, true).await;
    let mut scripts: Vec<String> = std::fs::read_dir(repo_path("sql"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 3, "{scripts:?}");
    // As demo.sh runs them without SmolVLM's weights: phase 1 with the scripted test model, then
    // the ground-truth stand-in replaces its (all alike) attributes before phase 2.
    wh.sql(&format!(
        "SET vitrine.model.smolvlm = '{}'",
        repo_path("tests/fixtures/smolvlm/scripted").display()
    ))
    .await;
    let phase2 = scripts.iter().position(|s| s.starts_with("02")).unwrap();
    scripts.insert(phase2, "demo/attributes_from_ground_truth.sql".into());
    for script in &scripts {
        wh.run_sql_file(script).await;
    }

    // Phase 0: the products table holds the catalog.
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM main.fashion_demo.products")
            .await,
        products.len().to_string()
    );
    let footwear = products
        .iter()
        .filter(|p| p.article_type().master == "Footwear")
        .count();
    assert_eq!(
        wh.value(
            "SELECT COUNT(*) FROM main.fashion_demo.products WHERE master_category = 'Footwear'"
        )
        .await,
        footwear.to_string()
    );
    let p = &products[17];
    let row = &wh.rows(&format!("SELECT product_display_name, article_type, base_color, price, image_path FROM main.fashion_demo.products WHERE product_id = {}", p.id)).await[0];
    assert_eq!(row[0], p.display_name);
    assert_eq!(row[1], p.article_type().name);
    assert_eq!(row[2], p.colour().0);
    assert_eq!(row[3].parse::<f64>().unwrap(), p.price);
    assert_eq!(
        row[4],
        format!("/Volumes/main/fashion_demo/raw_data/images/{}.jpg", p.id)
    );
    let no_season = products.iter().filter(|p| p.season.is_none()).count();
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM main.fashion_demo.products WHERE season IS NULL")
            .await,
        no_season.to_string()
    );

    // Phase 1 stand-in: success rate.
    let succeeded = products.iter().filter(|p| extraction(p).success).count();
    assert_eq!(
        wh.value("SELECT SUM(CASE WHEN extraction_success THEN 1 ELSE 0 END) FROM main.fashion_demo.product_extracted_attributes").await,
        succeeded.to_string()
    );

    // Phase 2: coverage (the plan's step 6 query) and both descriptions.
    let has_material = products
        .iter()
        .filter(|p| kept_material(p).is_some())
        .count();
    let coverage = wh
        .rows("SELECT COUNT(*), SUM(CASE WHEN material IS NOT NULL THEN 1 ELSE 0 END), ROUND(100.0 * SUM(CASE WHEN material IS NOT NULL THEN 1 ELSE 0 END) / COUNT(*), 1) FROM main.fashion_demo.products_with_visual_attributes")
        .await;
    assert_eq!(coverage[0][0], products.len().to_string());
    assert_eq!(coverage[0][1], has_material.to_string());
    assert_eq!(
        coverage[0][2].parse::<f64>().unwrap(),
        round1(100.0 * has_material as f64 / products.len() as f64)
    );
    for p in products.iter().step_by(97) {
        let got = wh
            .rows(&format!("SELECT baseline_description, rich_text_description FROM main.fashion_demo.products_with_visual_attributes WHERE product_id = {}", p.id))
            .await;
        assert_eq!(got[0][0], baseline_description(p), "baseline of {}", p.id);
        assert_eq!(
            got[0][1],
            rich_description(p),
            "rich description of {}",
            p.id
        );
    }

    // Phase 2: the consistency checks' percentages.
    let checks = wh.rows("SELECT check_name, products, matching FROM (SELECT 'Watches' AS check_name, COUNT(*) AS products, SUM(CASE WHEN material = 'metal' THEN 1 ELSE 0 END) AS matching FROM main.fashion_demo.products_with_visual_attributes WHERE article_type = 'Watches' AND material IS NOT NULL)").await;
    let watches: Vec<&Product> = products
        .iter()
        .filter(|p| p.article_type().name == "Watches" && kept_material(p).is_some())
        .collect();
    let metal = watches
        .iter()
        .filter(|p| kept_material(p) == Some("metal"))
        .count();
    assert_eq!(checks[0][1], watches.len().to_string());
    assert_eq!(checks[0][2], metal.to_string());

    // Phase 2 left its table ready for sync, optimized and commented.
    let props = wh
        .rows("SHOW TBLPROPERTIES main.fashion_demo.products_with_visual_attributes")
        .await;
    assert!(
        props.contains(&vec![
            "delta.enableChangeDataFeed".to_string(),
            "true".to_string()
        ]),
        "{props:?}"
    );
    let described = wh
        .rows("DESCRIBE TABLE EXTENDED main.fashion_demo.products_with_visual_attributes")
        .await;
    let detail = |key: &str| {
        described
            .iter()
            .find(|r| r[0] == key)
            .map(|r| r[1].clone())
            .unwrap_or_default()
    };
    assert!(
        detail("Comment").starts_with("Products with SmolVLM visual attributes"),
        "{described:?}"
    );
    assert!(detail("Table Properties").contains("delta.enableChangeDataFeed=true"));
    let history = wh
        .rows("DESCRIBE HISTORY main.fashion_demo.products_with_visual_attributes")
        .await;
    assert_eq!(history[0][2], "OPTIMIZE ZORDER", "{history:?}");
    assert_eq!(history[1][2], "CREATE OR REPLACE TABLE AS SELECT");
}

#[tokio::test(flavor = "multi_thread")]
async fn zorder_clusters_rows_by_the_columns() {
    let (wh, products) = TestWarehouse::with_demo(800, 11).await;
    wh.run_sql_file("00_load_products.sql").await;
    wh.sql("CREATE TABLE main.fashion_demo.shuffled AS SELECT * FROM main.fashion_demo.products ORDER BY price").await;
    wh.sql("OPTIMIZE main.fashion_demo.shuffled ZORDER BY (master_category)")
        .await;
    // With one column, a Z-order is that column's order: each category is one contiguous run.
    let categories: Vec<String> = wh
        .rows("SELECT master_category FROM main.fashion_demo.shuffled")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let runs = categories.windows(2).filter(|w| w[0] != w[1]).count() + 1;
    let distinct: std::collections::BTreeSet<_> =
        products.iter().map(|p| p.article_type().master).collect();
    assert_eq!(runs, distinct.len(), "categories are not clustered");
    assert_eq!(categories.len(), products.len());

    // Two columns: the rows follow the Z-order curve of the two columns' dense ranks.
    wh.sql("OPTIMIZE main.fashion_demo.shuffled ZORDER BY (gender, article_type)")
        .await;
    assert_gender_article_z_order(&wh, products.len()).await;

    // Under a memory limit far below the table, the rewrite sorts in buckets spilled to disk:
    // the same order.
    wh.sql("CREATE OR REPLACE TABLE main.fashion_demo.shuffled AS SELECT * FROM main.fashion_demo.products ORDER BY price DESC").await;
    wh.sql("SET datafusion.runtime.memory_limit = '256K'").await;
    wh.sql("OPTIMIZE main.fashion_demo.shuffled ZORDER BY (gender, article_type)")
        .await;
    assert_gender_article_z_order(&wh, products.len()).await;
}

/// The rows of `shuffled` follow the Z-order curve of (gender, article_type)'s dense ranks
/// (bits interleaved, gender's first), every one of `products` rows once, and not simply in
/// gender's order.
async fn assert_gender_article_z_order(wh: &TestWarehouse, products: usize) {
    let rows = wh
        .rows("SELECT gender, article_type, product_id FROM main.fashion_demo.shuffled")
        .await;
    let rank = |i: usize| -> std::collections::BTreeMap<String, u64> {
        let values: std::collections::BTreeSet<String> =
            rows.iter().map(|r| r[i].clone()).collect();
        values.into_iter().zip(1..).collect()
    };
    let (genders, articles) = (rank(0), rank(1));
    let key = |r: &Vec<String>| {
        let (g, a) = (genders[&r[0]], articles[&r[1]]);
        (0..32).rev().fold(0u64, |key, bit| {
            (key << 2) | (((g >> bit) & 1) << 1) | ((a >> bit) & 1)
        })
    };
    let keys: Vec<u64> = rows.iter().map(key).collect();
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "rows are not in Z-order"
    );
    let ids: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r[2]).collect();
    assert_eq!(ids.len(), products, "every row once");
    let genders_in_order: Vec<&String> = rows.iter().map(|r| &r[0]).collect();
    let runs = genders_in_order.windows(2).filter(|w| w[0] != w[1]).count() + 1;
    assert!(runs > genders.len(), "{runs} runs of gender");
}

#[tokio::test(flavor = "multi_thread")]
async fn phases_three_and_four_embed_index_and_search() {
    let (wh, products) = TestWarehouse::with_demo_catalog(300, 8, true).await;
    for script in [
        "00_load_products.sql",
        "demo/attributes_from_ground_truth.sql",
        "02_join_enriched_attributes.sql",
    ] {
        wh.run_sql_file(script).await;
    }
    let results = wh.run_sql_file("03_generate_embeddings.sql").await;
    assert!(
        results.iter().all(|r| r.warnings.is_empty()),
        "every photo embeds"
    );

    assert_eq!(
        wh.value("SELECT COUNT(image_embedding) FROM main.fashion_demo.product_image_embeddings")
            .await,
        products.len().to_string()
    );
    let well_extracted = wh
        .value("SELECT COUNT(*) FROM main.fashion_demo.products_with_visual_attributes WHERE extraction_success AND confidence_material IN ('high', 'medium')")
        .await;
    assert_eq!(
        wh.value("SELECT COUNT(*) FROM main.fashion_demo.product_embeddings_multimodal_v2")
            .await,
        well_extracted
    );
    assert!(well_extracted.parse::<usize>().unwrap() > products.len() / 2);

    // Sampled rows: the stored text embeddings are those of the descriptions the generator
    // implies, and the hybrids are normalize(0.5 image + 0.5 text).
    let ids: Vec<String> = wh
        .rows("SELECT product_id FROM main.fashion_demo.product_embeddings_multimodal_v2 ORDER BY product_id")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    for id in ids.iter().step_by(37) {
        let p = products.iter().find(|p| p.id.to_string() == *id).unwrap();
        let from_row = |column: &str| {
            format!("SELECT {column} FROM main.fashion_demo.product_embeddings_multimodal_v2 WHERE product_id = {id}")
        };
        let enriched = wh.vectors(&from_row("text_embedding_enriched")).await[0]
            .clone()
            .unwrap();
        let fresh = wh
            .vectors(&format!(
                "SELECT clip_text_embed('{}')",
                rich_description(p).replace('\'', "''")
            ))
            .await[0]
            .clone()
            .unwrap();
        assert!(
            enriched
                .iter()
                .zip(&fresh)
                .all(|(a, b)| (a - b).abs() < 1e-6),
            "enriched text embedding of {id}"
        );
        let image = wh.vectors(&from_row("image_embedding")).await[0]
            .clone()
            .unwrap();
        let hybrid = wh.vectors(&from_row("hybrid_embedding_enriched")).await[0]
            .clone()
            .unwrap();
        let mixed: Vec<f32> = image
            .iter()
            .zip(&enriched)
            .map(|(i, t)| 0.5 * i + 0.5 * t)
            .collect();
        let norm = mixed.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            hybrid
                .iter()
                .zip(&mixed)
                .all(|(h, m)| (h - m / norm).abs() < 1e-6),
            "hybrid of {id}"
        );
    }

    let props = wh
        .rows("SHOW TBLPROPERTIES main.fashion_demo.product_embeddings_multimodal_v2")
        .await;
    for key in [
        "delta.enableChangeDataFeed",
        "vitrine.model.clip",
        "vitrine.model.clip.revision",
    ] {
        assert!(props.iter().any(|r| r[0] == key), "{key} in {props:?}");
    }
    assert_eq!(
        wh.value("SELECT MIN(SIZE(hybrid_embedding_baseline)) FROM main.fashion_demo.product_embeddings_multimodal_v2")
            .await,
        "24"
    );

    // Phase 4: the six indexes, and searches that agree with exact search.
    let results = wh.run_sql_file("04_vector_indexes.sql").await;
    let indexes = crate::support::rows(&results[6].batches);
    let names: Vec<&str> = indexes.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "main.fashion_demo.vs_hybrid_search",
            "main.fashion_demo.vs_hybrid_search_enriched",
            "main.fashion_demo.vs_image_search",
            "main.fashion_demo.vs_image_search_enriched",
            "main.fashion_demo.vs_text_search",
            "main.fashion_demo.vs_text_search_enriched"
        ]
    );
    assert!(
        indexes.iter().all(|r| r[4] == well_extracted),
        "{indexes:?}"
    );
    let searched = wh
        .rows("SELECT product_id FROM vector_search(index => 'main.fashion_demo.vs_hybrid_search_enriched', query_text => 'red floral summer dress', num_results => 5)")
        .await;
    let exact = wh
        .rows("SELECT product_id FROM main.fashion_demo.product_embeddings_multimodal_v2 ORDER BY cosine_similarity(hybrid_embedding_enriched, clip_text_embed('red floral summer dress')) DESC LIMIT 5")
        .await;
    assert_eq!(searched, exact);
    let filtered = crate::support::rows(&results[8].batches);
    assert_eq!(filtered.len(), 5);
    assert!(
        filtered
            .iter()
            .all(|r| r[2] == "Women" && r[3].parse::<f64>().unwrap() < 2000.0),
        "{filtered:?}"
    );
    let similar = crate::support::rows(&results[9].batches);
    assert_eq!(
        similar[0][3], "1.0",
        "the product's own photo is its nearest: {similar:?}"
    );
}

/// Phase 1 with the scripted fixture model (every reply the same JSON): the 100-product sample,
/// a run stopped half-way by an unusable photo under `on_error = 'fail'` that keeps its committed
/// rows, a re-run that resumes without duplicates, the quality report's PASS/FAIL table, and the
/// switch to the whole catalog (the session's `phase1_products`) that extracts only the products
/// not done yet.
#[tokio::test(flavor = "multi_thread")]
async fn phase_one_extracts_a_sample_resumes_and_reports() {
    let (wh, products) = TestWarehouse::with_demo_catalog(160, 5, true).await;
    let model = repo_path("tests/fixtures/smolvlm/scripted");
    wh.sql(&format!(
        "SET vitrine.model.smolvlm = '{}'",
        model.display()
    ))
    .await;
    // One partition: rows reach the model in product order, so the failure comes after commits.
    wh.sql("SET datafusion.execution.target_partitions = 1")
        .await;
    wh.run_sql_file("00_load_products.sql").await;
    let mut sorted: Vec<&Product> = products.iter().collect();
    sorted.sort_by_key(|p| p.id);
    let (sample, last) = (&sorted[..100], sorted[99]);

    let photo = wh.path().join(format!(
        "Volumes/main/fashion_demo/raw_data/images/{}.jpg",
        last.id
    ));
    std::fs::write(&photo, b"not a photo").unwrap();
    wh.sql("SET vitrine.udf.on_error = 'fail'").await;
    let err = wh
        .session
        .run_file(&repo_path("sql/01_extract_attributes.sql"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("{}.jpg", last.id)) && err.contains("committed before this"),
        "{err}"
    );
    let kept: usize = wh
        .value("SELECT COUNT(*) FROM main.fashion_demo.product_extracted_attributes")
        .await
        .parse()
        .unwrap();
    assert!(
        kept > 0 && kept < 100 && kept.is_multiple_of(64),
        "kept {kept} rows"
    );

    wh.sql("SET vitrine.udf.on_error = 'null'").await;
    let results = wh.run_sql_file("01_extract_attributes.sql").await;
    let inserted = format!("inserted {} rows", 100 - kept);
    assert!(
        results.iter().any(|r| r
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with(&inserted))),
        "{:?}",
        results.iter().map(|r| &r.message).collect::<Vec<_>>()
    );
    let ids = wh
        .rows("SELECT product_id FROM main.fashion_demo.product_extracted_attributes ORDER BY product_id")
        .await;
    let want: Vec<Vec<String>> = sample.iter().map(|p| vec![p.id.to_string()]).collect();
    assert_eq!(ids, want, "the sample, each product once");
    let failed = wh
        .rows("SELECT product_id, array_join(extraction_errors, '; ') FROM main.fashion_demo.product_extracted_attributes WHERE NOT extraction_success")
        .await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0][0], last.id.to_string());
    assert!(
        failed[0][1].contains(&format!("{}.jpg", last.id)),
        "{failed:?}"
    );
    assert_eq!(
        wh.rows("SELECT DISTINCT material, model_id, model_revision IS NOT NULL FROM main.fashion_demo.product_extracted_attributes WHERE extraction_success")
            .await,
        vec![vec!["knit fabric".to_string(), model.display().to_string(), "true".into()]]
    );
    let enriched = wh
        .rows("SELECT COUNT(*), MIN(POSITION('knit fabric' IN rich_description)) > 0 FROM main.fashion_demo.products_enriched_descriptions")
        .await;
    assert_eq!(enriched, vec![vec!["99", "true"]]);

    // Phase 1's tables in the notebook's shape, and its validation queries, unchanged.
    let columns: Vec<String> = wh
        .rows("DESCRIBE main.fashion_demo.products_enriched_descriptions")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let notebook = "product_id product_display_name master_category sub_category article_type \
                    base_color price gender season usage year image_path material pattern \
                    confidence_material formality style_keywords visual_details collar_type \
                    sleeve_length fit_type extraction_success extraction_errors extraction_timestamp";
    let notebook: Vec<&str> = notebook.split_whitespace().collect();
    assert_eq!(columns[..notebook.len()], notebook[..]);
    assert_eq!(columns.last().map(String::as_str), Some("rich_description"));
    let per_type = "SELECT article_type, usage, COUNT(*) AS products FROM {} \
                    GROUP BY article_type, usage ORDER BY article_type, usage";
    let extracted = wh
        .rows(&per_type.replace("{}", "main.fashion_demo.product_extracted_attributes"))
        .await;
    let sampled = wh
        .rows(&per_type.replace(
            "{}",
            "main.fashion_demo.products WHERE product_id IN (SELECT product_id FROM phase1_products)",
        ))
        .await;
    assert!(!extracted.is_empty());
    assert_eq!(extracted, sampled);
    let longest = wh
        .rows(
            "SELECT product_id, article_type, LENGTH(rich_description) AS length \
             FROM main.fashion_demo.products_enriched_descriptions \
             WHERE SIZE(style_keywords) > 0 AND SIZE(visual_details) > 0 \
             ORDER BY LENGTH(rich_description) DESC LIMIT 5",
        )
        .await;
    assert_eq!(longest.len(), 5, "{longest:?}");
    let lengths: Vec<i64> = longest.iter().map(|r| r[2].parse().unwrap()).collect();
    assert!(lengths.windows(2).all(|w| w[0] >= w[1]), "{lengths:?}");

    // The quality report: the criteria recomputed from the sample's article types.
    let report = wh.run_sql_file("01_quality_report.sql").await;
    let criteria = report
        .iter()
        .find(|r| {
            r.schema
                .fields()
                .first()
                .is_some_and(|f| f.name() == "criterion")
        })
        .expect("the PASS/FAIL table");
    let rows = crate::support::rows(&criteria.batches);
    let succeeded: Vec<&&Product> = sample.iter().filter(|p| p.id != last.id).collect();
    let has = |t: &str| succeeded.iter().any(|p| p.article_type().name == t);
    let expect = |present: bool, value: &str, result: &str| -> (String, String) {
        if present {
            (value.to_string(), result.to_string())
        } else {
            ("NULL".to_string(), "NO DATA".to_string())
        }
    };
    let want = [
        ("99.0".to_string(), "PASS".to_string()),
        ("0.0".into(), "PASS".into()),
        ("100.0".into(), "PASS".into()),
        expect(has("Watches"), "0.0", "FAIL"),
        expect(has("Tshirts"), "100.0", "PASS"),
    ];
    assert_eq!(rows.len(), 5, "{rows:?}");
    for (row, (value, result)) in rows.iter().zip(&want) {
        assert_eq!((&row[2], &row[3]), (value, result), "{row:?}");
    }
    let vocabulary = report
        .iter()
        .find(|r| {
            r.schema
                .fields()
                .first()
                .is_some_and(|f| f.name() == "column_name")
        })
        .expect("the vocabulary table");
    for row in crate::support::rows(&vocabulary.batches) {
        assert_eq!(row[1], "0", "{row:?}");
    }

    // The whole catalog, chosen by the session's phase1_products view (as demo.sh chooses the
    // held-out split): only the 60 products not yet extracted are.
    let stamps = "SELECT product_id, extraction_timestamp FROM main.fashion_demo.product_extracted_attributes ORDER BY product_id";
    let before = wh.rows(stamps).await;
    wh.sql(
        "CREATE OR REPLACE TEMPORARY VIEW phase1_products AS \
         SELECT product_id FROM main.fashion_demo.products",
    )
    .await;
    let results = wh.run_sql_file("01_extract_attributes.sql").await;
    assert!(results.iter().any(|r| r
        .message
        .as_deref()
        .is_some_and(|m| m.starts_with("inserted 60 rows"))));
    let after = wh.rows(stamps).await;
    assert_eq!(after.len(), products.len());
    assert!(
        before.iter().all(|row| after.contains(row)),
        "earlier rows untouched"
    );
}

/// The main job's offline path: `sql/demo/train_smolvlm.sql` and `sql/demo/train_clip.sql`
/// (shorter runs here) train model objects on the training split, phase 1 extracts the held-out split
/// chosen by `phase1_products` with the demo SmolVLM, and phases 2–4 and the text → image check
/// run with the demo CLIP.
#[tokio::test(flavor = "multi_thread")]
async fn the_demo_trains_its_models_then_runs_the_phases_on_the_held_out_split() {
    let (wh, _) = TestWarehouse::with_demo_catalog(64, 11, true).await;
    wh.run_sql_file("00_load_products.sql").await;
    // Shorter runs: 16 epochs of 32-px frames for the SmolVLM (enough to answer in JSON), one
    // epoch for the CLIP.
    let shorter = [
        (
            "demo/train_smolvlm.sql",
            vec![
                (
                    r"image_size = \d+, patch_size = \d+",
                    "image_size = 32, patch_size = 8",
                ),
                (
                    r"epochs = \d+, batch_size = \d+",
                    "epochs = 16, batch_size = 8",
                ),
            ],
        ),
        ("demo/train_clip.sql", vec![(r"epochs = \d+", "epochs = 1")]),
    ];
    for (script, replacements) in shorter {
        let mut text = std::fs::read_to_string(repo_path("sql").join(script)).unwrap();
        for (pattern, replacement) in replacements {
            let changed = regex::Regex::new(pattern)
                .unwrap()
                .replace_all(&text, replacement)
                .into_owned();
            assert_ne!(changed, text, "{script} has {pattern}");
            text = changed;
        }
        wh.session.run_script(&text, script).await.unwrap();
    }
    let train: usize = wh
        .value("SELECT COUNT(*) FROM main.fashion_demo.products_ground_truth WHERE split = 'train'")
        .await
        .parse()
        .unwrap();
    // The SmolVLM learns from each product of the training split once; the CLIP from three rows
    // of each (two shoppers' phrases, one look of the photo).
    for (model, rows_per_product) in [("demo_smolvlm", 1), ("demo_clip", 3)] {
        let described = wh
            .rows(&format!("DESCRIBE MODEL main.fashion_demo.{model}"))
            .await;
        let rows = |name: &str| -> usize {
            described.iter().find(|r| r[0] == name).unwrap()[1]
                .parse()
                .unwrap()
        };
        assert_eq!(
            rows("train_rows") + rows("eval_rows"),
            train * rows_per_product,
            "{model}: every product of the training split, {rows_per_product} row(s) each"
        );
    }

    wh.sql("SET vitrine.model.smolvlm = 'main.fashion_demo.demo_smolvlm'")
        .await;
    wh.sql("SET vitrine.model.clip = 'main.fashion_demo.demo_clip'")
        .await;
    wh.sql(
        "CREATE TEMPORARY VIEW phase1_products AS SELECT product_id \
         FROM main.fashion_demo.products_ground_truth WHERE split = 'test'",
    )
    .await;
    for script in [
        "01_extract_attributes.sql",
        "02_join_enriched_attributes.sql",
        "03_generate_embeddings.sql",
        "04_vector_indexes.sql",
    ] {
        wh.run_sql_file(script).await;
    }
    let outside = wh
        .value(
            "SELECT COUNT(*) FROM main.fashion_demo.product_extracted_attributes a \
             JOIN main.fashion_demo.products_ground_truth g ON a.product_id = g.product_id \
             WHERE g.split <> 'test' OR a.model_id <> 'main.fashion_demo.demo_smolvlm'",
        )
        .await;
    assert_eq!(
        outside, "0",
        "phase 1 read only held-out photos, with the demo model"
    );
    let extracted: usize = wh
        .value("SELECT COUNT(*) FROM main.fashion_demo.product_extracted_attributes")
        .await
        .parse()
        .unwrap();
    let test: usize = wh
        .value("SELECT COUNT(*) FROM main.fashion_demo.products_ground_truth WHERE split = 'test'")
        .await
        .parse()
        .unwrap();
    assert_eq!(extracted, test);
    let check = wh.run_sql_file("demo/text_to_image_search.sql").await;
    let last = check.last().unwrap();
    let names: Vec<&str> = last
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["queries", "hit_at_10", "precision_at_10"]);
}
