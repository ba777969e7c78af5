//! Timing shared by the benches.

use std::time::Instant;

/// Best seconds of `repeat` calls of `work`.
pub fn best_of<E>(repeat: usize, mut work: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let started = Instant::now();
        work()?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    Ok(best)
}
