//! The SQL functions that need no model ([`vector`]: cosine similarity, hybrid embeddings) and
//! the row-level machinery every model's functions share ([`rows`]: arguments, images, failed
//! rows). Each model's own functions live in its folder (`clip/functions.rs`,
//! `smolvlm/functions.rs`) and are listed by [`crate::models`].

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
pub(crate) use model_function_identity;

pub mod rows;
pub mod vector;
