//! Query embeddings for the search service: concurrent text queries gathered into one model
//! call (up to a batch, or until the first has waited a few milliseconds), repeated queries
//! answered from a bounded cache, and photos embedded one upload at a time. At most
//! `embed_calls` text model calls run at once (one per core by default: a call of a small batch
//! keeps about one core busy): the queries arriving while they run wait for the next, so under
//! load the batches grow with the queries waiting (the model's best rate is at large batches)
//! instead of many small calls competing for the cores; and a batch waits for more texts up to
//! a share of the last call's time (an eighth by default), so that the clients the last call
//! answered join the next. The model runs on tokio's blocking threads, never on the threads
//! that answer requests.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, StringArray};
use datafusion::arrow::datatypes::Float32Type;
use tokio::sync::{mpsc, oneshot};

use super::metrics::EmbedderMetrics;
use crate::engine::EngineSession;
use crate::error::{Result, VitrineError};

/// One text waiting for its vector.
struct Pending {
    function: &'static str,
    text: String,
    reply: oneshot::Sender<Result<Arc<Vec<f32>>>>,
}

/// Embeds query texts and photos with the session's model functions.
pub struct QueryEmbedder {
    session: Arc<EngineSession>,
    queue: mpsc::Sender<Pending>,
    cache: moka::sync::Cache<(&'static str, String), Arc<Vec<f32>>>,
    metrics: EmbedderMetrics,
}

impl QueryEmbedder {
    /// An embedder calling `session`'s functions with up to `batch` texts at once in up to
    /// `calls` calls at a time, the first text of a batch waiting at most `wait` for the others
    /// or, when longer, the last call's time divided by `wait_share` (unless 0), and keeping
    /// `cached` recent query vectors; counting into `metrics`.
    pub fn new(
        session: Arc<EngineSession>,
        batch: usize,
        calls: usize,
        wait: Duration,
        wait_share: u32,
        cached: u64,
        metrics: EmbedderMetrics,
    ) -> Self {
        let (queue, waiting) = mpsc::channel(batch.max(1) * 64);
        let gathering = Gathering {
            session: Arc::clone(&session),
            batch: batch.max(1),
            wait,
            wait_share,
            calls: Arc::new(tokio::sync::Semaphore::new(calls.max(1))),
            metrics: metrics.clone(),
        };
        tokio::spawn(gathering.run(waiting));
        Self {
            session,
            queue,
            cache: moka::sync::Cache::new(cached),
            metrics,
        }
    }

    /// The vector of `text` by `function` (e.g. `clip_text_embed`).
    pub async fn text(&self, function: &'static str, text: &str) -> Result<Arc<Vec<f32>>> {
        let key = (function, text.to_string());
        if let Some(vector) = self.cache.get(&key) {
            self.metrics.cache_hits.inc();
            return Ok(vector);
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                function,
                text: text.to_string(),
                reply,
            })
            .await
            .map_err(|_| VitrineError::Plan("the query embedder has stopped".into()))?;
        let vector = answer
            .await
            .map_err(|_| VitrineError::Plan("the query embedder has stopped".into()))??;
        self.cache.insert(key, Arc::clone(&vector));
        Ok(vector)
    }

    /// The vector of an encoded photo by `function` (e.g. `clip_image_embed`).
    pub async fn image(&self, function: &'static str, bytes: Vec<u8>) -> Result<Vec<f32>> {
        let session = Arc::clone(&self.session);
        let values: ArrayRef = Arc::new(BinaryArray::from_vec(vec![bytes.as_slice()]));
        let mut vectors =
            tokio::task::spawn_blocking(move || vectors(session.call_function(function, values)?))
                .await
                .map_err(|e| VitrineError::Plan(format!("embedding the photo failed: {e}")))??;
        vectors
            .pop()
            .flatten()
            .ok_or_else(|| VitrineError::Plan("the photo could not be read".into()))
    }
}

/// What the task gathering texts into model calls needs.
struct Gathering {
    session: Arc<EngineSession>,
    batch: usize,
    wait: Duration,
    /// The last call's time divided by this is the longest a batch waits (0: `wait` only).
    wait_share: u32,
    /// One permit per model call that may run at once.
    calls: Arc<tokio::sync::Semaphore>,
    metrics: EmbedderMetrics,
}

impl Gathering {
    /// Takes texts off the queue in batches and answers each. A batch is gathered only when a
    /// model call may start: what queued while every call was running is taken at once (up to
    /// the batch) for the next.
    async fn run(self, mut waiting: mpsc::Receiver<Pending>) {
        let last_call = Arc::new(std::sync::Mutex::new(Duration::ZERO));
        loop {
            let Ok(permit) = Arc::clone(&self.calls).acquire_owned().await else {
                return;
            };
            let Some(first) = waiting.recv().await else {
                return;
            };
            let wait = {
                let last = *last_call.lock().expect("last call lock");
                match self.wait_share {
                    0 => self.wait,
                    share => self.wait.max(last / share),
                }
            };
            let deadline = tokio::time::Instant::now() + wait;
            let mut taken = vec![first];
            while taken.len() < self.batch {
                match waiting.try_recv() {
                    Ok(next) => {
                        taken.push(next);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
                match tokio::time::timeout_at(deadline, waiting.recv()).await {
                    Ok(Some(next)) => taken.push(next),
                    Ok(None) | Err(_) => break,
                }
            }
            let (session, metrics, last_call) = (
                Arc::clone(&self.session),
                self.metrics.clone(),
                Arc::clone(&last_call),
            );
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                embed(&session, &metrics, taken).await;
                *last_call.lock().expect("last call lock") = started.elapsed();
                drop(permit);
            });
        }
    }
}

/// Embeds the texts taken, one model call per function in turn, and answers each.
async fn embed(session: &Arc<EngineSession>, metrics: &EmbedderMetrics, mut taken: Vec<Pending>) {
    let mut functions: Vec<&'static str> = taken.iter().map(|p| p.function).collect();
    functions.sort_unstable();
    functions.dedup();
    for function in functions {
        let (these, rest): (Vec<Pending>, Vec<Pending>) =
            taken.into_iter().partition(|p| p.function == function);
        taken = rest;
        metrics.batch_sizes.observe(these.len() as f64);
        let session = Arc::clone(session);
        let texts: ArrayRef = Arc::new(StringArray::from_iter_values(
            these.iter().map(|p| p.text.as_str()),
        ));
        let started = std::time::Instant::now();
        let embedded =
            tokio::task::spawn_blocking(move || vectors(session.call_function(function, texts)?))
                .await
                .map_err(|e| VitrineError::Plan(format!("embedding queries failed: {e}")))
                .and_then(|r| r);
        metrics
            .call_seconds
            .observe(started.elapsed().as_secs_f64());
        match embedded {
            Ok(vectors) => {
                for (pending, vector) in these.into_iter().zip(vectors) {
                    let answer = vector.map(Arc::new).ok_or_else(|| {
                        VitrineError::Plan("the query could not be embedded".into())
                    });
                    let _ = pending.reply.send(answer);
                }
            }
            Err(e) => {
                let message = e.to_string();
                for pending in these {
                    let _ = pending.reply.send(Err(VitrineError::Plan(message.clone())));
                }
            }
        }
    }
}

/// The rows of a list-of-float column (NULL where a row could not be embedded).
fn vectors(column: ArrayRef) -> Result<Vec<Option<Vec<f32>>>> {
    let list = match column.data_type() {
        datafusion::arrow::datatypes::DataType::List(_) => column.as_list::<i32>().clone(),
        datafusion::arrow::datatypes::DataType::FixedSizeList(_, _) => {
            let cast = datafusion::arrow::compute::cast(
                &column,
                &datafusion::arrow::datatypes::DataType::List(Arc::new(
                    datafusion::arrow::datatypes::Field::new_list_field(
                        datafusion::arrow::datatypes::DataType::Float32,
                        true,
                    ),
                )),
            )?;
            cast.as_list::<i32>().clone()
        }
        other => {
            return Err(VitrineError::Plan(format!(
                "a query embedding function returned {other}, not vectors"
            )))
        }
    };
    Ok((0..list.len())
        .map(|row| {
            (!list.is_null(row)).then(|| {
                let values = list.value(row);
                values.as_primitive::<Float32Type>().values().to_vec()
            })
        })
        .collect())
}
