//! Training CLIP: the network over variables, transformers' symmetric contrastive loss, and the
//! weights saved under transformers' names so that the folder loads anywhere a `CLIPModel` does.
//! From a base model, or from scratch: a small shape from options, a tokenizer learnt from the
//! rows' texts, seeded starting weights.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};

use super::config::ClipConfig;
use super::model::{l2_normalise, ClipNetwork};
use super::{read_json, ClipEmbedder};
use crate::functions::rows::{self, ImageArgument};
use crate::runtime::placement::Placement;
use crate::runtime::source::ModelSource;
use crate::train::{
    column, copy_model_files, initialise, no_options_left, prepare, run, take_count, Prepared,
    Trainable, TrainingJob, TrainingOptions, TrainingSummary,
};
use crate::ModelError;

/// The optional column of a CLIP training query holding a shopper's query for each product.
pub const QUERY_COLUMN: &str = "query";

/// The optional column (an array of strings) of what each row's product is: its attribute
/// values, e.g. `array('colour:' || base_color, 'article:' || article_type)`.
pub const LABELS_COLUMN: &str = "labels";

/// The optional column (an array of strings) of the labels each row's query asks for. With it,
/// a query counts the text of every row of its batch whose [`LABELS_COLUMN`] holds all it asks
/// for as a match, not only its own row's: a shopper's `red shirts` is answered by every red
/// shirt's description, so the other red shirts of the batch are not pushed away as wrong
/// answers (which matters when a `batch_key` fills batches with one kind of product). Photos
/// are still learnt against their own row's text alone.
pub const ASKS_COLUMN: &str = "asks";

/// A CLIP network whose every weight is a variable, with the learnt temperature `logit_scale`.
pub struct ClipTraining {
    variables: VarMap,
    network: ClipNetwork,
    logit_scale: Tensor,
    config: ClipConfig,
    device: Device,
}

impl ClipTraining {
    /// A network of `config`'s shape with candle's initial values (training from scratch).
    pub fn new(config: ClipConfig, device: &Device) -> Result<Self, ModelError> {
        let variables = VarMap::new();
        let vb = VarBuilder::from_varmap(&variables, DType::F32, device);
        let network = ClipNetwork::new(vb.clone(), &config)?;
        let logit_scale = vb.get_with_hints(
            (),
            "logit_scale",
            Init::Const(config.logit_scale_init_value),
        )?;
        Ok(Self {
            variables,
            network,
            logit_scale,
            config,
            device: device.clone(),
        })
    }

    /// The network of `config` starting from the weights in `weights` (a `model.safetensors`
    /// holding every weight under transformers' names, `logit_scale` included).
    pub fn from_weights(
        config: ClipConfig,
        weights: &Path,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let mut training = Self::new(config, device)?;
        training
            .variables
            .load(weights)
            .map_err(|e| ModelError::file(weights, e))?;
        Ok(training)
    }

    /// The model's configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Where the variables live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every variable, for an optimizer.
    pub fn variables(&self) -> Vec<Var> {
        self.variables.all_vars()
    }

    /// Every variable by transformers' name of the weight.
    pub fn named_variables(&self) -> BTreeMap<String, Var> {
        let data = self.variables.data().lock().expect("variables lock");
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// transformers' `clip_loss` of a batch of matching pairs: row `i` of `input_ids` (batch ×
    /// length, u32, pooled at `pool_at[i]`) describes image `i` of `pixels` (batch × 3 × side ×
    /// side); the mean of the cross-entropies of texts over images and images over texts.
    pub fn contrastive_loss(
        &self,
        input_ids: &Tensor,
        pool_at: &[u32],
        pixels: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let texts = self.text_embeds(input_ids, pool_at)?;
        self.image_text_loss(&texts, pixels)
    }

    /// [`Self::contrastive_loss`] with a shopper's query beside some of the texts: the mean of
    /// the image–text loss and the same symmetric loss between the queries and the texts they
    /// stand beside (one temperature for both), so that text search, where a query meets
    /// descriptions, is learnt along with text-to-image search.
    pub fn paired_loss(
        &self,
        input_ids: &Tensor,
        pool_at: &[u32],
        pixels: &Tensor,
        queries: &QueryBatch,
    ) -> candle_core::Result<Tensor> {
        let rows = (0..input_ids.dim(0)? as u32).collect();
        let images = ImageBatch {
            pixels: pixels.clone(),
            rows,
        };
        self.mixed_loss(input_ids, pool_at, Some(&images), Some(queries))
    }

    /// The loss of a batch whose texts stand beside a photo, a query, or both: the mean of the
    /// image–text loss over the texts with a photo and the query–text loss over the texts with a
    /// query, each symmetric over its own rows (a batch with neither gives an error).
    pub fn mixed_loss(
        &self,
        input_ids: &Tensor,
        pool_at: &[u32],
        images: Option<&ImageBatch>,
        queries: Option<&QueryBatch>,
    ) -> candle_core::Result<Tensor> {
        let texts = self.text_embeds(input_ids, pool_at)?;
        let beside = |rows: &[u32]| -> candle_core::Result<Tensor> {
            if rows.len() == texts.dim(0)? && rows.iter().enumerate().all(|(i, r)| i as u32 == *r) {
                return Ok(texts.clone());
            }
            texts.index_select(&Tensor::new(rows, &self.device)?, 0)
        };
        let mut losses = Vec::new();
        if let Some(images) = images.filter(|i| !i.rows.is_empty()) {
            losses.push(self.image_text_loss(&beside(&images.rows)?, &images.pixels)?);
        }
        if let Some(queries) = queries.filter(|q| !q.rows.is_empty()) {
            let asked = self.text_embeds(&queries.input_ids, &queries.pool_at)?;
            let described = beside(&queries.rows)?;
            let similarities = asked.matmul(&described.t()?)?;
            losses.push(match &queries.matches {
                None => self.symmetric_cross_entropy(&similarities)?,
                Some(matches) => self.soft_cross_entropy(&similarities, matches)?,
            });
        }
        match losses.len() {
            0 => candle_core::bail!("a CLIP batch needs texts beside photos or queries"),
            n => Tensor::stack(&losses, 0)?.sum_all()? / n as f64,
        }
    }

    fn text_embeds(&self, input_ids: &Tensor, pool_at: &[u32]) -> candle_core::Result<Tensor> {
        l2_normalise(&self.network.text_features(input_ids, pool_at)?)
    }

    fn image_text_loss(&self, texts: &Tensor, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let images = l2_normalise(&self.network.image_features(pixels)?)?;
        self.symmetric_cross_entropy(&texts.matmul(&images.t()?)?)
    }

    /// The mean of the cross-entropies of rows over columns and columns over rows of the
    /// cosine similarities `similarities` (row `i` matches column `i`), at the learnt temperature.
    fn symmetric_cross_entropy(&self, similarities: &Tensor) -> candle_core::Result<Tensor> {
        let logits = similarities.broadcast_mul(&self.logit_scale.exp()?)?;
        let targets = Tensor::arange(0u32, logits.dim(0)? as u32, &self.device)?;
        let by_row = candle_nn::loss::cross_entropy(&logits, &targets)?;
        let by_column = candle_nn::loss::cross_entropy(&logits.t()?.contiguous()?, &targets)?;
        (by_row + by_column)? / 2.0
    }

    /// [`soft_symmetric_cross_entropy`] of `similarities` at the learnt temperature.
    fn soft_cross_entropy(
        &self,
        similarities: &Tensor,
        matches: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let logits = similarities.broadcast_mul(&self.logit_scale.exp()?)?;
        soft_symmetric_cross_entropy(&logits, matches)
    }

    /// Writes every weight to `path` (safetensors, transformers' names).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        self.variables
            .save(path)
            .map_err(|e| ModelError::file(path, e))
    }
}

/// Photos beside some texts of a batch.
pub struct ImageBatch {
    /// The photos' pixel values (photos × 3 × side × side).
    pub pixels: Tensor,
    /// The batch row whose text each photo stands beside.
    pub rows: Vec<u32>,
}

/// Shoppers' queries beside some texts of a batch.
pub struct QueryBatch {
    /// The queries' token ids (queries × length, u32), padded after the pooled token.
    pub input_ids: Tensor,
    /// Where each query is pooled.
    pub pool_at: Vec<u32>,
    /// The batch row whose text each query stands beside.
    pub rows: Vec<u32>,
    /// Which of the texts beside queries answer each query (queries × queries, 1.0 or 0.0, in
    /// the order of [`Self::rows`]), when the queries say what they ask for
    /// ([`ASKS_COLUMN`]); without, each query matches its own row's text only.
    pub matches: Option<Tensor>,
}

/// The cross-entropy of `logits` (queries × candidates) against soft targets, symmetrically:
/// each row's target spreads evenly over the columns `matches` marks 1.0, each column's over the
/// rows; the mean over rows and over columns of those with at least one match, halved. With one
/// match per row and column on the diagonal it is transformers' `clip_loss`.
pub fn soft_symmetric_cross_entropy(
    logits: &Tensor,
    matches: &Tensor,
) -> candle_core::Result<Tensor> {
    let one_way = |logits: &Tensor, matches: &Tensor| -> candle_core::Result<Option<Tensor>> {
        let counts = matches.sum_keepdim(1)?;
        let answered = counts.gt(0.0)?.to_dtype(logits.dtype())?;
        let rows = answered.sum_all()?.to_scalar::<f32>()?;
        if rows == 0.0 {
            return Ok(None);
        }
        let targets = matches.broadcast_div(&counts.maximum(1.0)?)?;
        let log_p = candle_nn::ops::log_softmax(logits, 1)?;
        let total = (targets * log_p)?.sum_all()?;
        Ok(Some((total.neg()? / f64::from(rows))?))
    };
    let by_row = one_way(logits, matches)?;
    let by_column = one_way(&logits.t()?.contiguous()?, &matches.t()?.contiguous()?)?;
    match (by_row, by_column) {
        (Some(a), Some(b)) => (a + b)? / 2.0,
        (Some(one), None) | (None, Some(one)) => Ok(one),
        (None, None) => logits.zeros_like()?.sum_all(),
    }
}

/// One training example: a text's token ids, with an image's pixel values, the token ids of a
/// shopper's query for the product, or both; with what the product is and what the query asks.
pub struct ClipExample {
    ids: Vec<u32>,
    pixels: Option<Vec<f32>>,
    query: Option<Vec<u32>>,
    /// The product's labels, sorted ([`LABELS_COLUMN`]).
    labels: Vec<String>,
    /// What the query asks for, sorted ([`ASKS_COLUMN`]); none without the column.
    asks: Option<Vec<String>>,
}

impl ClipExample {
    /// Whether `other`'s product answers this example's query: it is this example's own, or
    /// its labels hold every label the query asks for.
    fn answered_by(&self, other: &ClipExample, same_row: bool) -> bool {
        same_row
            || self.asks.as_ref().is_some_and(|asks| {
                asks.iter()
                    .all(|label| other.labels.binary_search(label).is_ok())
            })
    }
}

/// The queries × queries matrix of which of the `asked` rows of `batch` answer the query of
/// each.
fn answers(batch: &[&ClipExample], asked: &[u32], device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = asked
        .iter()
        .flat_map(|&q| {
            asked.iter().map(move |&r| {
                let hit = batch[q as usize].answered_by(batch[r as usize], q == r);
                f32::from(u8::from(hit))
            })
        })
        .collect();
    Tensor::from_vec(values, (asked.len(), asked.len()), device)
}

impl ClipTraining {
    /// Token ids padded to the longest of `texts` (batch × length) and where each is pooled.
    fn padded_ids(&self, texts: &[&[u32]]) -> candle_core::Result<(Tensor, Vec<u32>)> {
        let len = texts.iter().map(|ids| ids.len()).max().unwrap_or(1).max(1);
        let pool_at = texts
            .iter()
            .map(|ids| self.config.text_config.pool_position(ids))
            .collect();
        // Padding after the pooled token is never attended to (the text mask is causal).
        let ids: Vec<u32> = texts
            .iter()
            .flat_map(|ids| ids.iter().copied().chain(std::iter::repeat(0)).take(len))
            .collect();
        Ok((
            Tensor::from_vec(ids, (texts.len(), len), &self.device)?,
            pool_at,
        ))
    }
}

impl Trainable<ClipExample> for ClipTraining {
    fn loss(&self, batch: &[&ClipExample]) -> candle_core::Result<Tensor> {
        let texts: Vec<&[u32]> = batch.iter().map(|e| e.ids.as_slice()).collect();
        let (ids, pool_at) = self.padded_ids(&texts)?;
        let side = self.config.vision_config.image_size;
        let (image_rows, pixels): (Vec<u32>, Vec<&[f32]>) = batch
            .iter()
            .enumerate()
            .filter_map(|(row, e)| Some((row as u32, e.pixels.as_deref()?)))
            .unzip();
        let pixels = Tensor::from_vec(
            pixels.concat(),
            (image_rows.len(), 3, side, side),
            &self.device,
        )?;
        let (rows, queries): (Vec<u32>, Vec<&[u32]>) = batch
            .iter()
            .enumerate()
            .filter_map(|(row, e)| Some((row as u32, e.query.as_deref()?)))
            .unzip();
        if queries.is_empty() && image_rows.len() == batch.len() {
            return self.contrastive_loss(&ids, &pool_at, &pixels);
        }
        let (input_ids, query_pool_at) = self.padded_ids(&queries)?;
        let matches = batch
            .iter()
            .any(|e| e.asks.is_some())
            .then(|| answers(batch, &rows, &self.device))
            .transpose()?;
        let images = ImageBatch {
            pixels,
            rows: image_rows,
        };
        let queries = QueryBatch {
            input_ids,
            pool_at: query_pool_at,
            rows,
            matches,
        };
        self.mixed_loss(&ids, &pool_at, Some(&images), Some(&queries))
    }

    fn variables(&self) -> BTreeMap<String, Var> {
        self.named_variables()
    }
}

/// The pairs of the job's `image` and `text` columns, with the optional `query` column's
/// queries, preprocessed by `embedder`.
fn examples(
    job: &TrainingJob<'_>,
    embedder: &ClipEmbedder,
) -> Result<Prepared<ClipExample>, ModelError> {
    struct Row {
        name: String,
        text: Option<String>,
        image: Option<ImageArgument>,
        query: Option<String>,
        labels: Option<Vec<String>>,
        asks: Option<Vec<String>>,
    }
    let mut rows: Vec<Row> = Vec::new();
    for batch in &job.rows {
        let column = |name| column(batch, name, "clip", "image and text");
        let config = |name: &str, e: datafusion::error::DataFusionError| {
            ModelError::Config(format!("column {name}: {e}"))
        };
        let texts = rows::strings(&column("text")?).map_err(|e| config("text", e))?;
        let images = rows::images(&column("image")?).map_err(|e| config("image", e))?;
        let queries = match batch.column_by_name(QUERY_COLUMN) {
            Some(queries) => rows::strings(queries).map_err(|e| config(QUERY_COLUMN, e))?,
            None => vec![None; texts.len()],
        };
        let lists = |name: &str| {
            batch
                .column_by_name(name)
                .map(|values| rows::string_lists(values).map_err(|e| config(name, e)))
                .transpose()
        };
        let labels = lists(LABELS_COLUMN)?.unwrap_or_else(|| vec![None; texts.len()]);
        // With the column, a NULL asks for nothing beyond the row's own product.
        let asks: Vec<Option<Vec<String>>> = match lists(ASKS_COLUMN)? {
            Some(asks) => asks
                .into_iter()
                .map(|a| Some(a.unwrap_or_default()))
                .collect(),
            None => vec![None; texts.len()],
        };
        let columns = texts
            .into_iter()
            .zip(images)
            .zip(queries)
            .zip(labels)
            .zip(asks);
        for ((((text, image), query), labels), asks) in columns {
            let name = match &image {
                Some(ImageArgument::Location(path)) => format!("'{path}'"),
                _ => format!("row {}", rows.len() + 1),
            };
            rows.push(Row {
                name,
                text,
                image,
                query,
                labels,
                asks,
            });
        }
    }
    let sorted = |values: &[String]| {
        let mut values = values.to_vec();
        values.sort();
        values.dedup();
        values
    };
    Ok(prepare(&rows, |row| {
        let Row {
            name,
            text,
            image,
            query,
            labels,
            asks,
        } = row;
        let Some(text) = text else {
            return Err(format!("{name}: NULL text"));
        };
        if image.is_none() && query.is_none() {
            return Err(format!("{name}: NULL image and no query"));
        }
        let tokenize = |text: &str| {
            embedder
                .tokenize(&[text])
                .map(|mut ids| ids.pop().unwrap_or_default())
                .map_err(|e| format!("{name}: {e}"))
        };
        let pixels = image
            .as_ref()
            .map(|image| {
                rows::read_image(job.context, image)
                    .map(|rgb| embedder.pixel_values(&rgb))
                    .map_err(|e| format!("{name}: {e}"))
            })
            .transpose()?;
        Ok(ClipExample {
            ids: tokenize(text)?,
            pixels,
            query: query.as_deref().map(tokenize).transpose()?,
            labels: sorted(labels.as_deref().unwrap_or_default()),
            asks: asks.as_deref().map(sorted),
        })
    }))
}

/// The shape of a CLIP trained from scratch (options when there is no `base`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScratchShape {
    /// Width of the shared space.
    pub projection_dim: usize,
    /// Width of both towers.
    pub hidden_size: usize,
    /// Layers of each tower.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Side of the square images.
    pub image_size: usize,
    /// Side of a patch.
    pub patch_size: usize,
    /// Tokens the learnt tokenizer may have.
    pub vocab_size: usize,
    /// Longest text, in tokens.
    pub max_text_length: usize,
}

impl ScratchShape {
    /// Takes the shape options out of `options`, with small defaults.
    pub fn take(options: &mut BTreeMap<String, String>) -> Result<Self, ModelError> {
        let mut number = |name: &str, default: usize| take_count(options, name, default);
        let shape = Self {
            projection_dim: number("projection_dim", 64)?,
            hidden_size: number("hidden_size", 64)?,
            layers: number("layers", 2)?,
            heads: number("heads", 4)?,
            image_size: number("image_size", 64)?,
            patch_size: number("patch_size", 8)?,
            vocab_size: number("vocab_size", 1000)?,
            max_text_length: number("max_text_length", 32)?,
        };
        if !shape.hidden_size.is_multiple_of(shape.heads)
            || !shape.image_size.is_multiple_of(shape.patch_size)
        {
            return Err(ModelError::Config(format!(
                "hidden_size ({}) must be a multiple of heads ({}) and image_size ({}) of patch_size ({})",
                shape.hidden_size, shape.heads, shape.image_size, shape.patch_size
            )));
        }
        Ok(shape)
    }
}

/// Writes a from-scratch model's `config.json`, `preprocessor_config.json` and a tokenizer
/// learnt from `texts` into `folder`; gives the configuration.
fn write_scratch_files(
    folder: &Path,
    shape: &ScratchShape,
    texts: &[String],
) -> Result<ClipConfig, ModelError> {
    use crate::train::tokenizer::{learn, TokenizerSpec};
    const START: &str = "<|startoftext|>";
    const END: &str = "<|endoftext|>";
    let tokenizer = learn(
        texts.iter().map(String::as_str),
        &TokenizerSpec {
            vocab_size: shape.vocab_size,
            special: &[START, END],
            wrap: Some((START, END)),
            lowercase: true,
        },
    )?;
    let vocab_size = tokenizer.get_vocab_size(true);
    let token = |t: &str| tokenizer.token_to_id(t).unwrap_or(0);
    let path = folder.join("tokenizer.json");
    tokenizer
        .save(&path, true)
        .map_err(|e| ModelError::file(&path, e))?;
    let tower = |extra: serde_json::Value| {
        let mut tower = serde_json::json!({
            "hidden_size": shape.hidden_size,
            "intermediate_size": 4 * shape.hidden_size,
            "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
        });
        if let (Some(tower), serde_json::Value::Object(extra)) = (tower.as_object_mut(), extra) {
            tower.extend(extra);
        }
        tower
    };
    let config = serde_json::json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": shape.projection_dim,
        "logit_scale_init_value": 2.6592,
        "text_config": tower(serde_json::json!({
            "vocab_size": vocab_size,
            "max_position_embeddings": shape.max_text_length,
            "bos_token_id": token(START),
            "eos_token_id": token(END),
            "pad_token_id": token(END),
        })),
        "vision_config": tower(serde_json::json!({
            "image_size": shape.image_size,
            "patch_size": shape.patch_size,
            "num_channels": 3,
        })),
    });
    let processor = serde_json::json!({
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": true,
        "size": {"shortest_edge": shape.image_size},
        "resample": 3,
        "do_center_crop": true,
        "crop_size": {"height": shape.image_size, "width": shape.image_size},
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "do_convert_rgb": true,
    });
    for (name, value) in [
        ("config.json", &config),
        ("preprocessor_config.json", &processor),
    ] {
        let path = folder.join(name);
        let text = serde_json::to_string_pretty(value).map_err(|e| ModelError::file(&path, e))?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
    }
    serde_json::from_value(config).map_err(|e| ModelError::Config(e.to_string()))
}

/// The values of the `text` column and of the `query` column when there is one.
fn texts(job: &TrainingJob<'_>) -> Result<Vec<String>, ModelError> {
    let mut texts = Vec::new();
    for batch in &job.rows {
        let column = column(batch, "text", "clip", "image and text")?;
        for values in std::iter::once(&column).chain(batch.column_by_name(QUERY_COLUMN)) {
            texts.extend(
                rows::strings(values)
                    .map_err(|e| ModelError::Config(e.to_string()))?
                    .into_iter()
                    .flatten(),
            );
        }
    }
    Ok(texts)
}

/// Trains a CLIP on the job's (image, text) rows (with a `query` column, also on each query
/// against its text, and a row may then lack its image: [`ClipTraining::mixed_loss`]), from its base or, without one, from scratch
/// (a tokenizer learnt from the texts, seeded starting weights), and writes the model folder.
pub fn train(job: TrainingJob<'_>) -> Result<TrainingSummary, ModelError> {
    let mut remaining = job.options.clone();
    let options = TrainingOptions::take(&mut remaining)?;
    let kind_options = remaining.clone();
    let shape = match job.base {
        Some(_) => None,
        None => Some(ScratchShape::take(&mut remaining)?),
    };
    no_options_left("clip", &remaining)?;
    let placement = Placement::parse(&job.context.settings().device, "f32")?;
    std::fs::create_dir_all(&job.output).map_err(|e| ModelError::io(&job.output, e))?;
    let (network, files) = match (&job.base, &shape) {
        (Some(base), _) => {
            if base.weights.extension().is_none_or(|e| e != "safetensors") {
                return Err(ModelError::file(
                    &base.weights,
                    "training starts from safetensors weights",
                ));
            }
            let config: ClipConfig = read_json(&base.file("config.json"))?;
            copy_model_files(&base.dir, &job.output)?;
            (
                ClipTraining::from_weights(config, &base.weights, &placement.device)?,
                base.clone(),
            )
        }
        (None, Some(shape)) => {
            let config = write_scratch_files(&job.output, shape, &texts(&job)?)?;
            let network = ClipTraining::new(config, &placement.device)?;
            initialise(&network.named_variables(), options.seed, &["logit_scale"])?;
            let weights = job.output.join("model.safetensors");
            network.save(&weights)?;
            let source = ModelSource {
                id: "(from scratch)".into(),
                revision: String::new(),
                dir: job.output.clone(),
                weights,
            };
            (network, source)
        }
        (None, None) => unreachable!("a shape is read when there is no base"),
    };
    let embedder = ClipEmbedder::load(&files, Placement::cpu())?;
    let prepared = examples(&job, &embedder)?;
    let summary = run(&network, prepared, options, kind_options, &job)?;
    network.save(&job.output.join("model.safetensors"))?;
    Ok(summary)
}
