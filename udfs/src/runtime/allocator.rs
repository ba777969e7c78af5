//! The allocator setting that model work wants from a binary whose global allocator is mimalloc:
//! memory it frees kept for the process's reuse.
//!
//! A model batch allocates and frees buffers of megabytes (a layer's activations, a product's
//! output) hundreds of times. mimalloc hands freed memory back to the kernel ("purges" it) a
//! while after it is freed, and each reuse then faults it back in, the kernel zeroing every
//! page first. On the 2-core EPYC (2026-12-04), SmolVLM-256M's shape at batch 8 took 58,400 page
//! faults and 52.9 s of processor time a run with purging, 9,200 and 46.9 s without; images/s
//! rose from 0.333 to 0.371. The price is that the process keeps its peak memory until it ends.

/// `mi_option_purge_delay`'s position in mimalloc 3's `mi_option_e` (`mimalloc.h`), which
/// libmimalloc-sys names no constant for: the milliseconds before freed memory is purged, −1
/// for never.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to purge freed memory. Call it first thing in `main` of a binary whose
/// global allocator is mimalloc, before other threads start (mimalloc's options are not
/// thread-safe); elsewhere it changes nothing that is used.
pub fn keep_freed_memory() {
    // SAFETY: setting an option is a store to mimalloc's option table, which is initialised
    // statically; the caller runs it before other threads read options.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_the_purge_delay() {
        // mimalloc 3 purges after 1,000 ms by default; an option at another position has
        // another default (0, 1, 2, 100, …), so this fails if the position is wrong.
        // SAFETY: reading and setting options, which this test alone does in this process.
        let before = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(
            before, 1000,
            "not mimalloc 3's purge delay, or set from the environment"
        );
        keep_freed_memory();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, -1);
    }
}
