//! What the `vitrine` command shows on the terminal, shared by the command line and the REPL:
//! result sets ([`output`]) and the running statement's progress ([`progress`]).

mod output;
mod progress;

pub use output::{print_result, OutputFormat, ResultOrigin};
pub use progress::statement_spinner;
