//! What a session costs: opening one on a shared engine (its own DataFusion context with
//! Vitrine's Spark and model functions, catalog list and settings) and running a first small
//! query through it, against DataFusion's own `SessionContext::new()` running the same query on
//! an in-memory table. Sixteen sessions running the query at once give the concurrent rate.
//! Results: `benches/RESULTS.md`.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use vitrine::{Engine, EngineConfig};

const QUERY: &str = "SELECT COUNT(*), SUM(id) FROM main.default.t WHERE id % 7 = 3";

fn sessions(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = runtime.block_on(async {
        let engine = Engine::open(EngineConfig::new(dir.path().to_str().unwrap()))
            .await
            .unwrap();
        engine
            .session()
            .unwrap()
            .execute("CREATE TABLE main.default.t AS SELECT value AS id FROM range(10000)")
            .await
            .unwrap();
        engine
    });
    let table = runtime.block_on(async {
        let ctx = SessionContext::new();
        ctx.sql("SELECT value AS id FROM range(10000)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
    });
    let table = Arc::new(MemTable::try_new(table[0].schema(), vec![table]).unwrap());

    let mut group = c.benchmark_group("session");
    group.bench_function("datafusion_new_context_and_query", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let ctx = SessionContext::new();
                ctx.register_table("t", table.clone()).unwrap();
                let sql = QUERY.replace("main.default.t", "t");
                ctx.sql(&sql).await.unwrap().collect().await.unwrap()
            })
        })
    });
    group.bench_function("vitrine_new_session_and_query", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let session = engine.session().unwrap();
                session.execute(QUERY).await.unwrap()
            })
        })
    });
    group.bench_function("vitrine_16_sessions_at_once", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..16)
                    .map(|_| {
                        let engine = Arc::clone(&engine);
                        tokio::spawn(async move {
                            let session = engine.session().unwrap();
                            session.execute(QUERY).await.unwrap()
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, sessions);
criterion_main!(benches);
