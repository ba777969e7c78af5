//! Integration tests: one binary, one module per capability.

mod cli;
mod clip;
mod cluster;
mod delta;
mod errors;
mod history;
mod models;
mod object_store;
mod plan_snippets;
mod quality;
mod scripts;
mod serve;
mod sessions;
mod smolvlm;
mod statements;
mod support;
mod timestamps;
mod vector_index;
mod writes;
