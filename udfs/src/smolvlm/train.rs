//! Training SmolVLM: the whole network over variables, trained on (image, prompt, answer) rows
//! with transformers' causal-LM loss on the answer's tokens; saved under transformers' names
//! beside the base's configuration, tokenizer and processor files.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::extract::default_prompt;
use super::model::{AnswerExample, SmolVlm};
use super::prompt::chat_prompt;
use crate::functions::rows::{self, ImageArgument};
use crate::runtime::placement::Placement;
use crate::runtime::source::ModelSource;
use crate::train::{
    column, copy_model_files, fit, no_options_left, parameter_count, prepare, split, Skipped,
    Trainable, TrainingJob, TrainingOptions, TrainingSummary,
};
use crate::ModelError;

/// A SmolVLM whose every weight is a variable.
pub struct SmolVlmTraining {
    variables: VarMap,
    model: SmolVlm,
}

impl SmolVlmTraining {
    /// The model in `source`, its weights loaded into variables on `placement`'s device (in f32).
    pub fn from_weights(source: &ModelSource, placement: &Placement) -> Result<Self, ModelError> {
        let (config, processor, tokenizer) = SmolVlm::read_parts(source)?;
        let variables = VarMap::new();
        let vb = VarBuilder::from_varmap(&variables, DType::F32, &placement.device);
        let placement = Placement {
            device: placement.device.clone(),
            dtype: DType::F32,
        };
        let model = SmolVlm::new(vb, config, processor, tokenizer, placement)
            .map_err(|e| ModelError::file(&source.weights, e))?;
        let mut training = Self { variables, model };
        training
            .variables
            .load(&source.weights)
            .map_err(|e| ModelError::file(&source.weights, e))?;
        Ok(training)
    }

    /// The network (for preprocessing and, after training, generation).
    pub fn model(&self) -> &SmolVlm {
        &self.model
    }

    /// Every variable by transformers' name of the weight.
    pub fn named_variables(&self) -> BTreeMap<String, Var> {
        let data = self.variables.data().lock().expect("variables lock");
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Writes every weight to `path` (safetensors, transformers' names).
    pub fn save(&self, path: &std::path::Path) -> Result<(), ModelError> {
        self.variables
            .save(path)
            .map_err(|e| ModelError::file(path, e))
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
    let mut kind_options = job.options.clone();
    let options = TrainingOptions::take(&mut kind_options)?;
    no_options_left("smolvlm", &kind_options)?;
    let base = job.base.as_ref().ok_or_else(|| {
        ModelError::Config(
            "model_type 'smolvlm' fine-tunes a model: give base = '<folder, hub id or model>'"
                .into(),
        )
    })?;
    let placement = Placement::parse(&job.context.settings().device, "f32")?;
    let network = SmolVlmTraining::from_weights(base, &placement)?;
    let (examples, skipped) = examples(&job, network.model())?;
    let (train, eval) = split(examples, options.eval_fraction, options.seed);
    let (epochs, resumed_after) = fit(
        &network,
        &train,
        &eval,
        &options,
        &job.checkpoints,
        job.progress,
    )?;
    std::fs::create_dir_all(&job.output).map_err(|e| ModelError::io(&job.output, e))?;
    network.save(&job.output.join("model.safetensors"))?;
    copy_model_files(&base.dir, &job.output)?;
    Ok(TrainingSummary {
        options,
        kind_options,
        train_rows: train.len(),
        eval_rows: eval.len(),
        skipped_rows: skipped.count,
        skipped: skipped.reasons,
        parameters: parameter_count(&network.named_variables()),
        epochs,
        resumed_after,
    })
}
