//! Periods as people write them (`2026-03-02T09:00:00Z..-2h`) and as `diff` reads
//! them (`[from_ns, to_ns)` of a store).

/// A time span of the store, `[from_ns, to_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ns: i64,
    pub to_ns: i64,
}

/// One end of a window as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Empty: the store's first (or last) span.
    Open,
    /// An instant, ns since the Unix epoch.
    At(i64),
    /// `-2h`: this long before the store's newest span start.
    BeforeEnd(i64),
}

/// `T1..T2` as written: each side empty, an RFC 3339 time (`2026-03-02T09:00:00Z`),
/// a date (`2026-03-02`, UTC midnight), Unix time (seconds, ms, µs or ns, told apart
/// by size), `now`, or `-30m` / `-2h` / `-1d` before the store's newest span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    pub from: Bound,
    pub to: Bound,
}

impl std::str::FromStr for WindowSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s.split_once("..").ok_or_else(|| {
            format!("'{s}' is not a period: write FROM..TO, either side may be empty (..2026-03-02T10:00:00Z)")
        })?;
        Ok(Self {
            from: parse_bound(a.trim())?,
            to: parse_bound(b.trim())?,
        })
    }
}

impl WindowSpec {
    /// The window over a store whose spans start in `range` (`[first, last + 1)`).
    pub fn resolve(&self, range: (i64, i64)) -> Window {
        let at = |b: Bound, open: i64| match b {
            Bound::Open => open,
            Bound::At(t) => t,
            Bound::BeforeEnd(d) => range.1.saturating_sub(d),
        };
        Window {
            from_ns: at(self.from, range.0),
            to_ns: at(self.to, range.1),
        }
    }
}

fn parse_bound(s: &str) -> Result<Bound, String> {
    if s.is_empty() {
        return Ok(Bound::Open);
    }
    if s == "now" {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        return Ok(Bound::At(now));
    }
    let bad = || {
        format!("cannot read the time '{s}': use RFC 3339 (2026-03-02T09:00:00Z), a date (2026-03-02), Unix time (seconds to ns), now, or -30m / -2h / -1d before the store's newest span")
    };
    if let Some(rel) = s.strip_prefix('-') {
        let split = rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len());
        let (n, unit) = rel.split_at(split);
        let n: i64 = n.parse().map_err(|_| bad())?;
        let scale: i64 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(bad()),
        };
        return Ok(Bound::BeforeEnd(n.checked_mul(scale).ok_or_else(bad)?));
    }
    if s.bytes().all(|c| c.is_ascii_digit()) {
        let v: i64 = s.parse().map_err(|_| bad())?;
        let ns = if v < 100_000_000_000 {
            v.checked_mul(1_000_000_000)
        } else if v < 100_000_000_000_000 {
            v.checked_mul(1_000_000)
        } else if v < 100_000_000_000_000_000 {
            v.checked_mul(1_000)
        } else {
            Some(v)
        };
        return ns.map(Bound::At).ok_or_else(bad);
    }
    // RFC 3339, a date alone, or a date and time without offset (UTC)
    tailscope_model::time::parse_rfc3339(s)
        .map(Bound::At)
        .ok_or_else(bad)
}

/// An instant as RFC 3339 UTC, to the second (`2026-03-02T09:00:00Z`).
pub use tailscope_model::time::format_rfc3339 as rfc3339;
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tailscope_model::time::{civil_from_days, days_from_civil};

    #[test]
    fn windows_read_every_way_of_writing_a_time() {
        let w: WindowSpec = "2026-03-02T09:00:00Z..2026-03-02T10:30:00.5+01:00"
            .parse()
            .unwrap();
        let t9 = 1_772_442_000 * 1_000_000_000;
        assert_eq!(w.from, Bound::At(t9));
        assert_eq!(w.to, Bound::At(t9 + 1_800_500_000_000));
        let w: WindowSpec = "..2026-03-02".parse().unwrap();
        assert_eq!(
            (w.from, w.to),
            (Bound::Open, Bound::At(t9 - 9 * 3_600_000_000_000))
        );
        let w: WindowSpec = "1772442000..1772442000123".parse().unwrap();
        assert_eq!((w.from, w.to), (Bound::At(t9), Bound::At(t9 + 123_000_000)));
        let w: WindowSpec = "-2h..".parse().unwrap();
        assert_eq!(w.from, Bound::BeforeEnd(7_200_000_000_000));
        assert_eq!(
            w.resolve((0, 10_000_000_000_000)),
            Window {
                from_ns: 2_800_000_000_000,
                to_ns: 10_000_000_000_000
            }
        );
        assert!("yesterday..".parse::<WindowSpec>().is_err());
        assert!("2026-13-01..".parse::<WindowSpec>().is_err());
        assert!("2026-03-02T09:00:00Z".parse::<WindowSpec>().is_err());
        assert_eq!(rfc3339(t9), "2026-03-02T09:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        for days in [-800_000, -1, 0, 59, 10_957, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
