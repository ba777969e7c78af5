//! What every model function shares: finding a model's files ([`source`]), choosing the device
//! and precision ([`placement`]), loading each model once per process ([`registry`]), and
//! preparing the next batch's inputs while the model works on this one ([`overlap`]).

pub mod overlap;
pub mod placement;
pub mod registry;
pub mod source;
