//! A loaded SmolVLM: processor, tokenizer, vision tower, connector and text model, from a
//! Hugging Face `Idefics3ForConditionalGeneration` folder; greedy generation for one image.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::processor::{Idefics3ImageProcessor, Idefics3ProcessorConfig, ProcessedImage};
use super::prompt::ImageTokens;
use super::text::{argmax_last, merge_image_features, KvCache, LlamaConfig, TextModel};
use super::vision::{Connector, SiglipConfig, SiglipVision};
use crate::runtime::placement::Placement;
use crate::runtime::source::ModelSource;
use crate::runtime::ModelError;

/// The files a SmolVLM folder must hold besides its weights (the image processor's settings are
/// read from `preprocessor_config.json` or, as transformers 5 saves them, `processor_config.json`).
pub const SMOLVLM_FILES: &[&str] = &["config.json", "tokenizer.json"];

/// The longest context the rotary tables are built for.
const MAX_POSITIONS: usize = 16_384;

/// An `Idefics3Config`.
#[derive(Debug, Clone, Deserialize)]
pub struct Idefics3Config {
    /// The SigLIP tower.
    pub vision_config: SiglipConfig,
    /// The Llama text model.
    pub text_config: LlamaConfig,
    /// Pixel-shuffle factor.
    #[serde(default = "default_scale_factor")]
    pub scale_factor: usize,
    /// The `<image>` token.
    pub image_token_id: u32,
}

fn default_scale_factor() -> usize {
    2
}

#[derive(Deserialize)]
struct ProcessorFile {
    image_processor: Idefics3ProcessorConfig,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ModelError::file(path, e))
}

/// A loaded SmolVLM.
pub struct SmolVlm {
    vision: SiglipVision,
    connector: Connector,
    text: TextModel,
    tokenizer: Tokenizer,
    processor: Idefics3ImageProcessor,
    tokens: ImageTokens,
    config: Idefics3Config,
    placement: Placement,
    end_of_utterance: Option<u32>,
}

impl SmolVlm {
    /// Loads the model in `source` onto `placement`.
    pub fn load(source: &ModelSource, placement: Placement) -> Result<Self, ModelError> {
        let config: Idefics3Config = read_json(&source.file("config.json"))?;
        let processor_config = if source.file("preprocessor_config.json").is_file() {
            read_json::<Idefics3ProcessorConfig>(&source.file("preprocessor_config.json"))?
        } else {
            read_json::<ProcessorFile>(&source.file("processor_config.json"))?.image_processor
        };
        let processor = Idefics3ImageProcessor::new(processor_config)
            .map_err(|e| ModelError::file(&source.dir, e))?;
        let tokenizer_path = source.file("tokenizer.json");
        let tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| ModelError::file(&tokenizer_path, e))?;
        let v = &config.vision_config;
        let seq_len = (v.image_size / v.patch_size).pow(2) / config.scale_factor.pow(2);
        // SAFETY: read-only memory map; the file is assumed not to change while the process runs.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                std::slice::from_ref(&source.weights),
                placement.dtype,
                &placement.device,
            )?
        };
        let load = |e: candle_core::Error| ModelError::file(&source.weights, e);
        Ok(Self {
            vision: SiglipVision::new(vb.pp("model.vision_model"), v).map_err(load)?,
            connector: Connector::new(
                vb.pp("model.connector"),
                v.hidden_size,
                config.text_config.hidden_size,
                config.scale_factor,
            )
            .map_err(load)?,
            text: TextModel::new(vb.clone(), &config.text_config, MAX_POSITIONS).map_err(load)?,
            end_of_utterance: tokenizer.token_to_id("<end_of_utterance>"),
            tokenizer,
            processor,
            tokens: ImageTokens::smolvlm(seq_len),
            config,
            placement,
        })
    }

    /// The image processor.
    pub fn processor(&self) -> &Idefics3ImageProcessor {
        &self.processor
    }

    /// Token ids of `prompt` (holding one `<image>`) for an image cut into `grid` tiles.
    pub fn prompt_ids(&self, prompt: &str, grid: (usize, usize)) -> Result<Vec<u32>, ModelError> {
        let text = self
            .tokens
            .expand_prompt(prompt, &[grid])
            .map_err(ModelError::Tokenizer)?;
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Greedy decoding of up to `max_new_tokens` after `prompt` about `image`; stops early at
    /// `<end_of_utterance>` when `stop_at_end` (the token is not returned).
    pub fn generate(
        &self,
        image: &ProcessedImage,
        prompt: &str,
        max_new_tokens: usize,
        stop_at_end: bool,
    ) -> Result<Vec<u32>, ModelError> {
        let ids = self.prompt_ids(prompt, (image.rows, image.cols))?;
        let side = self.processor.tile() as usize;
        let flat: Vec<f32> = image.frames.concat();
        let frames = Tensor::from_vec(
            flat,
            (image.frames.len(), 3, side, side),
            &self.placement.device,
        )?
        .to_dtype(self.placement.dtype)?;
        let features = self.connector.forward(&self.vision.forward(&frames)?)?;
        let features = features.reshape(((), self.config.text_config.hidden_size))?;
        let id_tensor = Tensor::new(ids.as_slice(), &self.placement.device)?.unsqueeze(0)?;
        let embeds = merge_image_features(
            &self.text.embed(&id_tensor)?,
            &ids,
            self.config.image_token_id,
            &features,
        )?;
        let mut cache = KvCache::default();
        let mut logits = self.text.forward(&embeds, &mut cache)?;
        let mut generated = Vec::with_capacity(max_new_tokens);
        while generated.len() < max_new_tokens {
            let next = argmax_last(&logits.to_dtype(DType::F32)?)?;
            if stop_at_end && Some(next) == self.end_of_utterance {
                break;
            }
            generated.push(next);
            let last = Tensor::new(&[next], &self.placement.device)?.unsqueeze(0)?;
            logits = self.text.forward(&self.text.embed(&last)?, &mut cache)?;
        }
        Ok(generated)
    }

    /// The text of generated tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }
}
