//! IVF_FLAT and FLAT indexes searched in memory: the index dataset's live rows read once per
//! state of the index, its vectors grouped by the Lance index's own IVF partitions (so that the
//! breadth [`super::calibrate`] measured applies), and each search a scan of the nearest
//! partitions with SIMD dot products, without planning a query. Lance's scanner costs about
//! 4.6 ms per search at 44,424 × 512 where this costs a fraction of a millisecond
//! (`benches/RESULTS.md`).
//!
//! What a resident index holds is exactly the dataset's version it was read from: rows deleted
//! since the ANN index was built are gone, rows appended and not yet folded into it are
//! assigned to their nearest partition, and `filters` are evaluated over the rows in memory (the
//! mask of each distinct filter kept), so a filtered search never misses matching rows that an
//! unfiltered breadth would not reach.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::{Array, AsArray, Float32Array, RecordBatch, UInt32Array};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Schema};
use datafusion::common::DFSchema;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use lance::Dataset;
use rayon::prelude::*;

use super::distance::{lance_distance, nearness, normalise};
use super::index::{self, AnnKind, IndexEntry, Metric};
use crate::error::{Result, VitrineError};

/// The most vector bytes an index may hold to be searched in memory (it is held twice: as
/// stored, and grouped by partition); larger ones are searched through Lance.
pub const MAX_RESIDENT_BYTES: u64 = 1 << 30;
/// Distinct filters whose masks an index keeps.
const MASKS_KEPT: usize = 256;
/// A filter keeping at most this share of the rows is searched exactly over the rows it keeps;
/// above it, the breadth grows by the inverse of the share.
const EXACT_UP_TO_SHARE: f64 = 0.25;

/// An index held in memory.
pub struct ResidentIndex {
    metric: Metric,
    dimension: usize,
    /// Every live row of the index dataset: the entry's columns, in one batch.
    rows: RecordBatch,
    /// The IVF centroids (partitions × dimension); empty for a single partition.
    centroids: Vec<f32>,
    /// Partition `p` holds slots `offsets[p]..offsets[p + 1]`.
    offsets: Vec<usize>,
    /// The row (in `rows`) of each slot.
    slot_rows: Vec<u32>,
    /// The vectors in slot order (unit length for cosine), `dimension` floats each.
    vectors: Vec<f32>,
    /// The mask of each filter seen, over `rows`.
    masks: Mutex<HashMap<String, Arc<BooleanBuffer>>>,
}

/// Whether `entry`'s index is searched in memory: an IVF_FLAT or FLAT index of at most
/// [`MAX_RESIDENT_BYTES`] of vectors.
pub fn serves(entry: &IndexEntry) -> bool {
    matches!(entry.kind, AnnKind::IvfFlat | AnnKind::Flat)
        && entry.rows.saturating_mul(entry.dimension as u64 * 4) <= MAX_RESIDENT_BYTES
}

fn error(message: impl std::fmt::Display) -> VitrineError {
    VitrineError::Plan(format!("vector_search: {message}"))
}

impl ResidentIndex {
    /// Reads the live rows of `dataset` (the index dataset of `entry`) and groups their vectors
    /// by the ANN index's partitions.
    pub async fn load(entry: &IndexEntry, dataset: &Dataset) -> Result<Self> {
        let mut scanner = dataset.scan();
        scanner.project(&entry.columns).map_err(error)?;
        let schema = scanner.schema().await.map_err(error)?;
        let batches: Vec<RecordBatch> = scanner
            .try_into_stream()
            .await
            .map_err(error)?
            .try_collect()
            .await
            .map_err(|e| error(format!("reading '{}': {e}", entry.location)))?;
        let rows = concat_batches(&schema, &batches)?;
        if rows.num_rows() > u32::MAX as usize {
            return Err(error(
                "an index of more than 2³² rows cannot be held in memory",
            ));
        }
        let column = rows
            .column_by_name(&entry.column)
            .ok_or_else(|| error(format!("the index lacks its column '{}'", entry.column)))?;
        let vectors = cast(
            column,
            &DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, true)),
                entry.dimension as i32,
            ),
        )?;
        let vectors = vectors.as_fixed_size_list();
        let values = vectors.values().as_primitive::<Float32Type>().values();
        let dimension = entry.dimension;
        let centroids = match entry.kind {
            AnnKind::Flat => Vec::new(),
            _ => index::centroids(entry, dataset).await?.unwrap_or_default(),
        };
        let partitions = (centroids.len() / dimension.max(1)).max(1);
        let metric = entry.metric;
        // Each live vector (unit length for cosine) and its partition.
        let assigned: Vec<(u32, usize, Vec<f32>)> = (0..rows.num_rows())
            .into_par_iter()
            .filter(|&row| vectors.is_valid(row))
            .map(|row| {
                let mut vector = values[row * dimension..(row + 1) * dimension].to_vec();
                normalise(metric, &mut vector);
                let partition = nearest_centroid(metric, &centroids, dimension, &vector);
                (row as u32, partition, vector)
            })
            .collect();
        let mut offsets = vec![0usize; partitions + 1];
        for (_, partition, _) in &assigned {
            offsets[partition + 1] += 1;
        }
        for p in 0..partitions {
            offsets[p + 1] += offsets[p];
        }
        let mut next = offsets.clone();
        let mut slot_rows = vec![0u32; assigned.len()];
        let mut grouped = vec![0f32; assigned.len() * dimension];
        for (row, partition, vector) in assigned {
            let slot = next[partition];
            next[partition] += 1;
            slot_rows[slot] = row;
            grouped[slot * dimension..(slot + 1) * dimension].copy_from_slice(&vector);
        }
        Ok(Self {
            metric,
            dimension,
            rows,
            centroids,
            offsets,
            slot_rows,
            vectors: grouped,
            masks: Mutex::new(HashMap::new()),
        })
    }

    /// The `k` nearest rows to `query` (checked to have the index's dimension) from the
    /// `nprobes` partitions nearest it, keeping only rows that pass `filter`: the entry's
    /// columns and `_distance` (Lance's distance for the metric), nearest first.
    pub fn nearest(
        &self,
        query: &[f32],
        k: usize,
        nprobes: usize,
        filter: Option<&str>,
    ) -> Result<RecordBatch> {
        let mask = filter.map(|f| self.mask(f)).transpose()?;
        let mut query = query.to_vec();
        normalise(self.metric, &mut query);
        let partitions = self.offsets.len() - 1;
        let probes = match &mask {
            None => nprobes,
            Some(mask) => {
                let share = mask.count_set_bits() as f64 / self.rows.num_rows().max(1) as f64;
                if share <= EXACT_UP_TO_SHARE {
                    partitions
                } else {
                    (nprobes as f64 / share).ceil() as usize
                }
            }
        }
        .clamp(1, partitions);
        let best = self.scan(
            &query,
            k,
            &self.nearest_partitions(&query, probes),
            mask.as_deref(),
        );
        let picked = UInt32Array::from_iter_values(best.iter().map(|(_, row)| *row));
        let mut fields: Vec<Field> = Vec::new();
        let mut columns = Vec::new();
        for (field, column) in self.rows.schema().fields().iter().zip(self.rows.columns()) {
            fields.push(field.as_ref().clone());
            columns.push(take(column, &picked, None)?);
        }
        fields.push(Field::new("_distance", DataType::Float32, true));
        columns.push(Arc::new(Float32Array::from_iter_values(
            best.iter().map(|(n, _)| lance_distance(self.metric, *n)),
        )));
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }

    /// The `probes` partitions whose centroids are nearest `query`, nearest first.
    fn nearest_partitions(&self, query: &[f32], probes: usize) -> Vec<usize> {
        let partitions = self.offsets.len() - 1;
        if partitions == 1 {
            return vec![0];
        }
        let mut ranked: Vec<(f32, usize)> = self
            .centroids
            .chunks_exact(self.dimension)
            .map(|c| centroid_nearness(self.metric, query, c))
            .zip(0..)
            .collect();
        let by_nearness = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0);
        if probes < ranked.len() {
            ranked.select_nth_unstable_by(probes - 1, by_nearness);
            ranked.truncate(probes);
        }
        ranked.sort_unstable_by(by_nearness);
        ranked.into_iter().map(|(_, p)| p).collect()
    }

    /// The `k` best (nearness, row) in `partitions`, best first, among rows `mask` keeps.
    fn scan(
        &self,
        query: &[f32],
        k: usize,
        partitions: &[usize],
        mask: Option<&BooleanBuffer>,
    ) -> Vec<(f32, u32)> {
        let mut best: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(k + 1);
        for &partition in partitions {
            for slot in self.offsets[partition]..self.offsets[partition + 1] {
                let row = self.slot_rows[slot];
                if mask.is_some_and(|m| !m.value(row as usize)) {
                    continue;
                }
                let vector = &self.vectors[slot * self.dimension..(slot + 1) * self.dimension];
                let candidate = Candidate(nearness(self.metric, query, vector), row);
                if best.len() < k {
                    best.push(Reverse(candidate));
                } else if best.peek().is_some_and(|worst| candidate > worst.0) {
                    best.pop();
                    best.push(Reverse(candidate));
                }
            }
        }
        let mut best: Vec<(f32, u32)> = best.into_iter().map(|c| (c.0 .0, c.0 .1)).collect();
        best.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        best
    }

    /// The rows `filter` (a SQL condition over the index's columns) keeps, a NULL result
    /// dropping the row; evaluated once per distinct filter.
    fn mask(&self, filter: &str) -> Result<Arc<BooleanBuffer>> {
        if let Some(mask) = self.masks.lock().expect("mask cache lock").get(filter) {
            return Ok(Arc::clone(mask));
        }
        let failed = |e: &dyn std::fmt::Display| error(format!("filters '{filter}': {e}"));
        let context = SessionContext::new();
        let schema = DFSchema::try_from(self.rows.schema().as_ref().clone())?;
        let condition = context
            .parse_sql_expr(filter, &schema)
            .map_err(|e| failed(&e))?;
        let evaluated = context
            .create_physical_expr(condition, &schema)
            .and_then(|e| e.evaluate(&self.rows))
            .and_then(|v| v.into_array(self.rows.num_rows()))
            .map_err(|e| failed(&e))?;
        let kept = evaluated.as_boolean_opt().ok_or_else(|| {
            failed(&format!(
                "a condition must be true or false, not {}",
                evaluated.data_type()
            ))
        })?;
        let mask = Arc::new(match kept.nulls() {
            Some(valid) => kept.values() & valid.inner(),
            None => kept.values().clone(),
        });
        let mut masks = self.masks.lock().expect("mask cache lock");
        if masks.len() >= MASKS_KEPT {
            masks.clear();
        }
        masks.insert(filter.to_string(), Arc::clone(&mask));
        Ok(mask)
    }
}

/// A row and its nearness, ordered by nearness (then by row, so that equal vectors rank the
/// same way every time).
#[derive(Clone, Copy, PartialEq)]
struct Candidate(f32, u32);

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(other.1.cmp(&self.1))
    }
}

/// How near a centroid is, as Lance's IVF ranks partitions: by Euclidean distance for l2 and
/// cosine (whose vectors are normalised), by dot product for dot.
fn centroid_nearness(metric: Metric, vector: &[f32], centroid: &[f32]) -> f32 {
    match metric {
        Metric::Dot => nearness(Metric::Dot, vector, centroid),
        Metric::Cosine | Metric::L2 => nearness(Metric::L2, vector, centroid),
    }
}

/// The partition of `vector`: its nearest centroid (0 when there are none).
fn nearest_centroid(metric: Metric, centroids: &[f32], dimension: usize, vector: &[f32]) -> usize {
    centroids
        .chunks_exact(dimension)
        .map(|c| centroid_nearness(metric, vector, c))
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(p, _)| p)
}

type Slot = Arc<tokio::sync::OnceCell<Arc<ResidentIndex>>>;

/// The resident indexes by location, each with the `synced_at` of the state it holds.
fn resident() -> std::sync::MutexGuard<'static, HashMap<String, (String, Slot)>> {
    static RESIDENT: OnceLock<Mutex<HashMap<String, (String, Slot)>>> = OnceLock::new();
    RESIDENT
        .get_or_init(Default::default)
        .lock()
        .expect("resident index lock")
}

/// The resident index of `entry`, read on first use for each state of the index (every write
/// to an index rewrites its entry's `synced_at`) and shared by every session and caller; `None`
/// where [`serves`] says the index is searched through Lance. Concurrent first searches wait
/// for one read.
pub async fn open(entry: &IndexEntry) -> Result<Option<Arc<ResidentIndex>>> {
    if !serves(entry) {
        return Ok(None);
    }
    let slot = {
        let mut resident = resident();
        match resident.get(&entry.location) {
            Some((synced_at, slot)) if *synced_at == entry.synced_at => Arc::clone(slot),
            _ => {
                let slot = Slot::default();
                resident.insert(
                    entry.location.clone(),
                    (entry.synced_at.clone(), Arc::clone(&slot)),
                );
                slot
            }
        }
    };
    let index = slot
        .get_or_try_init(|| async {
            let dataset = index::open_cached(entry).await?;
            Ok::<_, VitrineError>(Arc::new(ResidentIndex::load(entry, &dataset).await?))
        })
        .await?;
    Ok(Some(Arc::clone(index)))
}

/// Lets go of the index at `location` (dropped): its memory is freed once no search holds it.
pub fn forget(location: &str) {
    resident().remove(location);
}
