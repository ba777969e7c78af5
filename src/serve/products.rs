//! The products a search service shows: the products table read into memory at start and at
//! each reload, by id, for product pages and for finding each product's photo.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use serde_json::{Map, Value};

use crate::engine::EngineSession;
use crate::error::{Result, VitrineError};

/// One product's columns, as JSON.
pub type Product = Map<String, Value>;

/// The column products are identified by.
pub const PRODUCT_ID: &str = "product_id";

/// The column holding a product's photo path (`/Volumes/…`).
pub const IMAGE_PATH: &str = "image_path";

/// Every product of the table, by id.
#[derive(Debug, Default)]
pub struct Products {
    by_id: HashMap<i64, Product>,
}

impl Products {
    /// Reads `table` (which must have a `product_id` column) through `session`. The table's
    /// name comes from the service's configuration, never from a request.
    pub async fn load(session: &EngineSession, table: &str) -> Result<Self> {
        let result = session.execute(&format!("SELECT * FROM {table}")).await?;
        let mut by_id = HashMap::new();
        for row in json_rows(&result.batches)? {
            let id = row.get(PRODUCT_ID).and_then(Value::as_i64).ok_or_else(|| {
                VitrineError::Plan(format!(
                    "the products table {table} needs an integer {PRODUCT_ID} in every row"
                ))
            })?;
            by_id.insert(id, row);
        }
        Ok(Self { by_id })
    }

    /// The product with this id.
    pub fn get(&self, id: i64) -> Option<&Product> {
        self.by_id.get(&id)
    }

    /// The product's photo path, if it has one.
    pub fn image_path(&self, id: i64) -> Option<&str> {
        self.get(id)?.get(IMAGE_PATH)?.as_str()
    }

    /// How many products there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The rows of `batches` as JSON objects (column → value; NULLs left out).
pub fn json_rows(batches: &[RecordBatch]) -> Result<Vec<Product>> {
    let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&bytes)?)
}
