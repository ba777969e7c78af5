//! Training SmolVLM: the whole network over variables, trained on (image, prompt, answer) rows
//! with transformers' causal-LM loss on the answer's tokens; saved under transformers' names
//! beside the base's configuration, tokenizer and processor files.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::extract::default_prompt;
use super::model::{AnswerExample, SmolVlm};
use super::prompt::chat_prompt;
use crate::functions::rows::{self, ImageArgument};
use crate::runtime::placement::Placement;
use crate::runtime::source::ModelSource;
use crate::train::lora::Lora;
use crate::train::{
    column, copy_model_files, no_options_left, prepare, run, Skipped, Trainable, TrainingJob,
    TrainingOptions, TrainingSummary,
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
                    VarBuilder::from_mmaped_safetensors(
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

/// The (image, prompt, answer) examples of the job's `image`, `target` and optional `prompt`
/// columns.
fn examples(
    job: &TrainingJob<'_>,
    model: &SmolVlm,
) -> Result<(Vec<AnswerExample>, Skipped), ModelError> {
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
    let settings = job.context.settings();
    let processor = match settings.smolvlm_longest_edge {
        Some(edge) => model.processor().with_longest_edge(edge),
        None => model.processor().clone(),
    };
    let extraction = default_prompt();
    Ok(prepare(&table, |(name, image, prompt, target)| {
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

/// Fine-tunes the job's base SmolVLM on its (image, prompt, target) rows and writes the model
/// folder.
pub fn train(job: TrainingJob<'_>) -> Result<TrainingSummary, ModelError> {
    let mut remaining = job.options.clone();
    let options = TrainingOptions::take(&mut remaining)?;
    let lora = LoraOptions::take(&mut remaining)?;
    no_options_left("smolvlm", &remaining)?;
    let mut kind_options = job.options.clone();
    kind_options.retain(|k, _| k.starts_with("lora_"));
    let base = job.base.as_ref().ok_or_else(|| {
        ModelError::Config(
            "model_type 'smolvlm' fine-tunes a model: give base = '<folder, hub id or model>'"
                .into(),
        )
    })?;
    let placement = Placement::parse(&job.context.settings().device, "f32")?;
    let network = SmolVlmTraining::from_weights(base, &placement, lora.as_ref(), options.seed)?;
    let (examples, skipped) = examples(&job, network.model())?;
    let summary = run(&network, examples, skipped, options, kind_options, &job)?;
    std::fs::create_dir_all(&job.output).map_err(|e| ModelError::io(&job.output, e))?;
    network.save(&job.output.join("model.safetensors"))?;
    copy_model_files(&base.dir, &job.output)?;
    Ok(summary)
}
