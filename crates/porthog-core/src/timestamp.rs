//! Wall-clock times as the JSON Lines contract writes them: RFC 3339, UTC, milliseconds
//! ("2026-11-24T02:11:05.123Z"). Pure calendar arithmetic on Unix milliseconds (Howard
//! Hinnant's days-from-civil algorithms): the caller reads the clock, nothing here does.

/// Formats Unix time in milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_unix_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60,
        ms % 1000
    )
}

/// Reads back a UTC RFC 3339 time (`Z` only, 0 to 9 fraction digits) as Unix milliseconds.
/// None for anything else, including times before 1970.
pub fn parse_unix_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u64> {
        let part = s.get(from..from + len)?;
        if part.bytes().all(|c| c.is_ascii_digit()) { part.parse().ok() } else { None }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let first3 = &frac[..digits.min(3)];
        millis = first3.parse::<u64>().ok()? * 10u64.pow(3 - first3.len() as u32);
        rest = &frac[digits..];
    }
    if rest != "Z" && rest != "z" {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + sec;
    Some(secs * 1000 + millis)
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    }

    #[test]
    fn parses_what_it_formats_and_common_variants() {
        for ms in [0, 951_827_696_789, 1_795_486_265_123, 4_102_444_799_999] {
            assert_eq!(parse_unix_ms(&format_unix_ms(ms)), Some(ms));
        }
        assert_eq!(parse_unix_ms("2026-11-24T02:11:05Z"), Some(1_795_486_265_000));
        assert_eq!(parse_unix_ms("2026-11-24T02:11:05.1Z"), Some(1_795_486_265_100));
        assert_eq!(parse_unix_ms("2026-11-24T02:11:05.123456789Z"), Some(1_795_486_265_123));
        for bad in ["", "2026-11-24", "2026-11-24T02:11:05+01:00", "2026-13-01T00:00:00Z", "x"] {
            assert_eq!(parse_unix_ms(bad), None, "{bad}");
        }
    }
}
