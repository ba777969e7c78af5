//! Images for the vision models: decoding to RGB ([`decode`]), Pillow-exact resizing
//! ([`resample`]) and 8-bit levels to model inputs ([`levels`]).

pub mod decode;
pub mod levels;
pub mod resample;
