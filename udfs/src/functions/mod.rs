//! The SQL functions: vector arithmetic ([`vector`]), the CLIP embedding functions ([`clip`])
//! and SmolVLM generation ([`smolvlm`]), with the row-level machinery the model functions share
//! ([`rows`]).

/// Equality and hashing for a model function: two instances are the same function when they
/// share their session's context (DataFusion compares functions when it deduplicates plans).
macro_rules! model_function_identity {
    ($function:ty) => {
        impl PartialEq for $function {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.context, &other.context)
            }
        }
        impl Eq for $function {}
        impl std::hash::Hash for $function {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.name().hash(state);
            }
        }
    };
}
use model_function_identity;

pub mod clip;
pub mod rows;
pub mod smolvlm;
pub mod vector;
