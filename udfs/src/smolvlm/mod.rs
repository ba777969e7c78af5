//! SmolVLM (`Idefics3ForConditionalGeneration`): its image processor ([`processor`]), prompts
//! ([`prompt`]), image side ([`vision`]: SigLIP tower and connector) and text side ([`text`]:
//! Llama decoder with a key/value cache), each checked against transformers. Batched generation
//! and the SQL functions follow.

pub mod processor;
pub mod prompt;
pub mod text;
pub mod vision;
