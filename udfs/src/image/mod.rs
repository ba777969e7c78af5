//! Images for the vision models: decoding to RGB ([`decode`]) and Pillow-exact resizing
//! ([`resample`]).

pub mod decode;
pub mod resample;
