//! SmolVLM (`Idefics3ForConditionalGeneration`): so far its image processor ([`processor`]), its
//! prompts ([`prompt`]) and its image side ([`vision`]: SigLIP tower and connector), checked
//! against transformers; the text model and generation follow.

pub mod processor;
pub mod prompt;
pub mod vision;
