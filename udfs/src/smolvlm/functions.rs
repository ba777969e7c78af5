//! `smolvlm_generate(image, prompt [, max_new_tokens = 256]) → STRING`: SmolVLM's greedy answer
//! to `prompt` about the photo (a path or the image bytes), in SmolVLM's chat form; and
//! `smolvlm_extract(image [, prompt])`, the garment attributes parsed from such an answer.
//!
//! Rows are generated in batches of `vitrine.udf.batch_size` (prompts of any length and photos
//! of any tile count together), each batch's photos processed just before it. NULL image or
//! prompt gives NULL; an image that cannot be read follows `vitrine.udf.on_error`.

use std::any::Any;
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, ListBuilder, StringArray, StringBuilder, StructArray,
    UInt32Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int64Type};
use datafusion::common::{exec_datafusion_err, plan_datafusion_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use crate::context::{FunctionContext, ModelUse};
use crate::functions::rows;
use crate::runtime::overlap::overlapped;
use crate::smolvlm::extract::{parse_reply, vocabulary, Extraction, VOCABULARIES};
use crate::smolvlm::model::{GenerationRequest, SmolVlm};
use crate::smolvlm::prompt::chat_prompt;

/// New tokens when `max_new_tokens` is not given.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 256;

/// `smolvlm_generate(image, prompt [, max_new_tokens])`.
#[derive(Debug)]
pub struct SmolvlmGenerate {
    context: Arc<FunctionContext>,
    signature: Signature,
}

impl SmolvlmGenerate {
    /// The function, reading its model and files through `context`.
    pub fn new(context: Arc<FunctionContext>) -> Self {
        Self {
            context,
            signature: Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
        }
    }

    fn generate(&self, args: &[ArrayRef]) -> Result<ArrayRef> {
        let prompts = rows::strings(&args[1])?;
        let (answers, _) = answer_rows(
            &self.context,
            "smolvlm_generate",
            &args[0],
            Some(prompts),
            args.get(2),
        )?;
        Ok(Arc::new(
            answers
                .into_iter()
                .map(|a| match a {
                    Answer::Text(text) => Some(text),
                    Answer::Null | Answer::Failed(_) => None,
                })
                .collect::<StringArray>(),
        ))
    }
}

/// What one row gave.
enum Answer {
    /// NULL image or prompt.
    Null,
    /// The generated text.
    Text(String),
    /// Why the row's image could not be used (recorded in the report, or the statement failed).
    Failed(String),
}

/// The seed of a row's draws when sampling: from the session's seed, the photo and the prompt,
/// so that a row answers the same whatever rows share its batch or partition.
fn row_seed(seed: u64, image: &rows::ImageArgument, prompt: &str) -> u64 {
    let mut hash = Sha256::new();
    hash.update(seed.to_le_bytes());
    match image {
        rows::ImageArgument::Location(path) => hash.update(path.as_bytes()),
        rows::ImageArgument::Bytes(bytes) => hash.update(bytes),
    }
    hash.update(prompt.as_bytes());
    u64::from_le_bytes(hash.finalize()[..8].try_into().expect("8 bytes"))
}

/// Tokens of the longest of `prompts` (by its text), or its length in bytes where it cannot be
/// tokenised (its row fails later, naming it): an estimate that sizes batches, not a bound any row
/// relies on.
fn longest_question_tokens(model: &SmolVlm, prompts: &[Option<String>]) -> usize {
    let longest = prompts.iter().flatten().max_by_key(|p| p.len());
    longest.map_or(0, |p| model.question_tokens(p).unwrap_or(p.len()))
}

/// The most new tokens any row may generate: its `max_new_tokens` (the allowed ones), else the
/// default.
fn most_new_tokens(limits: Option<&ArrayRef>) -> usize {
    let Some(limits) = limits else {
        return DEFAULT_MAX_NEW_TOKENS;
    };
    let limits = limits.as_primitive::<Int64Type>();
    let given = limits.iter().flatten().filter(|n| (1..=8192).contains(n));
    let most = given.max().map_or(0, |n| n as usize);
    if limits.null_count() > 0 {
        most.max(DEFAULT_MAX_NEW_TOKENS)
    } else {
        most
    }
}

/// Generates the answer to each row's prompt about its image, `vitrine.udf.batch_size` rows per
/// batched generation. Each batch's photos are read and processed (in parallel) on a helper
/// thread while the model answers the batch before, so memory holds at most two batches of frames
/// whatever the table's size. Without `prompts`, every row asks the model's
/// [`SmolVlm::extraction_prompt`]. Also says which model answered.
fn answer_rows(
    context: &FunctionContext,
    name: &'static str,
    images: &ArrayRef,
    prompts: Option<Vec<Option<String>>>,
    limits: Option<&ArrayRef>,
) -> Result<(Vec<Answer>, ModelUse)> {
    let (model, used) = context
        .model::<SmolVlm>()
        .map_err(|e| rows::model_error(name, e))?;
    let prompts = prompts.unwrap_or_else(|| vec![Some(model.extraction_prompt()); images.len()]);
    let settings = context.settings();
    let processor = match settings.smolvlm_longest_edge {
        Some(edge) => model.processor().with_longest_edge(edge),
        None => model.processor().clone(),
    };
    let decoding = settings.smolvlm_decoding();
    let images = rows::images(images)?;
    let limits = match limits {
        Some(a) => Some(datafusion::arrow::compute::cast(a, &DataType::Int64)?),
        None => None,
    };
    let rows_per_batch = settings
        .batch_size
        .model_rows(&model.placement().device, || {
            model.row_cost(
                &processor,
                longest_question_tokens(&model, &prompts),
                most_new_tokens(limits.as_ref()),
            )
        });
    let first_row = context.rows_done(name);
    let mut out: Vec<Answer> = (0..images.len()).map(|_| Answer::Null).collect();
    let rows: Vec<usize> = (0..images.len()).collect();
    // On the helper thread: the chunk and, for each of its rows with an image and a prompt, the
    // processed photo or why it could not be read.
    let prepare = |chunk: &[usize]| {
        let photos: Vec<_> = chunk
            .par_iter()
            .filter_map(|&i| {
                let (Some(image), Some(_)) = (&images[i], &prompts[i]) else {
                    return None;
                };
                let photo = rows::read_image(context, image).map(|rgb| processor.process(&rgb));
                Some((i, photo))
            })
            .collect();
        (chunk.len(), photos)
    };
    overlapped(
        rows.chunks(rows_per_batch),
        prepare,
        |(chunk_len, photos)| {
            // (row, processed photo, chat prompt, token limit, seed) of the chunk's usable rows.
            let mut pending = Vec::with_capacity(photos.len());
            for (i, photo) in photos {
                let (Some(image), Some(prompt)) = (&images[i], &prompts[i]) else {
                    unreachable!("prepared rows have an image and a prompt");
                };
                let limit = match &limits {
                    Some(l) if !l.is_null(i) => l.as_primitive::<Int64Type>().value(i),
                    _ => DEFAULT_MAX_NEW_TOKENS as i64,
                };
                if !(1..=8192).contains(&limit) {
                    return Err(exec_datafusion_err!(
                        "{name}: max_new_tokens must be from 1 to 8192, got {limit}"
                    ));
                }
                match photo {
                    Ok(photo) => pending.push((
                        i,
                        photo,
                        chat_prompt(prompt),
                        limit,
                        row_seed(settings.smolvlm_seed, image, prompt),
                    )),
                    Err(error) => {
                        let message = error.to_string();
                        let row = rows::row_name(&images, i, first_row);
                        rows::row_failed(
                            context,
                            settings.on_error,
                            name,
                            row.clone(),
                            message.clone(),
                        )?;
                        out[i] = Answer::Failed(format!("{row}: {message}"));
                    }
                }
            }
            let requests: Vec<GenerationRequest> = pending
                .iter()
                .map(|(_, image, prompt, limit, seed)| GenerationRequest {
                    image,
                    prompt,
                    max_new_tokens: *limit as usize,
                    seed: *seed,
                })
                .collect();
            let generated = model
                .generate_batch(&requests, decoding, true)
                .map_err(|e| rows::model_error(name, e))?;
            for ((i, ..), tokens) in pending.iter().zip(generated) {
                out[*i] = Answer::Text(
                    model
                        .decode(&tokens)
                        .map_err(|e| rows::model_error(name, e))?,
                );
            }
            context.count_rows(name, chunk_len as u64);
            Ok(())
        },
    )?;
    Ok((out, used))
}

crate::functions::model_function_identity!(SmolvlmGenerate);

impl ScalarUDFImpl for SmolvlmGenerate {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "smolvlm_generate"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !matches!(
            arg_types[1],
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
        ) {
            return Err(plan_datafusion_err!(
                "smolvlm_generate: the prompt must be a STRING, got {}",
                arg_types[1]
            ));
        }
        if let Some(t) = arg_types.get(2) {
            if !(t.is_integer() || t.is_null()) {
                return Err(plan_datafusion_err!(
                    "smolvlm_generate: max_new_tokens must be an integer, got {t}"
                ));
            }
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = rows::arrays(&args.args, args.number_rows)?;
        Ok(ColumnarValue::Array(self.generate(&arrays)?))
    }
}

/// `smolvlm_extract(image [, prompt | questions]) → STRUCT<material, pattern, formality,
/// style_keywords, visual_details, collar_type, sleeve_length, fit_type, confidence_material,
/// extraction_success, error, errors, raw_response, model_id, model_revision>`: the garment
/// attributes of the photo, asked with the default prompt for REFERENCE §4's JSON (or `prompt`)
/// and parsed from the reply, with the model (hub id or folder, and revision) that answered. A
/// photo that cannot be used gives `extraction_success = false` and an `error` naming it; a reply
/// without valid JSON gives `extraction_success = false` with the reply kept.
///
/// `questions` (`ARRAY<STRING>`) asks several prompts about the same photo, each answering a
/// group of attributes, as the original notebook does; a NULL question is not asked, so
/// `CASE WHEN master_category = 'Apparel' THEN '…' END` asks it of apparel only. The replies
/// merge into one result ([`Extraction::merge`]): each attribute from the first reply that has
/// it, success when every reply parsed, `errors` one per failed question (`error` joins them).
#[derive(Debug)]
pub struct SmolvlmExtract {
    context: Arc<FunctionContext>,
    signature: Signature,
}

/// The fields of `smolvlm_extract`'s result.
pub fn extraction_fields() -> Fields {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let list = |n: &str| {
        Field::new(
            n,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        )
    };
    Fields::from(vec![
        text("material"),
        text("pattern"),
        text("formality"),
        list("style_keywords"),
        list("visual_details"),
        text("collar_type"),
        text("sleeve_length"),
        text("fit_type"),
        text("confidence_material"),
        Field::new("extraction_success", DataType::Boolean, true),
        text("error"),
        list("errors"),
        text("raw_response"),
        text("model_id"),
        text("model_revision"),
    ])
}

impl SmolvlmExtract {
    /// The function, reading its model and files through `context`.
    pub fn new(context: Arc<FunctionContext>) -> Self {
        Self {
            context,
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
        }
    }

    /// The answers for each row: one per question asked about its photo (none for a NULL row).
    fn answers(&self, args: &[ArrayRef]) -> Result<(Vec<Vec<Answer>>, ModelUse)> {
        const NAME: &str = "smolvlm_extract";
        let one_each = |(answers, used): (Vec<Answer>, ModelUse)| {
            (answers.into_iter().map(|a| vec![a]).collect(), used)
        };
        let Some(questions) = args.get(1) else {
            return answer_rows(&self.context, NAME, &args[0], None, None).map(one_each);
        };
        if !matches!(
            questions.data_type(),
            DataType::List(_) | DataType::LargeList(_)
        ) {
            let prompts = Some(rows::strings(questions)?);
            return answer_rows(&self.context, NAME, &args[0], prompts, None).map(one_each);
        }
        // Several questions: each (row, question) pair is a row of one generation.
        let questions = datafusion::arrow::compute::cast(
            questions,
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        )?;
        let questions = questions.as_list::<i32>();
        let (mut asked_of, mut prompts) = (Vec::new(), Vec::new());
        for row in 0..questions.len() {
            if questions.is_null(row) {
                continue;
            }
            for prompt in questions.value(row).as_string::<i32>().iter().flatten() {
                asked_of.push(row as u32);
                prompts.push(Some(prompt.to_string()));
            }
        }
        let asked_of = UInt32Array::from(asked_of);
        let images = datafusion::arrow::compute::take(&args[0], &asked_of, None)?;
        let (flat, used) = answer_rows(&self.context, NAME, &images, Some(prompts), None)?;
        let mut answers: Vec<Vec<Answer>> = (0..args[0].len()).map(|_| Vec::new()).collect();
        for (row, answer) in asked_of.values().iter().zip(flat) {
            answers[*row as usize].push(answer);
        }
        Ok((answers, used))
    }

    fn extract(&self, args: &[ArrayRef]) -> Result<ArrayRef> {
        let (answers, used) = self.answers(args)?;
        let mut nulls = Vec::with_capacity(answers.len());
        let extractions: Vec<Extraction> = answers
            .into_iter()
            .map(|replies| {
                let replies: Vec<Extraction> = replies
                    .into_iter()
                    .filter_map(|a| match a {
                        Answer::Text(reply) => Some(parse_reply(&reply)),
                        Answer::Failed(error) => Some(Extraction {
                            errors: vec![error],
                            ..Default::default()
                        }),
                        Answer::Null => None,
                    })
                    .collect();
                nulls.push(!replies.is_empty());
                match replies.len() {
                    0 => Extraction::default(),
                    1 => replies.into_iter().next().expect("one reply"),
                    _ => Extraction::merge(replies),
                }
            })
            .collect();
        let text = |f: fn(&Extraction) -> Option<&str>| -> ArrayRef {
            Arc::new(extractions.iter().map(f).collect::<StringArray>())
        };
        let constant = |value: &str| -> ArrayRef {
            Arc::new(
                nulls
                    .iter()
                    .map(|present| present.then_some(value))
                    .collect::<StringArray>(),
            )
        };
        let list = |f: fn(&Extraction) -> &Vec<String>| -> ArrayRef {
            let mut builder = ListBuilder::new(StringBuilder::new());
            for (e, present) in extractions.iter().zip(&nulls) {
                for v in f(e) {
                    builder.values().append_value(v);
                }
                builder.append(*present);
            }
            Arc::new(builder.finish())
        };
        let columns: Vec<ArrayRef> = vec![
            text(|e| e.material.as_deref()),
            text(|e| e.pattern.as_deref()),
            text(|e| e.formality.as_deref()),
            list(|e| &e.style_keywords),
            list(|e| &e.visual_details),
            text(|e| e.collar_type.as_deref()),
            text(|e| e.sleeve_length.as_deref()),
            text(|e| e.fit_type.as_deref()),
            text(|e| e.confidence_material.as_deref()),
            // NULL where the row is NULL, so that field access sees NULL too.
            Arc::new(
                extractions
                    .iter()
                    .zip(&nulls)
                    .map(|(e, present)| present.then_some(e.extraction_success))
                    .collect::<BooleanArray>(),
            ),
            Arc::new(
                extractions
                    .iter()
                    .map(|e| (!e.errors.is_empty()).then(|| e.errors.join("; ")))
                    .collect::<StringArray>(),
            ),
            list(|e| &e.errors),
            text(|e| Some(e.raw_response.as_str()).filter(|r| !r.is_empty())),
            constant(&used.id),
            constant(&used.revision),
        ];
        Ok(Arc::new(StructArray::try_new(
            extraction_fields(),
            columns,
            Some(NullBuffer::from(nulls)),
        )?))
    }
}

crate::functions::model_function_identity!(SmolvlmExtract);

impl ScalarUDFImpl for SmolvlmExtract {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "smolvlm_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let text = |t: &DataType| {
            matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
            )
        };
        if let Some(t) = arg_types.get(1) {
            let questions = match t {
                DataType::List(item) | DataType::LargeList(item) => text(item.data_type()),
                t => text(t),
            };
            if !questions {
                return Err(plan_datafusion_err!(
                    "smolvlm_extract: the prompt must be a STRING or an ARRAY<STRING> of \
                     questions, got {t}"
                ));
            }
        }
        Ok(DataType::Struct(extraction_fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = rows::arrays(&args.args, args.number_rows)?;
        Ok(ColumnarValue::Array(self.extract(&arrays)?))
    }
}

/// `smolvlm_vocabulary(column) → ARRAY<STRING>`: the closed vocabulary the default prompt gives for
/// an extraction column (`material`, `pattern`, … `confidence_material`), so that SQL can count
/// the values a model answered outside it.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SmolvlmVocabulary {
    signature: Signature,
}

impl SmolvlmVocabulary {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl Default for SmolvlmVocabulary {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for SmolvlmVocabulary {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "smolvlm_vocabulary"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Utf8,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = rows::arrays(&args.args, args.number_rows)?;
        let mut builder = ListBuilder::new(StringBuilder::new());
        for field in rows::strings(&arrays[0])? {
            let Some(field) = field else {
                builder.append_null();
                continue;
            };
            let values = vocabulary(&field).ok_or_else(|| {
                exec_datafusion_err!(
                    "smolvlm_vocabulary: no vocabulary for '{field}'; the columns with one are {}",
                    VOCABULARIES
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            for v in values {
                builder.values().append_value(v);
            }
            builder.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(builder.finish())))
    }
}
