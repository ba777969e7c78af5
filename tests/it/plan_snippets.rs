//! Every SQL snippet of the plan document (`tests/fixtures/execution_plan.md`, a copy of the
//! seed plan) runs unchanged on a generated catalog, with results checked against values computed
//! here.

use crate::scripts::{extraction, kept_material};
use crate::support::{repo_path, round1, TestWarehouse};

/// The plan's ```sql blocks, in order.
fn sql_blocks() -> Vec<String> {
    let plan = std::fs::read_to_string(repo_path("tests/fixtures/execution_plan.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in plan.lines() {
        match (&mut current, line.trim()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// One generated search event: (variant, clicked, purchased, time to first click).
type Event = (
    &'static str,
    Option<Vec<i32>>,
    Option<Vec<i32>>,
    Option<f32>,
);

/// The generated search events.
fn events() -> Vec<Event> {
    (0..40)
        .map(|i| {
            let variant = if i % 2 == 0 { "enriched" } else { "baseline" };
            let clicked = match i % 5 {
                0 => None,
                1 => Some(vec![]),
                _ => Some((0..(i % 3 + 1)).map(|k| 10000 + i * 10 + k).collect()),
            };
            let purchased = if i % 7 == 0 {
                Some(vec![10000 + i])
            } else {
                Some(vec![])
            };
            let time = clicked
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|_| 1.5 + (i % 4) as f32 * 0.75);
            (variant, clicked, purchased, time)
        })
        .collect()
}

fn array_sql(values: &Option<Vec<i32>>) -> String {
    match values {
        None => "NULL".into(),
        Some(v) if v.is_empty() => "CAST(ARRAY() AS ARRAY<INT>)".into(),
        Some(v) => format!(
            "ARRAY({})",
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sql_snippet_of_the_plan_runs_unchanged() {
    let blocks = sql_blocks();
    assert_eq!(
        blocks.len(),
        7,
        "the plan's SQL blocks changed: {blocks:#?}"
    );
    let (wh, products) = TestWarehouse::with_demo(900, 3).await;
    for script in [
        "00_load_products.sql",
        "demo/attributes_from_ground_truth.sql",
        "02_join_enriched_attributes.sql",
    ] {
        wh.run_sql_file(script).await;
    }

    // Block 1 (step 5) lists the columns of products_with_visual_attributes: all must exist.
    let columns: Vec<String> = wh
        .rows("DESCRIBE main.fashion_demo.products_with_visual_attributes")
        .await
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    for name in blocks[0]
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .flat_map(|l| l.split(','))
        .map(str::trim)
    {
        if !name.is_empty() && name != "..." {
            assert!(
                columns.iter().any(|c| c == name),
                "the plan's column '{name}' is missing from {columns:?}"
            );
        }
    }

    // Block 2 (step 6): enrichment coverage.
    let coverage = wh
        .session
        .run_script(&blocks[1], "plan step 6")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let row = &crate::support::rows(&coverage[0].batches)[0];
    let has_material = products
        .iter()
        .filter(|p| kept_material(p).is_some())
        .count();
    assert_eq!(row[0], products.len().to_string());
    assert_eq!(row[1], has_material.to_string());
    assert_eq!(
        row[2].parse::<f64>().unwrap(),
        round1(100.0 * has_material as f64 / products.len() as f64)
    );

    // Block 3 (step 8) names the six Vector Search indexes; it holds no statement.
    assert!(blocks[2].lines().all(|l| l.trim().is_empty()
        || l.trim().starts_with("--")
        || l.trim().starts_with("main.fashion_demo.vs_")));

    // Block 4 (step 10): the search_events table, then events, then block 5 (step 11): the A/B analysis.
    wh.session
        .run_script(&blocks[3], "plan step 10")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = events();
    for (i, (variant, clicked, purchased, time)) in events.iter().enumerate() {
        wh.sql(&format!(
            "INSERT INTO main.fashion_demo.search_events VALUES ('e{i}', CURRENT_TIMESTAMP(), 'user{}', 'red dress', '{variant}', ARRAY(1, 2, 3), {}, {}, {}, {})",
            i % 9,
            array_sql(clicked),
            array_sql(&Some(vec![])),
            array_sql(purchased),
            time.map_or("NULL".to_string(), |t| t.to_string())
        ))
        .await;
    }
    let analysis = wh
        .session
        .run_script(&blocks[4], "plan step 11")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = crate::support::rows(&analysis[0].batches);
    got.sort();
    for row in got {
        let of_variant: Vec<_> = events.iter().filter(|e| e.0 == row[0]).collect();
        let searches = of_variant.len();
        let with_click = of_variant
            .iter()
            .filter(|e| e.1.as_ref().is_some_and(|c| !c.is_empty()))
            .count();
        let conversions = of_variant
            .iter()
            .filter(|e| e.2.as_ref().is_some_and(|c| !c.is_empty()))
            .count();
        let times: Vec<f64> = of_variant
            .iter()
            .filter_map(|e| e.3)
            .map(f64::from)
            .collect();
        let round2 = |x: f64| (x * 100.0).round() / 100.0;
        assert_eq!(row[1], searches.to_string(), "{row:?}");
        assert_eq!(row[2], with_click.to_string(), "{row:?}");
        assert_eq!(
            row[3].parse::<f64>().unwrap(),
            round2(100.0 * with_click as f64 / searches as f64),
            "{row:?}"
        );
        assert_eq!(row[4], conversions.to_string(), "{row:?}");
        assert_eq!(
            row[5].parse::<f64>().unwrap(),
            round2(100.0 * conversions as f64 / searches as f64),
            "{row:?}"
        );
        assert_eq!(
            row[6].parse::<f64>().unwrap(),
            round2(times.iter().sum::<f64>() / times.len() as f64),
            "{row:?}"
        );
    }

    // Block 6 (step 12) drops a Vector Search index: create one of that name, then run it.
    wh.sql("CREATE TABLE main.fashion_demo.step12_vectors AS SELECT product_id, arrow_cast(make_array(CAST(product_id AS FLOAT), 1.0), 'FixedSizeList(2, Float32)') AS v FROM main.fashion_demo.products")
        .await;
    wh.sql("CREATE VECTOR INDEX main.fashion_demo.vs_hybrid_search ON main.fashion_demo.step12_vectors (v) USING FLAT WITH (primary_key = 'product_id')")
        .await;
    wh.session
        .run_script(&blocks[5], "plan step 12")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = wh
        .error("DESCRIBE INDEX main.fashion_demo.vs_hybrid_search")
        .await;
    assert!(
        err.contains("vector index main.fashion_demo.vs_hybrid_search does not exist"),
        "{err}"
    );

    // Block 7 (quick commands): progress and success rate.
    let quick = wh
        .session
        .run_script(&blocks[6], "plan quick commands")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let succeeded = products.iter().filter(|p| extraction(p).success).count();
    assert_eq!(
        crate::support::rows(&quick[0].batches)[0][0],
        products.len().to_string()
    );
    let rate: f64 = crate::support::rows(&quick[1].batches)[0][0]
        .parse()
        .unwrap();
    assert!(
        (rate - 100.0 * succeeded as f64 / products.len() as f64).abs() < 1e-9,
        "{rate}"
    );
}
