//! Windows System-log events of source Tcpip that prove a past failure: 4231 (the TCP ephemeral
//! port space was exhausted), 4266 (the UDP one) and 4227 (TIME_WAIT collision: churn). Here:
//! `wevtutil qe System /q:... /f:text`, recognised by shape (`Event[N]:`, then indented
//! `label: value` lines in wevtutil's fixed order) so that translated labels do not matter, and
//! the date normalisation both wevtutil and Get-WinEvent (winevent.rs) use. Other events are read,
//! counted and skipped.

use super::ps_table::is_prompt;
use super::{Builder, Cursor, Format, ImportError, Line};
use crate::report::Evidence;

/// The Tcpip event ids porthog keeps, with what each proves.
const MEANINGS: [(u32, &str); 3] = [
    (
        4227,
        "TCP could not reuse a local endpoint recently used to the same remote endpoint (TIME_WAIT collision): connection churn",
    ),
    (
        4231,
        "the global TCP ephemeral port space was exhausted: outbound connections failed (WSAENOBUFS)",
    ),
    (4266, "the UDP ephemeral port space was exhausted"),
];

/// Counts an event of `format` as read; keeps it when it is a Tcpip event porthog knows.
/// Without a provider (a table printed without its `ProviderName:` group) the capture's own
/// filter is trusted.
pub fn record(
    b: &mut Builder,
    format: Format,
    provider: Option<&str>,
    id: u32,
    time: Option<&str>,
) {
    b.record(format);
    if kept(provider, id) {
        b.events.push((id, time.map(normalise_time)));
    }
}

/// Whether an event is a Tcpip event porthog knows (offline and live alike).
pub fn kept(provider: Option<&str>, id: u32) -> bool {
    let tcpip = provider.is_none_or(|p| p.trim().eq_ignore_ascii_case("Tcpip"));
    tcpip && MEANINGS.iter().any(|(i, _)| *i == id)
}

/// The event ids porthog keeps, for a live query's filter.
pub fn kept_ids() -> impl Iterator<Item = u32> {
    MEANINGS.iter().map(|(id, _)| *id)
}

/// One [`Evidence`] per event id, sorted by id. First and last are the earliest and latest of the
/// times that normalised to ISO 8601; when none did, the first and last in input order.
pub fn evidence(events: &[(u32, Option<String>)]) -> Vec<Evidence> {
    MEANINGS
        .iter()
        .filter_map(|&(id, meaning)| {
            let times: Vec<&str> =
                events.iter().filter(|(i, _)| *i == id).filter_map(|(_, t)| t.as_deref()).collect();
            let count = events.iter().filter(|(i, _)| *i == id).count() as u64;
            let iso: Vec<&str> = times.iter().copied().filter(|t| is_iso(t)).collect();
            let (first, last) = if iso.is_empty() {
                (times.first(), times.last())
            } else {
                (iso.iter().min(), iso.iter().max())
            };
            (count > 0).then(|| Evidence {
                kind: "event".to_owned(),
                id,
                counter: None,
                count,
                first: first.map(|t| (*t).to_owned()),
                last: last.map(|t| (*t).to_owned()),
                meaning: meaning.to_owned(),
            })
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS` when the text is a date in a layout Windows prints: ISO 8601 (wevtutil,
/// with fraction and zone dropped), `M/D/YYYY h:mm:ss AM` (en-US), `D.M.YYYY H:MM:SS` (de-DE;
/// fi-FI dots the time too), `YYYY/M/D H:MM:SS` (ja-JP, zh-CN); otherwise the text as given.
pub fn normalise_time(raw: &str) -> String {
    let t = raw.trim();
    iso_prefix(t).or_else(|| local(t)).unwrap_or_else(|| t.to_owned())
}

fn is_iso(t: &str) -> bool {
    t.len() == 19 && iso_prefix(t).is_some()
}

fn iso_prefix(t: &str) -> Option<String> {
    let b = t.as_bytes();
    if b.len() < 19
        || !matches!(b[10], b'T' | b' ')
        || b.len() > 19 && !matches!(b[19], b'.' | b'Z' | b'+' | b'-')
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| {
        t.get(r).filter(|s| s.bytes().all(|c| c.is_ascii_digit()))?.parse::<u32>().ok()
    };
    let seps = b[4] == b'-' && b[7] == b'-' && b[13] == b':' && b[16] == b':';
    let (y, mo, d, h, mi, s) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    (seps && valid(mo, d, h, mi, s)).then(|| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}"))
}

fn valid(mo: u32, d: u32, h: u32, mi: u32, s: u32) -> bool {
    (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 61
}

/// The culture layouts: a date of three numbers, a time of three, an optional AM/PM.
fn local(t: &str) -> Option<String> {
    let mut words = t.split_whitespace();
    let (date, time, ampm) = (words.next()?, words.next()?, words.next());
    if words.next().is_some() {
        return None;
    }
    let three = |s: &str, sep: &[char]| -> Option<[u32; 3]> {
        let mut it = s.split(sep).map(|x| x.parse::<u32>().ok().filter(|_| x.len() <= 4));
        let v = [it.next()??, it.next()??, it.next()??];
        it.next().is_none().then_some(v)
    };
    let [h, mi, s] = three(time, &[':', '.'])?;
    let h = match ampm.map(str::to_ascii_uppercase).as_deref() {
        None => h,
        Some("AM") if (1..=12).contains(&h) => h % 12,
        Some("PM") if (1..=12).contains(&h) => h % 12 + 12,
        Some(_) => return None,
    };
    let (y, mo, d) = if date.contains('/') {
        let [a, b, c] = three(date, &['/'])?;
        match (a > 999, ampm.is_some()) {
            (true, _) => (a, b, c),
            (false, true) if c > 999 => (c, a, b),
            // D/M/YYYY or M/D/YYYY without AM/PM: the culture cannot be told; keep the text.
            _ => return None,
        }
    } else {
        let [d, mo, y] = three(date, &['.'])?;
        (y > 999 && ampm.is_none()).then_some((y, mo, d))?
    };
    valid(mo, d, h, mi, s).then(|| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}"))
}

/// `Event[0]:` (the word may be translated).
fn is_head(t: &str) -> bool {
    let Some((word, idx)) = t.trim_end().strip_suffix("]:").and_then(|x| x.split_once('[')) else {
        return false;
    };
    !word.is_empty()
        && word.chars().all(char::is_alphabetic)
        && !idx.is_empty()
        && idx.bytes().all(|c| c.is_ascii_digit())
}

/// An indented `label: value` line of a wevtutil block.
fn field(t: &str) -> Option<(&str, &str)> {
    if !t.starts_with([' ', '\t']) {
        return None;
    }
    let (label, value) = t.trim_start().split_once(':')?;
    (!label.trim().is_empty()).then(|| (label.trim(), value.trim()))
}

pub fn starts_wevtutil(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    is_head(line.text) && cur.peek2().is_some_and(|l| field(l.text).is_some())
}

/// Blocks of `Event[N]:`, fields (Log Name, Source, Date, Event ID, Task, Level, Opcode,
/// Keyword, User, User Name, Computer, Description), then the message on unindented lines.
pub fn parse_wevtutil(
    cur: &mut Cursor<'_>,
    b: &mut Builder,
    lenient: bool,
) -> Result<(), ImportError> {
    while let Some(head) = cur.peek().filter(|l| is_head(l.text)) {
        cur.next();
        let (mut source, mut date, mut id) = (None, None, None);
        let mut index = 0;
        let mut last_empty = false;
        while let Some((label, value)) = cur.peek().and_then(|l| field(l.text)) {
            cur.next();
            last_empty = value.is_empty();
            let is = |names: [&str; 2]| names.iter().any(|n| label.eq_ignore_ascii_case(n));
            // The English and German labels, else wevtutil's order: Source second, Date third,
            // Event ID fourth.
            match label {
                _ if is(["Source", "Quelle"]) => source = Some(value),
                _ if is(["Date", "Datum"]) => date = Some(value),
                _ if is(["Event ID", "Ereignis-ID"]) => id = Some(value),
                _ if index == 1 && source.is_none() => source = Some(value),
                _ if index == 2 && date.is_none() => date = Some(value),
                _ if index == 3 && id.is_none() && value.bytes().all(|c| c.is_ascii_digit()) => {
                    id = Some(value)
                }
                _ => {}
            }
            index += 1;
        }
        // The message follows an empty last label (Description:), up to a blank line, the next
        // event or a prompt.
        while last_empty
            && cur.peek().is_some_and(|l| {
                let t = l.text.trim();
                !t.is_empty() && !is_head(l.text) && !is_prompt(t)
            })
        {
            cur.next();
        }
        match id.and_then(|v| v.parse::<u32>().ok()) {
            Some(id) => record(b, Format::Wevtutil, source, id, date),
            None => b.malformed(
                lenient,
                ImportError::malformed(
                    cur.name(),
                    head,
                    Format::Wevtutil,
                    "an `Event ID: N` line in the block",
                ),
            )?,
        }
        skip_blanks_before(cur, |l| is_head(l.text));
    }
    Ok(())
}

/// Consumes blank lines when what follows them satisfies `next` (the section goes on).
pub fn skip_blanks_before(cur: &mut Cursor<'_>, next: impl Fn(Line<'_>) -> bool) {
    let mut k = 0;
    while cur.peek_nth(k).is_some_and(|l| l.text.trim().is_empty()) {
        k += 1;
    }
    if k > 0 && cur.peek_nth(k).is_some_and(next) {
        for _ in 0..k {
            cur.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportOptions, Input, import};

    fn evidence_of(text: &str) -> Vec<Evidence> {
        crate::import::testing::evidence_of("ev.txt", text)
    }

    #[test]
    fn dates_of_each_culture() {
        assert_eq!(normalise_time("2024-01-15T10:23:45.1230000Z"), "2024-01-15T10:23:45");
        assert_eq!(normalise_time("2019-05-26T10:21:11.251"), "2019-05-26T10:21:11");
        assert_eq!(normalise_time("1/15/2024 10:23:45 AM"), "2024-01-15T10:23:45");
        assert_eq!(normalise_time("1/15/2024 12:03:00 AM"), "2024-01-15T00:03:00");
        assert_eq!(normalise_time("12/13/2023 12:24:28 PM"), "2023-12-13T12:24:28");
        assert_eq!(normalise_time("12/13/2023 1:24:28 PM"), "2023-12-13T13:24:28");
        assert_eq!(normalise_time("15.01.2024 10:23:45"), "2024-01-15T10:23:45");
        assert_eq!(normalise_time("07.06.2022 19.16.46"), "2022-06-07T19:16:46");
        assert_eq!(normalise_time("2024/01/15 9:05:01"), "2024-01-15T09:05:01");
        assert_eq!(normalise_time(" 15/01/2024 10:23:45 "), "15/01/2024 10:23:45");
        assert_eq!(normalise_time("1/15/2024 13:23:45 PM"), "1/15/2024 13:23:45 PM");
        assert_eq!(normalise_time("2024-13-15T10:23:45"), "2024-13-15T10:23:45");
        assert_eq!(normalise_time("gestern"), "gestern");
    }

    #[test]
    fn first_and_last_are_the_extremes_not_the_input_order() {
        let ev = evidence(&[
            (4231, Some("2024-01-15T10:23:45".into())),
            (4231, Some("2024-01-14T08:00:00".into())),
            (4227, Some("gestern".into())),
            (4231, None),
        ]);
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[0].id, ev[0].count, ev[0].first.as_deref()), (4227, 1, Some("gestern")));
        assert_eq!((ev[1].id, ev[1].count), (4231, 3));
        assert_eq!(ev[1].first.as_deref(), Some("2024-01-14T08:00:00"));
        assert_eq!(ev[1].last.as_deref(), Some("2024-01-15T10:23:45"));
    }

    #[test]
    fn wevtutil_blocks_english_and_german_other_events_skipped() {
        let ev = evidence_of(
            "Event[0]:\r\n  Log Name: System\r\n  Source: Tcpip\r\n  Date: 2024-01-15T10:23:45.1230000Z\r\n  Event ID: 4231\r\n\
             \x20 Task: N/A\r\n  Level: Warning\r\n  Description: \r\nA request to allocate an ephemeral port number from the global TCP port space has failed due to all such ports being in use.\r\n\r\n\
             Event[1]:\r\n  Log Name: System\r\n  Source: Service Control Manager\r\n  Date: 2024-01-15T10:24:00.000\r\n  Event ID: 4231\r\n  Description:\r\nnot ours\r\n\r\n\
             Ereignis[2]:\r\n  Protokollname: System\r\n  Quelle: Tcpip\r\n  Datum: 2024-01-15T11:00:00.000\r\n  Ereignis-ID: 4231\r\n  Beschreibung:\r\nFehler.\r\n",
        );
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].id, ev[0].count), (4231, 2));
        assert_eq!(ev[0].first.as_deref(), Some("2024-01-15T10:23:45"));
        assert_eq!(ev[0].last.as_deref(), Some("2024-01-15T11:00:00"));
    }

    #[test]
    fn unknown_labels_are_read_by_position() {
        let ev = evidence_of(
            "Événement[0]:\n  Journal: System\n  Origine: Tcpip\n  Horodatage: 2024-01-15T10:23:45.000\n  Numéro: 4266\n  Texte:\nUDP.\n",
        );
        assert_eq!((ev[0].id, ev[0].first.as_deref()), (4266, Some("2024-01-15T10:23:45")));
        let e = import(
            &[Input { name: "w.txt", bytes: b"Event[0]:\n  Log Name: System\n  Source: Tcpip\n" }],
            &ImportOptions::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("w.txt:1: wevtutil row: expected an `Event ID: N`"),
            "{e}"
        );
    }
}
