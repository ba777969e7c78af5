//! The `vitrine` command: a thin shell over the `vitrine` library.

mod cli;
mod console;
mod repl;

use std::process::ExitCode;

/// mimalloc keeps freed tensor buffers for reuse (told never to return them to the kernel, see
/// `vitrine_udfs::runtime::allocator`); the system allocator returns large ones to the kernel
/// and page-faults them back in on every model batch.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    vitrine_udfs::runtime::allocator::keep_freed_memory();
    lance_threads_per_core();
    model_calls_side_by_side();
    cli::main()
}

/// candle spreads every element-wise step over 64K values or more across a process-wide pool
/// that serves one caller at a time, the others waiting, and spin-waits for its threads.
/// Vitrine runs model calls side by side (a query's partitions, the service's query batches),
/// and the models' large element-wise steps already run on rayon (`vitrine-udfs`'s `cpu_ops`),
/// so the pool only made concurrent calls queue for it: without it, fresh-text searches ran
/// 10–47 % faster and `bench clip` 4–26 % (`benches/RESULTS.md`). Unless `CANDLE_NUM_THREADS` says
/// otherwise, the pool gets no thread of its own and each caller does its steps itself. Runs
/// before any other thread exists, as setting the environment must.
fn model_calls_side_by_side() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Lance encodes and decodes pages on a pool of `cores − 2` threads, keeping two cores for I/O:
/// one thread on a 2-core machine, where a table write then leaves a core idle (a 1M-row copy
/// 3.7 s with one thread, 3.15 s with two; `benches/RESULTS.md`). Unless `LANCE_CPU_THREADS`
/// says otherwise, the pool gets one thread per core. Runs before any other thread exists, as
/// setting the environment must.
fn lance_threads_per_core() {
    if std::env::var_os("LANCE_CPU_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("LANCE_CPU_THREADS", cores.to_string());
    }
}
