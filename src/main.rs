//! The `vitrine` command: a thin shell over the `vitrine` library.

mod cli;
mod repl;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
