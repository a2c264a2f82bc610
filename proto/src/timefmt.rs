//! Time conversions shared by agent, collector and command line.

use prost_types::Timestamp;
use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339, macros::format_description};

/// EVE timestamp, as Suricata writes it: `2017-10-18T19:48:00.123456+0000`.
const EVE: &[time::format_description::BorrowedFormatItem<'static>] = format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6][offset_hour sign:mandatory][offset_minute]"
);

pub fn to_timestamp(t: OffsetDateTime) -> Timestamp {
    let nanos = t.unix_timestamp_nanos();
    Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

/// Converts a protobuf timestamp; out-of-range values clamp to the epoch.
pub fn from_timestamp(ts: &Timestamp) -> OffsetDateTime {
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos.clamp(0, 999_999_999));
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Microseconds since the epoch; the collector's index key for time.
pub fn micros(t: OffsetDateTime) -> i64 {
    let secs = t.unix_timestamp();
    if secs >= 0 {
        // the same value without a 128-bit division (called several times per packet)
        return secs.saturating_mul(1_000_000).saturating_add(i64::from(t.microsecond()));
    }
    (t.unix_timestamp_nanos() / 1_000) as i64
}

pub fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn eve(t: OffsetDateTime) -> String {
    t.format(EVE).unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000000+0000"))
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    OffsetDateTime::parse(s, &Rfc3339)
}

/// Parses a display zone: `+07:00`, `-05:30`, `UTC`, `Z`.
pub fn parse_offset(s: &str) -> Result<UtcOffset, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(UtcOffset::UTC);
    }
    let bad = || format!("invalid time zone `{s}` (an offset such as +07:00, or UTC)");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1i8, &t[1..]),
        Some(b'-') => (-1i8, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i8 = h.parse().map_err(|_| bad())?;
    let m: i8 = m.parse().map_err(|_| bad())?;
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| bad())
}

/// A span as days, hours and minutes, coarsest two units: `4 d 23 h`,
/// `2 h 5 min`, `40 s`.
pub fn span(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3_600, (s % 3_600) / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// A deadline relative to `now`: "in 4 d 23 h" or "overdue 2 h".
pub fn relative(due: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (due - now).whole_seconds();
    if secs >= 0 { format!("in {}", span(secs)) } else { format!("overdue {}", span(secs)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eve_format_matches_suricata() {
        let t = parse_rfc3339("2017-10-18T19:48:00.123456Z").unwrap();
        assert_eq!(eve(t), "2017-10-18T19:48:00.123456+0000");
    }

    #[test]
    fn timestamp_round_trip_before_and_after_epoch() {
        for s in ["1969-12-31T23:59:59.5Z", "2026-11-23T00:35:00.000001Z"] {
            let t = parse_rfc3339(s).unwrap();
            assert_eq!(from_timestamp(&to_timestamp(t)), t);
            assert_eq!(from_micros(micros(t)), t);
        }
    }

    #[test]
    fn out_of_range_timestamp_does_not_panic() {
        let t = from_timestamp(&Timestamp { seconds: i64::MAX, nanos: -5 });
        assert_eq!(t, OffsetDateTime::UNIX_EPOCH);
    }
}
