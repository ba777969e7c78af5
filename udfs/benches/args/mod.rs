//! Command-line reading shared by the benches.

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
