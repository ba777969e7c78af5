//! Subnormal floats flushed to zero on the threads that run models.
//!
//! On x86 a multiply or add that reads or produces a subnormal float (in f32, a magnitude
//! below 1.2e-38) takes a microcode assist: about a hundred cycles instead of a fraction of one.
//! Training drives values there (a weight that rarely gets a gradient has AdamW moments that
//! decay step after step), and the demo CLIP's training ran 3.6× slower for them, the products
//! of its backward pass crawling (`benches/RESULTS.md`, 2026-12-05). The processor's
//! flush-to-zero and denormals-are-zero modes (MXCSR bits 15 and 6) read and write those values
//! as zero, which changes no value at or above f32's smallest normal one; TensorFlow sets the
//! same modes on its CPU threads. The modes are per thread: [`flush_on_pool`] sets them on
//! every thread of rayon's pool, where the kernels run, and [`FlushHere`] on the calling thread
//! for as long as it lives. Rust's compiler assumes the default modes when it folds constants,
//! so a folded expression that produces a subnormal value may differ from the same expression
//! computed at run time: a difference below 1.2e-38. Elsewhere than on x86-64 both do nothing.

#[cfg(target_arch = "x86_64")]
use std::sync::Once;

/// The MXCSR bits: flush-to-zero (15) and denormals-are-zero (6).
#[cfg(target_arch = "x86_64")]
const FLUSH: u32 = (1 << 15) | (1 << 6);

/// The calling thread's MXCSR.
#[cfg(target_arch = "x86_64")]
fn control() -> u32 {
    let mut value = 0u32;
    // SAFETY: `stmxcsr` stores the 32-bit register at the address given, a live u32.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags));
    }
    value
}

/// Sets the calling thread's MXCSR to `value`.
#[cfg(target_arch = "x86_64")]
fn set_control(value: u32) {
    // SAFETY: `ldmxcsr` loads the register from the address given, a live u32; the values set
    // here differ from the thread's only in the two modes above (see the module's note).
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, readonly, preserves_flags));
    }
}

/// Flushes subnormal floats to zero on every thread of rayon's global pool, from now on; once
/// per process, later calls returning at once. Called on a pool thread it does nothing: the
/// pool is entered from outside first, and a pool thread waiting here for another caller's
/// broadcast would hold up that very broadcast.
pub fn flush_on_pool() {
    #[cfg(target_arch = "x86_64")]
    {
        static POOL: Once = Once::new();
        if rayon::current_thread_index().is_none() {
            POOL.call_once(|| {
                rayon::broadcast(|_| set_control(control() | FLUSH));
            });
        }
    }
}

/// Subnormal floats flushed to zero on the calling thread until this is dropped, which restores
/// the modes it found.
pub struct FlushHere {
    #[cfg(target_arch = "x86_64")]
    found: u32,
}

impl FlushHere {
    /// Sets the modes on the calling thread.
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let found = control();
            set_control(found | FLUSH);
            Self { found }
        }
        #[cfg(not(target_arch = "x86_64"))]
        Self {}
    }
}

impl Default for FlushHere {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushHere {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        set_control(self.found);
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// `a · b` computed at run time, out of the compiler's sight.
    fn product(a: f32, b: f32) -> f32 {
        std::hint::black_box(a) * std::hint::black_box(b)
    }

    #[test]
    fn subnormal_results_are_zero_while_flushing_and_come_back_after() {
        let (tiny, half) = (f32::MIN_POSITIVE, 0.5f32);
        assert!(product(tiny, half) > 0.0, "subnormal by default");
        {
            let _flush = FlushHere::new();
            assert_eq!(product(tiny, half), 0.0);
            assert_eq!(
                product(tiny, 2.0),
                tiny * 2.0,
                "normal values are untouched"
            );
            assert_eq!(
                product(tiny / 4.0, 4.0),
                0.0,
                "a subnormal input reads as zero"
            );
        }
        assert!(product(tiny, half) > 0.0, "the modes found are restored");
    }

    #[test]
    fn every_pool_thread_flushes_once_asked() {
        flush_on_pool();
        let flushed = rayon::broadcast(|_| product(f32::MIN_POSITIVE, 0.5) == 0.0);
        assert!(flushed.iter().all(|&f| f), "{flushed:?}");
    }
}
