//! Running a model's forward passes on rayon's thread pool rather than beside it.
//!
//! The CPU kernels split their loops over rayon's pool. Called from a thread outside the pool
//! (the bench's main thread, a DataFusion worker), each parallel loop is handed to the pool while
//! the caller sleeps until it is done: a wake-up of a pool thread and one of the caller for
//! every loop, and a decoding step of SmolVLM-256M runs a few hundred of them (10 % of a
//! decoding-bound run's time went to the scheduler, `benches/RESULTS.md`). Started on a pool
//! thread, a loop's first part runs at once on that thread and only the rest is offered to the
//! others.

use super::subnormals;

/// `work()` on a thread of rayon's pool: on the calling thread when it is one (rayon's scope
/// runs there), else handed to the pool once, the caller waiting for its result. The pool's
/// threads flush subnormal floats to zero ([`subnormals::flush_on_pool`]). `work` must not
/// block on anything but rayon's own loops and joins (a channel fed by another pool task could
/// wait forever while every pool thread runs such work).
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    subnormals::flush_on_pool();
    rayon::scope(|_| work())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_a_pool_thread_and_inline_when_already_on_one() {
        assert!(
            rayon::current_thread_index().is_none(),
            "tests run outside the pool"
        );
        assert!(on_pool(rayon::current_thread_index).is_some());
        let (outer, inner) = rayon::scope(|_| {
            let outer = rayon::current_thread_index();
            (outer, on_pool(rayon::current_thread_index))
        });
        assert_eq!(outer, inner, "already on the pool: the same thread");
        assert_eq!(on_pool(|| 6 * 7), 42);
    }
}
