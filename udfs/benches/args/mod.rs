//! Command-line reading shared by the benches.

// Each bench compiles this module into its own binary and uses only some of it.
#![allow(dead_code)]

/// The bench's arguments, without the `--bench` flag cargo adds.
pub fn arguments() -> impl Iterator<Item = String> {
    std::env::args().skip(1).filter(|a| a != "--bench")
}

/// `value` as a whole number above 0, or an error naming `flag`.
pub fn positive(value: Option<String>, flag: &str) -> Result<usize, String> {
    value
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .ok_or(format!("{flag} takes a positive number"))
}

/// `value` as a whole number, 0 or more, or an error naming `flag`.
pub fn count(value: Option<String>, flag: &str) -> Result<usize, String> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or(format!("{flag} takes a whole number"))
}

/// `value` as comma-separated whole numbers above 0 (`1,8,32`), or an error naming `flag`.
pub fn positive_list(value: Option<String>, flag: &str) -> Result<Vec<usize>, String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|n| positive(Some(n.to_string()), flag))
        .collect()
}

/// `value` as comma-separated batch sizes, each a whole number above 0 or `auto` (`1,8,auto`),
/// or an error naming `flag`.
pub fn batch_sizes(
    value: Option<String>,
    flag: &str,
) -> Result<Vec<vitrine_udfs::runtime::batching::BatchSize>, String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|b| {
            vitrine_udfs::runtime::batching::BatchSize::parse(flag, b).map_err(|e| e.to_string())
        })
        .collect()
}
