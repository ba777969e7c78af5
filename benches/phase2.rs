//! Phase 2 on the full-size demo catalog (44,424 products): the join into
//! `products_with_visual_attributes` with both descriptions and the validation queries.
//!
//! Two variants: the whole `sql/02_join_enriched_attributes.sql` (with `OPTIMIZE … ZORDER BY`,
//! which rewrites the table), and the join plus validation queries alone, which is what the Spark
//! and DuckDB peers in `benches/peers/` run on the same files. Results: `benches/RESULTS.md`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use vitrine::demo::{self, DemoOptions};
use vitrine::sql::script::split_statements;
use vitrine::{Engine, EngineConfig, Session as _};

const PRODUCTS: usize = demo::FULL_CATALOG;

fn phase2(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::var("VITRINE_BENCH_WAREHOUSE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("vitrine-bench-phase2"));
    let sql_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let script = std::fs::read_to_string(sql_dir.join("02_join_enriched_attributes.sql")).unwrap();
    // The join and the validation queries, without the table maintenance statements.
    let join_and_validate: String = split_statements(&script)
        .into_iter()
        .filter(|s| {
            !["ALTER", "OPTIMIZE", "COMMENT"]
                .iter()
                .any(|k| s.sql.to_uppercase().starts_with(k))
        })
        .map(|s| s.sql + ";\n")
        .collect();

    let session = runtime.block_on(async {
        let _ = std::fs::remove_dir_all(&dir);
        let session = Engine::open(EngineConfig::new(dir.to_str().unwrap()))
            .await
            .unwrap()
            .session()
            .unwrap();
        let options = DemoOptions {
            products: PRODUCTS,
            seed: 42,
            images: false,
            progress: false,
        };
        demo::generate(session.warehouse(), &options).await.unwrap();
        session
            .run_file(&sql_dir.join("00_load_products.sql"))
            .await
            .unwrap();
        session
            .run_file(&sql_dir.join("demo/attributes_from_ground_truth.sql"))
            .await
            .unwrap();
        session
    });

    let mut group = c.benchmark_group("phase2_44424_products");
    group.sample_size(10);
    group.bench_function("join_and_validate", |b| {
        b.iter(|| {
            runtime
                .block_on(session.run_script(&join_and_validate, "phase2"))
                .unwrap()
        });
    });
    group.bench_function("whole_script_with_optimize_zorder", |b| {
        b.iter(|| {
            runtime
                .block_on(session.run_script(&script, "phase2"))
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, phase2);
criterion_main!(benches);
