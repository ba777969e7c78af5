//! What every model function shares: finding a model's files ([`source`]), choosing the device
//! and precision ([`placement`]), and loading each model once per process ([`registry`]).

pub mod placement;
pub mod registry;
pub mod source;
