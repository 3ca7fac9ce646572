//! Pasting noise, removed once before any parser reads a line (issue 11): markdown code fences,
//! e-mail quote markers (`> `), chat timestamps (`[10:42] `, `10:42:13 `), line numbers (`12 `,
//! `12|`), and truncation marks (a `...` line, a last row cut off with `...`). A prefix kind is
//! stripped only when most lines carry it, so a capture's own text is never taken for noise.
//! Lines keep their numbers: a removed line becomes empty, a prefix is cut from its line.
//! Clean text (the common case, and every million-row capture) is borrowed untouched.

use std::borrow::Cow;

use std::sync::LazyLock;

use memchr::memmem;

use super::cursor::Release;

/// How many lines carried each kind of noise, and where truncation was seen first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Noise {
    pub fences: u64,
    pub quoted: u64,
    pub timestamped: u64,
    pub numbered: u64,
    /// Lines that stood for rows left out (`...`, `[...]`, `(truncated)`) or a row cut short.
    pub truncated: u64,
    pub first_truncated: Option<usize>,
}

impl Noise {
    pub fn is_empty(&self) -> bool {
        *self == Noise::default()
    }

    pub fn add(&mut self, other: &Noise) {
        self.fences += other.fences;
        self.quoted += other.quoted;
        self.timestamped += other.timestamped;
        self.numbered += other.numbered;
        self.truncated += other.truncated;
        self.first_truncated = self.first_truncated.or(other.first_truncated);
    }
}

/// Lines sampled to decide which prefixes the paste carries.
const SAMPLE: usize = 200;

#[derive(Debug, Clone, Copy, Default)]
struct Kinds {
    quote: bool,
    timestamp: bool,
    number: bool,
}

/// The text without its pasting noise, and what was removed.
#[cfg(test)]
pub fn normalize(text: &str) -> (Cow<'_, str>, Noise) {
    normalize_paged(text, Release::NONE)
}

/// [`normalize`], releasing the text it has scanned as it goes (see [`Release`]).
pub fn normalize_paged<'a>(text: &'a str, release: Release<'_>) -> (Cow<'a, str>, Noise) {
    let kinds = detect(text);
    let (fenced, marked) = fences_and_marks(text, release);
    if !(kinds.quote || kinds.timestamp || kinds.number || fenced || marked) {
        return (Cow::Borrowed(text), Noise::default());
    }
    let mut noise = Noise::default();
    let mut out = String::with_capacity(text.len());
    let last = last_nonblank(text);
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let (line, end) = split_ending(raw);
        let mut t = line;
        if kinds.number
            && let Some(rest) = strip_number(t)
        {
            t = rest;
            noise.numbered += 1;
        }
        // A timestamp and a quote marker come in either order (`> [10:42] `, `[10:42] > `).
        let (mut timed, mut quoted) = (false, false);
        loop {
            if kinds.timestamp
                && !timed
                && let Some(rest) = strip_timestamp(t)
            {
                (t, timed) = (rest, true);
            } else if kinds.quote
                && !quoted
                && let Some(rest) = strip_quote(t)
            {
                (t, quoted) = (rest, true);
            } else {
                break;
            }
        }
        noise.timestamped += u64::from(timed);
        noise.quoted += u64::from(quoted);
        if is_fence(t) {
            noise.fences += 1;
            t = "";
        } else if is_truncation_mark(t) || (Some(i) == last && is_cut_row(t)) {
            noise.truncated += 1;
            noise.first_truncated.get_or_insert(i + 1);
            t = "";
        }
        out.push_str(t);
        out.push_str(end);
    }
    (Cow::Owned(out), noise)
}

fn split_ending(raw: &str) -> (&str, &str) {
    let body = raw.strip_suffix('\n').unwrap_or(raw);
    let body = body.strip_suffix('\r').unwrap_or(body);
    (body, &raw[body.len()..])
}

/// Which prefixes most of the first non-blank lines carry (at least two lines, 60 %).
fn detect(text: &str) -> Kinds {
    let (mut n, mut quote, mut ts, mut num) = (0usize, 0usize, 0usize, 0usize);
    let mut last_number: Option<u64> = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(SAMPLE) {
        let mut t = line;
        if let Some((value, rest)) = number_prefix(t) {
            // Line numbers count up by one (or more, where blank lines were left out).
            if last_number.is_none_or(|prev| value > prev) {
                num += 1;
                t = rest;
            }
            last_number = Some(value);
        }
        let (mut timed, mut quoted) = (false, false);
        loop {
            if let Some(rest) = strip_timestamp(t).filter(|_| !timed) {
                (t, timed) = (rest, true);
            } else if let Some(rest) = strip_quote(t).filter(|_| !quoted) {
                (t, quoted) = (rest, true);
            } else {
                break;
            }
        }
        // Fences are counted apart; they carry no prefix of their own.
        if is_fence(t) {
            continue;
        }
        n += 1;
        ts += usize::from(timed);
        quote += usize::from(quoted);
    }
    let most = |k: usize| k >= 2 && k * 10 >= n * 6;
    Kinds { quote: most(quote), timestamp: most(ts), number: most(num) }
}

/// `> text`, `>> text`, `>` (an empty quoted line).
fn strip_quote(t: &str) -> Option<&str> {
    let rest = t.trim_start_matches('>');
    (rest.len() < t.len()).then(|| rest.strip_prefix(' ').unwrap_or(rest))
}

/// `12 text`, `12| text`, `12│ text`, `  12  text`: the number and the rest.
fn number_prefix(t: &str) -> Option<(u64, &str)> {
    let s = t.trim_start();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 7 {
        return None;
    }
    let value = s[..digits].parse().ok()?;
    let rest = &s[digits..];
    let rest = if let Some(r) = rest.strip_prefix('|').or_else(|| rest.strip_prefix('│')) {
        r.strip_prefix(' ').unwrap_or(r)
    } else if rest.starts_with([' ', '\t']) {
        rest.strip_prefix([' ', '\t']).unwrap_or(rest)
    } else if rest.is_empty() {
        rest
    } else {
        return None;
    };
    Some((value, rest))
}

fn strip_number(t: &str) -> Option<&str> {
    number_prefix(t).map(|(_, rest)| rest)
}

/// `[10:42] `, `[10:42:13] `, `10:42:13 `, `[10:42 AM] `, `[2024-01-02 10:42:13] `.
fn strip_timestamp(t: &str) -> Option<&str> {
    let (bracketed, s) = match t.strip_prefix('[') {
        Some(s) => (true, s),
        None => (false, t),
    };
    // An optional date first: `2024-01-02 ` or `2024-01-02T`.
    let s = match s.get(..11) {
        Some(d)
            if d.as_bytes()[4] == b'-'
                && d.as_bytes()[7] == b'-'
                && matches!(d.as_bytes()[10], b' ' | b'T')
                && d[..4]
                    .bytes()
                    .chain(d[5..7].bytes())
                    .chain(d[8..10].bytes())
                    .all(|b| b.is_ascii_digit()) =>
        {
            &s[11..]
        }
        _ => s,
    };
    let clock = |s: &str| -> Option<usize> {
        let b = s.as_bytes();
        let h = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=2).contains(&h) || b.get(h) != Some(&b':') {
            return None;
        }
        let two = |i: usize| b.get(i..i + 2).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
        if !two(h + 1) {
            return None;
        }
        let mut end = h + 3;
        if b.get(end) == Some(&b':') && two(end + 1) {
            end += 3;
        }
        // Fractions of a second: `10:42:13.123`.
        if b.get(end) == Some(&b'.') {
            end += 1 + b[end + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
        Some(end)
    };
    let mut end = clock(s)?;
    let rest = &s[end..];
    for ampm in [" AM", " PM", " am", " pm", "AM", "PM"] {
        if rest.starts_with(ampm) {
            end += ampm.len();
            break;
        }
    }
    let mut rest = &s[end..];
    if bracketed {
        rest = rest.strip_prefix(']')?;
    }
    // A separator must follow: a space, or the end of an empty line.
    match rest.strip_prefix([' ', '\t']) {
        Some(r) => Some(r),
        None if rest.is_empty() => Some(rest),
        None => None,
    }
}

fn is_fence(t: &str) -> bool {
    let t = t.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// A line that stands for rows left out.
fn is_truncation_mark(t: &str) -> bool {
    matches!(t.trim(), "..." | "…" | "[...]" | "[…]" | "(...)" | "(truncated)" | "[truncated]")
}

/// A Windows netstat row cut short by the paste: `  TCP    10.0.0.7:4915...`.
fn is_cut_row(t: &str) -> bool {
    let s = t.trim();
    (s.starts_with("TCP ") || s.starts_with("UDP ")) && (s.ends_with("...") || s.ends_with('…'))
}

/// Whether the text has a code fence, and whether it has a truncation mark, a few MiB at a
/// time, each piece released after (every million-row capture pays this pass). The bytes looked
/// for are rare in captures (`` ` ``, `~`, the lead byte of `…`, two dots in a row), so the
/// SIMD searches skip nearly all of it.
fn fences_and_marks(text: &str, release: Release<'_>) -> (bool, bool) {
    static DOTS: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("..."));
    static WORD: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new("truncated"));
    let b = text.as_bytes();
    let line_of = |at: usize| {
        let from = memchr::memrchr(b'\n', &b[..at]).map_or(0, |i| i + 1);
        let to = memchr::memchr(b'\n', &b[at..]).map_or(b.len(), |i| at + i);
        &text[from..to]
    };
    let is_mark = |at: usize| {
        let line = line_of(at);
        is_truncation_mark(line) || is_cut_row(line)
    };
    let (mut fenced, mut marked) = (false, false);
    let mut start = 0;
    while start < b.len() && !(fenced && marked) {
        let end = (start + Release::EVERY).min(b.len());
        // A needle may start before the piece's end and finish after it.
        let window = &b[start..(end + 8).min(b.len())];
        let starts_here = |i: &usize| *i < end - start;
        for i in memchr::memchr3_iter(b'`', b'~', 0xE2, window).filter(starts_here) {
            let rest = &window[i..];
            if rest.starts_with(b"```") || rest.starts_with(b"~~~") {
                fenced = true;
            } else if !marked && rest.starts_with("…".as_bytes()) {
                marked = is_mark(start + i);
            }
        }
        if !marked {
            marked = DOTS
                .find_iter(window)
                .chain(WORD.find_iter(window))
                .filter(starts_here)
                .any(|i| is_mark(start + i));
        }
        (release.0)(&b[start..end]);
        start = end;
    }
    (fenced, marked)
}

/// The index of the last line with text.
fn last_nonblank(text: &str) -> Option<usize> {
    text.split_inclusive('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, _)| i)
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_borrowed() {
        let text = "  TCP    10.0.0.7:49152   10.0.0.5:443   ESTABLISHED   4321\r\n";
        let (out, noise) = normalize(text);
        assert!(matches!(out, Cow::Borrowed(_)));
        assert!(noise.is_empty());
    }

    #[test]
    fn quotes_timestamps_numbers_and_fences() {
        let text = "```\n> [10:42] State Recv-Q\n> [10:42] ESTAB 0 0\n```\n";
        let (out, noise) = normalize(text);
        assert_eq!(out, "\nState Recv-Q\nESTAB 0 0\n\n");
        assert_eq!((noise.fences, noise.quoted, noise.timestamped), (2, 2, 2));
        // `cat -n`: the number right-aligned, then a tab.
        let text =
            "     1\tProto Local\r\n     2\t  TCP 1.2.3.4:5\r\n     3\r\n     4\t  TCP x\r\n";
        let (out, noise) = normalize(text);
        assert_eq!(out, "Proto Local\r\n  TCP 1.2.3.4:5\r\n\r\n  TCP x\r\n");
        assert_eq!(noise.numbered, 4);
        let (out, _) = normalize("10:42:13 a\n10:42:14.5 PM b\n[2024-01-02 10:42] c\n");
        assert_eq!(out, "a\nb\nc\n");
    }

    #[test]
    fn a_capture_own_text_is_not_noise() {
        // Right-aligned numbers that do not count up, and proc/net's `0:` row numbers.
        for text in [
            "OwningProcess LocalPort\n------------- ---------\n         4321     49823\n          700     49664\n",
            "  sl  local_address\n   0: 0100007F:1F90\n   1: 0100007F:9C40\n",
            "Id  TimeCreated\n4231 10:42:13 x\n",
        ] {
            let (out, noise) = normalize(text);
            assert_eq!((out.as_ref(), noise.is_empty()), (text, true), "{text}");
        }
    }

    #[test]
    fn fences_and_marks_are_found_past_the_first_piece() {
        let rows = "  TCP    10.0.0.7:1   10.0.0.5:443   ESTABLISHED   1\n"
            .repeat(Release::EVERY / 50 + 1);
        for (tail, fenced, marked) in
            [("```\n", true, false), ("…\n", false, true), ("[truncated]\n", false, true)]
        {
            let text = rows.clone() + tail;
            assert_eq!(fences_and_marks(&text, Release::NONE), (fenced, marked), "{tail}");
        }
        // A needle across the end of a piece.
        let mut text = "x".repeat(Release::EVERY - 5) + "\n...\n";
        assert_eq!(fences_and_marks(&text, Release::NONE), (false, true));
        text = "x".repeat(Release::EVERY - 2) + "\n```\n";
        assert_eq!(fences_and_marks(&text, Release::NONE), (true, false));
    }

    #[test]
    fn truncation_marks_and_a_cut_last_row() {
        let text = "  TCP    10.0.0.7:1   10.0.0.5:443   ESTABLISHED   1\n...\n  TCP    10.0.0.7:2   10.0.0.5:443   ESTAB...\n";
        let (out, noise) = normalize(text);
        assert_eq!(out, "  TCP    10.0.0.7:1   10.0.0.5:443   ESTABLISHED   1\n\n\n");
        assert_eq!((noise.truncated, noise.first_truncated), (2, Some(2)));
        // A cell Format-Table cut is not a truncated paste.
        let table = "LocalAddress LocalPort\n------------ ---------\nfe80::1...   49823\n";
        assert!(normalize(table).1.is_empty());
    }
}
