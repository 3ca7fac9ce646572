//! `netsh int ipv4|ipv6 show dynamicport tcp|udp` and `show excludedportrange protocol=tcp|udp`,
//! in any language: recognised by shape (a heading naming tcp or udp, a rule of dashes, numbers),
//! not by the translated words. `*` marks administered exclusions.

use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::Protocol;
use crate::ports::{PortRange, PortSet};

/// The protocol a heading names: a word "tcp" or "udp" (any case), and no digits or colons.
fn heading_protocol(t: &str) -> Option<Protocol> {
    if t.contains(':') || t.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    t.split_whitespace().find_map(|w| match w.to_ascii_lowercase().as_str() {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
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

pub fn starts_dynamicport(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    heading_protocol(line.text).is_some()
        && cur.peek2().is_some_and(|l| is_rule(l.text) && rule_groups(l.text) == 1)
}

pub fn starts_excluded(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    heading_protocol(line.text).is_some()
        && (1..5)
            .any(|n| cur.peek_nth(n).is_some_and(|l| is_rule(l.text) && rule_groups(l.text) == 2))
}

/// "Start Port      : 49152" then "Number of Ports : 16384" (translated labels).
pub fn parse_dynamicport(cur: &mut Cursor<'_>, b: &mut Builder) -> Result<(), ImportError> {
    let Some(head) = cur.next() else { return Ok(()) };
    let proto = heading_protocol(head.text).unwrap_or(Protocol::Tcp);
    cur.next(); // the rule
    let mut numbers = Vec::new();
    while numbers.len() < 2 {
        let Some(line) = cur.peek() else { break };
        if line.text.trim().is_empty() {
            cur.next();
            continue;
        }
        match line.text.rsplit_once(':').map(|(_, v)| v.trim().parse::<u32>()) {
            Some(Ok(n)) => {
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
    let proto = heading_protocol(head.text).unwrap_or(Protocol::Tcp);
    while let Some(line) = cur.next() {
        if is_rule(line.text) {
            break;
        }
    }
    let mut set = PortSet::new();
    while let Some(line) = cur.peek() {
        let mut f = line.text.split_whitespace();
        let (Some(a), Some(z)) = (f.next(), f.next()) else {
            if line.text.trim().is_empty() && set.is_empty() {
                cur.next();
                continue;
            }
            break;
        };
        let (Ok(a), Ok(z)) = (a.parse::<u16>(), z.parse::<u16>()) else { break };
        if !matches!(f.next(), None | Some("*")) {
            break;
        }
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
    // The footnote "* - Administered port exclusions." belongs to the table.
    if cur.peek().is_some_and(|l| l.text.trim_start().starts_with("* -")) {
        cur.next();
    }
    let slot = if proto == Protocol::Tcp {
        &mut b.settings.tcp_reserved
    } else {
        &mut b.settings.udp_reserved
    };
    // ipv4 and ipv6 exclusions both take ports out of the shared pool.
    let merged = slot.get_or_insert_with(PortSet::new);
    for r in set.ranges() {
        merged.insert(*r);
    }
    b.record(Format::NetshExcluded);
    Ok(())
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
    fn a_range_past_65535_is_an_error() {
        let text = "Protocol tcp Dynamic Port Range\n-----------\nStart Port : 60000\nNumber of Ports : 16384\n";
        let e =
            import(&[Input { name: "n.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(e.to_string().starts_with("n.txt:3: netsh-dynamicport row"), "{e}");
    }
}
