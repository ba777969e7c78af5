//! SmolVLM (`Idefics3ForConditionalGeneration`): so far its image processor ([`processor`]) and
//! its prompts ([`prompt`]), checked against transformers; the network and generation follow.

pub mod processor;
pub mod prompt;
