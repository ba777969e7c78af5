//! The SQL functions: vector arithmetic ([`vector`]) and the CLIP embedding functions
//! ([`clip`]), with the row-level machinery the model functions share ([`rows`]).

pub mod clip;
pub mod rows;
pub mod vector;
