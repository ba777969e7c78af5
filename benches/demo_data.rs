//! Time to generate the full-size demo catalog (44,424 products with photos): one run, printed.
//! Not a criterion benchmark: one generation takes seconds and its figure is a one-off check
//! that the catalog generates "in minutes, not hours". Results: `benches/RESULTS.md`.

use std::time::Instant;

use vitrine::catalog::Warehouse;
use vitrine::demo::{self, DemoOptions};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join("vitrine-bench-demo");
    let _ = std::fs::remove_dir_all(&dir);
    let products = std::env::var("VITRINE_BENCH_PRODUCTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(demo::FULL_CATALOG);
    let started = Instant::now();
    let summary = runtime
        .block_on(async {
            let warehouse = Warehouse::open(dir.to_str().unwrap()).await?;
            demo::generate(
                &warehouse,
                &DemoOptions {
                    products,
                    seed: 42,
                    images: true,
                    progress: false,
                },
            )
            .await
        })
        .unwrap();
    let elapsed = started.elapsed();
    println!(
        "demo-data: {} products, {} images in {:.1} s ({:.0} products/s, {} threads)",
        summary.products,
        summary.images,
        elapsed.as_secs_f64(),
        summary.products as f64 / elapsed.as_secs_f64(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
