//! The hashing model kind: `hashed_text_embed(text)`, a bag of words hashed into 512 dimensions
//! and L2-normalised (the "hashing trick" of scikit-learn's `HashingVectorizer`). It needs no
//! weights: texts that share words come out close, texts that share none come out orthogonal
//! (but for collisions). It is a lexical baseline for the embedding-quality benchmark, and the
//! model that makes its figures meaningful where no neural weights can be had.

use std::any::Any;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::context::FunctionContext;
use crate::functions::rows;
use crate::kind::{ModelKind, SqlFunction};

/// Dimensions of a hashed embedding.
pub const DIMENSION: usize = 512;

/// The hashing kind: `embedding_model => 'hashing'` embeds query texts with `hashed_text_embed`.
pub struct HashingKind;

impl ModelKind for HashingKind {
    fn name(&self) -> &'static str {
        "hashing"
    }

    fn functions(&self, _context: &Arc<FunctionContext>) -> Vec<SqlFunction> {
        vec![SqlFunction {
            udf: ScalarUDF::new_from_impl(HashedTextEmbed::new()),
            runs_model: false,
        }]
    }

    fn text_embedding_function(&self) -> Option<&'static str> {
        Some("hashed_text_embed")
    }
}

/// 64-bit FNV-1a: a hash that is the same on every machine and every run.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The hashed embedding of `text`: each lower-cased alphanumeric word adds ±1 to the dimension
/// its hash picks (the sign from another bit of the hash, so that collisions cancel on average),
/// then the vector is L2-normalised. A text without words embeds as NULL.
pub fn embed(text: &str) -> Option<Vec<f32>> {
    let mut vector = vec![0f32; DIMENSION];
    let mut words = 0;
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let hash = fnv1a(word.to_lowercase().as_bytes());
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[(hash % DIMENSION as u64) as usize] += sign;
        words += 1;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    (words > 0 && norm > 0.0).then(|| vector.iter().map(|x| x / norm).collect())
}

/// `hashed_text_embed(text STRING) → ARRAY<FLOAT>` of 512 values.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HashedTextEmbed {
    signature: Signature,
}

impl HashedTextEmbed {
    /// The function.
    pub fn new() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl Default for HashedTextEmbed {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for HashedTextEmbed {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "hashed_text_embed"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(rows::vector_type(DIMENSION))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let texts: ArrayRef = args.args[0].to_array(args.number_rows)?;
        let embedded: Vec<Option<Vec<f32>>> = rows::strings(&texts)?
            .iter()
            .map(|t| t.as_deref().and_then(embed))
            .collect();
        Ok(ColumnarValue::Array(rows::vectors(DIMENSION, &embedded)?))
    }
}

#[cfg(test)]
mod tests {
    use super::embed;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn shared_words_bring_texts_close_and_case_and_punctuation_do_not_matter() {
        let a = embed("Red striped knit T-shirt").unwrap();
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(a, embed("red, STRIPED knit t shirt").unwrap());
        let near = embed("red striped dress").unwrap();
        let far = embed("black leather wallet").unwrap();
        assert!(cosine(&a, &near) > 0.4, "{}", cosine(&a, &near));
        assert!(cosine(&a, &far).abs() < 0.2, "{}", cosine(&a, &far));
        assert_eq!(embed("  ,; "), None);
    }
}
