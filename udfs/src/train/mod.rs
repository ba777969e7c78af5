//! Training models on the rows of a query (`CREATE MODEL … AS SELECT`): the options every kind
//! takes, the loop they share (seeded shuffles, batches, AdamW, a held-out evaluation per epoch,
//! a checkpoint per epoch that an interrupted run resumes from), and what a run reports.
//!
//! A kind trains by implementing [`ModelKind::train`](crate::kind::ModelKind::train): it turns
//! the rows into examples and a network implementing [`Trainable`], and calls [`fit`].

pub mod checkpoint;
pub mod lora;
pub mod optimizer;
pub mod tokenizer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Tensor, Var};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use self::optimizer::{AdamW, AdamWSettings};
use crate::context::FunctionContext;
use crate::runtime::source::ModelSource;
use crate::runtime::subnormals;
use crate::ModelError;

/// The options every kind takes, with their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingOptions {
    /// Passes over the training rows.
    pub epochs: usize,
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Share of the rows held out to measure the evaluation loss after each epoch.
    pub eval_fraction: f64,
    /// Seeds the split, the shuffles and any new weights.
    pub seed: u64,
    /// How the learning rate moves over the steps after the warm-up.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    /// Share of the steps over which the learning rate rises linearly from 0 first.
    #[serde(default)]
    pub warmup_fraction: f64,
}

/// The learning rate over the run, as transformers' schedulers of the same names move it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// `learning_rate` throughout.
    #[default]
    Constant,
    /// Down in a straight line to 0 at the last step.
    Linear,
    /// Down along half a cosine to 0 at the last step.
    Cosine,
}

impl LrSchedule {
    /// The option's value that names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Linear => "linear",
            Self::Cosine => "cosine",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "constant" => Some(Self::Constant),
            "linear" => Some(Self::Linear),
            "cosine" => Some(Self::Cosine),
            _ => None,
        }
    }
}

impl Default for TrainingOptions {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 16,
            learning_rate: 1e-4,
            weight_decay: 0.01,
            eval_fraction: 0.1,
            seed: 42,
            lr_schedule: LrSchedule::Constant,
            warmup_fraction: 0.0,
        }
    }
}

/// The generic options' names.
const GENERIC: [&str; 8] = [
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "eval_fraction",
    "seed",
    "lr_schedule",
    "warmup_fraction",
];

impl TrainingOptions {
    /// Takes the generic options out of `options` (names lower-case); what remains is the
    /// kind's.
    pub fn take(options: &mut BTreeMap<String, String>) -> Result<Self, ModelError> {
        let mut parsed = Self::default();
        for name in GENERIC {
            let Some(value) = options.remove(name) else {
                continue;
            };
            let bad = |what: &str| {
                ModelError::Config(format!("option {name} takes {what}, got '{value}'"))
            };
            let fraction = || {
                value
                    .parse()
                    .ok()
                    .filter(|f: &f64| (0.0..1.0).contains(f))
                    .ok_or_else(|| bad("a number in [0, 1)"))
            };
            match name {
                "epochs" => parsed.epochs = value.parse().map_err(|_| bad("a whole number"))?,
                "batch_size" => {
                    parsed.batch_size = value
                        .parse()
                        .ok()
                        .filter(|b| *b > 0)
                        .ok_or_else(|| bad("a whole number above 0"))?
                }
                "learning_rate" => {
                    parsed.learning_rate = value
                        .parse()
                        .ok()
                        .filter(|r: &f64| *r > 0.0)
                        .ok_or_else(|| bad("a number above 0"))?
                }
                "weight_decay" => {
                    parsed.weight_decay = value
                        .parse()
                        .ok()
                        .filter(|r: &f64| *r >= 0.0)
                        .ok_or_else(|| bad("a number of at least 0"))?
                }
                "eval_fraction" => parsed.eval_fraction = fraction()?,
                "lr_schedule" => {
                    parsed.lr_schedule = LrSchedule::parse(&value)
                        .ok_or_else(|| bad("'constant', 'linear' or 'cosine'"))?
                }
                "warmup_fraction" => parsed.warmup_fraction = fraction()?,
                _ => parsed.seed = value.parse().map_err(|_| bad("a whole number"))?,
            }
        }
        Ok(parsed)
    }

    /// Whether `name` is one of the options every kind takes.
    pub fn owns(name: &str) -> bool {
        GENERIC.contains(&name)
    }

    /// The learning rate of the step after `done` of `steps` (transformers' warm-up, then
    /// the schedule's decay; the first step of a run without warm-up takes the full rate).
    pub fn learning_rate_at(&self, done: u64, steps: u64) -> f64 {
        let warmup = (self.warmup_fraction * steps as f64).round() as u64;
        if done < warmup {
            return self.learning_rate * done as f64 / warmup as f64;
        }
        let progress = (done - warmup) as f64 / steps.saturating_sub(warmup).max(1) as f64;
        let factor = match self.lr_schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Linear => (1.0 - progress).max(0.0),
            LrSchedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        };
        self.learning_rate * factor
    }

    fn adamw(&self) -> AdamWSettings {
        AdamWSettings {
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            ..AdamWSettings::default()
        }
    }
}

/// Takes the whole number above 0 named `name` out of `options`, `default` when absent.
pub fn take_count(
    options: &mut BTreeMap<String, String>,
    name: &str,
    default: usize,
) -> Result<usize, ModelError> {
    match options.remove(name) {
        None => Ok(default),
        Some(v) => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            ModelError::Config(format!(
                "option {name} takes a whole number above 0, got '{v}'"
            ))
        }),
    }
}

/// Fails when a kind left options it does not know.
pub fn no_options_left(kind: &str, options: &BTreeMap<String, String>) -> Result<(), ModelError> {
    match options.keys().next() {
        None => Ok(()),
        Some(name) => Err(ModelError::Config(format!(
            "model_type '{kind}' has no option '{name}' (generic options: {})",
            GENERIC.join(", ")
        ))),
    }
}

/// What one `CREATE MODEL` asks of a kind.
pub struct TrainingJob<'a> {
    /// The options besides `model_type` and `base`, names lower-case.
    pub options: BTreeMap<String, String>,
    /// The model to start from; none to train from scratch.
    pub base: Option<ModelSource>,
    /// The rows of the query.
    pub rows: Vec<RecordBatch>,
    /// The empty folder to write the model into (the Hugging Face layout the kind loads).
    pub output: PathBuf,
    /// A folder kept between attempts, for checkpoints.
    pub checkpoints: PathBuf,
    /// Reads image locations; gives the session's device and precision.
    pub context: &'a FunctionContext,
    /// Told after every step; an error stops the run (its last checkpoint stays).
    pub progress: &'a Progress<'a>,
}

/// Told after every step of a run; an error stops it.
pub type Progress<'a> = dyn Fn(&TrainingProgress) -> Result<(), ModelError> + Sync + 'a;

/// Where a run is, for a progress bar.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingProgress {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Of this many.
    pub epochs: usize,
    /// Steps done over the whole run.
    pub step: u64,
    /// Steps of the whole run.
    pub steps: u64,
    /// The last batch's loss.
    pub loss: f64,
    /// Seconds since the run (or its resumption) began.
    pub elapsed: f64,
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// From 1.
    pub epoch: usize,
    /// Mean loss of the epoch's batches.
    pub train_loss: f64,
    /// Mean loss on the held-out rows after the epoch, when some are held out.
    pub eval_loss: Option<f64>,
    /// Seconds the epoch took.
    pub seconds: f64,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// The options it ran with.
    pub options: TrainingOptions,
    /// The kind's own options, as given.
    pub kind_options: BTreeMap<String, String>,
    /// Rows trained on.
    pub train_rows: usize,
    /// Of them, rows batched with the others of their `batch_key` ([`BATCH_KEY_COLUMN`]).
    #[serde(default)]
    pub grouped_rows: usize,
    /// Rows held out.
    pub eval_rows: usize,
    /// Rows that could not become examples (an unreadable image, a NULL), with the first reasons.
    pub skipped_rows: usize,
    /// Why the first skipped rows were skipped.
    pub skipped: Vec<String>,
    /// Trainable values.
    pub parameters: usize,
    /// Every epoch, the loss curve.
    pub epochs: Vec<EpochRecord>,
    /// The epoch a resumed run started after; none for a fresh run.
    pub resumed_after: Option<usize>,
}

/// A network being trained on examples of type `E`.
pub trait Trainable<E> {
    /// The mean loss over `batch` (a graph back to the variables).
    fn loss(&self, batch: &[&E]) -> candle_core::Result<Tensor>;

    /// Every variable by the name its weight has in the saved files.
    fn variables(&self) -> BTreeMap<String, Var>;
}

/// Which examples are held out: a fixed hash of each one's position and the seed, so that the
/// same rows always form the same split.
pub fn split<E>(examples: Vec<E>, eval_fraction: f64, seed: u64) -> (Vec<E>, Vec<E>) {
    let mut train = Vec::new();
    let mut eval = Vec::new();
    for (i, example) in examples.into_iter().enumerate() {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if rand::Rng::random::<f64>(&mut rng) < eval_fraction {
            eval.push(example);
        } else {
            train.push(example);
        }
    }
    (train, eval)
}

/// Trains `network` on `train` for the job's epochs, in the batches [`epoch_batches`] forms
/// from `keys` (one per training example), measuring `eval` after each epoch, saving a
/// checkpoint after each into `checkpoints` and resuming from the last one found there when it
/// was made by the same options on the same examples.
pub fn fit<E, N: Trainable<E>>(
    network: &N,
    train: &[E],
    keys: &[Option<u64>],
    eval: &[E],
    options: &TrainingOptions,
    checkpoints: &std::path::Path,
    progress: &Progress<'_>,
) -> Result<(Vec<EpochRecord>, Option<usize>), ModelError> {
    if train.is_empty() {
        return Err(ModelError::Config(
            "no row left to train on (all held out, skipped or none selected)".into(),
        ));
    }
    let variables = network.variables();
    let mut optimizer = AdamW::new(variables.clone(), options.adamw())?;
    let grouped_rows = keys.iter().flatten().count();
    let fingerprint = checkpoint::Fingerprint {
        options: options.clone(),
        train_rows: train.len(),
        eval_rows: eval.len(),
        grouped_rows,
    };
    let mut epochs = Vec::new();
    let resumed_after = match checkpoint::load(checkpoints, &fingerprint, &variables)? {
        Some(restored) => {
            optimizer.restore(&restored.optimizer)?;
            epochs = restored.epochs;
            Some(epochs.len())
        }
        None => None,
    };
    let batches_per_epoch = (grouped_rows.div_ceil(options.batch_size)
        + (train.len() - grouped_rows).div_ceil(options.batch_size))
        as u64;
    let steps = batches_per_epoch * options.epochs as u64;
    let started = Instant::now();
    for epoch in epochs.len() + 1..=options.epochs {
        let epoch_started = Instant::now();
        let mut total = 0.0;
        let batches = epoch_batches(keys, options.batch_size, options.seed, epoch);
        for (b, rows) in batches.iter().enumerate() {
            let batch: Vec<&E> = rows.iter().map(|&i| &train[i]).collect();
            let loss = network.loss(&batch)?;
            let value = f64::from(loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Err(ModelError::Config(format!(
                    "the loss became {value} in epoch {epoch}, batch {}: lower learning_rate",
                    b + 1
                )));
            }
            let done = (epoch as u64 - 1) * batches_per_epoch + b as u64;
            optimizer.set_learning_rate(options.learning_rate_at(done, steps));
            optimizer.backward_step(&loss)?;
            total += value;
            progress(&TrainingProgress {
                epoch,
                epochs: options.epochs,
                step: (epoch as u64 - 1) * batches_per_epoch + b as u64 + 1,
                steps,
                loss: value,
                elapsed: started.elapsed().as_secs_f64(),
            })?;
        }
        let eval_loss = if eval.is_empty() {
            None
        } else {
            Some(mean_loss(network, eval, options.batch_size)?)
        };
        epochs.push(EpochRecord {
            epoch,
            train_loss: total / batches_per_epoch as f64,
            eval_loss,
            seconds: epoch_started.elapsed().as_secs_f64(),
        });
        checkpoint::save(checkpoints, &fingerprint, &variables, &optimizer, &epochs)?;
    }
    Ok((epochs, resumed_after))
}

/// Splits `prepared`'s examples ([`split`]), trains `network` on them with the job's batch
/// keys, checkpoints and progress ([`fit`]), and sums the run up; the kind then saves the
/// network.
pub fn run<E, N: Trainable<E>>(
    network: &N,
    prepared: Prepared<E>,
    options: TrainingOptions,
    kind_options: BTreeMap<String, String>,
    job: &TrainingJob<'_>,
) -> Result<TrainingSummary, ModelError> {
    let Prepared {
        examples,
        rows,
        skipped,
    } = prepared;
    // Subnormal floats as zeros on this thread and the pool's (3.6× faster for the demo CLIP).
    let _flush = subnormals::FlushHere::new();
    subnormals::flush_on_pool();
    let keys: Vec<Option<u64>> = match batch_keys(&job.rows)? {
        Some(keys) => rows.iter().map(|&row| keys[row]).collect(),
        None => vec![None; examples.len()],
    };
    let (train, eval) = split(
        examples.into_iter().zip(keys).collect(),
        options.eval_fraction,
        options.seed,
    );
    let (train, train_keys): (Vec<E>, Vec<Option<u64>>) = train.into_iter().unzip();
    let eval: Vec<E> = eval.into_iter().map(|(example, _)| example).collect();
    let (epochs, resumed_after) = fit(
        network,
        &train,
        &train_keys,
        &eval,
        &options,
        &job.checkpoints,
        job.progress,
    )?;
    Ok(TrainingSummary {
        options,
        kind_options,
        train_rows: train.len(),
        grouped_rows: train_keys.iter().flatten().count(),
        eval_rows: eval.len(),
        skipped_rows: skipped.count,
        skipped: skipped.reasons,
        parameters: parameter_count(&network.variables()),
        epochs,
        resumed_after,
    })
}

/// The mean loss over `examples`, batch by batch, without gradients.
pub fn mean_loss<E, N: Trainable<E>>(
    network: &N,
    examples: &[E],
    batch_size: usize,
) -> Result<f64, ModelError> {
    let mut weighted = 0.0;
    for chunk in examples.chunks(batch_size) {
        let batch: Vec<&E> = chunk.iter().collect();
        let loss = network.loss(&batch)?.detach();
        weighted += f64::from(loss.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?)
            * chunk.len() as f64;
    }
    Ok(weighted / examples.len() as f64)
}

/// Number of trainable values.
pub fn parameter_count(variables: &BTreeMap<String, Var>) -> usize {
    variables.values().map(|v| v.elem_count()).sum()
}

/// Sets every variable from `seed` as transformers initialises a new model: normalisation
/// weights 1, biases 0, every other weight normal with standard deviation 0.02; the variables
/// named in `keep` keep their value.
pub fn initialise(
    variables: &BTreeMap<String, Var>,
    seed: u64,
    keep: &[&str],
) -> Result<(), ModelError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Box–Muller: two uniform draws give one standard normal one.
    let normal = |rng: &mut ChaCha8Rng| {
        let u: f32 = rand::Rng::random_range(rng, f32::EPSILON..1.0);
        let v: f32 = rand::Rng::random::<f32>(rng);
        0.02 * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    for (name, variable) in variables {
        if keep.contains(&name.as_str()) {
            continue;
        }
        let norm = name.contains("norm") || name.contains("layrnorm");
        let count = variable.elem_count();
        let values: Vec<f32> = if name.ends_with(".bias") {
            vec![0.0; count]
        } else if norm {
            vec![1.0; count]
        } else {
            (0..count).map(|_| normal(&mut rng)).collect()
        };
        let tensor = Tensor::from_vec(values, variable.shape(), variable.device())?
            .to_dtype(variable.dtype())?;
        variable.set(&tensor)?;
    }
    Ok(())
}

/// The column `name` (any case) of the query's rows, or an error naming the columns the kind
/// `kind` trains on (`wanted`) and those the query has.
pub fn column(
    batch: &RecordBatch,
    name: &str,
    kind: &str,
    wanted: &str,
) -> Result<ArrayRef, ModelError> {
    let schema = batch.schema();
    let index = schema
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            ModelError::Config(format!(
                "model_type '{kind}' trains on columns named {wanted}; the query has {}",
                have.join(", ")
            ))
        })?;
    Ok(batch.column(index).clone())
}

/// Rows that could not become examples: how many, and why the first few.
#[derive(Debug, Default)]
pub struct Skipped {
    /// Rows skipped.
    pub count: usize,
    /// Why, for the first [`REASONS_KEPT`].
    pub reasons: Vec<String>,
}

/// Reasons kept of the rows skipped.
pub const REASONS_KEPT: usize = 10;

/// Examples made from a training query's rows, with the row each came from.
pub struct Prepared<E> {
    /// The examples, in row order.
    pub examples: Vec<E>,
    /// The position, among the query's rows, of each example's row.
    pub rows: Vec<usize>,
    /// The rows that could not become examples.
    pub skipped: Skipped,
}

/// Turns `rows` into examples on the thread pool; a row whose preparation fails is skipped
/// (a NULL, an unreadable photo), not the run.
pub fn prepare<T: Sync, E: Send>(
    rows: &[T],
    make: impl Fn(&T) -> Result<E, String> + Sync,
) -> Prepared<E> {
    use rayon::prelude::*;
    let made: Vec<Result<E, String>> = rows.par_iter().map(&make).collect();
    let mut prepared = Prepared {
        examples: Vec::with_capacity(made.len()),
        rows: Vec::with_capacity(made.len()),
        skipped: Skipped::default(),
    };
    for (row, result) in made.into_iter().enumerate() {
        match result {
            Ok(example) => {
                prepared.examples.push(example);
                prepared.rows.push(row);
            }
            Err(reason) => {
                prepared.skipped.count += 1;
                if prepared.skipped.reasons.len() < REASONS_KEPT {
                    prepared.skipped.reasons.push(reason);
                }
            }
        }
    }
    prepared
}

/// The optional column of a training query whose equal values are batched together: rows
/// sharing a key fill batches of their own where they can, so that a contrastive loss must tell
/// them apart by what else they have (hard negatives). Rows whose key is NULL, and every row of
/// a query without the column, are batched at random.
pub const BATCH_KEY_COLUMN: &str = "batch_key";

/// The batch key of each of the job's rows (a hash of its text), or none without the column.
fn batch_keys(rows: &[RecordBatch]) -> Result<Option<Vec<Option<u64>>>, ModelError> {
    use std::hash::{Hash, Hasher};
    let mut keys = Vec::new();
    for batch in rows {
        let Some(index) = batch
            .schema()
            .fields()
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(BATCH_KEY_COLUMN))
        else {
            return Ok(None);
        };
        let values = crate::functions::rows::strings(batch.column(index))
            .map_err(|e| ModelError::Config(format!("column {BATCH_KEY_COLUMN}: {e}")))?;
        keys.extend(values.into_iter().map(|value| {
            value.map(|value| {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                value.hash(&mut hasher);
                hasher.finish()
            })
        }));
    }
    Ok(Some(keys))
}

/// The batches of one epoch, as positions in the training examples: a seeded shuffle cut into
/// batches; with batch keys ([`BATCH_KEY_COLUMN`]), the keyed rows are first gathered key by key
/// (keys in a seeded order) and cut apart from the others, and the batches then shuffled.
pub fn epoch_batches(
    keys: &[Option<u64>],
    batch_size: usize,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(epoch as u64));
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.shuffle(&mut rng);
    let (mut keyed, loose): (Vec<usize>, Vec<usize>) =
        order.into_iter().partition(|&i| keys[i].is_some());
    let cut = |rows: &[usize]| -> Vec<Vec<usize>> {
        rows.chunks(batch_size).map(<[usize]>::to_vec).collect()
    };
    if keyed.is_empty() {
        return cut(&loose);
    }
    // A key's place in this epoch: its hash mixed with a draw of the epoch.
    let mix: u64 = rand::Rng::random(&mut rng);
    keyed.sort_by_key(|&i| keys[i].map(|key| (key ^ mix).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    let mut batches = cut(&keyed);
    batches.extend(cut(&loose));
    batches.shuffle(&mut rng);
    batches
}

/// Copies a model folder's JSON files (configuration, tokenizer, processor; not its weights
/// nor a test marker) into the folder a training run writes.
pub fn copy_model_files(from: &Path, to: &Path) -> Result<(), ModelError> {
    let entries = std::fs::read_dir(from).map_err(|e| ModelError::io(from, e))?;
    for entry in entries {
        let path = entry.map_err(|e| ModelError::io(from, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_file() && name.ends_with(".json") {
            std::fs::copy(&path, to.join(name)).map_err(|e| ModelError::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::f64::consts::PI;

    use super::*;
    use candle_core::{Device, D};

    /// Least squares of a linear map: a network small enough to train many times.
    struct Linear {
        weight: Var,
    }

    impl Trainable<(Vec<f32>, f32)> for Linear {
        fn loss(&self, batch: &[&(Vec<f32>, f32)]) -> candle_core::Result<Tensor> {
            let xs: Vec<f32> = batch.iter().flat_map(|(x, _)| x.clone()).collect();
            let ys: Vec<f32> = batch.iter().map(|(_, y)| *y).collect();
            let xs = Tensor::from_vec(xs, (batch.len(), 3), &Device::Cpu)?;
            let ys = Tensor::from_vec(ys, batch.len(), &Device::Cpu)?;
            let predicted = xs.broadcast_mul(self.weight.as_tensor())?.sum(D::Minus1)?;
            (predicted - ys)?.sqr()?.mean_all()
        }

        fn variables(&self) -> BTreeMap<String, Var> {
            BTreeMap::from([("weight".to_string(), self.weight.clone())])
        }
    }

    fn data() -> Vec<(Vec<f32>, f32)> {
        (0..40)
            .map(|i| {
                let x = vec![i as f32 / 40.0, ((i * 7) % 11) as f32 / 11.0, 1.0];
                let y = 2.0 * x[0] - 3.0 * x[1] + 0.5;
                (x, y)
            })
            .collect()
    }

    fn network() -> Linear {
        Linear {
            weight: Var::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
        }
    }

    fn weights(network: &Linear) -> Vec<f32> {
        network.weight.as_tensor().to_vec1().unwrap()
    }

    #[test]
    fn training_lowers_the_loss_and_an_interrupted_run_resumes_to_the_same_weights() {
        let options = TrainingOptions {
            epochs: 4,
            batch_size: 8,
            learning_rate: 0.2,
            lr_schedule: LrSchedule::Cosine,
            warmup_fraction: 0.1,
            ..TrainingOptions::default()
        };
        let (train, eval) = split(data(), options.eval_fraction, options.seed);
        assert!(!eval.is_empty() && train.len() > eval.len());
        let fine = |_: &TrainingProgress| Ok(());
        let keys = vec![None; train.len()];

        let straight = network();
        let dir = tempfile::tempdir().unwrap();
        let (epochs, resumed) =
            fit(&straight, &train, &keys, &eval, &options, dir.path(), &fine).unwrap();
        assert_eq!((epochs.len(), resumed), (4, None));
        let first = epochs[0].eval_loss.unwrap();
        let last = epochs[3].eval_loss.unwrap();
        assert!(last < first / 2.0, "eval loss {first} -> {last}");

        // Stopped in the third epoch, then run again: it resumes after the second.
        let interrupted = network();
        let dir = tempfile::tempdir().unwrap();
        let stop = |p: &TrainingProgress| {
            if p.epoch == 3 && p.step.is_multiple_of(2) {
                Err(ModelError::Config("cancelled".into()))
            } else {
                Ok(())
            }
        };
        let error = fit(
            &interrupted,
            &train,
            &keys,
            &eval,
            &options,
            dir.path(),
            &stop,
        )
        .unwrap_err();
        assert_eq!(error.to_string(), "cancelled");
        let resumed = network();
        let (again, after) =
            fit(&resumed, &train, &keys, &eval, &options, dir.path(), &fine).unwrap();
        assert_eq!(after, Some(2));
        assert_eq!(weights(&resumed), weights(&straight));
        assert_eq!(
            again.iter().map(|e| e.train_loss).collect::<Vec<_>>(),
            epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>()
        );

        // Other options do not resume from it.
        let other = TrainingOptions {
            seed: 7,
            ..options.clone()
        };
        let (_, after) = fit(&network(), &train, &keys, &eval, &other, dir.path(), &fine).unwrap();
        assert_eq!(after, None);
    }

    #[test]
    fn rows_sharing_a_batch_key_fill_batches_of_their_own() {
        // Without keys: the seeded shuffle cut in order, as before keys existed.
        let loose = vec![None; 50];
        let mut order: Vec<usize> = (0..50).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(42 + 3));
        let expected: Vec<Vec<usize>> = order.chunks(8).map(<[usize]>::to_vec).collect();
        assert_eq!(epoch_batches(&loose, 8, 42, 3), expected);

        // Three keys of 20, 12 and 9 rows, and 9 rows without a key.
        let keys: Vec<Option<u64>> = (0..50)
            .map(|i| match i % 10 {
                0..=3 => Some(7),
                4..=5 => Some(11),
                6 if i < 30 => Some(11),
                6..=7 => Some(13),
                _ if i % 5 == 3 => Some(13),
                _ => None,
            })
            .collect();
        let batches = epoch_batches(&keys, 8, 42, 1);
        let mut seen: Vec<usize> = batches.concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>(), "every row once");
        let mut mixed = 0;
        for batch in &batches {
            let mut batch_keys: Vec<Option<u64>> = batch.iter().map(|&i| keys[i]).collect();
            batch_keys.sort_unstable();
            batch_keys.dedup();
            assert!(
                !(batch_keys.contains(&None) && batch_keys.len() > 1),
                "loose rows are batched apart: {batch_keys:?}"
            );
            mixed += usize::from(batch_keys.len() > 1);
        }
        // Keyed rows are gathered key by key: only the batches at the seams hold two keys.
        assert!(mixed <= 2, "{mixed} batches mix keys: {batches:?}");
        let grouped = keys.iter().flatten().count();
        assert_eq!(
            batches.len(),
            grouped.div_ceil(8) + (50 - grouped).div_ceil(8)
        );
        assert_ne!(
            epoch_batches(&keys, 8, 42, 2),
            batches,
            "each epoch its own batches"
        );
        assert_eq!(epoch_batches(&keys, 8, 42, 1), batches, "seeded");
    }

    #[test]
    fn schedules_move_the_learning_rate_as_transformers_does() {
        let at = |lr_schedule, done| {
            let options = TrainingOptions {
                learning_rate: 1.0,
                lr_schedule,
                warmup_fraction: 0.2,
                ..TrainingOptions::default()
            };
            options.learning_rate_at(done, 10)
        };
        // Two warm-up steps from 0, then the decay over the eight others.
        for schedule in [LrSchedule::Constant, LrSchedule::Linear, LrSchedule::Cosine] {
            assert_eq!(
                (at(schedule, 0), at(schedule, 1), at(schedule, 2)),
                (0.0, 0.5, 1.0)
            );
        }
        assert_eq!(at(LrSchedule::Constant, 9), 1.0);
        assert_eq!(at(LrSchedule::Linear, 6), 0.5);
        assert!((at(LrSchedule::Cosine, 6) - 0.5).abs() < 1e-12);
        assert!((at(LrSchedule::Cosine, 4) - 0.5 * (1.0 + (PI / 4.0).cos())).abs() < 1e-12);
        assert_eq!(at(LrSchedule::Linear, 10), 0.0);

        let mut given = BTreeMap::from([
            ("lr_schedule".to_string(), "Cosine".to_string()),
            ("warmup_fraction".to_string(), "0.05".to_string()),
        ]);
        let options = TrainingOptions::take(&mut given).unwrap();
        assert_eq!(
            (options.lr_schedule, options.warmup_fraction),
            (LrSchedule::Cosine, 0.05)
        );
        let mut bad = BTreeMap::from([("lr_schedule".to_string(), "step".to_string())]);
        let error = TrainingOptions::take(&mut bad).unwrap_err().to_string();
        assert!(
            error.contains("lr_schedule takes 'constant', 'linear' or 'cosine', got 'step'"),
            "{error}"
        );
    }

    #[test]
    fn options_are_checked_by_name() {
        let mut given = BTreeMap::from([
            ("epochs".to_string(), "2".to_string()),
            ("learning_rate".to_string(), "3e-4".to_string()),
            ("hidden_size".to_string(), "64".to_string()),
        ]);
        let options = TrainingOptions::take(&mut given).unwrap();
        assert_eq!((options.epochs, options.learning_rate), (2, 3e-4));
        assert_eq!(given.len(), 1, "the kind's own option stays");
        let error = no_options_left("clip", &given).unwrap_err().to_string();
        assert!(error.contains("no option 'hidden_size'"), "{error}");
        let mut bad = BTreeMap::from([("batch_size".to_string(), "0".to_string())]);
        let error = TrainingOptions::take(&mut bad).unwrap_err().to_string();
        assert!(
            error.contains("batch_size takes a whole number above 0, got '0'"),
            "{error}"
        );
    }
}
