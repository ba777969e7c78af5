//! The SQL functions: vector arithmetic ([`vector`]), the CLIP embedding functions ([`clip`])
//! and SmolVLM generation ([`smolvlm`]), with the row-level machinery the model functions share
//! ([`rows`]).

pub mod clip;
pub mod rows;
pub mod smolvlm;
pub mod vector;
