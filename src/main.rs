//! The `vitrine` command: a thin shell over the `vitrine` library.

mod cli;
mod console;
mod repl;

use std::process::ExitCode;

/// mimalloc keeps freed tensor buffers for reuse; the system allocator returns large ones to the
/// kernel and page-faults them back in on every model batch.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}
