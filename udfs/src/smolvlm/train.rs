//! Training SmolVLM: the whole network over variables (or LoRA adapters over frozen weights),
//! trained on (image, prompt, answer) rows with transformers' causal-LM loss on the answer's
//! tokens; saved under transformers' names beside the base's configuration, tokenizer and
//! processor files — or, from scratch, beside a configuration from options and a tokenizer
//! learnt from the rows.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::extract::default_prompt;
use super::model::{AnswerExample, SmolVlm, EXTRACTION_PROMPT_KEY};
use super::prompt::chat_prompt;
use crate::functions::rows::{self, ImageArgument};
use crate::runtime::placement::Placement;
use crate::runtime::source::ModelSource;
use crate::train::lora::Lora;
use crate::train::{
    column, copy_model_files, initialise, no_options_left, prepare, run, take_count, Prepared,
    Trainable, TrainingJob, TrainingOptions, TrainingSummary,
};
use crate::ModelError;

/// What a SmolVLM trains: every weight, or low-rank adapters over frozen weights.
enum Trained {
    /// Every weight a variable.
    Full(VarMap),
    /// Adapters only; the base's weights stay in their file until they are merged.
    Adapters { lora: Box<Lora>, base: PathBuf },
}

/// The low-rank adapters to train (`lora_rank`, `lora_alpha`, `lora_targets` options).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraOptions {
    /// The adapters' rank.
    pub rank: usize,
    /// Their scale is `alpha / rank`.
    pub alpha: f64,
    /// The layers adapted, by the last part of their name.
    pub targets: Vec<String>,
}

impl LoraOptions {
    /// Takes `lora_rank` (none: train every weight), `lora_alpha` (default: the rank) and
    /// `lora_targets` (default: the attention projections) out of `options`.
    pub fn take(options: &mut BTreeMap<String, String>) -> Result<Option<Self>, ModelError> {
        let bad = |name: &str, value: &str, what: &str| {
            ModelError::Config(format!("option {name} takes {what}, got '{value}'"))
        };
        let alpha = options.remove("lora_alpha");
        let targets = options.remove("lora_targets");
        let Some(rank) = options.remove("lora_rank") else {
            return match alpha.or(targets) {
                Some(_) => Err(ModelError::Config(
                    "lora_alpha and lora_targets need lora_rank".into(),
                )),
                None => Ok(None),
            };
        };
        let rank: usize = rank
            .parse()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| bad("lora_rank", &rank, "a whole number above 0"))?;
        let alpha = match alpha {
            Some(a) => a.parse().map_err(|_| bad("lora_alpha", &a, "a number"))?,
            None => rank as f64,
        };
        let targets = targets
            .as_deref()
            .unwrap_or("q_proj,k_proj,v_proj,o_proj")
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        Ok(Some(Self {
            rank,
            alpha,
            targets,
        }))
    }
}

/// A SmolVLM being trained, fully or through adapters.
pub struct SmolVlmTraining {
    trained: Trained,
    model: SmolVlm,
}

impl SmolVlmTraining {
    /// The model in `source` on `placement`'s device in f32: every weight a variable, or with
    /// `lora`'s adapters (drawn from `seed`) the only variables.
    pub fn from_weights(
        source: &ModelSource,
        placement: &Placement,
        lora: Option<&LoraOptions>,
        seed: u64,
    ) -> Result<Self, ModelError> {
        let (config, processor, tokenizer) = SmolVlm::read_parts(source)?;
        let placement = Placement {
            device: placement.device.clone(),
            dtype: DType::F32,
        };
        let build_error = |e| ModelError::file(&source.weights, e);
        match lora {
            None => {
                let variables = VarMap::new();
                let vb = VarBuilder::from_varmap(&variables, DType::F32, &placement.device);
                let model = SmolVlm::new(vb, config, processor, tokenizer, placement, None)
                    .map_err(build_error)?;
                let mut variables = variables;
                variables
                    .load(&source.weights)
                    .map_err(|e| ModelError::file(&source.weights, e))?;
                Ok(Self {
                    trained: Trained::Full(variables),
                    model,
                })
            }
            Some(options) => {
                let lora = Lora::new(
                    options.rank,
                    options.alpha,
                    options.targets.clone(),
                    &placement.device,
                    seed,
                );
                // SAFETY: read-only memory map; the file is assumed not to change meanwhile.
                let vb = unsafe {
                    crate::runtime::weights::mapped(
                        std::slice::from_ref(&source.weights),
                        DType::F32,
                        &placement.device,
                    )?
                };
                let model = SmolVlm::new(vb, config, processor, tokenizer, placement, Some(&lora))
                    .map_err(build_error)?;
                if lora.variables().is_empty() {
                    return Err(ModelError::Config(format!(
                        "lora_targets {:?} name no layer of the text model",
                        options.targets
                    )));
                }
                Ok(Self {
                    trained: Trained::Adapters {
                        lora: Box::new(lora),
                        base: source.weights.clone(),
                    },
                    model,
                })
            }
        }
    }

    /// A model of the configuration, processor and tokenizer in `folder`, its weights drawn
    /// from `seed` as transformers initialises a new model.
    pub fn from_scratch(
        folder: &ModelSource,
        placement: &Placement,
        seed: u64,
    ) -> Result<Self, ModelError> {
        let (config, processor, tokenizer) = SmolVlm::read_parts(folder)?;
        let placement = Placement {
            device: placement.device.clone(),
            dtype: DType::F32,
        };
        let variables = VarMap::new();
        let vb = VarBuilder::from_varmap(&variables, DType::F32, &placement.device);
        let model = SmolVlm::new(vb, config, processor, tokenizer, placement, None)
            .map_err(|e| ModelError::file(&folder.dir, e))?;
        let training = Self {
            trained: Trained::Full(variables),
            model,
        };
        initialise(&training.named_variables(), seed, &[])?;
        Ok(training)
    }

    /// The network (for preprocessing and, after training, generation).
    pub fn model(&self) -> &SmolVlm {
        &self.model
    }

    /// The trained variables by name: every weight, or the adapters.
    pub fn named_variables(&self) -> BTreeMap<String, Var> {
        match &self.trained {
            Trained::Full(variables) => {
                let data = variables.data().lock().expect("variables lock");
                data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            }
            Trained::Adapters { lora, .. } => lora.variables(),
        }
    }

    /// Writes every weight to `path` (safetensors, transformers' names), adapters merged.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        match &self.trained {
            Trained::Full(variables) => variables.save(path).map_err(|e| ModelError::file(path, e)),
            Trained::Adapters { lora, base } => {
                let weights = candle_core::safetensors::load(base, &Device::Cpu)
                    .map_err(|e| ModelError::file(base, e))?;
                let merged = lora.merge(weights).map_err(|e| ModelError::file(base, e))?;
                candle_core::safetensors::save(&merged, path).map_err(|e| ModelError::file(path, e))
            }
        }
    }
}

impl Trainable<AnswerExample> for SmolVlmTraining {
    fn loss(&self, batch: &[&AnswerExample]) -> candle_core::Result<Tensor> {
        self.model.answer_loss(batch)
    }

    fn variables(&self) -> BTreeMap<String, Var> {
        self.named_variables()
    }
}

/// One row of the query: its name in reports, photo, prompt (none: the extraction prompt) and
/// answer.
type Row = (
    String,
    Option<ImageArgument>,
    Option<String>,
    Option<String>,
);

/// The job's rows: `image`, `target` and, when the query has it, `prompt`.
fn table(job: &TrainingJob<'_>) -> Result<Vec<Row>, ModelError> {
    let mut table: Vec<Row> = Vec::new();
    for batch in &job.rows {
        let column = |name| {
            column(
                batch,
                name,
                "smolvlm",
                "image, target and optionally prompt",
            )
        };
        let images =
            rows::images(&column("image")?).map_err(|e| ModelError::Config(e.to_string()))?;
        let targets =
            rows::strings(&column("target")?).map_err(|e| ModelError::Config(e.to_string()))?;
        let prompts = match column("prompt") {
            Ok(prompts) => {
                rows::strings(&prompts).map_err(|e| ModelError::Config(e.to_string()))?
            }
            Err(_) => vec![None; targets.len()],
        };
        for ((image, target), prompt) in images.into_iter().zip(targets).zip(prompts) {
            let name = match &image {
                Some(ImageArgument::Location(path)) => format!("'{path}'"),
                _ => format!("row {}", table.len() + 1),
            };
            table.push((name, image, prompt, target));
        }
    }
    Ok(table)
}

fn examples(
    job: &TrainingJob<'_>,
    table: &[Row],
    model: &SmolVlm,
) -> Result<Prepared<AnswerExample>, ModelError> {
    let settings = job.context.settings();
    let processor = match settings.smolvlm_longest_edge {
        Some(edge) => model.processor().with_longest_edge(edge),
        None => model.processor().clone(),
    };
    let extraction = model.extraction_prompt();
    Ok(prepare(table, |(name, image, prompt, target)| {
        let (Some(image), Some(target)) = (image, target) else {
            return Err(format!("{name}: NULL image or target"));
        };
        let rgb = rows::read_image(job.context, image).map_err(|e| format!("{name}: {e}"))?;
        let image = processor.process(&rgb);
        let question = prompt.as_deref().unwrap_or(&extraction);
        let mut ids = model
            .prompt_ids(&chat_prompt(question), (image.rows, image.cols))
            .map_err(|e| format!("{name}: {e}"))?;
        let answer_from = ids.len();
        ids.extend(
            model
                .answer_ids(target)
                .map_err(|e| format!("{name}: {e}"))?,
        );
        Ok(AnswerExample {
            ids,
            answer_from,
            image,
        })
    }))
}

/// The shape of a SmolVLM trained from scratch (options when there is no `base`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScratchShape {
    /// Width of the text model.
    pub hidden_size: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of the vision tower.
    pub vision_hidden_size: usize,
    /// Vision layers.
    pub vision_layers: usize,
    /// Side of the one frame a photo becomes.
    pub image_size: usize,
    /// Side of a patch.
    pub patch_size: usize,
    /// Tokens the learnt tokenizer may have.
    pub vocab_size: usize,
}

impl ScratchShape {
    /// Takes the shape options out of `options`, with small defaults.
    pub fn take(options: &mut BTreeMap<String, String>) -> Result<Self, ModelError> {
        let mut number = |name: &str, default: usize| take_count(options, name, default);
        let shape = Self {
            hidden_size: number("hidden_size", 64)?,
            layers: number("layers", 2)?,
            heads: number("heads", 4)?,
            kv_heads: number("kv_heads", 2)?,
            vision_hidden_size: number("vision_hidden_size", 64)?,
            vision_layers: number("vision_layers", 2)?,
            image_size: number("image_size", 64)?,
            patch_size: number("patch_size", 8)?,
            vocab_size: number("vocab_size", 1000)?,
        };
        let patches = shape.image_size / shape.patch_size;
        if !shape.hidden_size.is_multiple_of(shape.heads)
            || !shape.heads.is_multiple_of(shape.kv_heads)
            || !shape.vision_hidden_size.is_multiple_of(shape.heads)
            || !shape.image_size.is_multiple_of(shape.patch_size)
            || !patches.is_multiple_of(2)
        {
            return Err(ModelError::Config(format!(
                "hidden_size and vision_hidden_size must be multiples of heads, heads of kv_heads, \
                 and image_size an even number of patch_size: got {shape:?}"
            )));
        }
        Ok(shape)
    }
}

/// SmolVLM's special tokens, and the tile positions a prompt may name.
fn special_tokens() -> Vec<String> {
    let mut tokens: Vec<String> = [
        "<|pad|>",
        "<|im_start|>",
        "<end_of_utterance>",
        "<image>",
        "<fake_token_around_image>",
        "<global-img>",
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    for r in 1..=6 {
        for c in 1..=6 {
            tokens.push(format!("<row_{r}_col_{c}>"));
        }
    }
    tokens
}

/// Writes a from-scratch model's `config.json`, `processor_config.json` and a tokenizer learnt
/// from the rows' chat prompts and answers into `folder`.
fn write_scratch_files(
    folder: &Path,
    shape: &ScratchShape,
    table: &[Row],
) -> Result<(), ModelError> {
    use crate::train::tokenizer::{learn, TokenizerSpec};
    let extraction = default_prompt();
    let corpus: Vec<String> = table
        .iter()
        .filter_map(|(_, _, prompt, target)| {
            let question = prompt.as_deref().unwrap_or(&extraction);
            target
                .as_ref()
                .map(|t| format!("{} {t}", chat_prompt(question)))
        })
        .collect();
    let special = special_tokens();
    let special: Vec<&str> = special.iter().map(String::as_str).collect();
    let tokenizer = learn(
        corpus.iter().map(String::as_str),
        &TokenizerSpec {
            vocab_size: shape.vocab_size,
            special: &special,
            wrap: None,
            lowercase: false,
        },
    )?;
    let id = |t: &str| tokenizer.token_to_id(t).unwrap_or(0);
    let path = folder.join("tokenizer.json");
    tokenizer
        .save(&path, true)
        .map_err(|e| ModelError::file(&path, e))?;
    let config = serde_json::json!({
        "architectures": ["Idefics3ForConditionalGeneration"],
        "model_type": "idefics3",
        "image_token_id": id("<image>"),
        "scale_factor": 2,
        "tie_word_embeddings": false,
        "vision_config": {
            "model_type": "idefics3_vision",
            "hidden_size": shape.vision_hidden_size,
            "intermediate_size": 4 * shape.vision_hidden_size,
            "num_hidden_layers": shape.vision_layers,
            "num_attention_heads": shape.heads,
            "num_channels": 3,
            "image_size": shape.image_size,
            "patch_size": shape.patch_size,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
        },
        "text_config": {
            "model_type": "llama",
            "vocab_size": tokenizer.get_vocab_size(true),
            "hidden_size": shape.hidden_size,
            "intermediate_size": 4 * shape.hidden_size,
            "num_hidden_layers": shape.layers,
            "num_attention_heads": shape.heads,
            "num_key_value_heads": shape.kv_heads,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "max_position_embeddings": 4096,
            "tie_word_embeddings": false,
            "pad_token_id": id("<|pad|>"),
        },
    });
    let processor = serde_json::json!({
        "image_processor": {
            "image_processor_type": "Idefics3ImageProcessor",
            "do_convert_rgb": true,
            "do_resize": true,
            "size": {"longest_edge": shape.image_size},
            "max_image_size": {"longest_edge": shape.image_size},
            "do_image_splitting": false,
            "resample": 1,
            "do_rescale": true,
            "rescale_factor": 1.0 / 255.0,
            "do_normalize": true,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "do_pad": true,
        },
        "image_seq_len": (shape.image_size / shape.patch_size).pow(2) / 4,
        "processor_class": "Idefics3Processor",
    });
    for (name, value) in [
        ("config.json", &config),
        ("processor_config.json", &processor),
    ] {
        let path = folder.join(name);
        let text = serde_json::to_string_pretty(value).map_err(|e| ModelError::file(&path, e))?;
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
    }
    Ok(())
}

/// Trains a SmolVLM on the job's (image, prompt, target) rows, from its base (every weight or
/// LoRA adapters) or, without one, from scratch (a small shape from options, a tokenizer learnt
/// from the prompts and answers, seeded starting weights), and writes the model folder.
pub fn train(job: TrainingJob<'_>) -> Result<TrainingSummary, ModelError> {
    let mut remaining = job.options.clone();
    let options = TrainingOptions::take(&mut remaining)?;
    let lora = LoraOptions::take(&mut remaining)?;
    let kind_options: BTreeMap<String, String> = job
        .options
        .iter()
        .filter(|(k, _)| !TrainingOptions::owns(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let shape = match job.base {
        Some(_) => None,
        None => Some(ScratchShape::take(&mut remaining)?),
    };
    no_options_left("smolvlm", &remaining)?;
    let placement = Placement::parse(&job.context.settings().device, "f32")?;
    std::fs::create_dir_all(&job.output).map_err(|e| ModelError::io(&job.output, e))?;
    let table = table(&job)?;
    let network = match (&job.base, &shape) {
        (Some(base), _) => {
            copy_model_files(&base.dir, &job.output)?;
            SmolVlmTraining::from_weights(base, &placement, lora.as_ref(), options.seed)?
        }
        (None, Some(shape)) => {
            if lora.is_some() {
                return Err(ModelError::Config(
                    "lora_rank adapts a base model: give base, or train every weight".into(),
                ));
            }
            write_scratch_files(&job.output, shape, &table)?;
            let weights = job.output.join("model.safetensors");
            let folder = ModelSource {
                id: "(from scratch)".into(),
                revision: String::new(),
                dir: job.output.clone(),
                weights,
            };
            SmolVlmTraining::from_scratch(&folder, &placement, options.seed)?
        }
        (None, None) => unreachable!("a shape is read when there is no base"),
    };
    let prepared = examples(&job, &table, network.model())?;
    let summary = run(&network, prepared, options, kind_options, &job)?;
    network.save(&job.output.join("model.safetensors"))?;
    if let Some(prompt) = one_prompt(&table) {
        record_extraction_prompt(&job.output, prompt)?;
    }
    Ok(summary)
}

/// The prompt of every row, when they all have the same one.
fn one_prompt(table: &[Row]) -> Option<&str> {
    let first = table.first()?.2.as_deref()?;
    table
        .iter()
        .all(|row| row.2.as_deref() == Some(first))
        .then_some(first)
}

/// Records in the folder's `config.json` the one prompt the model was trained on, so that
/// `smolvlm_extract` without a prompt asks it.
fn record_extraction_prompt(folder: &Path, prompt: &str) -> Result<(), ModelError> {
    let path = folder.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ModelError::file(&path, e))?;
    let serde_json::Value::Object(fields) = &mut config else {
        return Err(ModelError::file(&path, "config.json is not a JSON object"));
    };
    fields.insert(EXTRACTION_PROMPT_KEY.into(), prompt.into());
    let text = serde_json::to_string_pretty(&config).map_err(|e| ModelError::file(&path, e))?;
    std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))
}
