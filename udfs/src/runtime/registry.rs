//! Each model is loaded once per process and shared by every function and query.
//!
//! Models are keyed by kind, files, revision and placement. Two queries asking for the same
//! model at once wait for one load; a load that fails is not remembered, so fixing the cause
//! (copying the files, say) and running again works without a restart.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use crate::ModelError;

type Slot = Arc<Mutex<Option<Arc<dyn Any + Send + Sync>>>>;

static LOADED: LazyLock<Mutex<HashMap<String, Slot>>> = LazyLock::new(Default::default);

/// The model under `key`, loading it with `load` the first time.
pub fn shared<M: Any + Send + Sync>(
    key: &str,
    load: impl FnOnce() -> Result<M, ModelError>,
) -> Result<Arc<M>, ModelError> {
    let slot = Arc::clone(
        LOADED
            .lock()
            .expect("model registry lock")
            .entry(key.to_string())
            .or_default(),
    );
    let mut held = slot.lock().expect("model slot lock");
    if let Some(model) = held.as_ref() {
        return Arc::clone(model)
            .downcast::<M>()
            .map_err(|_| ModelError::Setting(format!("model '{key}' has another type")));
    }
    let model = Arc::new(load()?);
    *held = Some(Arc::clone(&model) as Arc<dyn Any + Send + Sync>);
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_model_loads_once_and_a_failed_load_is_retried() {
        static LOADS: AtomicUsize = AtomicUsize::new(0);
        let load = || {
            LOADS.fetch_add(1, Ordering::SeqCst);
            Ok(42u32)
        };
        let a = shared("test|once", load).unwrap();
        let b = shared("test|once", load).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(LOADS.load(Ordering::SeqCst), 1);

        let failed = shared::<u32>("test|retry", || Err(ModelError::NotFound("absent".into())));
        assert!(failed.is_err());
        assert_eq!(*shared("test|retry", || Ok(7u32)).unwrap(), 7);
    }
}
