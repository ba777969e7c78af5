//! SmolVLM (`Idefics3ForConditionalGeneration`): so far its image processor ([`processor`]),
//! checked against transformers; the network and generation follow.

pub mod processor;
