//! A tokenizer learnt from the training rows' texts, for a model trained from scratch: byte-level
//! BPE (every text encodes and decodes back exactly, JSON included), lower-cased or not, with
//! the kind's special tokens whole, optionally wrapping each text in a start and an end token.

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::Lowercase;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper,
    PreTokenizerWrapper, Tokenizer, TokenizerBuilder, TokenizerImpl,
};

use crate::ModelError;

/// What to learn.
pub struct TokenizerSpec<'a> {
    /// Tokens in the vocabulary at most (the byte alphabet and the special tokens included).
    pub vocab_size: usize,
    /// Tokens kept whole, first in the vocabulary.
    pub special: &'a [&'a str],
    /// Each text becomes `start text end` when encoded with special tokens.
    pub wrap: Option<(&'a str, &'a str)>,
    /// Whether texts are lower-cased first (CLIP's way).
    pub lowercase: bool,
}

fn error(e: impl std::fmt::Display) -> ModelError {
    ModelError::Config(format!("learning a tokenizer: {e}"))
}

/// A tokenizer learnt from `texts`.
pub fn learn<'t>(
    texts: impl Iterator<Item = &'t str> + Send,
    spec: &TokenizerSpec<'_>,
) -> Result<Tokenizer, ModelError> {
    let least = 256 + spec.special.len();
    if spec.vocab_size <= least {
        return Err(ModelError::Config(format!(
            "vocab_size must be above {least} (the 256 bytes and {} special tokens) to learn any word",
            spec.special.len()
        )));
    }
    let special: Vec<AddedToken> = spec
        .special
        .iter()
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(spec.vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(special.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut builder: TokenizerBuilder<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerBuilder::new()
        .with_model(BPE::default().into())
        .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).into()))
        .with_decoder(Some(ByteLevel::default().into()));
    if spec.lowercase {
        builder = builder.with_normalizer(Some(Lowercase.into()));
    }
    let mut tokenizer: TokenizerImpl<_, _, _, _, _> = builder.build().map_err(error)?;
    let mut trainer = tokenizers::models::TrainerWrapper::from(trainer);
    tokenizer
        .train(&mut trainer, texts.map(str::to_string))
        .map_err(error)?;
    tokenizer.add_special_tokens(special).map_err(error)?;
    if let Some((start, end)) = spec.wrap {
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| error(format!("no special token {t}")))
        };
        let processor = TemplateProcessing::builder()
            .try_single(format!("{start} $A {end}"))
            .map_err(error)?
            .special_tokens(vec![(start, id(start)?), (end, id(end)?)])
            .build()
            .map_err(error)?;
        tokenizer.with_post_processor(Some(PostProcessorWrapper::from(processor)));
    }
    Ok(Tokenizer::from(tokenizer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learnt_tokenizer_round_trips_json_and_keeps_special_tokens_whole() {
        let texts = [
            r#"{"material": "knit fabric", "pattern": "striped"}"#,
            r#"{"material": "denim", "pattern": "solid color"}"#,
            "red striped knit tshirts for men",
        ];
        let tokenizer = learn(
            texts.iter().copied(),
            &TokenizerSpec {
                vocab_size: 400,
                special: &["<|startoftext|>", "<|endoftext|>", "<image>"],
                wrap: Some(("<|startoftext|>", "<|endoftext|>")),
                lowercase: false,
            },
        )
        .unwrap();
        let text = r#"<image>{"material": "denim", "pattern": "striped"}"#;
        let encoding = tokenizer.encode(text, true).unwrap();
        let ids = encoding.get_ids();
        assert_eq!(ids[0], tokenizer.token_to_id("<|startoftext|>").unwrap());
        assert_eq!(ids[1], tokenizer.token_to_id("<image>").unwrap());
        assert_eq!(
            *ids.last().unwrap(),
            tokenizer.token_to_id("<|endoftext|>").unwrap()
        );
        assert_eq!(
            tokenizer.decode(ids, true).unwrap(),
            &text["<image>".len()..]
        );
        assert!(ids.len() < 20, "learnt merges: {} tokens", ids.len());
    }
}
