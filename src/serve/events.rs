//! The search service's event log: every search and every click, add-to-cart and purchase is
//! appended to a local write-ahead log and fsynced before the request is answered (concurrent
//! requests share one fsync), then committed in batches into the events table, one row per
//! search with the plan's Step 10 columns (its events folded into the row).
//!
//! A search stays open for events for `window` after it ran; its row is always rewritten whole
//! from every record of it in the log, so committing it again (after a crash, on replay) gives
//! the same row. The log is a series of segments (`events-<n>.wal`, one JSON record per line);
//! a new one starts at each commit, and a segment is removed once every search it mentions is
//! closed and committed. At start the segments left are replayed, so every acknowledged event
//! reaches the table exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, Float32Builder, Int32Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::engine::EngineSession;
use crate::error::{Result, ResultExt, VitrineError};
use crate::session::Session as _;

/// What a user did with a search's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Opened a product.
    Click,
    /// Put it in the cart.
    AddToCart,
    /// Bought it.
    Purchase,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// A search was answered.
    Search {
        /// Its id, the table's `event_id`.
        search_id: String,
        /// When it ran (µs since the epoch, UTC).
        at: i64,
        /// Who searched, if known.
        user_id: Option<String>,
        /// The query text (none for image and vector searches).
        query: Option<String>,
        /// `baseline` or `enriched`.
        variant: String,
        /// The products shown, best first.
        results_shown: Vec<i64>,
    },
    /// A user acted on a product a search showed.
    Event {
        /// The search the product was shown by.
        search_id: String,
        /// What happened.
        kind: EventKind,
        /// The product.
        product_id: i64,
        /// When (µs since the epoch, UTC).
        at: i64,
    },
}

impl Record {
    fn search_id(&self) -> &str {
        match self {
            Self::Search { search_id, .. } | Self::Event { search_id, .. } => search_id,
        }
    }

    fn at(&self) -> i64 {
        match self {
            Self::Search { at, .. } | Self::Event { at, .. } => *at,
        }
    }
}

/// Why an event was not logged.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// No open search has this id.
    #[error("search_id '{0}' is unknown or its window for events has closed")]
    UnknownSearch(String),
    /// The search did not show this product.
    #[error("product_id {product} was not shown by search '{search}'")]
    NotShown {
        /// The search.
        search: String,
        /// The product.
        product: i64,
    },
    /// The time given is before the search or in the future.
    #[error("at: {0}")]
    BadTime(String),
    /// The log could not be written: nothing was acknowledged.
    #[error("the event log could not be written: {0}")]
    Unavailable(String),
}

/// A search and what happened to it, as the log says.
#[derive(Debug, Clone)]
struct SearchState {
    search: Record,
    events: Vec<(EventKind, i64, i64)>,
    /// Changed since its row was last committed.
    dirty: bool,
    /// The table may hold a row for it (a commit was tried, or it was replayed from a log a
    /// crashed service may have committed): its row must be upserted. A search never tried is
    /// certainly absent, so its row is simply appended, with no key lookup.
    stored: bool,
    /// Bumped at each change, so a commit knows whether a row changed while it ran.
    version: u64,
}

/// What the log knows: open (and not yet committed) searches, and the segments' contents.
#[derive(Default)]
struct Ledger {
    searches: HashMap<String, SearchState>,
    /// Segment number → the newest record time in it and the searches it mentions.
    segments: BTreeMap<u64, (i64, HashSet<String>)>,
    /// The segment being written.
    current: u64,
}

/// A request to the writer thread.
enum WriterRequest {
    Append(Vec<String>, oneshot::Sender<std::io::Result<()>>),
    /// Starts segment `number` unless the current one is empty and whole; answers whether it did.
    Rotate(u64, oneshot::Sender<std::io::Result<bool>>),
}

/// The log, its writer thread and what it knows.
pub struct EventLog {
    dir: PathBuf,
    window: Duration,
    writer: std::sync::mpsc::Sender<WriterRequest>,
    ledger: Arc<Mutex<Ledger>>,
    /// Held (locked) for as long as the log is open: one service per log folder.
    _lock: File,
}

/// The events table's columns: the plan's Step 10 `CREATE TABLE`.
pub const EVENTS_TABLE_COLUMNS: &str = "event_id STRING, timestamp TIMESTAMP, user_id STRING, \
     query STRING, variant STRING, results_shown ARRAY<INT>, clicked_product_ids ARRAY<INT>, \
     added_to_cart ARRAY<INT>, purchased ARRAY<INT>, time_to_first_click FLOAT";

/// The most searches one upsert into the events table carries.
const COMMIT_SLICE_ROWS: usize = 20_000;

/// The name of the events table's B-tree index on `event_id`, the key commits upsert on.
pub const EVENTS_KEY_INDEX: &str = "search_events_event_id";

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("events-{number:010}.wal"))
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

impl EventLog {
    /// Opens the log in `dir` (created if needed), replays what it holds, and starts its
    /// writer on a new segment; every replayed search is committed at the next commit.
    /// Returns the log and the number of records replayed.
    pub fn open(dir: &Path, window: Duration) -> Result<(Self, usize)> {
        std::fs::create_dir_all(dir)
            .context(|| format!("creating the event log folder '{}'", dir.display()))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .context(|| format!("opening '{}'", lock_path.display()))?;
        if lock.try_lock().is_err() {
            return Err(VitrineError::Plan(format!(
                "the event log '{}' is in use by another vitrine serve: give each service its \
                 own events.log_dir (or warehouse)",
                dir.display()
            )));
        }
        let mut ledger = Ledger::default();
        let mut numbers: Vec<u64> = std::fs::read_dir(dir)
            .context(|| format!("reading the event log folder '{}'", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("events-")?
                    .strip_suffix(".wal")?
                    .parse()
                    .ok()
            })
            .collect();
        numbers.sort_unstable();
        let mut replayed = 0;
        for &number in &numbers {
            let path = segment_path(dir, number);
            let file = File::open(&path).context(|| format!("reading '{}'", path.display()))?;
            let lines: Vec<String> = BufReader::new(file)
                .lines()
                .collect::<std::io::Result<_>>()
                .context(|| format!("reading '{}'", path.display()))?;
            for (i, line) in lines.iter().enumerate() {
                match serde_json::from_str::<Record>(line) {
                    Ok(record) => {
                        ledger.apply(number, record);
                        replayed += 1;
                    }
                    // The last line of a segment may be cut short by a crash mid-write; it was
                    // never acknowledged.
                    Err(_) if i + 1 == lines.len() => {}
                    Err(e) => {
                        return Err(VitrineError::Plan(format!(
                            "the event log '{}' line {}: {e}",
                            path.display(),
                            i + 1
                        )))
                    }
                }
            }
            ledger.segments.entry(number).or_default();
        }
        for state in ledger.searches.values_mut() {
            state.dirty = true;
            state.stored = true;
        }
        ledger.current = numbers.last().map_or(1, |n| n + 1);
        let segment = open_segment(dir, ledger.current)?;
        ledger.segments.entry(ledger.current).or_default();
        let (writer, requests) = std::sync::mpsc::channel();
        let folder = dir.to_path_buf();
        std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || write_loop(folder, segment, requests))
            .context(|| "starting the event log writer".to_string())?;
        Ok((
            Self {
                dir: dir.to_path_buf(),
                window,
                writer,
                ledger: Arc::new(Mutex::new(ledger)),
                _lock: lock,
            },
            replayed,
        ))
    }

    /// Sends the writer thread a request and waits for its answer; `None` when it has stopped.
    async fn ask_writer<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<std::io::Result<T>>) -> WriterRequest,
    ) -> Option<std::io::Result<T>> {
        let (done, answered) = oneshot::channel();
        self.writer.send(request(done)).ok()?;
        answered.await.ok()
    }

    /// Appends a record to the log, waits until it is on disk, then takes it into account.
    async fn log(&self, record: Record) -> std::result::Result<(), EventError> {
        let line = serde_json::to_string(&record).expect("records serialise");
        self.ask_writer(|done| WriterRequest::Append(vec![line], done))
            .await
            .ok_or_else(|| EventError::Unavailable("the writer has stopped".into()))?
            .map_err(|e| EventError::Unavailable(e.to_string()))?;
        let mut ledger = self.ledger.lock().expect("ledger lock");
        let current = ledger.current;
        ledger.apply(current, record);
        Ok(())
    }

    /// Logs a search; once this returns, the search is durable.
    pub async fn search(&self, record: Record) -> std::result::Result<(), EventError> {
        self.log(record).await
    }

    /// Logs an event on an open search's product; once this returns, the event is durable.
    pub async fn event(
        &self,
        search_id: &str,
        kind: EventKind,
        product_id: i64,
        at: Option<DateTime<Utc>>,
    ) -> std::result::Result<(), EventError> {
        let now = now_micros();
        let at = at.map_or(now, |t| t.timestamp_micros());
        {
            let ledger = self.ledger.lock().expect("ledger lock");
            let open = ledger
                .searches
                .get(search_id)
                .filter(|s| s.search.at() + self.window_micros() >= now)
                .ok_or_else(|| EventError::UnknownSearch(search_id.to_string()))?;
            let Record::Search {
                results_shown,
                at: searched,
                ..
            } = &open.search
            else {
                unreachable!("a search state holds its search");
            };
            if !results_shown.contains(&product_id) {
                return Err(EventError::NotShown {
                    search: search_id.to_string(),
                    product: product_id,
                });
            }
            if at < *searched || at > now + 60_000_000 {
                return Err(EventError::BadTime(
                    "must be after the search and not in the future".into(),
                ));
            }
        }
        self.log(Record::Event {
            search_id: search_id.to_string(),
            kind,
            product_id,
            at,
        })
        .await
    }

    fn window_micros(&self) -> i64 {
        self.window.as_micros() as i64
    }

    /// Searches whose rows changed since they were last committed.
    pub fn pending(&self) -> usize {
        let ledger = self.ledger.lock().expect("ledger lock");
        ledger.searches.values().filter(|s| s.dirty).count()
    }

    /// Commits every changed search's row into `table` through `session`: searches never
    /// committed are appended, the others upserted on `event_id`. Then starts a new segment,
    /// forgets closed searches and removes the segments no longer needed. Returns the rows
    /// committed.
    pub async fn commit(&self, session: &EngineSession, table: &str) -> Result<usize> {
        let (fresh, known) = {
            let ledger = self.ledger.lock().expect("ledger lock");
            let (stored, absent): (Vec<&SearchState>, Vec<&SearchState>) = ledger
                .searches
                .values()
                .filter(|s| s.dirty)
                .partition(|s| s.stored);
            (Pending::of(&absent)?, Pending::of(&stored)?)
        };
        // A new segment first: every record of the rows being committed is in the older ones.
        // An empty segment holds none, so it stays the current one.
        let next = self.ledger.lock().expect("ledger lock").current + 1;
        let rotated = self
            .ask_writer(|done| WriterRequest::Rotate(next, done))
            .await
            .ok_or_else(|| VitrineError::Plan("the event log writer has stopped".into()))?
            .context(|| "starting a new event log segment".to_string())?;
        if rotated {
            let mut ledger = self.ledger.lock().expect("ledger lock");
            ledger.current = next;
            ledger.segments.entry(next).or_default();
        }
        // In slices, so that a long backlog (a restart replaying hours of log) writes in
        // bounded memory; a failed slice leaves its searches pending, and upserting the slices
        // before it again changes nothing. An append that fails may still have reached the
        // table, so its searches are upserted from then on.
        let committed = fresh.rows() + known.rows();
        for (slice, versions) in fresh.slices {
            let appended = append(session, table, slice).await;
            self.ledger
                .lock()
                .expect("ledger lock")
                .mark_stored(&versions, appended.is_ok());
            appended?;
        }
        for (slice, versions) in known.slices {
            merge(session, table, slice).await?;
            self.ledger
                .lock()
                .expect("ledger lock")
                .mark_stored(&versions, true);
        }
        let closed_before = now_micros() - self.window_micros();
        let mut ledger = self.ledger.lock().expect("ledger lock");
        ledger
            .searches
            .retain(|_, s| s.dirty || s.search.at() >= closed_before);
        let current = ledger.current;
        let removable: Vec<u64> = ledger
            .segments
            .iter()
            .filter(|(number, (newest, ids))| {
                **number < current
                    && *newest < closed_before
                    && ids.iter().all(|id| !ledger.searches.contains_key(id))
            })
            .map(|(number, _)| *number)
            .collect();
        for number in removable {
            let path = segment_path(&self.dir, number);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    ledger.segments.remove(&number);
                }
                Err(e) => tracing::warn!("removing '{}': {e}", path.display()),
            }
        }
        Ok(committed)
    }
}

/// The rows of changed searches, in slices, each with the versions of the searches it holds.
struct Pending {
    slices: Vec<(RecordBatch, Vec<(String, u64)>)>,
}

impl Pending {
    /// The rows of `searches`, as they are now, in slices of at most [`COMMIT_SLICE_ROWS`].
    fn of(searches: &[&SearchState]) -> Result<Self> {
        // Each slice its own batch: a zero-copy slice of one big batch would still count
        // (and be accounted by the join) as the whole batch's buffers.
        let slices = searches
            .chunks(COMMIT_SLICE_ROWS)
            .map(|chunk| {
                let versions = chunk
                    .iter()
                    .map(|s| (s.search.search_id().to_string(), s.version))
                    .collect();
                Ok((rows_of(chunk)?, versions))
            })
            .collect::<Result<_>>()?;
        Ok(Self { slices })
    }

    fn rows(&self) -> usize {
        self.slices.iter().map(|(rows, _)| rows.num_rows()).sum()
    }
}

impl Ledger {
    /// After a write of the searches at `versions`: each may now have a row in the table, and
    /// is clean when the write `succeeded` and it has not changed since.
    fn mark_stored(&mut self, versions: &[(String, u64)], succeeded: bool) {
        for (id, version) in versions {
            if let Some(state) = self.searches.get_mut(id) {
                state.stored = true;
                if succeeded && state.version == *version {
                    state.dirty = false;
                }
            }
        }
    }

    /// Takes one record of segment `segment` into account.
    fn apply(&mut self, segment: u64, record: Record) {
        let id = record.search_id().to_string();
        let at = record.at();
        let entry = self.segments.entry(segment).or_default();
        entry.0 = entry.0.max(at);
        entry.1.insert(id.clone());
        match record {
            Record::Search { .. } => {
                let state = self.searches.entry(id).or_insert_with(|| SearchState {
                    search: record.clone(),
                    events: Vec::new(),
                    dirty: true,
                    stored: false,
                    version: 0,
                });
                state.search = record;
                state.dirty = true;
                state.version += 1;
            }
            Record::Event {
                kind,
                product_id,
                at,
                ..
            } => {
                // An event whose search is gone was committed with it before its segment went.
                if let Some(state) = self.searches.get_mut(&id) {
                    state.events.push((kind, product_id, at));
                    state.dirty = true;
                    state.version += 1;
                }
            }
        }
    }
}

fn open_segment(dir: &Path, number: u64) -> Result<Segment> {
    Segment::open(dir, number).context(|| {
        format!(
            "opening the event log segment '{}'",
            segment_path(dir, number).display()
        )
    })
}

/// The segment the writer thread appends to.
struct Segment {
    file: File,
    /// Bytes of whole records written to the file.
    length: u64,
    /// Bytes fsynced: a failed write or fsync cuts the file back to this length, so that records
    /// never acknowledged are not replayed.
    synced: u64,
    /// Set when a failure could not be cut back, so the segment may end in part of a record:
    /// nothing more is appended to it (a record after the fragment would be unreadable at
    /// replay), and appends fail until the next segment.
    torn: bool,
}

impl Segment {
    /// Opens (or creates) segment `number` of the log in `dir`, to append to.
    fn open(dir: &Path, number: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, number))?;
        let length = file.metadata()?.len();
        Ok(Self {
            file,
            length,
            synced: length,
            torn: false,
        })
    }

    /// Writes `lines` at the end of the segment.
    fn append(&mut self, lines: &[String]) -> std::io::Result<()> {
        if self.torn {
            return Err(std::io::Error::other(
                "an earlier write to this event log segment failed; waiting for the next segment",
            ));
        }
        let mut text = lines.join("\n");
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        self.length += text.len() as u64;
        Ok(())
    }

    /// Fsyncs what was appended, or, after `failed` (a failed append) or a failed fsync, cuts
    /// the segment back to what was last fsynced.
    fn sync(&mut self, failed: Option<std::io::Error>) -> std::io::Result<()> {
        let result = match failed {
            Some(e) => Err(e),
            None => self.file.sync_data(),
        };
        match result {
            Ok(()) => self.synced = self.length,
            Err(_) => {
                if self.file.set_len(self.synced).is_err() {
                    self.torn = true;
                }
                self.length = self.synced;
            }
        }
        result
    }
}

/// The writer thread: takes every request waiting, writes them, fsyncs once, answers all. An
/// append is answered `Ok` only once it is written and fsynced; a failed write or fsync (a full
/// disk) answers its batch with the error and leaves the segment as it was.
fn write_loop(
    dir: PathBuf,
    mut segment: Segment,
    requests: std::sync::mpsc::Receiver<WriterRequest>,
) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        batch.extend(requests.try_iter());
        let mut waiting = Vec::new();
        let mut failed: Option<std::io::Error> = None;
        for request in batch {
            match request {
                WriterRequest::Append(lines, done) => {
                    if failed.is_none() {
                        failed = segment.append(&lines).err();
                    }
                    waiting.push(done);
                }
                WriterRequest::Rotate(number, done) => {
                    // The appends before the rotation are answered by this segment's fsync;
                    // the next segment starts whatever that fsync says.
                    flush(&mut segment, &mut failed, &mut waiting);
                    if segment.length == 0 && !segment.torn {
                        let _ = done.send(Ok(false));
                        continue;
                    }
                    let _ = done.send(Segment::open(&dir, number).map(|next| {
                        segment = next;
                        true
                    }));
                }
            }
        }
        flush(&mut segment, &mut failed, &mut waiting);
    }
}

/// Fsyncs what was written and answers the requests waiting on it.
fn flush(
    segment: &mut Segment,
    failed: &mut Option<std::io::Error>,
    waiting: &mut Vec<oneshot::Sender<std::io::Result<()>>>,
) {
    if waiting.is_empty() && failed.is_none() {
        return;
    }
    let result = segment.sync(failed.take());
    for done in waiting.drain(..) {
        let _ = done.send(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        });
    }
}

/// The table's rows for `searches`.
fn rows_of(searches: &[&SearchState]) -> Result<RecordBatch> {
    let ids = || ListBuilder::new(Int32Builder::new());
    let (mut event_id, mut user, mut query, mut variant) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut timestamp = TimestampMicrosecondBuilder::new();
    let (mut shown, mut clicked, mut carted, mut bought) = (ids(), ids(), ids(), ids());
    let mut first_click = Float32Builder::new();
    for state in searches {
        let Record::Search {
            search_id,
            at,
            user_id,
            query: text,
            variant: arm,
            results_shown,
        } = &state.search
        else {
            continue;
        };
        event_id.append_value(search_id);
        timestamp.append_value(*at);
        user.append_option(user_id.as_deref());
        query.append_option(text.as_deref());
        variant.append_value(arm);
        shown.append_value(results_shown.iter().map(|p| Some(*p as i32)));
        for (list, wanted) in [
            (&mut clicked, EventKind::Click),
            (&mut carted, EventKind::AddToCart),
            (&mut bought, EventKind::Purchase),
        ] {
            list.append_value(
                state
                    .events
                    .iter()
                    .filter(|(kind, _, _)| *kind == wanted)
                    .map(|(_, product, _)| Some(*product as i32)),
            );
        }
        let first = state
            .events
            .iter()
            .filter(|(kind, _, _)| *kind == EventKind::Click)
            .map(|(_, _, when)| *when)
            .min();
        first_click.append_option(first.map(|when| (when - at) as f32 / 1e6));
    }
    let list = || DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("query", DataType::Utf8, true),
        Field::new("variant", DataType::Utf8, true),
        Field::new("results_shown", list(), true),
        Field::new("clicked_product_ids", list(), true),
        Field::new("added_to_cart", list(), true),
        Field::new("purchased", list(), true),
        Field::new("time_to_first_click", DataType::Float32, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(event_id.finish()),
        Arc::new(timestamp.finish().with_timezone("UTC")),
        Arc::new(user.finish()),
        Arc::new(query.finish()),
        Arc::new(variant.finish()),
        Arc::new(shown.finish()),
        Arc::new(clicked.finish()),
        Arc::new(carted.finish()),
        Arc::new(bought.finish()),
        Arc::new(first_click.finish()),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The name the rows being committed take in the committing session.
const PENDING: &str = "vitrine_serve_pending_events";

/// Upserts `rows` into `table` by `event_id`.
async fn merge(session: &EngineSession, table: &str, rows: RecordBatch) -> Result<()> {
    write_pending(
        session,
        rows,
        &format!(
            "MERGE INTO {table} AS t USING {PENDING} AS s ON t.event_id = s.event_id \
             WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        ),
    )
    .await
}

/// Appends `rows`, none of whose `event_id`s is in `table`.
async fn append(session: &EngineSession, table: &str, rows: RecordBatch) -> Result<()> {
    write_pending(
        session,
        rows,
        &format!("INSERT INTO {table} SELECT * FROM {PENDING}"),
    )
    .await
}

/// Runs `statement` with `rows` registered as the pending rows, and unregisters them.
async fn write_pending(session: &EngineSession, rows: RecordBatch, statement: &str) -> Result<()> {
    let context = session.datafusion();
    context.deregister_table(PENDING)?;
    context.register_batch(PENDING, rows)?;
    let written = session.execute(statement).await;
    context.deregister_table(PENDING)?;
    written.map(|_| ())
}
