//! `smolvlm_generate(image, prompt [, max_new_tokens = 256]) → STRING`: SmolVLM's greedy answer
//! to `prompt` about the photo (a path or the image bytes), in SmolVLM's chat form.
//!
//! Rows run one at a time, each image processed just before its generation, so that memory
//! holds one image's frames whatever the table's size. NULL image or prompt gives NULL; an image
//! that cannot be read follows `vitrine.udf.on_error`.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{exec_datafusion_err, plan_datafusion_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

use super::rows;
use crate::context::FunctionContext;
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
        const NAME: &str = "smolvlm_generate";
        let model = self
            .context
            .smolvlm()
            .map_err(|e| rows::model_error(NAME, e))?;
        let settings = self.context.settings();
        let processor = match settings.smolvlm_longest_edge {
            Some(edge) => model.processor().with_longest_edge(edge),
            None => model.processor().clone(),
        };
        let images = rows::images(&args[0])?;
        let prompts = rows::strings(&args[1])?;
        let limits = match args.get(2) {
            Some(a) => datafusion::arrow::compute::cast(a, &DataType::Int64)?,
            None => Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                DEFAULT_MAX_NEW_TOKENS
                    as i64;
                images.len()
            ])),
        };
        let limits = limits.as_primitive::<Int64Type>();
        let first_row = self.context.rows_done(NAME);
        let mut out: Vec<Option<String>> = Vec::with_capacity(images.len());
        for i in 0..images.len() {
            let (Some(image), Some(prompt)) = (&images[i], &prompts[i]) else {
                out.push(None);
                continue;
            };
            let limit = if limits.is_null(i) {
                DEFAULT_MAX_NEW_TOKENS as i64
            } else {
                limits.value(i)
            };
            if !(1..=8192).contains(&limit) {
                return Err(exec_datafusion_err!(
                    "{NAME}: max_new_tokens must be from 1 to 8192, got {limit}"
                ));
            }
            match rows::read_image(&self.context, image) {
                Ok(rgb) => {
                    let processed = processor.process(&rgb);
                    let tokens = model
                        .generate(&processed, &chat_prompt(prompt), limit as usize, true)
                        .map_err(|e| rows::model_error(NAME, e))?;
                    out.push(Some(
                        model
                            .decode(&tokens)
                            .map_err(|e| rows::model_error(NAME, e))?,
                    ));
                }
                Err(message) => {
                    rows::row_failed(
                        &self.context,
                        settings.on_error,
                        NAME,
                        rows::row_name(&images, i, first_row),
                        message,
                    )?;
                    out.push(None);
                }
            }
            self.context.count_rows(NAME, 1);
        }
        Ok(Arc::new(StringArray::from(out)))
    }
}

impl PartialEq for SmolvlmGenerate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.context, &other.context)
    }
}
impl Eq for SmolvlmGenerate {}
impl std::hash::Hash for SmolvlmGenerate {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

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
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        Ok(ColumnarValue::Array(self.generate(&arrays)?))
    }
}
