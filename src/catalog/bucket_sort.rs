//! Sorting a whole table's rows by a 64-bit key in bounded memory, for rewrites that reorder a
//! table (`OPTIMIZE … ZORDER BY`).
//!
//! The key's histogram (rows per key, read before) splits the key range into buckets of at most
//! a budget's worth of rows each. One pass over the rows sends each row to its bucket (the
//! input's partitions dealt side by side): the first bucket stays in memory, the others are
//! spilled to Arrow IPC files of the runtime's disk manager. Then each bucket in turn is read
//! back, sorted alone (a sort of `(key, batch, row)` triples, each output batch gathered as the
//! writer asks for it). There is no merge, each row is copied twice at most, and memory holds
//! one bucket and one output batch, where a sort of the whole table holds the whole table (or
//! spills it in runs and merges them back). The sorted buckets come back as a few contiguous
//! runs, one per writer, sorted at once (each bucket a share of the budget). A bucket of one key
//! needs no sort: it streams from its files in input order, however many rows the key holds.

use std::pin::Pin;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{interleave_record_batch, take_record_batch, BatchCoalescer};
use datafusion::arrow::datatypes::{SchemaRef, UInt64Type};
use datafusion::execution::disk_manager::RefCountedTempFile;
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{Stream, StreamExt, TryStreamExt};

use super::spill::{self, SpillWriter};
use crate::error::{Result, VitrineError};

/// The memory a bucket may take when the session sets no memory limit.
const UNBOUNDED_BUCKET_BYTES: usize = 256 << 20;

/// The share of a memory limit one bucket may take (the rest: the scan, the writer, the sort's
/// order and the output being gathered).
const LIMIT_SHARE_PER_BUCKET: usize = 8;

/// Rows per output batch.
const OUTPUT_ROWS: usize = 8192;

/// The bytes one bucket may hold in `runtime`: a share of its memory limit, or a fixed amount
/// when it has none.
pub fn bucket_budget(runtime: &RuntimeEnv) -> usize {
    match runtime.memory_pool.memory_limit() {
        MemoryLimit::Finite(limit) => (limit / LIMIT_SHARE_PER_BUCKET).max(64 << 10),
        MemoryLimit::Infinite | MemoryLimit::Unknown => UNBOUNDED_BUCKET_BYTES,
    }
}

/// Contiguous ranges of the key, each holding about a bucket's worth of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBuckets {
    /// The first key of every bucket after the first, ascending.
    starts: Vec<u64>,
    /// Whether each bucket holds rows of one key only (already in order as they come).
    one_key: Vec<bool>,
}

impl KeyBuckets {
    /// Splits the keys counted in `histogram` (key, rows; any order) into ranges of at most
    /// `rows_per_bucket` rows, except where one key alone holds more.
    pub fn from_histogram(mut histogram: Vec<(u64, u64)>, rows_per_bucket: u64) -> Self {
        histogram.sort_unstable();
        let mut starts = Vec::new();
        let mut keys_in_bucket = vec![0usize];
        let mut filled = 0u64;
        for (key, rows) in histogram {
            if filled > 0 && filled + rows > rows_per_bucket.max(1) {
                starts.push(key);
                keys_in_bucket.push(0);
                filled = 0;
            }
            filled += rows;
            *keys_in_bucket.last_mut().expect("one bucket at least") += 1;
        }
        let one_key = keys_in_bucket.into_iter().map(|keys| keys == 1).collect();
        Self { starts, one_key }
    }

    /// Splits the keys counted in `histogram` into ranges of at most `budget` bytes of rows,
    /// each row taking what a row of `sample` (a batch of the rows to sort) takes in memory.
    pub fn for_budget(histogram: Vec<(u64, u64)>, budget: usize, sample: &RecordBatch) -> Self {
        let row_bytes = match sample.num_rows() {
            0 => 1,
            rows => (sample.get_array_memory_size() / rows).max(1),
        };
        Self::from_histogram(histogram, (budget / row_bytes).max(1) as u64)
    }

    /// How many buckets there are.
    pub fn len(&self) -> usize {
        self.starts.len() + 1
    }

    /// The bucket `key` falls in.
    fn of(&self, key: u64) -> usize {
        self.starts.partition_point(|&start| start <= key)
    }
}

/// Where a bucket's rows wait to be sorted: in memory, or in spill files (one per input
/// stream that sent it rows), in input order.
#[derive(Default)]
struct Bucket {
    batches: Vec<RecordBatch>,
    files: Vec<RefCountedTempFile>,
    /// All its rows share one key: they need no sort, and are streamed as they were dealt
    /// (however many: one key may hold more rows than a bucket's budget).
    one_key: bool,
}

/// What one input stream sent to each bucket: the first bucket's rows in memory, every other
/// bucket's in a spill file of its own.
struct Dealt {
    first: Vec<RecordBatch>,
    spills: Vec<Option<RefCountedTempFile>>,
    rows: Vec<usize>,
}

/// Sorts the rows of `inputs` by their `UInt64` column `key` (ascending; rows with equal keys
/// in input order, the first input's before the second's), bucket by bucket: `histogram` (rows
/// per key) is split into buckets of at most `budget` bytes of rows in all (`budget / streams`
/// each: the streams sort at once), sized by the first batch (`KeyBuckets::for_budget`). The
/// inputs are dealt into buckets side by side, every bucket but the first spilled to files of
/// `runtime`'s disk manager. Reads every input before it returns. The rows come back without
/// the key column, in at most `streams` streams, each a contiguous run of buckets of about
/// equal rows: the first stream's rows, then the second's, … are the sorted rows.
pub async fn sort_by_key(
    inputs: Vec<SendableRecordBatchStream>,
    key: usize,
    histogram: Vec<(u64, u64)>,
    budget: usize,
    streams: usize,
    runtime: &Arc<RuntimeEnv>,
) -> Result<Vec<SendableRecordBatchStream>> {
    let Some(schema) = inputs.first().map(|input| input.schema()) else {
        return Err(VitrineError::Plan("nothing to sort".into()));
    };
    let mut output_fields = schema.fields().to_vec();
    output_fields.remove(key);
    let output_schema: SchemaRef =
        Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
            output_fields,
            schema.metadata().clone(),
        ));
    // The first batch of any input sizes a row; it goes back in front of its input.
    let mut inputs: Vec<_> = inputs.into_iter().map(|input| (None, input)).collect();
    let mut sample = None;
    for (first, input) in &mut inputs {
        if let Some(batch) = input.try_next().await? {
            sample = Some(batch.clone());
            *first = Some(batch);
            break;
        }
    }
    let Some(sample) = sample else {
        return Ok(vec![Box::pin(RecordBatchStreamAdapter::new(
            output_schema,
            futures::stream::empty(),
        ))]);
    };
    let streams = streams.max(1);
    let buckets = Arc::new(KeyBuckets::for_budget(histogram, budget / streams, &sample));
    drop(sample);
    let dealers = inputs.into_iter().map(|(first, input)| {
        let batches = futures::stream::iter(first.map(Ok)).chain(input);
        tokio::spawn(deal(
            Box::pin(batches),
            key,
            Arc::clone(&buckets),
            Arc::clone(&schema),
            Arc::clone(runtime),
        ))
    });
    let mut queue: Vec<Bucket> = buckets
        .one_key
        .iter()
        .map(|&one_key| Bucket {
            one_key,
            ..Bucket::default()
        })
        .collect();
    let mut rows = vec![0; buckets.len()];
    for dealt in futures::future::try_join_all(dealers)
        .await
        .map_err(|e| VitrineError::Plan(format!("dealing rows into buckets: {e}")))?
    {
        let dealt = dealt?;
        queue[0].batches.extend(dealt.first);
        for (bucket, file) in queue[1..].iter_mut().zip(dealt.spills) {
            bucket.files.extend(file);
        }
        for (total, dealt) in rows.iter_mut().zip(dealt.rows) {
            *total += dealt;
        }
    }
    tracing::debug!(
        buckets = buckets.len(),
        spill_files = queue.iter().map(|b| b.files.len()).sum::<usize>(),
        rows_in_memory = rows[0],
        rows = rows.iter().sum::<usize>(),
        "rows dealt into buckets"
    );
    // Buckets no row fell into are left out.
    let (queue, rows): (Vec<Bucket>, Vec<usize>) = queue
        .into_iter()
        .zip(rows)
        .filter(|(_, rows)| *rows > 0)
        .unzip();
    let mut queue = queue.into_iter();
    Ok(runs(&rows, streams)
        .into_iter()
        .map(|run| {
            let run: Vec<Bucket> = queue.by_ref().take(run).collect();
            sorted_stream(run, key, Arc::clone(&schema), Arc::clone(&output_schema))
        })
        .collect())
}

/// Sends each row of `input` to its bucket of `buckets`: the first bucket's rows are kept,
/// the others' written to spill files of `runtime` (opened as a bucket gets its first row).
async fn deal(
    mut input: Pin<Box<dyn Stream<Item = datafusion::error::Result<RecordBatch>> + Send>>,
    key: usize,
    buckets: Arc<KeyBuckets>,
    schema: SchemaRef,
    runtime: Arc<RuntimeEnv>,
) -> Result<Dealt> {
    let mut first = Vec::new();
    let mut spills: Vec<Option<SpillWriter>> = (1..buckets.len()).map(|_| None).collect();
    let mut bucket_rows = vec![0; buckets.len()];
    while let Some(batch) = input.try_next().await? {
        let keys = batch.column(key).as_primitive::<UInt64Type>();
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); buckets.len()];
        for (row, k) in keys.values().iter().enumerate() {
            rows_of[buckets.of(*k)].push(row as u32);
        }
        for (bucket, rows) in rows_of.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            bucket_rows[bucket] += rows.len();
            let part = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(&batch, &UInt32Array::from(rows))?
            };
            if bucket == 0 {
                first.push(part);
                continue;
            }
            let spill = match &mut spills[bucket - 1] {
                Some(spill) => spill,
                slot => slot.insert(SpillWriter::create(&runtime, &schema, "Z-order bucket")?),
            };
            spill.write(&part)?;
        }
    }
    let mut files = Vec::with_capacity(spills.len());
    for spill in spills {
        files.push(spill.map(SpillWriter::finish).transpose()?);
    }
    Ok(Dealt {
        first,
        spills: files,
        rows: bucket_rows,
    })
}

/// The rows of `buckets` (in key order) sorted by their column `key`, without it: each bucket
/// is read back and sorted as the one before has been yielded; a bucket of one key is streamed
/// from its files as it was dealt.
fn sorted_stream(
    buckets: Vec<Bucket>,
    key: usize,
    input_schema: SchemaRef,
    schema: SchemaRef,
) -> SendableRecordBatchStream {
    let sorted = futures::stream::iter(buckets)
        .then(move |bucket| {
            let input_schema = Arc::clone(&input_schema);
            async move {
                if bucket.one_key {
                    let Bucket { batches, files, .. } = bucket;
                    let in_memory = futures::stream::iter(batches.into_iter().map(Ok));
                    let spilled =
                        spill::stream(files, Arc::clone(&input_schema)).map_err(VitrineError::from);
                    let rows = gathered(in_memory.chain(spilled).boxed(), input_schema);
                    return Ok::<_, VitrineError>(rows.boxed());
                }
                let sorted = tokio::task::spawn_blocking(move || SortedBucket::of(bucket, key))
                    .await
                    .map_err(|e| VitrineError::Plan(format!("sorting a bucket of rows: {e}")))??;
                Ok(futures::stream::iter(sorted.into_batches()).boxed())
            }
        })
        .try_flatten()
        .map(
            move |batch: Result<RecordBatch>| -> datafusion::error::Result<RecordBatch> {
                let mut batch = batch?;
                batch.remove_column(key);
                Ok(batch)
            },
        );
    Box::pin(RecordBatchStreamAdapter::new(schema, sorted))
}

/// The rows of `input` in batches of [`OUTPUT_ROWS`] (the batches dealt into a bucket are a
/// bucket's share of each input batch, a few hundred rows).
fn gathered(
    input: futures::stream::BoxStream<'static, Result<RecordBatch>>,
    schema: SchemaRef,
) -> impl Stream<Item = Result<RecordBatch>> + Send {
    let gathering = BatchCoalescer::new(schema, OUTPUT_ROWS);
    futures::stream::unfold(Some((input, gathering)), |state| async move {
        let (mut input, mut gathering) = state?;
        loop {
            if let Some(batch) = gathering.next_completed_batch() {
                return Some((Ok(batch), Some((input, gathering))));
            }
            match input.next().await {
                Some(Ok(batch)) => {
                    if let Err(e) = gathering.push_batch(batch) {
                        return Some((Err(e.into()), None));
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None => {
                    if let Err(e) = gathering.finish_buffered_batch() {
                        return Some((Err(e.into()), None));
                    }
                    return gathering.next_completed_batch().map(|b| (Ok(b), None));
                }
            }
        }
    })
}

/// Cuts buckets holding `rows` rows each (in key order) into at most `streams` contiguous runs
/// of about equal rows; returns each run's number of buckets. A bucket goes to the run its
/// first row would fall in if the rows were cut evenly.
fn runs(rows: &[usize], streams: usize) -> Vec<usize> {
    let total = rows.iter().sum::<usize>().max(1);
    let mut runs: Vec<usize> = Vec::new();
    let (mut before, mut last) = (0, None);
    for bucket_rows in rows {
        let run = before * streams / total;
        if last == Some(run) {
            *runs.last_mut().expect("a run was started") += 1;
        } else {
            runs.push(1);
            last = Some(run);
        }
        before += bucket_rows;
    }
    runs
}

/// A bucket's rows and the order that sorts them by their key.
struct SortedBucket {
    batches: Vec<RecordBatch>,
    /// (key, batch, row) of every row, in output order.
    order: Vec<(u64, u32, u32)>,
}

impl SortedBucket {
    /// Reads `bucket` back (from its spill files if it has any) and sorts its rows by `key`.
    fn of(bucket: Bucket, key: usize) -> Result<Self> {
        let Bucket {
            mut batches, files, ..
        } = bucket;
        for file in files {
            batches.extend(spill::read(&file)?);
        }
        let mut order: Vec<(u64, u32, u32)> =
            Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
        for (b, batch) in batches.iter().enumerate() {
            let keys = batch.column(key).as_primitive::<UInt64Type>();
            order.extend(
                keys.values()
                    .iter()
                    .enumerate()
                    .map(|(row, k)| (*k, b as u32, row as u32)),
            );
        }
        order.sort_unstable();
        Ok(Self { batches, order })
    }

    /// The rows in order, in output batches (still with the key column), each gathered only
    /// when it is asked for, so the bucket is held once, not twice.
    fn into_batches(self) -> impl Iterator<Item = Result<RecordBatch>> {
        let Self { batches, order } = self;
        (0..order.len()).step_by(OUTPUT_ROWS).map(move |start| {
            let sources: Vec<&RecordBatch> = batches.iter().collect();
            let rows: Vec<(usize, usize)> = order[start..(start + OUTPUT_ROWS).min(order.len())]
                .iter()
                .map(|&(_, b, row)| (b as usize, row as usize))
                .collect();
            Ok(interleave_record_batch(&sources, &rows)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, UInt64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;

    #[test]
    fn buckets_split_the_histogram_into_ranges_of_at_most_the_rows_asked() {
        let buckets = KeyBuckets::from_histogram(vec![(9, 3), (1, 2), (4, 2), (7, 1)], 4);
        // Keys 1 and 4 fill the first bucket (4 rows), 7 and 9 the second.
        assert_eq!(buckets.starts, vec![7]);
        assert_eq!(
            (buckets.of(0), buckets.of(4), buckets.of(7), buckets.of(99)),
            (0, 0, 1, 1)
        );
        // A key holding more rows than a bucket gets a bucket of its own.
        let big = KeyBuckets::from_histogram(vec![(1, 1), (2, 10), (3, 1)], 4);
        assert_eq!(big.starts, vec![2, 3]);
        assert_eq!(big.one_key, vec![true, true, true]);
        assert_eq!(buckets.one_key, vec![false, false]);
        assert_eq!(KeyBuckets::from_histogram(vec![], 4).len(), 1);
    }

    #[test]
    fn runs_cut_buckets_into_contiguous_runs_of_about_equal_rows() {
        assert_eq!(runs(&[60, 60, 60, 60, 60], 2), vec![3, 2]);
        assert_eq!(runs(&[10, 10, 100, 10], 2), vec![3, 1]);
        assert_eq!(runs(&[5], 4), vec![1]);
        assert_eq!(runs(&[1, 1, 1, 1], 4), vec![1, 1, 1, 1]);
        assert_eq!(runs(&[0], 2), vec![1]);
    }

    #[tokio::test]
    async fn rows_come_out_sorted_by_key_across_spilled_buckets_in_input_order_for_ties() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("k", DataType::UInt64, false),
        ]));
        // 3 batches of 100 rows; keys 0..10 repeating, so ties span batches.
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                let v: Int64Array = (0..100).map(|r| b * 100 + r).collect();
                let k: UInt64Array = (0..100).map(|r| ((b * 100 + r) * 7 % 10) as u64).collect();
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(v), Arc::new(k)]).unwrap()
            })
            .collect();
        let histogram: Vec<(u64, u64)> = (0..10).map(|k| (k, 30)).collect();
        // A budget of 140 rows' worth, as the first batch sizes a row, for two streams: 70 rows
        // each, so two keys (60 rows) to a bucket.
        let budget = batches[0].get_array_memory_size() / 100 * 140;
        let buckets = KeyBuckets::for_budget(histogram.clone(), budget / 2, &batches[0]);
        assert_eq!(buckets.len(), 5, "{buckets:?}");
        // Two inputs dealt side by side: the first two batches, then the third.
        let input = |batches: &[RecordBatch]| -> SendableRecordBatchStream {
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&schema),
                futures::stream::iter(batches.iter().cloned().map(Ok).collect::<Vec<_>>()),
            ))
        };
        let inputs = vec![input(&batches[..2]), input(&batches[2..])];
        let runtime = Arc::new(RuntimeEnvBuilder::new().build().unwrap());
        let streams = sort_by_key(inputs, 1, histogram, budget, 2, &runtime)
            .await
            .unwrap();
        assert_eq!(streams.len(), 2);
        let mut sorted: Vec<RecordBatch> = Vec::new();
        for stream in streams {
            sorted.extend(stream.try_collect::<Vec<_>>().await.unwrap());
        }
        assert_eq!(
            sorted[0].schema().fields().len(),
            1,
            "the key column is dropped"
        );
        let got: Vec<i64> = sorted
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        let mut want: Vec<i64> = (0..300).collect();
        want.sort_by_key(|v| (v * 7 % 10, *v));
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_key_holding_more_rows_than_a_bucket_streams_in_input_order() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("k", DataType::UInt64, false),
        ]));
        // Key 1 holds 270 of the 300 rows; keys 0 and 2 hold 15 each.
        let key = |v: i64| match v % 20 {
            0 => 0,
            10 => 2,
            _ => 1,
        };
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                let v: Int64Array = (0..100).map(|r| b * 100 + r).collect();
                let k: UInt64Array = (0..100).map(|r| key(b * 100 + r)).collect();
                RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(v), Arc::new(k)]).unwrap()
            })
            .collect();
        let histogram = vec![(0, 15), (1, 270), (2, 15)];
        // A bucket of 20 rows' worth: key 1 gets a bucket of its own, spilled and streamed.
        let budget = batches[0].get_array_memory_size() / 100 * 20;
        let input = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(batches.into_iter().map(Ok).collect::<Vec<_>>()),
        ));
        let runtime = Arc::new(RuntimeEnvBuilder::new().build().unwrap());
        let streams = sort_by_key(vec![input], 1, histogram, budget, 1, &runtime)
            .await
            .unwrap();
        let mut got: Vec<i64> = Vec::new();
        for stream in streams {
            for batch in stream.try_collect::<Vec<_>>().await.unwrap() {
                got.extend(
                    batch
                        .column(0)
                        .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                        .values()
                        .iter(),
                );
            }
        }
        let mut want: Vec<i64> = (0..300).collect();
        want.sort_by_key(|v| (key(*v), *v));
        assert_eq!(got, want);
    }
}
