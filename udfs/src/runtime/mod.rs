//! What every model function shares: finding a model's files ([`source`]) and reading their
//! weights ([`weights`]), choosing the device and precision ([`placement`]), loading each model once per process ([`registry`]), sizing
//! batches for the device and letting one batch at a time run on a GPU ([`batching`]),
//! preparing the next batch's inputs while the model works on this one ([`overlap`]), and
//! running the forward passes on the CPU kernels' thread pool ([`pool`]), whose threads flush
//! subnormal floats to zero as training's do ([`subnormals`]); and the allocator setting its
//! binaries take ([`allocator`]).

pub mod allocator;
pub mod batching;
pub mod overlap;
pub mod placement;
pub mod pool;
pub mod registry;
pub mod source;
pub mod subnormals;
pub mod weights;
