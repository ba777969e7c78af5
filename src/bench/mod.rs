//! Benchmarks a user runs on their own warehouse: [`quality`], how well vector indexes retrieve.

pub mod quality;
