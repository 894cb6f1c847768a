//! Instants as text, through `jiff` (UTC only, no time-zone database): the one place
//! tailscope parses and formats RFC 3339 and civil dates. Instants are `i64`
//! nanoseconds since the Unix epoch, as in OTLP.

use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;
use jiff::Timestamp;

const NS_PER_S: i64 = 1_000_000_000;

/// Reads an RFC 3339 instant (`2026-03-02T09:00:00Z`, `2026-03-02T10:30:00.5+01:00`)
/// as nanoseconds since the Unix epoch. Also takes what people type for one: a date
/// alone (`2026-03-02`, midnight), minutes without seconds, a space or `t` for the
/// `T`, and no offset at all, all read as UTC. `None` when it is none of these, when
/// the date does not exist (`2026-02-30`), or when it is outside the `i64` range.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let ts = match s.parse::<Timestamp>() {
        Ok(ts) => ts,
        // no offset: a civil date and time (or a date alone), read as UTC
        Err(_) => Offset::UTC.to_timestamp(s.parse::<DateTime>().ok()?).ok()?,
    };
    i64::try_from(ts.as_nanosecond()).ok()
}

/// An instant as RFC 3339 UTC, to the second (truncated): `2026-03-02T09:00:00Z`.
pub fn format_rfc3339(ns: i64) -> String {
    seconds(ns.div_euclid(NS_PER_S))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `YYYY-MM-DD` (UTC) of nanoseconds since the Unix epoch.
pub fn utc_date(ns: i64) -> String {
    Offset::UTC.to_datetime(timestamp(ns)).date().to_string()
}

/// The instant of `ns`; every `i64` of nanoseconds (1677 to 2262) is in jiff's range.
fn timestamp(ns: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The instant `s` seconds after the epoch, clamped to jiff's range (years ±9999).
fn seconds(s: i64) -> Timestamp {
    Timestamp::from_second(s).unwrap_or(if s < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// Days since 1970-01-01 of a date (proleptic Gregorian). A day past the end of its
/// month counts on into the next (2026-02-31 is 2026-03-03), as a day count does;
/// years outside ±9999 and months outside 1..=12 are clamped.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let first = Date::new(y.clamp(-9999, 9999) as i16, m.clamp(1, 12) as i8, 1);
    let first_day = first
        .and_then(|date| Offset::UTC.to_timestamp(DateTime::from(date)))
        .map_or(0, |ts| ts.as_second().div_euclid(86_400));
    first_day + d - 1
}

/// (year, month, day) of days since 1970-01-01 (proleptic Gregorian).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let date = Offset::UTC
        .to_datetime(seconds(z.saturating_mul(86_400)))
        .date();
    (
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_dates() {
        for z in [-800_000, -1, 0, 1, 59, 60, 11_016, 20_419, 1_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_795_737_600_000_000_000), "2026-11-27");
        assert_eq!(utc_date(951_782_400_000_000_000), "2000-02-29");
        assert_eq!(utc_date(-1), "1969-12-31");
    }

    const T9: i64 = 1_772_442_000 * NS_PER_S; // 2026-03-02T09:00:00Z

    #[test]
    fn parses_rfc3339_and_what_people_type() {
        assert_eq!(parse_rfc3339("2026-03-02T09:00:00Z"), Some(T9));
        assert_eq!(parse_rfc3339("2026-03-02t09:00:00z"), Some(T9));
        assert_eq!(parse_rfc3339("2026-03-02 09:00:00Z"), Some(T9));
        assert_eq!(parse_rfc3339("2026-03-02T09:00:00"), Some(T9));
        assert_eq!(parse_rfc3339("2026-03-02T09:00"), Some(T9));
        assert_eq!(parse_rfc3339("2026-03-02T10:00:00+01:00"), Some(T9));
        assert_eq!(parse_rfc3339("2026-03-02T04:30:00-04:30"), Some(T9));
        assert_eq!(parse_rfc3339("2026-03-02T10:00:00+0100"), Some(T9));
        assert_eq!(
            parse_rfc3339("2026-03-02T10:30:00.5+01:00"),
            Some(T9 + 1_800_500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-03-02T09:00:00.123456789Z"),
            Some(T9 + 123_456_789)
        );
        assert_eq!(parse_rfc3339("2026-03-02"), Some(T9 - 9 * 3_600 * NS_PER_S));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-NS_PER_S));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-03-02T25:00:00Z",
            "2026-03-02T09:00:00+1",
            "2026-03",
            "2026-3-2",
            "2026-03-02T09:00:00.1234567891Z",
            "3000-01-01T00:00:00Z", // past i64 nanoseconds
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_to_the_second_in_utc() {
        assert_eq!(format_rfc3339(T9), "2026-03-02T09:00:00Z");
        assert_eq!(format_rfc3339(T9 + 999_999_999), "2026-03-02T09:00:00Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(i64::MIN), "1677-09-21T00:12:43Z");
        assert_eq!(format_rfc3339(i64::MAX), "2262-04-11T23:47:16Z");
        for ns in [T9, 0, -NS_PER_S, 951_782_400 * NS_PER_S] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Some(ns));
        }
    }
}
