//! Wall-clock times as the JSON Lines contracts write them: RFC 3339, UTC, milliseconds
//! ("2026-11-24T02:11:05.123Z"). The one place porthog formats and reads them, with `jiff`'s
//! calendar: the caller reads the clock, nothing here does.

use jiff::Timestamp;

/// Formats Unix time in milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Times outside jiff's range
/// (years -9999 to 9999) are clamped to its ends.
pub fn format_unix_ms(ms: i64) -> String {
    let ts = Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    format!("{ts:.3}")
}

/// Reads back a UTC RFC 3339 time (`Z` only, 0 to 9 fraction digits) as Unix milliseconds.
/// None for anything else, including times before 1970.
pub fn parse_unix_ms(s: &str) -> Option<u64> {
    if !s.ends_with(['Z', 'z']) {
        return None;
    }
    let ts: Timestamp = s.parse().ok()?;
    u64::try_from(ts.as_millisecond()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_times() {
        assert_eq!(format_unix_ms(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789
        assert_eq!(format_unix_ms(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(format_unix_ms(1_795_486_265_123), "2026-11-24T02:11:05.123Z");
        assert_eq!(format_unix_ms(1_795_487_400_000), "2026-11-24T02:30:00.000Z");
        assert_eq!(format_unix_ms(-1), "1969-12-31T23:59:59.999Z");
        assert!(format_unix_ms(i64::MAX).starts_with("9999-12-"), "clamped, no panic");
    }

    #[test]
    fn parses_what_it_formats_and_common_variants() {
        for ms in [0u64, 951_827_696_789, 1_795_486_265_123, 4_102_444_799_999] {
            assert_eq!(parse_unix_ms(&format_unix_ms(ms as i64)), Some(ms));
        }
        assert_eq!(parse_unix_ms("2026-11-24T02:11:05Z"), Some(1_795_486_265_000));
        assert_eq!(parse_unix_ms("2026-11-24T02:11:05.1Z"), Some(1_795_486_265_100));
        assert_eq!(parse_unix_ms("2026-11-24T02:11:05.123456789Z"), Some(1_795_486_265_123));
        for bad in ["", "2026-11-24", "2026-11-24T02:11:05+01:00", "2026-13-01T00:00:00Z", "x"] {
            assert_eq!(parse_unix_ms(bad), None, "{bad}");
        }
    }
}
