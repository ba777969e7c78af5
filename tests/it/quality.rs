//! The retrieval-quality benchmark: its metrics agree with ranx, an independent implementation.

use std::collections::BTreeMap;

use vitrine::quality::metrics::{per_query, Metric};
use vitrine::quality::trec::{rankings, read_qrels, read_run};

use crate::support::repo_path;

/// FLAT vector indexes `main.fashion_demo.<index>` over columns of `table`, keyed by product id,
/// their queries embedded by `model`.
async fn flat_indexes(
    wh: &crate::support::TestWarehouse,
    table: &str,
    model: &str,
    indexes: &[(&str, &str)],
) {
    for (index, column) in indexes {
        wh.sql(&format!(
            "CREATE VECTOR INDEX main.fashion_demo.{index} ON {table} ({column}) \
             USING FLAT WITH (primary_key = 'product_id', embedding_model = '{model}')"
        ))
        .await;
    }
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo_path("tests/fixtures/quality").join(name)).unwrap()
}

/// `tests/fixtures/quality/make_metric_fixture.py` wrote the runs and qrels and ranx's per-query
/// values of every metric, at 10 and over the whole ranking.
#[test]
fn metrics_agree_with_ranx_per_query_to_1e6() {
    let qrels = read_qrels(&fixture("qrels.txt"), "qrels.txt").unwrap();
    let expected: BTreeMap<String, BTreeMap<String, BTreeMap<String, f64>>> =
        serde_json::from_str(&fixture("ranx_metrics.json")).unwrap();
    let mut compared = 0;
    for system in ["baseline", "candidate"] {
        let file = format!("{system}.trec");
        let run = rankings(&read_run(&fixture(&file), &file).unwrap());
        for k in [Some(10), None] {
            let ours = per_query(&qrels, &run, k);
            for metric in Metric::ALL {
                let theirs = &expected[system][&metric.label(k)];
                assert_eq!(theirs.len(), qrels.len(), "{system} {}", metric.label(k));
                for ((query, _), value) in qrels.iter().zip(&ours[&metric]) {
                    let want = theirs[query];
                    assert!(
                        (value - want).abs() < 1e-6,
                        "{system} {} {query}: {value} vs ranx {want}",
                        metric.label(k)
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 2 * 2 * 5 * 40);
}

mod benchmark {
    use vitrine::bench::report;
    use vitrine::quality::metrics::{per_query, Metric};
    use vitrine::quality::trec::{rankings, read_qrels, read_run};
    use vitrine::quality::{run, QualityOptions, QuerySource};

    use crate::support::TestWarehouse;

    /// A 240-product demo catalog with two text indexes: descriptions without and with the
    /// ground-truth attributes, embedded by the tiny random-weight CLIP fixture.
    async fn two_indexes() -> TestWarehouse {
        let (wh, _) = TestWarehouse::with_demo(240, 5).await;
        wh.run_sql_file("00_load_products.sql").await;
        wh.sql(
            "CREATE TABLE main.fashion_demo.texts AS SELECT p.product_id, \
             concat_ws(' ', p.product_display_name, p.article_type, p.base_color, p.gender) AS base, \
             concat_ws(' ', p.product_display_name, p.article_type, p.base_color, p.gender, \
                       g.material, g.pattern, g.sleeve_length, g.collar_type) AS rich \
             FROM main.fashion_demo.products p JOIN main.fashion_demo.products_ground_truth g \
             ON p.product_id = g.product_id",
        )
        .await;
        wh.sql(
            "CREATE TABLE main.fashion_demo.vectors AS SELECT product_id, \
             clip_text_embed(base) AS b, clip_text_embed(rich) AS r FROM main.fashion_demo.texts",
        )
        .await;
        crate::quality::flat_indexes(
            &wh,
            "main.fashion_demo.vectors",
            "clip",
            &[("vs_base", "b"), ("vs_rich", "r")],
        )
        .await;
        wh
    }

    fn options(baseline: &str, candidate: &str, seed: u64) -> QualityOptions {
        QualityOptions {
            baseline: format!("main.fashion_demo.{baseline}"),
            candidate: format!("main.fashion_demo.{candidate}"),
            k: 10,
            seed,
            queries: QuerySource::Drawn { per_kind: 4 },
            labels: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_run_repeats_with_its_seed_and_its_files_recompute_its_figures() {
        let wh = two_indexes().await;
        wh.run_sql_file("demo/attributes_from_ground_truth.sql")
            .await;
        let first = run(&wh.session, &options("vs_base", "vs_rich", 1))
            .await
            .unwrap();
        let extraction = first.extraction.as_ref().expect("phase 1's table exists");
        assert_eq!((extraction.products, extraction.attempted), (240, 240));
        assert!(
            extraction.failed > 0 && extraction.failed < 40,
            "{}",
            extraction.failed
        );
        let accuracy = |name: &str| {
            let a = extraction
                .attributes
                .iter()
                .find(|a| a.attribute == name)
                .unwrap();
            (a.accuracy, a.macro_f1)
        };
        assert_eq!(
            accuracy("pattern"),
            (1.0, 1.0),
            "the stand-in copies the pattern"
        );
        let (material, _) = accuracy("material");
        assert!(
            material > 0.8 && material < 1.0,
            "some materials become 'unknown': {material}"
        );
        // The plan's criteria agree with the phase script that checks them.
        let script = wh.run_sql_file("01_quality_report.sql").await;
        let checked = script
            .iter()
            .find(|r| {
                r.schema
                    .fields()
                    .first()
                    .is_some_and(|f| f.name() == "criterion")
            })
            .expect("the PASS/FAIL table");
        let measured: Vec<Vec<String>> = extraction
            .criteria
            .iter()
            .map(|c| {
                vec![
                    c.criterion.clone(),
                    c.target.clone(),
                    c.measured_pct.map_or("NULL".into(), |v| {
                        format!("{:?}", (v * 10.0).round() / 10.0)
                    }),
                    c.result.clone(),
                ]
            })
            .collect();
        assert_eq!(measured, crate::support::rows(&checked.batches));
        assert_eq!(measured.len(), 5);
        assert!(
            measured.iter().any(|c| c[3] == "FAIL"),
            "the stand-in fails some: {measured:?}"
        );

        let again = run(&wh.session, &options("vs_base", "vs_rich", 1))
            .await
            .unwrap();
        let json = |r: &vitrine::quality::QualityReport| serde_json::to_string(r).unwrap();
        assert_eq!(json(&first), json(&again));
        assert!(first.queries.len() >= 20, "{} queries", first.queries.len());
        assert_eq!(first.kinds[0].kind, "all");
        assert!(first
            .kinds
            .iter()
            .any(|k| k.kind == "colour+pattern+material+article+gender"));

        let other = run(&wh.session, &options("vs_base", "vs_rich", 2))
            .await
            .unwrap();
        let texts = |r: &vitrine::quality::QualityReport| {
            r.queries.iter().map(|q| q.text.clone()).collect::<Vec<_>>()
        };
        assert_ne!(texts(&first), texts(&other), "another seed, another sample");

        let itself = run(&wh.session, &options("vs_rich", "vs_rich", 1))
            .await
            .unwrap();
        for m in &itself.kinds[0].metrics {
            assert_eq!(m.difference.difference.mean, 0.0, "{}", m.metric);
            assert!(m.difference.p_value > 0.99, "{}", m.metric);
        }

        let out = wh.path().join("quality");
        report::write(&first, &out).unwrap();
        let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
        let qrels = read_qrels(&read("qrels.txt"), "qrels.txt").unwrap();
        assert_eq!(qrels, first.qrels());
        let metrics: serde_json::Value = serde_json::from_str(&read("metrics.json")).unwrap();
        for (i, system) in ["baseline", "candidate"].iter().enumerate() {
            let run = rankings(&read_run(&read(&format!("{system}.trec")), system).unwrap());
            assert!(run.values().all(|r| r.len() <= 10));
            let ndcg = per_query(&qrels, &run, Some(10))[&Metric::Ndcg].clone();
            let mean = ndcg.iter().sum::<f64>() / ndcg.len() as f64;
            let reported = metrics["kinds"][0]["metrics"][0][system]["mean"]
                .as_f64()
                .unwrap();
            assert_eq!(metrics["kinds"][0]["metrics"][0]["metric"], "ndcg@10");
            assert!(
                (mean - reported).abs() < 1e-12,
                "{system}: {mean} vs {reported}"
            );
            assert_eq!(rankings(&first.runs[i]), run);
        }
        assert!(read("report.md").contains("ndcg@10"));
        assert!(
            read("report.md").contains("NOT MEANINGFUL"),
            "the tiny CLIP is a test model"
        );
        assert!(first
            .test_models
            .iter()
            .any(|m| m.starts_with("clip=") && m.contains("tiny-a")));
        let html = read("report.html");
        assert!(
            html.contains("<svg") && html.contains("ndcg@10") && html.contains("NOT MEANINGFUL")
        );
        assert!(html.contains("class=\"confusion\""), "confusion matrices");
        assert!(
            html.contains("phase-1 criteria") && read("report.md").contains("Watches -> metal")
        );
        for d in &first.distributions {
            for values in [&d.baseline, &d.candidate, &d.difference] {
                assert_eq!(
                    values.histogram.iter().sum::<usize>(),
                    first.queries.len(),
                    "{}",
                    d.metric
                );
                assert!(values.min <= values.median && values.median <= values.max);
            }
        }
        assert_eq!(
            metrics["distributions"][0]["candidate"]["median"].as_f64(),
            Some(first.distributions[0].candidate.median)
        );

        let (table, run_id) = vitrine::bench::record::record(&wh.session, &first)
            .await
            .unwrap();
        vitrine::bench::record::record(&wh.session, &other)
            .await
            .unwrap();
        assert_eq!(table, "main.fashion_demo.embedding_benchmark_runs");
        let recorded = wh
            .rows(&format!(
                "SELECT seed, k, queries, get_json_object(metrics, '$.kinds[0].metrics[0].candidate.mean'),                  get_json_object(candidate_index, '$.entry.primary_key')                  FROM {table} WHERE run_id = '{run_id}'"
            ))
            .await;
        let candidate_ndcg = first.kinds[0].metrics[0].candidate.mean;
        assert_eq!(recorded.len(), 1);
        assert_eq!(
            recorded[0][..3],
            ["1", "10", &first.queries.len().to_string()]
        );
        assert!((recorded[0][3].parse::<f64>().unwrap() - candidate_ndcg).abs() < 1e-12);
        assert_eq!(recorded[0][4], "product_id");
        assert_eq!(
            wh.value(&format!("SELECT COUNT(*) FROM {table}")).await,
            "2"
        );
        assert_eq!(read("queries.jsonl").lines().count(), first.queries.len());
        let mut from_file = options("vs_base", "vs_rich", 1);
        from_file.queries = QuerySource::Jsonl(out.join("queries.jsonl"));
        let replayed = run(&wh.session, &from_file).await.unwrap();
        assert_eq!(
            serde_json::to_value(&replayed.kinds[0]).unwrap(),
            serde_json::to_value(&first.kinds[0]).unwrap(),
            "the queries file repeats the run"
        );
    }

    /// Evaluating on the held-out split: only its products are queried, judged and ranked, each
    /// ranking still holds k of them, and the report says so.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_filtered_run_judges_and_ranks_only_the_products_it_keeps() {
        let wh = two_indexes().await;
        let held_out: std::collections::BTreeSet<String> = wh
            .rows("SELECT CAST(product_id AS STRING) FROM main.fashion_demo.products_ground_truth WHERE split = 'test'")
            .await
            .into_iter()
            .map(|row| row[0].clone())
            .collect();
        assert!(
            held_out.len() > 20 && held_out.len() < 120,
            "{}",
            held_out.len()
        );
        let mut options = options("vs_base", "vs_rich", 3);
        options.labels.filter = Some("g.split = 'test'".into());
        let report = run(&wh.session, &options).await.unwrap();
        let evaluated = report.evaluated.as_ref().expect("a filtered run says so");
        assert_eq!(evaluated.products, held_out.len());
        assert_eq!(evaluated.short_rankings, [0, 0]);
        assert!(!report.queries.is_empty());
        for query in &report.queries {
            assert!(
                query.judgments.keys().all(|p| held_out.contains(p)),
                "{} judges a training product",
                query.text
            );
        }
        for ranked in &report.runs {
            for (query, results) in ranked {
                assert_eq!(results.len(), 10, "{query}");
                assert!(results.iter().all(|(p, _)| held_out.contains(p)), "{query}");
            }
        }
        assert!(report::markdown(&report).contains(&format!(
            "Evaluated on the {} products where `g.split = 'test'`",
            held_out.len()
        )));

        options.labels.filter = Some("g.split = 'neither'".into());
        let err = run(&wh.session, &options).await.unwrap_err().to_string();
        assert!(
            err.contains("the filter 'g.split = 'neither'' keeps no product"),
            "{err}"
        );
    }

    /// The same catalog read in another row order draws the same queries.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_queries_do_not_depend_on_the_order_rows_are_read_in() {
        let wh = two_indexes().await;
        for table in ["products", "products_ground_truth"] {
            wh.sql(&format!(
                "CREATE TABLE main.fashion_demo.{table}_reversed AS \
                 SELECT * FROM main.fashion_demo.{table} ORDER BY product_id DESC"
            ))
            .await;
        }
        let first = run(&wh.session, &options("vs_base", "vs_rich", 5))
            .await
            .unwrap();
        let mut reversed = options("vs_base", "vs_rich", 5);
        reversed.labels.products = "main.fashion_demo.products_reversed".into();
        reversed.labels.ground_truth = "main.fashion_demo.products_ground_truth_reversed".into();
        let second = run(&wh.session, &reversed).await.unwrap();
        let texts = |r: &vitrine::quality::QualityReport| -> Vec<String> {
            r.queries.iter().map(|q| q.text.clone()).collect()
        };
        assert_eq!(texts(&first), texts(&second));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unknown_index_is_named() {
        let (wh, _) = TestWarehouse::with_demo(40, 5).await;
        wh.run_sql_file("00_load_products.sql").await;
        let err = run(&wh.session, &options("nope", "nope", 1))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("main.fashion_demo.nope"), "{err}");
    }
}

/// With an embedder that sees words (the weightless hashed bag of words), descriptions enriched
/// with the extracted attributes must answer attribute queries better than the baseline ones:
/// the benchmark can tell.
#[tokio::test(flavor = "multi_thread")]
async fn enriched_descriptions_beat_baseline_ones_under_a_lexical_embedder() {
    use vitrine::quality::{run, QualityOptions, QuerySource};

    let (wh, _) = crate::support::TestWarehouse::with_demo(400, 11).await;
    for script in [
        "00_load_products.sql",
        "demo/attributes_from_ground_truth.sql",
        "02_join_enriched_attributes.sql",
    ] {
        wh.run_sql_file(script).await;
    }
    wh.sql(
        "CREATE TABLE main.fashion_demo.hashed AS SELECT product_id, \
         hashed_text_embed(baseline_description) AS b, hashed_text_embed(rich_text_description) AS r \
         FROM main.fashion_demo.products_with_visual_attributes",
    )
    .await;
    flat_indexes(
        &wh,
        "main.fashion_demo.hashed",
        "hashing",
        &[("vs_words", "b"), ("vs_words_enriched", "r")],
    )
    .await;
    let report = run(
        &wh.session,
        &QualityOptions {
            baseline: "main.fashion_demo.vs_words".into(),
            candidate: "main.fashion_demo.vs_words_enriched".into(),
            k: 10,
            seed: 42,
            queries: QuerySource::Drawn { per_kind: 10 },
            labels: Default::default(),
        },
    )
    .await
    .unwrap();
    assert!(report.test_models.is_empty(), "{:?}", report.test_models);
    let ndcg = &report.kinds[0].metrics[0];
    assert_eq!(ndcg.metric, "ndcg@10");
    assert!(
        ndcg.difference.difference.low > 0.0 && ndcg.difference.p_value < 0.01,
        "{}",
        vitrine::bench::report::headline(&report)
    );
    let material = report
        .kinds
        .iter()
        .find(|k| k.kind == "material+article")
        .unwrap();
    assert!(material.metrics[0].difference.difference.mean > 0.0);

    // The same benchmark as a SQL table function gives the same figures.
    let rows = wh
        .rows(
            "SELECT kind, queries, baseline, baseline_low, candidate, difference_high, p_value, meaningful \
             FROM retrieval_quality('main.fashion_demo.vs_words', 'main.fashion_demo.vs_words_enriched', \
                                    k => 10, seed => 42, per_kind => 10) \
             WHERE metric = 'ndcg@10' ORDER BY queries DESC, kind LIMIT 1",
        )
        .await;
    let expected = [
        "all".to_string(),
        report.queries.len().to_string(),
        ndcg.baseline.mean.to_string(),
        ndcg.baseline.low.to_string(),
        ndcg.candidate.mean.to_string(),
        ndcg.difference.difference.high.to_string(),
        ndcg.difference.p_value.to_string(),
        "true".to_string(),
    ];
    assert_eq!(rows, [expected]);
    let kinds = wh
        .value("SELECT COUNT(DISTINCT kind) FROM retrieval_quality(baseline => 'main.fashion_demo.vs_words', candidate => 'main.fashion_demo.vs_words_enriched', per_kind => 10)")
        .await;
    assert_eq!(kinds, report.kinds.len().to_string());
    let error = wh
        .error("SELECT * FROM retrieval_quality('main.fashion_demo.vs_words', 'main.fashion_demo.vs_nope')")
        .await;
    assert!(
        error.contains("vector index main.fashion_demo.vs_nope does not exist"),
        "{error}"
    );
}
