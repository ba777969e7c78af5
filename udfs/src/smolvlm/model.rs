//! A loaded SmolVLM: processor, tokenizer, vision tower, connector and text model, from a
//! Hugging Face `Idefics3ForConditionalGeneration` folder; batched greedy generation.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::decoding::{self, Decoder, Rules, Sequence};
use super::extract::default_prompt;
use super::processor::{Idefics3ImageProcessor, Idefics3ProcessorConfig, ProcessedImage};
use super::prompt::ImageTokens;
use super::sampling::Decoding;
use super::text::{KvCache, LlamaConfig, PadSide, TextModel};
use super::vision::{Connector, SiglipConfig, SiglipVision};
use crate::runtime::batching::{layer_peak_bytes, one_batch_at_a_time, RowCost};
use crate::runtime::placement::Placement;
use crate::runtime::pool::on_pool;
use crate::runtime::source::ModelSource;
use crate::train::lora::Lora;
use crate::ModelError;

/// The files a SmolVLM folder must hold besides its weights (the image processor's settings are
/// read from `preprocessor_config.json` or, as transformers 5 saves them, `processor_config.json`).
pub const SMOLVLM_FILES: &[&str] = &["config.json", "tokenizer.json"];

/// The longest context the rotary tables are built for.
const MAX_POSITIONS: usize = 16_384;

/// Frames the vision tower takes in one pass: bounds its attention's memory when a batch brings
/// many tiles (a full-size SmolVLM photo is up to 17 frames of 512 px).
const FRAMES_PER_VISION_PASS: usize = 16;

/// The batch beyond which SmolVLM-256M stopped gaining on an H200 in bf16 (photos a second at
/// 64 new tokens: 49.9 at 128 rows, 52.4 at 256; `benches/RESULTS.md`).
const BEST_GPU_ROWS: usize = 256;

/// One prompt about one image, and how many tokens may answer it (at least one).
pub struct GenerationRequest<'a> {
    /// The processed photo.
    pub image: &'a ProcessedImage,
    /// The prompt, holding one `<image>`.
    pub prompt: &'a str,
    /// The most tokens to generate.
    pub max_new_tokens: usize,
    /// Seeds this sequence's draws when sampling.
    pub seed: u64,
}

/// One training example: a prompt about an image followed by the answer to learn.
pub struct AnswerExample {
    /// The prompt's ids (its `<image>` expanded), then the answer's, ending with
    /// `<end_of_utterance>`.
    pub ids: Vec<u32>,
    /// Where the answer begins in `ids`.
    pub answer_from: usize,
    /// The processed photo.
    pub image: ProcessedImage,
}

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
    /// The question a model trained by `CREATE MODEL` on one prompt was trained to answer
    /// (`smolvlm_extract` without a prompt asks it); absent in other checkpoints, ignored by
    /// transformers.
    #[serde(default)]
    pub vitrine_extraction_prompt: Option<String>,
}

/// The `config.json` key of [`Idefics3Config::vitrine_extraction_prompt`].
pub const EXTRACTION_PROMPT_KEY: &str = "vitrine_extraction_prompt";

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
    /// Greedy decoding steps between two reads of the tokens chosen ([`decoding`]).
    steps_per_read: usize,
    /// The most drafts a decoding step checks for each sequence ([`decoding::Rules::drafts`]).
    drafts: usize,
}

/// Greedy decoding steps between two reads of the tokens chosen on a GPU, where each read waits
/// for the device to drain: a sequence that ends runs up to this many steps more (its tokens
/// dropped) so that the others' steps are queued without a wait. Not yet measured: a guess at
/// a balance for 64-token answers. The CPU reads every step (a read costs nothing there).
const GPU_STEPS_PER_READ: usize = 8;

/// The most drafts a decoding step checks for each sequence on the CPU, where a pass over a few
/// tokens a sequence costs less than a pass per token (the weights are read once either way).
/// On SmolVLM-256M's shape with random weights (answers that repeat a token), 64 tokens a photo
/// on the 2-vCPU Xeon: at batch 1, 0.23–0.32 photos/s with none, 0.38–0.42 with 4, 0.40–0.46
/// with 8; at batch 8 and 32, see `benches/RESULTS.md` (2026-12-05, from 07:32 UTC). A GPU
/// reads the tokens every few steps instead, and checks none.
const CPU_DRAFTS: usize = 8;

/// Weights a decoding step must read for drafts to be checked ([`CPU_DRAFTS`]): 16 M (64 MB
/// in f32, more than the processor's caches hold), far below SmolVLM-256M's 135 M. A smaller
/// model's step is not bound by reading its weights, and a pass over several tokens costs more
/// than it saves: the demo's own SmolVLM (0.16 M) answered its 2,985 held-out photos in 9.9 s
/// with drafts, 6.2 s without.
const DRAFTS_FROM_WEIGHTS: usize = 16 << 20;

impl SmolVlm {
    /// Loads the model in `source` onto `placement`.
    pub fn load(source: &ModelSource, placement: Placement) -> Result<Self, ModelError> {
        let (config, processor, tokenizer) = Self::read_parts(source)?;
        // SAFETY: read-only memory map; the file is assumed not to change while the process runs.
        let vb = unsafe {
            crate::runtime::weights::mapped(
                std::slice::from_ref(&source.weights),
                placement.dtype,
                &placement.device,
            )?
        };
        Self::new(vb, config, processor, tokenizer, placement, None)
            .and_then(|mut model| {
                // Loaded weights never change: greedy choices may screen the vocabulary.
                model.text.screen_output(true)?;
                Ok(model)
            })
            .map_err(|e| ModelError::file(&source.weights, e))
    }

    /// The network over `vb` (weights named as transformers names them: a memory-mapped file,
    /// or variables to train), with its processor and tokenizer, and `lora`'s adapters on the
    /// text model's layers it targets.
    pub fn new(
        vb: VarBuilder,
        config: Idefics3Config,
        processor: Idefics3ImageProcessor,
        tokenizer: Tokenizer,
        placement: Placement,
        lora: Option<&Lora>,
    ) -> candle_core::Result<Self> {
        let v = &config.vision_config;
        let seq_len = (v.image_size / v.patch_size).pow(2) / config.scale_factor.pow(2);
        Ok(Self {
            vision: SiglipVision::new(vb.pp("model.vision_model"), v)?,
            connector: Connector::new(
                vb.pp("model.connector"),
                v.hidden_size,
                config.text_config.hidden_size,
                config.scale_factor,
            )?,
            text: TextModel::new(vb.clone(), &config.text_config, MAX_POSITIONS, lora)?,
            end_of_utterance: tokenizer.token_to_id("<end_of_utterance>"),
            steps_per_read: if placement.device.is_cpu() {
                1
            } else {
                GPU_STEPS_PER_READ
            },
            drafts: if placement.device.is_cpu()
                && config.text_config.step_weights() >= DRAFTS_FROM_WEIGHTS
            {
                CPU_DRAFTS
            } else {
                0
            },
            tokenizer,
            processor,
            tokens: ImageTokens::smolvlm(seq_len),
            config,
            placement,
        })
    }

    /// Reads a model folder's configuration, image processor and tokenizer.
    pub fn read_parts(
        source: &ModelSource,
    ) -> Result<(Idefics3Config, Idefics3ImageProcessor, Tokenizer), ModelError> {
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
        Ok((config, processor, tokenizer))
    }

    /// The question `smolvlm_extract` asks when given none: the one this model was trained on,
    /// else the extraction prompt for REFERENCE §4's JSON.
    pub fn extraction_prompt(&self) -> String {
        self.config
            .vitrine_extraction_prompt
            .clone()
            .unwrap_or_else(default_prompt)
    }

    /// The image processor.
    pub fn processor(&self) -> &Idefics3ImageProcessor {
        &self.processor
    }

    /// Where the model runs.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The model reading the tokens greedy decoding chooses every `steps` steps (at least 1)
    /// instead of its device's default (every step on the CPU, every
    /// [`GPU_STEPS_PER_READ`] on a GPU). The tokens generated are the same either way.
    pub fn with_steps_per_read(self, steps: usize) -> Self {
        Self {
            steps_per_read: steps.max(1),
            ..self
        }
    }

    /// The model checking at most `drafts` drafts a decoding step for each sequence instead of
    /// its device's default (0: none; see [`decoding`]). The tokens generated are the same
    /// either way.
    pub fn with_drafts(self, drafts: usize) -> Self {
        Self { drafts, ..self }
    }

    /// The model choosing greedy tokens from every logit, without the int8 screen of the
    /// vocabulary that a model loaded on the CPU in f32 otherwise uses (it chooses the same
    /// tokens, as `smolvlm_agreement --plain-reference` shows).
    pub fn with_whole_logits(mut self) -> Result<Self, ModelError> {
        self.text.screen_output(false)?;
        Ok(self)
    }

    /// What a batch of generations costs on the device by its rows: photos processed by
    /// `processor`, questions of up to `question_tokens` tokens, answers of up to `new_tokens`.
    /// Each row holds its prompt's prefill (the largest layer's peak) and its cache; the vision
    /// tower takes a fixed number of frames at a time whatever the batch.
    pub fn row_cost(
        &self,
        processor: &Idefics3ImageProcessor,
        question_tokens: usize,
        new_tokens: usize,
    ) -> RowCost {
        let element = self.placement.dtype.size_in_bytes();
        let (v, t) = (&self.config.vision_config, &self.config.text_config);
        let patches = (v.image_size / v.patch_size).pow(2);
        let per_frame = layer_peak_bytes(
            patches,
            v.num_attention_heads,
            v.hidden_size,
            v.intermediate_size,
            element,
        );
        let prompt = self.most_prompt_tokens(processor, question_tokens);
        let prefill = layer_peak_bytes(
            prompt,
            t.num_attention_heads,
            t.hidden_size,
            t.intermediate_size,
            element,
        );
        let cache = t.num_hidden_layers * 2 * t.kv_heads() * t.head_dim() * (prompt + new_tokens);
        RowCost {
            bytes: prefill + (cache * element) as u64 + 8 * t.vocab_size as u64,
            fixed: FRAMES_PER_VISION_PASS as u64 * per_frame,
            best_rows: BEST_GPU_ROWS,
        }
    }

    /// The most tokens a chat prompt can hold for a question of `question_tokens` tokens about a
    /// photo processed by `processor`: each frame's image tokens with the few around them, and
    /// the chat form's.
    pub fn most_prompt_tokens(
        &self,
        processor: &Idefics3ImageProcessor,
        question_tokens: usize,
    ) -> usize {
        processor.most_frames() * (self.tokens.seq_len + 3) + question_tokens + 16
    }

    /// Tokens of `question` as a prompt holds it (without the image's).
    pub fn question_tokens(&self, question: &str) -> Result<usize, ModelError> {
        self.tokenizer
            .encode(question, false)
            .map(|e| e.len())
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    /// Token ids of `prompt` (holding one `<image>`) for an image cut into `grid` tiles.
    pub fn prompt_ids(&self, prompt: &str, grid: (usize, usize)) -> Result<Vec<u32>, ModelError> {
        let text = self.tokens.expand_prompt(prompt, &[grid])?;
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of an answer as the assistant's turn holds it (after a space, ending with
    /// `<end_of_utterance>`), to learn after a prompt.
    pub fn answer_ids(&self, answer: &str) -> Result<Vec<u32>, ModelError> {
        let encoding = self
            .tokenizer
            .encode(format!(" {answer}"), false)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        let end = self.end_of_utterance.ok_or_else(|| {
            ModelError::Config("the tokenizer has no <end_of_utterance> to end answers with".into())
        })?;
        ids.push(end);
        Ok(ids)
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
        Ok(self
            .generate_each(
                std::slice::from_ref(image),
                prompt,
                max_new_tokens,
                stop_at_end,
            )?
            .remove(0))
    }

    /// [`SmolVlm::generate`] for each of `images`, asked the same `prompt`, in one batch.
    pub fn generate_each(
        &self,
        images: &[ProcessedImage],
        prompt: &str,
        max_new_tokens: usize,
        stop_at_end: bool,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        let requests: Vec<GenerationRequest> = images
            .iter()
            .map(|image| GenerationRequest {
                image,
                prompt,
                max_new_tokens,
                seed: 0,
            })
            .collect();
        self.generate_batch(&requests, Decoding::Greedy, stop_at_end)
    }

    /// Decodes every request in one batch (`decoding`: greedy, or sampled with each request's
    /// seed): prompts left-padded to the longest, each sequence at its own positions, the images
    /// of all requests through the vision tower together. A sequence leaves the batch (and the
    /// cache) when it ends, at `<end_of_utterance>` if `stop_at_end` or at its
    /// `max_new_tokens`; the others go on.
    pub fn generate_batch(
        &self,
        requests: &[GenerationRequest],
        decoding: Decoding,
        stop_at_end: bool,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        one_batch_at_a_time(&self.placement.device, || {
            on_pool(|| self.generate_batch_here(requests, decoding, stop_at_end))
        })
    }

    /// [`SmolVlm::generate_batch`] on the calling thread.
    fn generate_batch_here(
        &self,
        requests: &[GenerationRequest],
        decoding: Decoding,
        stop_at_end: bool,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let ids = requests
            .iter()
            .map(|r| self.prompt_ids(r.prompt, (r.image.rows, r.image.cols)))
            .collect::<Result<Vec<_>, _>>()?;
        let features = self.image_features(requests.iter().map(|r| r.image))?;
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        let padding: Vec<usize> = ids.iter().map(|ids| longest - ids.len()).collect();
        let prompts: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let embeds = self.text.embed_with_images(
            &prompts,
            self.config.image_token_id,
            &features,
            PadSide::Left,
        )?;
        let most_new = requests.iter().map(|r| r.max_new_tokens).max().unwrap_or(0);
        // Drafts that some sequences keep and others do not take slots as well: room for as
        // many again, so that the cache seldom grows (each growth copies it whole).
        let room = most_new * if self.drafts > 0 { 2 } else { 1 };
        let mut cache = KvCache::padded(padding, room);
        let logits = self.text.forward_last(&embeds, &mut cache)?;
        let sequences: Vec<Sequence> = requests
            .iter()
            .zip(&ids)
            .map(|(r, prompt)| Sequence {
                prompt,
                max_new_tokens: r.max_new_tokens,
                seed: r.seed,
            })
            .collect();
        let rules = Rules {
            decoding,
            end: self.end_of_utterance.filter(|_| stop_at_end),
            steps_per_read: self.steps_per_read,
            drafts: self.drafts,
        };
        let mut decoder = TextDecoder {
            text: &self.text,
            cache: &mut cache,
        };
        Ok(decoding::decode(&logits, &sequences, rules, &mut decoder)?)
    }

    /// transformers' causal-LM loss of a batch: the mean cross-entropy of each answer token given
    /// everything before it (image and prompt included), over all the batch's answer tokens.
    pub fn answer_loss(&self, batch: &[&AnswerExample]) -> candle_core::Result<Tensor> {
        let device = &self.placement.device;
        let features = self
            .image_features(batch.iter().map(|e| &e.image))
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let longest = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let (mut picked, mut targets) = (Vec::new(), Vec::new());
        for (r, example) in batch.iter().enumerate() {
            for p in example.answer_from.max(1)..example.ids.len() {
                picked.push((r * longest + p - 1) as u32);
                targets.push(example.ids[p]);
            }
        }
        if targets.is_empty() {
            candle_core::bail!("no answer token to learn in the batch");
        }
        // Padding after the end: the causal mask keeps it from every real position.
        let prompts: Vec<&[u32]> = batch.iter().map(|e| e.ids.as_slice()).collect();
        let embeds = self.text.embed_with_images(
            &prompts,
            self.config.image_token_id,
            &features,
            PadSide::Right,
        )?;
        let logits = self.text.forward(&embeds, &mut KvCache::default())?;
        let vocabulary = logits.dim(2)?;
        let picked = Tensor::from_vec(picked, targets.len(), device)?;
        let logits = logits
            .reshape((batch.len() * longest, vocabulary))?
            .index_select(&picked, 0)?
            .to_dtype(DType::F32)?;
        let targets = Tensor::from_vec(targets, picked.dim(0)?, device)?;
        candle_nn::loss::cross_entropy(&logits, &targets)
    }

    /// The connector's output for each image (image tokens × text width), the frames of all
    /// images through the vision tower in passes of at most [`FRAMES_PER_VISION_PASS`].
    fn image_features<'a>(
        &self,
        images: impl Iterator<Item = &'a ProcessedImage>,
    ) -> Result<Vec<Tensor>, ModelError> {
        let side = self.processor.tile() as usize;
        let width = self.config.text_config.hidden_size;
        let mut counts = Vec::new();
        let mut frames: Vec<&[f32]> = Vec::new();
        for image in images {
            counts.push(image.frames.len());
            frames.extend(image.frames.iter().map(Vec::as_slice));
        }
        let mut passes = Vec::new();
        for chunk in frames.chunks(FRAMES_PER_VISION_PASS) {
            let pixels = Tensor::from_vec(
                chunk.concat(),
                (chunk.len(), 3, side, side),
                &self.placement.device,
            )?
            .to_dtype(self.placement.dtype)?;
            passes.push(self.connector.forward(&self.vision.forward(&pixels)?)?);
        }
        let all = Tensor::cat(&passes, 0)?;
        let mut start = 0;
        counts
            .into_iter()
            .map(|n| {
                let features = all.narrow(0, start, n)?.reshape(((), width))?;
                start += n;
                Ok(features)
            })
            .collect()
    }

    /// The text of generated tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))
    }
}

/// The text model and a batch's cache, stepped by [`decoding::decode`].
struct TextDecoder<'a> {
    text: &'a TextModel,
    cache: &'a mut KvCache,
}

impl Decoder for TextDecoder<'_> {
    fn step(&mut self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        self.text
            .forward_last(&self.text.embed(tokens)?, self.cache)
    }

    fn greedy_step(&mut self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        self.text.greedy_last(&self.text.embed(tokens)?, self.cache)
    }

    fn greedy_each(&mut self, tokens: &Tensor) -> candle_core::Result<Option<Tensor>> {
        self.text
            .greedy_each(&self.text.embed(tokens)?, self.cache)
            .map(Some)
    }

    fn keep(&mut self, of: usize, kept: &[usize]) -> candle_core::Result<()> {
        self.cache.keep(of, kept)
    }

    fn retain(&mut self, slots: &[usize]) -> candle_core::Result<()> {
        self.cache.retain(slots)
    }
}
