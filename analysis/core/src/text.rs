//! Numbers as the reports write them.

/// Seconds (one decimal) from a second up, else whole milliseconds.
pub fn secs(ns: i64) -> String {
    if ns.abs() >= 1_000_000_000 {
        format!("{:.1} s", ns as f64 / 1e9)
    } else {
        format!("{:.0} ms", ns as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_from_one_second_up() {
        assert_eq!(super::secs(1_500_000_000), "1.5 s");
        assert_eq!(super::secs(250_000_000), "250 ms");
        assert_eq!(super::secs(-2_000_000_000), "-2.0 s");
    }
}
