//! SmolVLM (`Idefics3ForConditionalGeneration`): its image processor ([`processor`]), prompts
//! ([`prompt`]), image side ([`vision`]: SigLIP tower and connector) and text side ([`text`]:
//! Llama decoder with a key/value cache), each checked against transformers, and [`model`]
//! tying them to a checkpoint folder with batched generation, its tokens chosen by
//! [`sampling`]; [`extract`] is the attribute-extraction contract (prompt and reply parsing).

pub mod extract;
pub mod model;
pub mod processor;
pub mod prompt;
pub mod sampling;
pub mod text;
pub mod vision;
