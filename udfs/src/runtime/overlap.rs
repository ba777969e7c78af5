//! Host work beside device work: the next batch's photos are read, decoded and processed while
//! the model answers the current one, so that a GPU does not wait for the processor between
//! batches (and a CPU run loses nothing: the helper thread competes with the model's threads
//! only for the time the preparation takes anyway).

use std::sync::mpsc::sync_channel;

/// Calls `prepare` on each of `items` in order on a helper thread, at most one item ahead, and
/// `consume` on each prepared item in the same order on the calling thread. Stops at the first
/// error `consume` returns (the helper finishes the item in hand and prepares no more) and
/// returns it.
pub fn overlapped<T, U, E>(
    items: impl IntoIterator<Item = T, IntoIter: Send>,
    prepare: impl Fn(T) -> U + Sync,
    mut consume: impl FnMut(U) -> Result<(), E>,
) -> Result<(), E>
where
    U: Send,
{
    let items = items.into_iter();
    let prepare = &prepare;
    std::thread::scope(|scope| {
        // A rendezvous channel: the helper hands over one prepared item when the consumer asks
        // for it, then prepares the next, so memory holds at most two prepared items.
        let (sender, receiver) = sync_channel(0);
        scope.spawn(move || {
            for item in items {
                if sender.send(prepare(item)).is_err() {
                    break;
                }
            }
        });
        for prepared in receiver {
            consume(prepared)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn items_arrive_in_order_prepared_ahead_of_the_consumer() {
        let prepared = AtomicUsize::new(0);
        let mut seen = Vec::new();
        let mut ahead = Vec::new();
        overlapped(
            0..6,
            |i| {
                prepared.fetch_add(1, Ordering::SeqCst);
                i * 10
            },
            |value| {
                // While this item is consumed, the helper prepares the next one: wait for it (a
                // loaded machine may be slow to run the helper), at most two seconds.
                let next = (seen.len() + 2).min(6);
                let started = Instant::now();
                while prepared.load(Ordering::SeqCst) < next
                    && started.elapsed() < Duration::from_secs(2)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                ahead.push(prepared.load(Ordering::SeqCst));
                seen.push(value);
                Ok::<_, String>(())
            },
        )
        .unwrap();
        assert_eq!(seen, [0, 10, 20, 30, 40, 50]);
        // Consuming item k (1-based), item k+1 is already prepared, except after the last.
        assert_eq!(ahead, [2, 3, 4, 5, 6, 6]);
    }

    #[test]
    fn the_first_error_stops_the_work() {
        let prepared = AtomicUsize::new(0);
        let mut consumed = 0;
        let result = overlapped(
            0..100,
            |i| {
                prepared.fetch_add(1, Ordering::SeqCst);
                i
            },
            |i| {
                consumed += 1;
                if i == 3 {
                    Err(format!("item {i} failed"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(result, Err("item 3 failed".to_string()));
        assert_eq!(consumed, 4);
        // At most the item after the failing one was prepared.
        assert!(prepared.load(Ordering::SeqCst) <= 6, "{prepared:?}");
    }
}
