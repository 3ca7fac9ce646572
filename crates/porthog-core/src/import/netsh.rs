//! `netsh int ipv4|ipv6 show dynamicport tcp|udp` and `show excludedportrange protocol=tcp|udp`,
//! in any language (issue 8): read by layout, never by the translated words. Dynamic range: a
//! title, a one-group rule, two labelled numbers. Exclusions: a title, column names over a
//! two-group rule, `start end [*]` rows (`*` marks administered ones), a `* - ...` footnote.
//! The protocol is the `tcp`/`udp` the title names; without one, TCP is assumed and noted.

use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::Protocol;
use crate::ports::{PortRange, PortSet};

/// The protocol a heading names: `tcp` or `udp` (any case) between characters that are not
/// ASCII letters or digits, so `TCP-Protokoll` and `tcpプロトコル` count as well as a word.
fn heading_protocol(t: &str) -> Option<Protocol> {
    let lower = t.to_ascii_lowercase();
    let b = lower.as_bytes();
    let bounded = |i: usize, n: usize| {
        (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            && b.get(i + n).is_none_or(|c| !c.is_ascii_alphanumeric())
    };
    [("tcp", Protocol::Tcp), ("udp", Protocol::Udp)].into_iter().find_map(|(word, p)| {
        lower.match_indices(word).any(|(i, _)| bounded(i, word.len())).then_some(p)
    })
}

fn is_rule(t: &str) -> bool {
    let t = t.trim();
    t.len() >= 4 && t.chars().all(|c| c == '-' || c == ' ')
}

/// Number of dash groups in a rule line.
fn rule_groups(t: &str) -> usize {
    t.split_whitespace().count()
}

/// `label : 49152` in any language; the colon may be full-width (`：`).
fn labelled_number(t: &str) -> Option<u32> {
    let (_, v) = t.rsplit_once([':', '：'])?;
    v.trim().parse().ok()
}

/// A title line: text, not a rule and not a labelled number.
fn is_title(t: &str) -> bool {
    !t.trim().is_empty() && !is_rule(t) && labelled_number(t).is_none()
}

/// `start end` or `start end *`.
fn exclusion_row(t: &str) -> Option<(u16, u16)> {
    let mut f = t.split_whitespace();
    let (a, z) = (f.next()?.parse().ok()?, f.next()?.parse().ok()?);
    matches!(f.next(), None | Some("*")).then_some((a, z))?;
    f.next().is_none().then_some((a, z))
}

/// The footnote under the exclusions: `* - Administered port exclusions.` in any language.
fn is_footnote(t: &str) -> bool {
    t.trim_start().starts_with("* -")
}

/// A title over a one-group rule, then a labelled number: the dynamic range, whatever the words.
pub fn starts_dynamicport(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    is_title(line.text)
        && cur.peek2().is_some_and(|l| is_rule(l.text) && rule_groups(l.text) == 1)
        && cur.peek_nth(2).is_some_and(|l| labelled_number(l.text).is_some())
}

/// A title (or the column names) with a two-group rule within the next lines, under which come
/// `start end [*]` rows, the footnote, or nothing: the exclusions, whatever the words.
pub fn starts_excluded(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    if !is_title(line.text) {
        return false;
    }
    let Some(n) = (1..5)
        .find(|&n| cur.peek_nth(n).is_some_and(|l| is_rule(l.text) && rule_groups(l.text) == 2))
    else {
        return false;
    };
    // Every line between the title and the rule is text: a blank line or the column names.
    let between_ok = (1..n).all(|k| cur.peek_nth(k).is_some_and(|l| !is_rule(l.text)));
    let under = (n + 1..n + 4).filter_map(|k| cur.peek_nth(k)).find(|l| !l.text.trim().is_empty());
    between_ok && under.is_none_or(|l| exclusion_row(l.text).is_some() || is_footnote(l.text))
}

/// Notes where the title did not name the protocol.
fn protocol_of(head: &str, format: Format, b: &mut Builder) -> Protocol {
    heading_protocol(head).unwrap_or_else(|| {
        b.note(format, "the title names no protocol (tcp or udp): read as TCP");
        Protocol::Tcp
    })
}

/// "Start Port      : 49152" then "Number of Ports : 16384" (translated labels).
pub fn parse_dynamicport(cur: &mut Cursor<'_>, b: &mut Builder) -> Result<(), ImportError> {
    let Some(head) = cur.next() else { return Ok(()) };
    let proto = protocol_of(head.text, Format::NetshDynamicport, b);
    cur.next(); // the rule
    let mut numbers = Vec::new();
    while numbers.len() < 2 {
        let Some(line) = cur.peek() else { break };
        if line.text.trim().is_empty() {
            cur.next();
            continue;
        }
        match labelled_number(line.text) {
            Some(n) => {
                numbers.push((n, line));
                cur.next();
            }
            _ => break,
        }
    }
    let [(start, start_line), (count, _)] = numbers[..] else {
        let line = cur.peek().unwrap_or(head);
        return Err(ImportError::malformed(
            cur.name(),
            line,
            Format::NetshDynamicport,
            "\"Start Port : N\" then \"Number of Ports : N\"",
        ));
    };
    let end = start.checked_add(count.saturating_sub(1));
    let range = match (u16::try_from(start), end.map(u16::try_from)) {
        (Ok(s), Some(Ok(e))) if count > 0 => PortRange::new(s, e),
        _ => None,
    }
    .ok_or_else(|| {
        ImportError::malformed(
            cur.name(),
            start_line,
            Format::NetshDynamicport,
            "a start port and a count that stay within 1-65535",
        )
    })?;
    let slot =
        if proto == Protocol::Tcp { &mut b.settings.tcp_range } else { &mut b.settings.udp_range };
    // ipv4 and ipv6 print the same heading; the first one given wins.
    slot.get_or_insert(range);
    b.record(Format::NetshDynamicport);
    Ok(())
}

/// A table of "start end [*]" rows under a two-column rule.
pub fn parse_excluded(cur: &mut Cursor<'_>, b: &mut Builder) -> Result<(), ImportError> {
    let Some(head) = cur.next() else { return Ok(()) };
    let proto = protocol_of(head.text, Format::NetshExcluded, b);
    while let Some(line) = cur.next() {
        if is_rule(line.text) {
            break;
        }
    }
    let mut set = PortSet::new();
    while let Some(line) = cur.peek() {
        if line.text.trim().is_empty() && set.is_empty() {
            cur.next();
            continue;
        }
        let Some((a, z)) = exclusion_row(line.text) else { break };
        let range = PortRange::new(a, z).ok_or_else(|| {
            ImportError::malformed(
                cur.name(),
                line,
                Format::NetshExcluded,
                "a start port not above the end port",
            )
        })?;
        set.insert(range);
        cur.next();
    }
    // The footnote belongs to the table, with the blank line before it.
    if cur.peek().is_some_and(|l| l.text.trim().is_empty())
        && cur.peek2().is_some_and(|l| is_footnote(l.text))
    {
        cur.next();
    }
    if cur.peek().is_some_and(|l| is_footnote(l.text)) {
        cur.next();
    }
    let slot = if proto == Protocol::Tcp {
        &mut b.settings.tcp_reserved
    } else {
        &mut b.settings.udp_reserved
    };
    add_exclusions(slot, &set);
    b.record(Format::NetshExcluded);
    Ok(())
}

/// Adds one listing's excluded ranges to `slot`: ipv4 and ipv6 exclusions both take ports out
/// of the shared pool, so they add up (the dynamic range instead: the first one given wins).
pub(crate) fn add_exclusions(slot: &mut Option<PortSet>, set: &PortSet) {
    let merged = slot.get_or_insert_with(PortSet::new);
    for r in set.ranges() {
        merged.insert(*r);
    }
}

#[cfg(test)]
mod tests {
    use crate::import::{ImportOptions, Imported, Input, import};
    use crate::model::Snapshot;
    use crate::ports::PortRange;

    fn snapshot(text: &str) -> Snapshot {
        match import(
            &[Input { name: "netsh.txt", bytes: text.as_bytes() }],
            &ImportOptions::default(),
        )
        .unwrap()
        {
            Imported::Snapshot { snapshot, .. } => snapshot,
            Imported::Report(_) => panic!("not a report"),
        }
    }

    #[test]
    fn english_range_and_exclusions() {
        let s = snapshot(
            "\r\nProtocol tcp Dynamic Port Range\r\n---------------------------------\r\nStart Port      : 49152\r\nNumber of Ports : 16384\r\n\r\n\
             \r\nProtocol tcp Port Exclusion Ranges\r\n\r\nStart Port    End Port\r\n----------    --------\r\n\
             \x20     5357        5357\r\n     50000       50059     *\r\n     50060       50159\r\n\r\n* - Administered port exclusions.\r\n",
        );
        assert_eq!(s.settings.tcp_range, PortRange::new(49152, 65535));
        let ex = s.settings.tcp_reserved.as_ref().unwrap();
        assert_eq!(ex.len(), 1 + 160);
        assert_eq!(ex.count_within(PortRange::new(49152, 65535).unwrap()), 160);
        assert!(s.gaps.iter().all(|g| !g.message.contains("excluded port ranges were not")));
    }

    #[test]
    fn german_range() {
        let s = snapshot(
            "Protokoll tcp Dynamischer Portbereich\n---------------------------------\nStartport       : 10000\nAnzahl der Ports: 55536\n",
        );
        assert_eq!(s.settings.tcp_range, PortRange::new(10000, 65535));
        assert!(s.gaps.iter().any(|g| g.message.contains("excluded port ranges were not")));
    }

    #[test]
    fn titles_that_glue_the_protocol_to_other_words_or_name_none() {
        let s = snapshot(
            "TCP-Portausschlussbereiche\n\nStartport     Endport\n----------    --------\n     50000       50059     *\n\n* - Verwaltet.\n\
             udpの動的ポートの範囲\n---------------------------------\n開始ポート      ： 10000\nポート数        ： 2000\n",
        );
        assert_eq!(s.settings.tcp_reserved.as_ref().map(|x| x.len()), Some(60u32));
        assert_eq!(s.settings.udp_range, PortRange::new(10000, 11999));
        assert_eq!(s.settings.tcp_range, None);
        // A paste that starts at the column names: no title, TCP assumed and said.
        let text = "Startport     Endport\n----------    --------\n      5357        5357\n";
        let Imported::Snapshot { snapshot, sources, .. } =
            import(&[Input { name: "x.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(snapshot.settings.tcp_reserved.as_ref().map(|x| x.len()), Some(1));
        assert_eq!(sources[0].notes, ["the title names no protocol (tcp or udp): read as TCP"]);
        // An empty exclusion table is a table.
        let empty = "Protocol udp Port Exclusion Ranges\n\nStart Port    End Port\n----------    --------\n\n* - Administered port exclusions.\n";
        assert_eq!(snapshot_of_len(empty), Some(0));
    }

    fn snapshot_of_len(text: &str) -> Option<u32> {
        snapshot(text).settings.udp_reserved.map(|x| x.len())
    }

    #[test]
    fn a_udp_powershell_table_is_no_exclusion_table() {
        let s = snapshot("LocalAddress LocalPort\n------------ ---------\n::           61592\n");
        assert_eq!((s.sockets.len(), s.settings.tcp_reserved.is_none()), (1, true));
    }

    #[test]
    fn a_range_past_65535_is_an_error() {
        let text = "Protocol tcp Dynamic Port Range\n-----------\nStart Port : 60000\nNumber of Ports : 16384\n";
        let e =
            import(&[Input { name: "n.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(e.to_string().starts_with("n.txt:3: netsh-dynamicport row"), "{e}");
    }
}
