//! `vitrine demo-data`: a synthetic fashion catalog, deterministic for a seed.
//!
//! Writes, under the warehouse's `/Volumes/main/fashion_demo/raw_data/`:
//! - `styles.csv`: Kaggle's "Fashion Product Images" columns plus `price`;
//! - `ground_truth.csv`: what each photo shows, in the extraction vocabulary;
//! - `images/<id>.jpg`: one photo per product ([`image`]).
//!
//! `sql/00_load_products.sql` loads them into `main.fashion_demo.products` and
//! `main.fashion_demo.products_ground_truth`.

pub mod catalog;
pub mod data;
pub mod image;

use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::catalog::Warehouse;
use crate::error::{Result, ResultExt, VitrineError};
pub use catalog::Product;

/// The real catalog's size.
pub const FULL_CATALOG: usize = 44_424;
/// Where the raw files go, as Databricks names the volume.
pub const RAW_DATA_VOLUME: &str = "/Volumes/main/fashion_demo/raw_data";

/// What to generate.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of products.
    pub products: usize,
    /// Random seed: the same seed gives the same catalog, byte for byte.
    pub seed: u64,
    /// Whether to draw the photos (the CSV files alone are enough for SQL-only tests).
    pub images: bool,
    /// Whether to show a progress bar.
    pub progress: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            products: FULL_CATALOG,
            seed: 42,
            images: true,
            progress: false,
        }
    }
}

/// Product number `index` of the catalog for `seed`.
pub fn product(seed: u64, index: usize) -> Product {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    catalog::product(&mut rng, index)
}

/// Every product of the catalog for `seed`.
pub fn products(options: &DemoOptions) -> Vec<Product> {
    (0..options.products)
        .into_par_iter()
        .map(|i| product(options.seed, i))
        .collect()
}

/// `styles.csv` for `products`.
pub fn styles_csv(products: &[Product]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header = [
        "id",
        "gender",
        "masterCategory",
        "subCategory",
        "articleType",
        "baseColour",
        "season",
        "year",
        "usage",
        "productDisplayName",
        "price",
    ];
    let csv_error = |e: csv::Error| VitrineError::Plan(format!("writing styles.csv: {e}"));
    writer.write_record(header).map_err(csv_error)?;
    for p in products {
        let a = p.article_type();
        writer
            .write_record([
                p.id.to_string().as_str(),
                p.gender,
                a.master,
                a.sub,
                a.name,
                p.colour().0,
                p.season.unwrap_or(""),
                &p.year.to_string(),
                p.usage.unwrap_or(""),
                &p.display_name,
                &format!("{:.2}", p.price),
            ])
            .map_err(csv_error)?;
    }
    writer
        .into_inner()
        .map_err(|e| VitrineError::Plan(format!("writing styles.csv: {e}")))
}

/// `ground_truth.csv` for `products`; list columns are joined with `|`.
pub fn ground_truth_csv(products: &[Product]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| VitrineError::Plan(format!("writing ground_truth.csv: {e}"));
    writer
        .write_record([
            "id",
            "material",
            "pattern",
            "formality",
            "collar_type",
            "sleeve_length",
            "fit_type",
            "style_keywords",
            "visual_details",
        ])
        .map_err(csv_error)?;
    for p in products {
        let t = &p.truth;
        writer
            .write_record([
                p.id.to_string().as_str(),
                t.material,
                t.pattern,
                t.formality,
                t.collar,
                t.sleeve,
                t.fit,
                &t.style_keywords.join("|"),
                &t.details.join("|"),
            ])
            .map_err(csv_error)?;
    }
    writer
        .into_inner()
        .map_err(|e| VitrineError::Plan(format!("writing ground_truth.csv: {e}")))
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// Products written.
    pub products: usize,
    /// Photos written.
    pub images: usize,
    /// Where, as a warehouse location.
    pub location: String,
}

/// Writes the demo catalog into `warehouse`.
pub async fn generate(warehouse: &Warehouse, options: &DemoOptions) -> Result<DemoSummary> {
    let products = products(options);
    let store = warehouse.store();
    let root = RAW_DATA_VOLUME
        .trim_start_matches('/')
        .split('/')
        .fold(warehouse.store_prefix().clone(), |p, part| p.join(part));
    for (name, bytes) in [
        ("styles.csv", styles_csv(&products)?),
        ("ground_truth.csv", ground_truth_csv(&products)?),
    ] {
        let path = root.clone().join(name);
        store
            .put(&path, PutPayload::from(bytes))
            .await
            .context(|| format!("writing {RAW_DATA_VOLUME}/{name}"))?;
    }
    let mut images = 0;
    if options.images {
        let bar = if options.progress {
            ProgressBar::new(products.len() as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_message("drawing product photos");
        for chunk in products.chunks(2048) {
            let rendered: Vec<(Path, Vec<u8>)> = chunk
                .par_iter()
                .map(|p| {
                    Ok((
                        root.clone().join("images").join(format!("{}.jpg", p.id)),
                        image::render_jpeg(p)?,
                    ))
                })
                .collect::<Result<_>>()?;
            futures::stream::iter(rendered)
                .map(|(path, bytes)| {
                    let store = store.clone();
                    async move {
                        store
                            .put(&path, PutPayload::from(bytes))
                            .await
                            .context(|| format!("writing image '{path}'"))
                    }
                })
                .buffer_unordered(32)
                .try_collect::<Vec<_>>()
                .await?;
            images += chunk.len();
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
    }
    Ok(DemoSummary {
        products: products.len(),
        images,
        location: warehouse.resolve_path(RAW_DATA_VOLUME),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_catalog() {
        let options = DemoOptions {
            products: 300,
            seed: 9,
            images: false,
            progress: false,
        };
        assert_eq!(
            styles_csv(&products(&options)).unwrap(),
            styles_csv(&products(&options)).unwrap()
        );
        let other = DemoOptions {
            seed: 10,
            ..options.clone()
        };
        assert_ne!(
            styles_csv(&products(&options)).unwrap(),
            styles_csv(&products(&other)).unwrap()
        );
    }

    #[test]
    fn a_large_catalog_has_realistic_proportions() {
        let products = products(&DemoOptions {
            products: 20_000,
            seed: 1,
            images: false,
            progress: false,
        });
        let share = |f: &dyn Fn(&Product) -> bool| {
            products.iter().filter(|p| f(p)).count() as f64 / products.len() as f64
        };
        let tshirts = share(&|p| p.article_type().name == "Tshirts");
        let watches = share(&|p| p.article_type().name == "Watches");
        let apparel = share(&|p| p.article_type().master == "Apparel");
        assert!((0.14..0.18).contains(&tshirts), "Tshirts {tshirts}");
        assert!((0.05..0.07).contains(&watches), "Watches {watches}");
        assert!((0.44..0.52).contains(&apparel), "Apparel {apparel}");
    }
}
