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

use datafusion::arrow::array::{
    Array, AsArray, FixedSizeListArray, Float32Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Schema, UInt64Type};
use datafusion::common::DFSchema;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use lance::Dataset;
use rayon::prelude::*;

use super::distance::{dot, lance_distance, nearness, normalise};
use super::filter::RowFilter;
use super::index::{self, AnnKind, IndexEntry, Metric};
use crate::error::{Result, VitrineError};

/// Distinct filters whose masks an index keeps.
const MASKS_KEPT: usize = 256;
/// A filtered search probes this many times the partitions an unfiltered one does, divided by
/// the share of rows the filter keeps (so that about as many kept rows are compared).
const FILTERED_BREADTH: f64 = 2.0;

/// An index held in memory.
pub struct ResidentIndex {
    metric: Metric,
    dimension: usize,
    /// Every live row of the index dataset: the entry's columns but the embedding, in one batch.
    rows: RecordBatch,
    /// The embedding column's field as stored.
    embedding: Field,
    /// The IVF centroids (partitions × dimension); empty for a single partition.
    centroids: Vec<f32>,
    /// Partition `p` holds slots `offsets[p]..offsets[p + 1]`.
    offsets: Vec<usize>,
    /// The row (in `rows`) of each slot.
    slot_rows: Vec<u32>,
    /// The slot of each row ([`NO_SLOT`] for a NULL vector).
    row_slots: Vec<u32>,
    /// The vectors as stored (as f32), in slot order, `dimension` floats each.
    vectors: Vec<f32>,
    /// For cosine, one over each slot's vector length (0 for the zero vector); else empty.
    scales: Vec<f32>,
    /// The mask of each filter seen, over `rows`.
    masks: Mutex<HashMap<String, Arc<BooleanBuffer>>>,
}

/// The slot of a row without a vector.
const NO_SLOT: u32 = u32::MAX;
/// The partition of a row the Lance index does not hold (yet).
const NO_PARTITION: usize = usize::MAX;

/// Whether `entry`'s index is searched in memory: an IVF_FLAT or FLAT index of at most
/// [`index::MAX_RESIDENT_BYTES`] of vectors.
pub fn serves(entry: &IndexEntry) -> bool {
    matches!(entry.kind, AnnKind::IvfFlat | AnnKind::Flat)
        && index::fits_in_memory(entry.rows, entry.dimension)
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
        scanner.with_row_id();
        let schema = scanner.schema().await.map_err(error)?;
        let batches: Vec<RecordBatch> = scanner
            .try_into_stream()
            .await
            .map_err(error)?
            .try_collect()
            .await
            .map_err(|e| error(format!("reading '{}': {e}", entry.location)))?;
        let mut rows = concat_batches(&schema, &batches)?;
        if rows.num_rows() >= NO_SLOT as usize {
            return Err(error(
                "an index of 2³² rows or more cannot be held in memory",
            ));
        }
        let at = schema
            .index_of(&entry.column)
            .map_err(|_| error(format!("the index lacks its column '{}'", entry.column)))?;
        let embedding = schema.field(at).clone();
        let vectors = cast(rows.column(at), &f32_vectors(entry.dimension))?;
        rows.remove_column(at);
        let row_ids = rows.remove_column(
            rows.schema()
                .index_of("_rowid")
                .map_err(|_| error("the index scan returned no row ids"))?,
        );
        let row_ids = row_ids.as_primitive::<UInt64Type>();
        let vectors = vectors.as_fixed_size_list();
        let values = vectors.values().as_primitive::<Float32Type>().values();
        let dimension = entry.dimension;
        let centroids = match entry.kind {
            AnnKind::Flat => Vec::new(),
            _ => index::centroids(entry, dataset).await?.unwrap_or_default(),
        };
        let partitions = (centroids.len() / dimension.max(1)).max(1);
        let metric = entry.metric;
        // The partition of each row with a vector: the one the Lance index put it in, or for
        // rows appended since it was built, the centroid nearest it (as a unit vector for
        // cosine, as Lance trained them).
        let mut indexed = vec![NO_PARTITION; rows.num_rows()];
        if partitions > 1 {
            let positions: HashMap<u64, usize> = row_ids
                .values()
                .iter()
                .enumerate()
                .map(|(row, id)| (*id, row))
                .collect();
            for partition in 0..partitions {
                for id in index::partition_row_ids(entry, dataset, partition).await? {
                    if let Some(row) = positions.get(&id) {
                        indexed[*row] = partition;
                    }
                }
            }
        }
        let assigned: Vec<(u32, usize)> = (0..rows.num_rows())
            .into_par_iter()
            .filter(|&row| vectors.is_valid(row))
            .map(|row| {
                let partition = match indexed[row] {
                    NO_PARTITION => {
                        let mut vector = values[row * dimension..(row + 1) * dimension].to_vec();
                        normalise(metric, &mut vector);
                        nearest_centroid(metric, &centroids, dimension, &vector)
                    }
                    partition => partition,
                };
                (row as u32, partition)
            })
            .collect();
        let mut offsets = vec![0usize; partitions + 1];
        for (_, partition) in &assigned {
            offsets[partition + 1] += 1;
        }
        for p in 0..partitions {
            offsets[p + 1] += offsets[p];
        }
        let mut next = offsets.clone();
        let mut slot_rows = vec![0u32; assigned.len()];
        let mut row_slots = vec![NO_SLOT; rows.num_rows()];
        let mut grouped = vec![0f32; assigned.len() * dimension];
        for (row, partition) in assigned {
            let slot = next[partition];
            next[partition] += 1;
            slot_rows[slot] = row;
            row_slots[row as usize] = slot as u32;
            let row = row as usize;
            grouped[slot * dimension..(slot + 1) * dimension]
                .copy_from_slice(&values[row * dimension..(row + 1) * dimension]);
        }
        let scales = match metric {
            Metric::Cosine => grouped
                .par_chunks_exact(dimension.max(1))
                .map(|v| {
                    let norm = dot(v, v).sqrt();
                    if norm > 0.0 {
                        1.0 / norm
                    } else {
                        0.0
                    }
                })
                .collect(),
            Metric::Dot | Metric::L2 => Vec::new(),
        };
        Ok(Self {
            metric,
            dimension,
            rows,
            embedding,
            centroids,
            offsets,
            slot_rows,
            row_slots,
            vectors: grouped,
            scales,
            masks: Mutex::new(HashMap::new()),
        })
    }

    /// The rows held (live rows of the index dataset, including any without a vector).
    pub fn len(&self) -> usize {
        self.rows.num_rows()
    }

    /// Whether the index holds no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.num_rows() == 0
    }

    /// The number of IVF partitions (1 for FLAT).
    pub fn partitions(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The vector of `row` as stored, if it has one.
    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        let slot = *self.row_slots.get(row)?;
        (slot != NO_SLOT).then(|| {
            let slot = slot as usize;
            &self.vectors[slot * self.dimension..(slot + 1) * self.dimension]
        })
    }

    /// The `k` nearest rows to `query` from the `nprobes` partitions nearest it: each row and
    /// Lance's distance for the metric, nearest first (every partition probed: exact).
    pub fn nearest_rows(&self, query: &[f32], k: usize, nprobes: usize) -> Vec<(u32, f32)> {
        let mut query = query.to_vec();
        normalise(self.metric, &mut query);
        self.scan(&query, k, &self.nearest_partitions(&query, nprobes), None)
            .into_iter()
            .map(|(nearness, row)| (row, lance_distance(self.metric, nearness)))
            .collect()
    }

    /// The `k` nearest rows to `query` (checked to have the index's dimension) from the
    /// `nprobes` partitions nearest it, keeping only rows that pass `filter`: the entry's
    /// columns and `_distance` (Lance's distance for the metric), nearest first. A filter
    /// widens the breadth by the inverse of the share of rows it keeps, and where comparing
    /// every kept row costs no more, the search is exact over them.
    pub fn nearest(
        &self,
        query: &[f32],
        k: usize,
        nprobes: usize,
        filter: Option<&RowFilter>,
    ) -> Result<RecordBatch> {
        let mut query = query.to_vec();
        normalise(self.metric, &mut query);
        let partitions = self.offsets.len() - 1;
        let best = match filter.map(|f| self.mask(f)).transpose()? {
            None => self.scan(&query, k, &self.nearest_partitions(&query, nprobes), None),
            Some(mask) => {
                let kept = mask.count_set_bits();
                let share = kept as f64 / self.slot_rows.len().max(1) as f64;
                let probes = (FILTERED_BREADTH * nprobes as f64 / share.max(f64::MIN_POSITIVE))
                    .ceil()
                    .min(partitions as f64) as usize;
                // Kept rows compared: all of them, or about the share of the probed slots.
                let probed_kept = share * (probes * self.slot_rows.len() / partitions) as f64;
                if probes >= partitions || kept as f64 <= probed_kept {
                    self.exact(&query, k, &mask)
                } else {
                    let probed = self.nearest_partitions(&query, probes);
                    self.scan(&query, k, &probed, Some(&mask))
                }
            }
        };
        self.results(&best)
    }

    /// The rows of `best` (nearness, row): the entry's columns and `_distance`.
    fn results(&self, best: &[(f32, u32)]) -> Result<RecordBatch> {
        let picked = UInt32Array::from_iter_values(best.iter().map(|(_, row)| *row));
        let mut fields: Vec<Field> = Vec::new();
        let mut columns = Vec::new();
        for (field, column) in self.rows.schema().fields().iter().zip(self.rows.columns()) {
            fields.push(field.as_ref().clone());
            columns.push(take(column, &picked, None)?);
        }
        let values = Float32Array::from_iter_values(best.iter().flat_map(|(_, row)| {
            let slot = self.row_slots[*row as usize] as usize;
            self.vectors[slot * self.dimension..(slot + 1) * self.dimension]
                .iter()
                .copied()
        }));
        let embeddings = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, true)),
            self.dimension as i32,
            Arc::new(values),
            None,
        )?;
        fields.push(self.embedding.clone());
        columns.push(cast(&embeddings, self.embedding.data_type())?);
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
        let probes = probes.clamp(1, partitions);
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

    /// How near the vector in `slot` is to `query` (normalised for cosine).
    fn nearness_at(&self, query: &[f32], slot: usize) -> f32 {
        let vector = &self.vectors[slot * self.dimension..(slot + 1) * self.dimension];
        match self.metric {
            Metric::Cosine => dot(query, vector) * self.scales[slot],
            metric => nearness(metric, query, vector),
        }
    }

    /// The `k` best (nearness, row) in `partitions`, best first, among rows `mask` keeps.
    fn scan(
        &self,
        query: &[f32],
        k: usize,
        partitions: &[usize],
        mask: Option<&BooleanBuffer>,
    ) -> Vec<(f32, u32)> {
        let slots: Vec<_> = partitions
            .iter()
            .map(|&p| self.offsets[p]..self.offsets[p + 1])
            .collect();
        let work = slots.iter().map(|r| r.len()).sum();
        best_of(k, slots, work, |slots, best| {
            for slot in slots {
                let row = self.slot_rows[slot];
                if mask.is_some_and(|m| !m.value(row as usize)) {
                    continue;
                }
                best.offer(Candidate(self.nearness_at(query, slot), row));
            }
        })
    }

    /// The `k` best (nearness, row) among every row `mask` keeps, best first.
    fn exact(&self, query: &[f32], k: usize, mask: &BooleanBuffer) -> Vec<(f32, u32)> {
        best_of(
            k,
            std::iter::once(0..mask.len()).collect(),
            mask.count_set_bits(),
            |rows, best| {
                let start = rows.start;
                for row in mask.slice(start, rows.len()).set_indices() {
                    let slot = self.row_slots[start + row];
                    if slot != NO_SLOT {
                        best.offer(Candidate(
                            self.nearness_at(query, slot as usize),
                            (start + row) as u32,
                        ));
                    }
                }
            },
        )
    }

    /// The rows `filter` keeps, a NULL result dropping the row; evaluated once per distinct
    /// filter.
    fn mask(&self, filter: &RowFilter) -> Result<Arc<BooleanBuffer>> {
        let key = filter.key();
        if let Some(mask) = self.masks.lock().expect("mask cache lock").get(&key) {
            return Ok(Arc::clone(mask));
        }
        let failed = |e: &dyn std::fmt::Display| filter.failed(e);
        let context = SessionContext::new();
        let schema = DFSchema::try_from(self.rows.schema().as_ref().clone())?;
        let condition = filter.to_expr(&context, &schema).map_err(|e| failed(&e))?;
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
        masks.insert(key, Arc::clone(&mask));
        Ok(mask)
    }
}

/// The FixedSizeList of f32 vectors of `dimension` values.
fn f32_vectors(dimension: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, true)),
        dimension as i32,
    )
}

/// Ranges of at most this many slots (or rows) are searched by one thread; a search over more
/// than twice as many splits them among the threads, so that one wide search uses every core.
const PIECE: usize = 8_192;

/// The `k` best candidates that `visit` offers over `ranges` (of slots or rows), best first:
/// where the vectors compared (`work`) are more than two pieces' worth, the ranges are cut into
/// pieces of [`PIECE`] and searched in parallel.
fn best_of(
    k: usize,
    ranges: Vec<std::ops::Range<usize>>,
    work: usize,
    visit: impl Fn(std::ops::Range<usize>, &mut TopK) + Sync,
) -> Vec<(f32, u32)> {
    if work <= 2 * PIECE {
        let mut best = TopK::new(k);
        ranges.into_iter().for_each(|r| visit(r, &mut best));
        return best.into_sorted();
    }
    let pieces: Vec<std::ops::Range<usize>> = ranges
        .into_iter()
        .flat_map(|r| {
            (r.start..r.end)
                .step_by(PIECE)
                .map(move |s| s..(s + PIECE).min(r.end))
        })
        .collect();
    pieces
        .into_par_iter()
        .fold(
            || TopK::new(k),
            |mut best, piece| {
                visit(piece, &mut best);
                best
            },
        )
        .reduce(|| TopK::new(k), TopK::merge)
        .into_sorted()
}

/// The best `k` candidates offered, kept in a min-heap of the best so far.
struct TopK {
    k: usize,
    best: BinaryHeap<Reverse<Candidate>>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            best: BinaryHeap::with_capacity(k + 1),
        }
    }

    fn offer(&mut self, candidate: Candidate) {
        if self.best.len() < self.k {
            self.best.push(Reverse(candidate));
        } else if self.best.peek().is_some_and(|worst| candidate > worst.0) {
            self.best.pop();
            self.best.push(Reverse(candidate));
        }
    }

    /// The best `k` of both.
    fn merge(mut self, other: TopK) -> TopK {
        other.best.into_iter().for_each(|c| self.offer(c.0));
        self
    }

    /// (nearness, row), best first.
    fn into_sorted(self) -> Vec<(f32, u32)> {
        let mut best: Vec<(f32, u32)> = self.best.into_iter().map(|c| (c.0 .0, c.0 .1)).collect();
        best.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        best
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

/// Reads `dataset`, the state of the index that `entry` describes (just built or synced), and
/// keeps it for the searches that follow, so that measuring the index and its first search
/// read it once.
pub async fn read(entry: &IndexEntry, dataset: &Dataset) -> Result<Arc<ResidentIndex>> {
    let index = Arc::new(ResidentIndex::load(entry, dataset).await?);
    resident().insert(
        entry.location.clone(),
        (
            entry.synced_at.clone(),
            Arc::new(tokio::sync::OnceCell::new_with(Some(Arc::clone(&index)))),
        ),
    );
    Ok(index)
}

/// Whether `entry`'s index is held in memory in the state the entry describes.
pub fn is_held(entry: &IndexEntry) -> bool {
    resident()
        .get(&entry.location)
        .is_some_and(|(synced_at, slot)| *synced_at == entry.synced_at && slot.initialized())
}

/// Lets go of the index at `location` (dropped): its memory is freed once no search holds it.
pub fn forget(location: &str) {
    resident().remove(location);
}
