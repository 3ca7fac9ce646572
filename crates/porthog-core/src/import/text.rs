//! Trimming that gives `str::trim_start`/`trim_end`'s results (Unicode white space) but looks at
//! bytes while they are ASCII: the hot path of a million-row import, where std's trims decode
//! every character. Owns no format knowledge.

/// `s.trim_start()`, byte-wise over ASCII white space.
pub(super) fn trim_start(s: &str) -> &str {
    let t = s.trim_ascii_start();
    // Vertical tab (not ASCII white space to `u8`, white space to `char`) or a non-ASCII
    // character: std decides.
    match t.as_bytes().first() {
        Some(&b) if b == 0x0B || b >= 0x80 => t.trim_start(),
        _ => t,
    }
}

/// `s.trim_end()`, byte-wise over ASCII white space.
pub(super) fn trim_end(s: &str) -> &str {
    let t = s.trim_ascii_end();
    match t.as_bytes().last() {
        Some(&b) if b == 0x0B || b >= 0x80 => t.trim_end(),
        _ => t,
    }
}

/// `s.trim()`, byte-wise over ASCII white space.
pub(super) fn trim(s: &str) -> &str {
    trim_end(trim_start(s))
}

/// `s.parse()` for an unsigned number: plain digits are read byte-wise; anything else (a sign,
/// an empty word) goes to std, which decides, so the result is std's.
pub(super) fn number<T: std::str::FromStr + TryFrom<u64>>(s: &str) -> Option<T> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return s.parse().ok();
    }
    let v = b.iter().fold(0u64, |v, &d| v * 10 + u64::from(d - b'0'));
    T::try_from(v).ok()
}

/// `s.rsplit_once(':')` by a byte search (std's char searcher costs a per-row setup).
pub(super) fn rsplit_colon(s: &str) -> Option<(&str, &str)> {
    let at = memchr::memrchr(b':', s.as_bytes())?;
    Some((&s[..at], &s[at + 1..]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_as_std() {
        for s in [
            "",
            "  ",
            " a b ",
            "\t4321/java   ",
            "\u{a0}x\u{a0}",
            " \u{2003} y \u{3000} ",
            "\u{b}z\u{b}",
            " \u{b} \u{a0} w \u{a0}\u{b} ",
            "é ",
            " é",
        ] {
            assert_eq!(super::trim_start(s), s.trim_start(), "{s:?}");
            assert_eq!(super::trim_end(s), s.trim_end(), "{s:?}");
            assert_eq!(super::trim(s), s.trim(), "{s:?}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// Any string, weighted towards the whitespace the fast path and its fallback split on.
        #[test]
        fn same_as_std_for_any_string(s in "[ \t\n\r\u{b}\u{c}\u{a0}\u{2003}\u{3000}aé0-9/:]{0,12}|\\PC*") {
            prop_assert_eq!(super::trim_start(&s), s.trim_start());
            prop_assert_eq!(super::trim_end(&s), s.trim_end());
            prop_assert_eq!(super::trim(&s), s.trim());
        }
    }
}
