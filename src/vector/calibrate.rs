//! Search breadth chosen by measurement: after an index is built, a sample of its own vectors
//! is searched exactly (every row) and through the index at increasing breadth, and the index
//! keeps the cheapest setting whose recall@10 reaches the target (`target_recall`, a `WITH`
//! key, default 0.95), with the recall it measured.
//!
//! Each sampled vector is a query whose own row is left out of both answers, so that finding
//! itself does not count. Settings given in `WITH` are kept and only measured. The index is
//! measured as it will be searched: in memory where [`resident::serves`] it (read once, every
//! search exact or approximate without I/O), through Lance's scanner otherwise.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, FixedSizeListArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type};
use futures::TryStreamExt;
use lance::Dataset;
use rayon::prelude::*;

use super::distance::{nearness, normalise};
use super::index::{AnnKind, IndexEntry, Metric};
use super::resident::{self, ResidentIndex};
use crate::error::{Result, ResultExt, VitrineError};

/// The recall@10 an index is tuned to reach when `WITH` gives none.
pub const DEFAULT_TARGET_RECALL: f64 = 0.95;
/// How many of the index's vectors are searched to measure recall.
const SAMPLE: usize = 100;
/// The depth recall is measured at.
const K: usize = 10;
/// Searches run at once while measuring.
const CONCURRENT: usize = 4;

/// Reads `target_recall` from `WITH` options: a number in (0, 1].
pub fn target_recall(options: &mut BTreeMap<String, String>) -> Result<f64> {
    match options.remove("target_recall") {
        None => Ok(DEFAULT_TARGET_RECALL),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0 && *r <= 1.0)
            .ok_or_else(|| {
                VitrineError::Plan(format!(
                    "target_recall must be a number above 0 and at most 1, got '{text}'"
                ))
            }),
    }
}

/// One query of the sample: its row and vector, and the rows of its exact nearest neighbours
/// with the distance of the farthest of them, as Lance measures it.
struct Probe {
    row: u64,
    vector: Vec<f32>,
    exact: Vec<u64>,
    farthest: f32,
}

/// Measures the index in `dataset` and returns its parameters with the search breadth set:
/// `nprobes` (unless given in `WITH`: `entry.given_params`) the fewest partitions that reach `target`, the re-ranking
/// (`refine_factor`, unless given) dropped where recall holds without it, and
/// `target_recall` and `measured_recall` recorded. A FLAT index is exact, and one of at most
/// twice the sample's rows is left as built (too few rows to measure apart from the sample).
pub async fn tune(
    entry: &IndexEntry,
    dataset: &Dataset,
    target: f64,
) -> Result<BTreeMap<String, String>> {
    let given = &entry.given_params;
    let mut params = entry.params.clone();
    if entry.kind == AnnKind::Flat || entry.rows as usize <= 2 * SAMPLE {
        return Ok(params);
    }
    let searcher = match resident::serves(entry) {
        true => Searcher::Resident(resident::read(entry, dataset).await?),
        false => Searcher::Lance(dataset),
    };
    let probes = match &searcher {
        Searcher::Resident(index) => sample_in_memory(index),
        Searcher::Lance(dataset) => sample(entry, dataset).await?,
    };
    let partitions: usize = params
        .get("num_partitions")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let mut breadths: Vec<usize> = match given.contains("nprobes") {
        true => vec![params["nprobes"].parse().unwrap_or(1)],
        false => std::iter::successors(Some(1usize), |n| Some(n * 2))
            .take_while(|n| *n < partitions)
            .chain([partitions])
            .collect(),
    };
    breadths.dedup();
    let refine = params.get("refine_factor").cloned();
    // Doubling until the target is reached, then halving the gap to the last breadth that
    // fell short: 8 probes short and 16 enough tries 12, then 10 or 14.
    let mut chosen = None;
    let mut short = None;
    for &nprobes in &breadths {
        params.insert("nprobes".into(), nprobes.to_string());
        let recall = recall(entry, &searcher, &params, &probes).await?;
        chosen = Some((nprobes, recall));
        if recall >= target {
            break;
        }
        short = Some(nprobes);
    }
    if let (Some(mut low), Some((mut high, mut reached))) = (short, chosen) {
        if reached >= target {
            while high - low > 1 {
                let middle = (low + high) / 2;
                params.insert("nprobes".into(), middle.to_string());
                let recall = recall(entry, &searcher, &params, &probes).await?;
                if recall >= target {
                    (high, reached) = (middle, recall);
                } else {
                    low = middle;
                }
            }
            chosen = Some((high, reached));
        }
    }
    if let Some((nprobes, _)) = chosen {
        params.insert("nprobes".into(), nprobes.to_string());
    }
    let mut measured = chosen.map_or(0.0, |(_, recall)| recall);
    if refine.is_some() && !given.contains("refine_factor") {
        let mut unrefined = params.clone();
        unrefined.remove("refine_factor");
        let recall = recall(entry, &searcher, &unrefined, &probes).await?;
        if recall >= target && recall >= measured - 0.005 {
            params = unrefined;
            measured = recall;
        }
    }
    params.insert("target_recall".into(), format!("{target}"));
    params.insert("measured_recall".into(), format!("{measured:.3}"));
    Ok(params)
}

/// How the index is searched while it is measured.
enum Searcher<'a> {
    /// In memory, as searches will run (rows are positions in the resident index).
    Resident(std::sync::Arc<ResidentIndex>),
    /// Through Lance's scanner (rows are Lance row ids).
    Lance(&'a Dataset),
}

/// Every `rows / SAMPLE`-th vector of a resident index with its exact nearest neighbours
/// (itself left out).
fn sample_in_memory(index: &ResidentIndex) -> Vec<Probe> {
    let step = (index.len() / SAMPLE).max(1);
    let partitions = index.partitions();
    (0..index.len())
        .step_by(step)
        .take(SAMPLE)
        .collect::<Vec<_>>()
        .into_par_iter()
        .filter_map(|row| {
            let vector = index.vector(row)?.to_vec();
            let mut exact = index.nearest_rows(&vector, K + 1, partitions);
            exact.retain(|(found, _)| *found as usize != row);
            exact.truncate(K);
            Some(Probe {
                row: row as u64,
                farthest: exact.last().map_or(f32::INFINITY, |(_, d)| *d),
                exact: exact.into_iter().map(|(found, _)| found as u64).collect(),
                vector,
            })
        })
        .collect()
}

/// Every `rows / SAMPLE`-th vector of the index with its exact nearest neighbours (itself left
/// out), found by reading every row once.
async fn sample(entry: &IndexEntry, dataset: &Dataset) -> Result<Vec<Probe>> {
    let step = (entry.rows as usize / SAMPLE).max(1);
    let mut probes = Vec::with_capacity(SAMPLE);
    let mut position = 0usize;
    let mut stream = vector_stream(entry, dataset).await?;
    while let Some(batch) = stream.try_next().await.context(|| scan_error(entry))? {
        let (rows, vectors) = rows_and_vectors(entry, &batch)?;
        for i in 0..batch.num_rows() {
            if (position + i).is_multiple_of(step) && probes.len() < SAMPLE && !vectors.is_null(i) {
                probes.push(Probe {
                    row: rows.value(i),
                    vector: normalised(entry.metric, vector_at(&vectors, i)),
                    exact: Vec::new(),
                    farthest: f32::INFINITY,
                });
            }
        }
        position += batch.num_rows();
    }
    // The nearest K of each probe as (distance, row), kept sorted, from a second pass.
    let mut nearest: Vec<Vec<(f32, u64)>> = vec![Vec::with_capacity(K + 1); probes.len()];
    let mut stream = vector_stream(entry, dataset).await?;
    while let Some(batch) = stream.try_next().await.context(|| scan_error(entry))? {
        let (rows, vectors) = rows_and_vectors(entry, &batch)?;
        let candidates: Vec<(u64, Vec<f32>)> = (0..batch.num_rows())
            .filter(|&i| !vectors.is_null(i))
            .map(|i| {
                (
                    rows.value(i),
                    normalised(entry.metric, vector_at(&vectors, i)),
                )
            })
            .collect();
        nearest
            .par_iter_mut()
            .zip(&probes)
            .for_each(|(best, probe)| {
                for (row, vector) in &candidates {
                    if *row == probe.row {
                        continue;
                    }
                    let d = distance(entry.metric, &probe.vector, vector);
                    if best.len() < K || d < best[K - 1].0 {
                        let at = best.partition_point(|(e, _)| *e <= d);
                        best.insert(at, (d, *row));
                        best.truncate(K);
                    }
                }
            });
    }
    for (probe, best) in probes.iter_mut().zip(nearest) {
        probe.farthest = best
            .last()
            .map_or(f32::INFINITY, |(d, _)| match entry.metric {
                Metric::L2 => *d,
                // Lance's cosine and dot distances are 1 − the dot product.
                Metric::Cosine | Metric::Dot => 1.0 + d,
            });
        probe.exact = best.into_iter().map(|(_, row)| row).collect();
    }
    Ok(probes)
}

/// The share of the probes' exact neighbours that a search with `params` finds. A row at the
/// distance of the exact k-th (within rounding) counts as found: among equal vectors (the same
/// photo twice, say) any k are an exact answer.
async fn recall(
    entry: &IndexEntry,
    searcher: &Searcher<'_>,
    params: &BTreeMap<String, String>,
    probes: &[Probe],
) -> Result<f64> {
    let answers: Vec<Vec<(u64, f32)>> = match searcher {
        Searcher::Resident(index) => {
            let nprobes = params
                .get("nprobes")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            probes
                .par_iter()
                .map(|probe| {
                    index
                        .nearest_rows(&probe.vector, K + 1, nprobes)
                        .into_iter()
                        .map(|(row, d)| (row as u64, d))
                        .filter(|(row, _)| *row != probe.row)
                        .take(K)
                        .collect()
                })
                .collect()
        }
        Searcher::Lance(dataset) => {
            let mut answers = Vec::with_capacity(probes.len());
            for chunk in probes.chunks(CONCURRENT) {
                let searches = chunk
                    .iter()
                    .map(|probe| approximate(entry, dataset, params, probe));
                answers.extend(futures::future::try_join_all(searches).await?);
            }
            answers
        }
    };
    let mut found = 0;
    for (rows, probe) in answers.iter().zip(probes) {
        let tolerance = 1e-5 * probe.farthest.abs().max(1.0);
        found += rows
            .iter()
            .filter(|(row, d)| probe.exact.contains(row) || *d <= probe.farthest + tolerance)
            .count()
            .min(probe.exact.len());
    }
    let wanted: usize = probes.iter().map(|p| p.exact.len()).sum();
    Ok(found as f64 / wanted.max(1) as f64)
}

/// The rows an index search with `params` returns for the probe and their distances, its own
/// row left out.
async fn approximate(
    entry: &IndexEntry,
    dataset: &Dataset,
    params: &BTreeMap<String, String>,
    probe: &Probe,
) -> Result<Vec<(u64, f32)>> {
    let mut scanner = dataset.scan();
    let error = |e: lance::Error| VitrineError::Plan(format!("measuring the index: {e}"));
    scanner
        .nearest(
            &entry.column,
            &datafusion::arrow::array::Float32Array::from(probe.vector.clone()),
            K + 1,
        )
        .map_err(error)?;
    super::index::apply_breadth(&mut scanner, params, K + 1);
    scanner.with_row_id();
    scanner.disable_scoring_autoprojection();
    scanner.project(&["_distance"]).map_err(error)?;
    let batch = scanner.try_into_batch().await.map_err(error)?;
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| VitrineError::Plan(format!("measuring the index: no {name}")))
    };
    let (rows, distances) = (column("_rowid")?, column("_distance")?);
    let rows = rows.as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
    let distances = distances.as_primitive::<Float32Type>();
    Ok(rows
        .values()
        .iter()
        .copied()
        .zip(distances.values().iter().copied())
        .filter(|(r, _)| *r != probe.row)
        .take(K)
        .collect())
}

/// Every row's id and embedding.
async fn vector_stream(
    entry: &IndexEntry,
    dataset: &Dataset,
) -> Result<lance::dataset::scanner::DatasetRecordBatchStream> {
    let mut scanner = dataset.scan();
    scanner.with_row_id();
    scanner
        .project(&[entry.column.as_str()])
        .map_err(|e| VitrineError::Plan(format!("measuring the index: {e}")))?
        .batch_size(4096);
    scanner
        .try_into_stream()
        .await
        .map_err(|e| VitrineError::Plan(format!("measuring the index: {e}")))
}

fn scan_error(entry: &IndexEntry) -> String {
    format!("reading the vectors of '{}'", entry.location)
}

/// A batch's row ids and its embeddings as f32.
fn rows_and_vectors(
    entry: &IndexEntry,
    batch: &RecordBatch,
) -> Result<(UInt64Array, FixedSizeListArray)> {
    let rows = batch
        .column_by_name("_rowid")
        .ok_or_else(|| VitrineError::Plan("measuring the index: no row ids".into()))?
        .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
        .clone();
    let column = batch
        .column_by_name(&entry.column)
        .ok_or_else(|| VitrineError::Plan(format!("the index lacks '{}'", entry.column)))?;
    let f32_list = DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, true)),
        entry.dimension as i32,
    );
    let vectors = cast(column, &f32_list)?.as_fixed_size_list().clone();
    Ok((rows, vectors))
}

fn vector_at(vectors: &FixedSizeListArray, i: usize) -> Vec<f32> {
    vectors
        .value(i)
        .as_primitive::<Float32Type>()
        .values()
        .to_vec()
}

/// Unit length for the cosine metric (so that its distance is one minus a dot product).
fn normalised(metric: Metric, mut vector: Vec<f32>) -> Vec<f32> {
    normalise(metric, &mut vector);
    vector
}

/// Smaller is nearer: squared distance for l2, minus the dot product otherwise (cosine on
/// normalised vectors).
fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    -nearness(metric, a, b)
}
