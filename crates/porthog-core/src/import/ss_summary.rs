//! `ss -s`: totals only (`TCP:   13 (estab 6, closed 4, orphaned 0, timewait 2)` and the
//! Transport table). No socket rows, so no pools: the report gives the TIME_WAIT count against
//! the range, says it cannot judge a pool, and names the command that would.

use super::{Builder, Cursor, Format, ImportError, Line};

pub fn starts(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    line.text.starts_with("Total:")
        && cur.peek2().is_some_and(|l| l.text.starts_with("TCP:") && l.text.contains("timewait"))
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder) -> Result<(), ImportError> {
    cur.next();
    let Some(tcp) = cur.next() else { return Ok(()) };
    let number = |key: &str| -> Option<u64> {
        let i = tcp.text.find(key)? + key.len();
        tcp.text[i..].trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let (Some(total), Some(time_wait)) = (number("TCP:"), number("timewait")) else {
        return Err(ImportError::malformed(
            cur.name(),
            tcp,
            Format::SsSummary,
            "TCP:   N (estab N, closed N, orphaned N, timewait N)",
        ));
    };
    b.ss_summary = Some((total, time_wait));
    b.record(Format::SsSummary);
    // The Transport table that follows belongs to the summary.
    while let Some(line) = cur.peek() {
        let first = line.text.split_ascii_whitespace().next().unwrap_or("");
        let ours = line.text.trim().is_empty()
            || matches!(first, "Transport" | "RAW" | "UDP" | "TCP" | "INET" | "FRAG");
        if !ours {
            break;
        }
        cur.next();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::import::{ImportOptions, Imported, Input, import};
    use crate::model::GapKind;

    #[test]
    fn totals_against_the_range_and_no_pools_said_so() {
        let text = "Total: 10\nTCP:   13 (estab 6, closed 4, orphaned 0, timewait 2)\n\n\
                    Transport Total     IP        IPv6\nRAW\t  0         0         0        \n\
                    TCP\t  9         8         1        \n\n\
                    net.ipv4.ip_local_port_range = 40000\t40099\n";
        let Imported::Snapshot { snapshot: s, sources, .. } =
            import(&[Input { name: "s.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap()
        else {
            panic!()
        };
        assert!(s.sockets.is_empty());
        assert_eq!(sources[0].format, "ss-summary");
        let gap = s.gaps.iter().find(|g| g.kind == GapKind::Incomplete).expect("summary gap");
        assert!(
            gap.message.contains("2 in TIME_WAIT") && gap.message.contains("100-port"),
            "{gap:?}"
        );
        assert!(gap.advice.as_deref().unwrap_or("").contains("ss -tanp"), "{gap:?}");
    }
}
