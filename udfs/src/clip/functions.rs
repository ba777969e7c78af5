//! `clip_text_embed(text)` and `clip_image_embed(image)`: L2-normalised CLIP embeddings as
//! `ARRAY<FLOAT>` of the model's projection size.
//!
//! Both see whole Arrow batches and run the model on chunks of `vitrine.udf.batch_size` rows.
//! Texts are ordered before chunking as [`ClipEmbedder::batch_order`] says (by their tokens on
//! the CPU, so that a chunk's texts share their beginnings; by length on a GPU, so that a chunk
//! pads little). Images are read, decoded and preprocessed on the CPU thread pool, one chunk
//! ahead of the model, so that decoding overlaps inference; at most two chunks of pixels are
//! held at once, whatever the table's size. NULL in gives NULL out; a row that cannot be
//! processed follows `vitrine.udf.on_error`.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::plan_datafusion_err;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use rayon::prelude::*;

use crate::clip::ClipEmbedder;
use crate::context::FunctionContext;
use crate::functions::rows::{self, ImageArgument};
use crate::runtime::overlap::overlapped;
use crate::ModelError;

fn return_type(context: &FunctionContext, function: &str) -> Result<DataType> {
    let model = context
        .model::<ClipEmbedder>()
        .map(|(model, _)| model)
        .map_err(|e| plan_datafusion_err!("{function}: {e}"))?;
    Ok(rows::vector_type(model.dimension()))
}

/// `clip_text_embed(text STRING) → ARRAY<FLOAT>`.
#[derive(Debug)]
pub struct ClipTextEmbed {
    context: Arc<FunctionContext>,
    signature: Signature,
}

impl ClipTextEmbed {
    /// The function, reading its model from `context`.
    pub fn new(context: Arc<FunctionContext>) -> Self {
        Self {
            context,
            signature: Signature::string(1, Volatility::Immutable),
        }
    }

    fn embed(&self, texts: &ArrayRef) -> Result<ArrayRef> {
        const NAME: &str = "clip_text_embed";
        let model = self
            .context
            .model::<ClipEmbedder>()
            .map(|(model, _)| model)
            .map_err(|e| rows::model_error(NAME, e))?;
        let batch_size = self
            .context
            .settings()
            .batch_size
            .model_rows(&model.placement().device, || model.text_row_cost());
        let texts = rows::strings(texts)?;
        let present: Vec<usize> = (0..texts.len()).filter(|&i| texts[i].is_some()).collect();
        let refs: Vec<&str> = present
            .iter()
            .map(|&i| texts[i].as_deref().unwrap_or(""))
            .collect();
        let tokens = model
            .tokenize(&refs)
            .map_err(|e| rows::model_error(NAME, e))?;
        let order = model.batch_order(&tokens);
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for chunk in order.chunks(batch_size) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&k| tokens[k].clone()).collect();
            let embedded = model
                .embed_texts(&batch)
                .map_err(|e| rows::model_error(NAME, e))?;
            for (&k, vector) in chunk.iter().zip(embedded) {
                out[present[k]] = Some(vector);
            }
            self.context.count_rows(NAME, chunk.len() as u64);
        }
        self.context
            .count_rows(NAME, (texts.len() - present.len()) as u64);
        rows::vectors(model.dimension(), &out)
    }
}

crate::functions::model_function_identity!(ClipTextEmbed);

impl ScalarUDFImpl for ClipTextEmbed {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "clip_text_embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        return_type(&self.context, self.name())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        rows::per_row(&args.args[0], args.number_rows, |texts| self.embed(texts))
    }
}

/// `clip_image_embed(image) → ARRAY<FLOAT>`; `image` is a path (local, `/Volumes/…`, object
/// store URL) or the encoded image bytes.
#[derive(Debug)]
pub struct ClipImageEmbed {
    context: Arc<FunctionContext>,
    signature: Signature,
}

/// One row's preprocessed pixels, or why there are none.
type Prepared = (usize, std::result::Result<Vec<f32>, ModelError>);

impl ClipImageEmbed {
    /// The function, reading its model and files through `context`.
    pub fn new(context: Arc<FunctionContext>) -> Self {
        Self {
            context,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    fn prepare(
        &self,
        model: &ClipEmbedder,
        image: &ImageArgument,
    ) -> std::result::Result<Vec<f32>, ModelError> {
        let rgb = rows::read_image(&self.context, image)?;
        Ok(model.pixel_values(&rgb))
    }

    fn embed(&self, images: &ArrayRef) -> Result<ArrayRef> {
        const NAME: &str = "clip_image_embed";
        let model = self
            .context
            .model::<ClipEmbedder>()
            .map(|(model, _)| model)
            .map_err(|e| rows::model_error(NAME, e))?;
        let settings = self.context.settings();
        let first_row = self.context.rows_done(NAME);
        let images = rows::images(images)?;
        let present: Vec<usize> = (0..images.len()).filter(|&i| images[i].is_some()).collect();
        let mut out: Vec<Option<Vec<f32>>> = vec![None; images.len()];
        let row_name = |i: usize| rows::row_name(&images, i, first_row);

        // Preprocessing runs one chunk ahead of the model.
        let prepare = |chunk: &[usize]| -> Vec<Prepared> {
            chunk
                .par_iter()
                .map(|&i| {
                    let image = images[i].as_ref().expect("present rows are not NULL");
                    (i, self.prepare(&model, image))
                })
                .collect()
        };
        overlapped(
            present.chunks(
                settings
                    .batch_size
                    .model_rows(&model.placement().device, || model.image_row_cost()),
            ),
            prepare,
            |prepared| -> Result<()> {
                let chunk_rows = prepared.len() as u64;
                let mut ready = Vec::with_capacity(prepared.len());
                let mut pixels = Vec::with_capacity(prepared.len());
                for (i, result) in prepared {
                    match result {
                        Ok(p) => {
                            ready.push(i);
                            pixels.push(p);
                        }
                        Err(error) => rows::row_failed(
                            &self.context,
                            settings.on_error,
                            NAME,
                            row_name(i),
                            error.to_string(),
                        )?,
                    }
                }
                if !pixels.is_empty() {
                    let embedded = model
                        .embed_images(&pixels)
                        .map_err(|e| rows::model_error(NAME, e))?;
                    for (i, vector) in ready.iter().zip(embedded) {
                        out[*i] = Some(vector);
                    }
                }
                self.context.count_rows(NAME, chunk_rows);
                Ok(())
            },
        )?;
        self.context
            .count_rows(NAME, (images.len() - present.len()) as u64);
        rows::vectors(model.dimension(), &out)
    }
}

crate::functions::model_function_identity!(ClipImageEmbed);

impl ScalarUDFImpl for ClipImageEmbed {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "clip_image_embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::Null => return_type(&self.context, self.name()),
            other => Err(plan_datafusion_err!(
                "clip_image_embed: expected an image path (STRING) or image bytes (BINARY), got {other}"
            )),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        rows::per_row(&args.args[0], args.number_rows, |images| self.embed(images))
    }
}
