//! `cat /proc/net/tcp tcp6 udp udp6` pasted as text, read with the same row parser as the live
//! collector's fallback (`crate::proc_net`). The header tells UDP (it ends in `drops`) from TCP.
//! Rows without a header (the file name lost) are told by their width, and the source's note
//! says how many were read as which: the kernel prints 13 fields for a UDP socket
//! (`udp4_format_sock`: ... inode ref pointer drops), 17 for a full TCP socket and 12 for a
//! TIME_WAIT or SYN_RECV one (`get_tcp4_sock`, `get_timewait4_sock`, `get_openreq4`; the same
//! in IPv6).

use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::Protocol;
use crate::proc_net;
use crate::report::plural;

/// Fields in a row of /proc/net/udp and udp6 (no TCP row has 13).
const UDP_FIELDS: usize = 13;

fn is_header(t: &str) -> bool {
    let t = t.trim_start();
    t.starts_with("sl") && t.contains("local_address")
}

fn is_row(t: &str) -> bool {
    let mut f = t.split_ascii_whitespace();
    f.next().is_some_and(|sl| {
        sl.strip_suffix(':').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }) && f.next().is_some_and(|a| {
        a.split_once(':').is_some_and(|(ip, port)| matches!(ip.len(), 8 | 32) && port.len() == 4)
    })
}

pub fn starts(line: Line<'_>) -> bool {
    is_header(line.text) || is_row(line.text)
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    // The header tells the table; without it each row's width does (see the module comment).
    let mut header = None;
    if let Some(head) = cur.peek().filter(|l| is_header(l.text)) {
        header = Some(if head.text.split_ascii_whitespace().any(|w| w == "drops") {
            Protocol::Udp
        } else {
            Protocol::Tcp
        });
        cur.next();
    }
    // Rows read without a header: (TCP, UDP).
    let mut guessed = (0u64, 0u64);
    // The kernel numbers a TCP table's rows (`sl`) 0, 1, 2, ... (UDP's are hash buckets): a
    // TCP row numbered neither 0 nor one more than the last was cut out by a filter.
    let (mut next_sl, mut holes) = (Some(0u64), 0u64);
    while let Some(line) = cur.peek().filter(|l| is_row(l.text)) {
        cur.next();
        let protocol = header.unwrap_or_else(|| {
            let udp = line.text.split_ascii_whitespace().count() == UDP_FIELDS;
            if udp {
                guessed.1 += 1;
                Protocol::Udp
            } else {
                guessed.0 += 1;
                Protocol::Tcp
            }
        });
        if protocol == Protocol::Tcp {
            let sl = line.text.trim_start().split(':').next().and_then(|n| n.parse::<u64>().ok());
            if sl != Some(0) && sl != next_sl {
                holes += 1;
            }
            next_sl = sl.map(|n| n + 1);
        }
        match proc_net::parse_row(line.text, line.no, protocol) {
            Ok(Some(sock)) => b.socket(Format::ProcNet, sock, 0),
            // A state porthog does not know: the row is counted, the socket cannot be modelled.
            Ok(None) => b.record(Format::ProcNet),
            Err(e) => b.malformed(
                lenient,
                ImportError::malformed(cur.name(), line, Format::ProcNet, e.expected),
            )?,
        }
    }
    if holes > 0 {
        b.fragment(
            Format::ProcNet,
            &format!(
                "TCP rows numbered with {}: the kernel numbers every socket of /proc/net/tcp and \
                 tcp6 from 0 (the `sl` column), so rows were left out (a filter such as grep)",
                plural(holes, "gap")
            ),
        );
    }
    if guessed != (0, 0) {
        b.note(
            Format::ProcNet,
            &format!(
                "a /proc/net table without its header line (its file name lost): {} read as TCP \
                 (/proc/net/tcp, tcp6: 12 or 17 fields a row), {} as UDP (/proc/net/udp, udp6: 13 fields)",
                plural(guessed.0, "row"),
                plural(guessed.1, "row")
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::import::{ImportOptions, Imported, Input, SourceInfo, import};
    use crate::model::{GapKind, Protocol, Snapshot, State};

    /// `text` imported as the file `name`: its snapshot and sources.
    fn imported(name: &str, text: &str) -> (Snapshot, Vec<SourceInfo>) {
        let input = Input { name, bytes: text.as_bytes() };
        match import(&[input], &ImportOptions::default()).unwrap() {
            Imported::Snapshot { snapshot, sources, .. } => (snapshot, sources),
            Imported::Report(_) => panic!("{name} read as a saved report"),
        }
    }

    #[test]
    fn tcp_and_udp_tables() {
        let text = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2222 2 0000000000000000 0
";
        let (s, sources) = imported("proc.txt", text);
        assert_eq!(s.sockets.len(), 3);
        assert_eq!(
            (s.sockets[0].state, s.sockets[0].local_port, s.sockets[0].inode),
            (State::Listen, 8080, 12345)
        );
        assert_eq!(
            (s.sockets[1].state, s.sockets[1].local_port, s.sockets[1].timer_ms),
            (State::TimeWait, 40000, 60_000)
        );
        assert_eq!((s.sockets[2].protocol, s.sockets[2].local_port), (Protocol::Udp, 68));
        assert_eq!(sources[0].format, "proc-net");
    }

    /// `grep ' 06 ' /proc/net/tcp`: TIME_WAIT rows only, numbered with gaps: a filtered
    /// fragment (an incomplete gap), where a whole table numbered 0, 1, 2 is not.
    #[test]
    fn tcp_rows_numbered_with_gaps_are_a_filtered_fragment() {
        let row = |sl: u32, st: &str| {
            format!(
                "   {sl}: 0100007F:9C4{sl} 0100007F:1F90 {st} 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000\n"
            )
        };
        let import_gaps = |text: &str| {
            let (snapshot, _) = imported("grep.txt", text);
            snapshot.gaps.into_iter().filter(|g| g.kind == GapKind::Incomplete).count()
        };
        let whole = [row(0, "06"), row(1, "01"), row(2, "06")].concat();
        assert_eq!(import_gaps(&whole), 0);
        let grepped = [row(0, "06"), row(2, "06"), row(5, "06")].concat();
        assert_eq!(import_gaps(&grepped), 1);
        let from_the_middle = [row(3, "06"), row(4, "06")].concat();
        assert_eq!(import_gaps(&from_the_middle), 1);
    }

    #[test]
    fn rows_without_a_header_are_told_by_their_width_and_the_note_says_so() {
        // `cat /proc/net/tcp /proc/net/udp | tail -n +2`: a full TCP socket (17 fields), a
        // TIME_WAIT one (12) and a connected UDP socket (13), no header to tell them.
        let text = "\
   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 555 1 0000000000000000 20 4 30 10 -1
   1: 0100007F:9C41 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
  123: 0100007F:9C42 0100007F:14E9 01 00000000:00000000 00:00000000 00000000     0        0 2222 2 0000000000000000 0
";
        let (s, sources) = imported("rows.txt", text);
        let protocols: Vec<_> = s.sockets.iter().map(|s| (s.protocol, s.state)).collect();
        assert_eq!(
            protocols,
            [
                (Protocol::Tcp, State::Established),
                (Protocol::Tcp, State::TimeWait),
                (Protocol::Udp, State::Established)
            ]
        );
        assert_eq!(
            sources[0].notes,
            ["a /proc/net table without its header line (its file name lost): 2 rows read as TCP \
              (/proc/net/tcp, tcp6: 12 or 17 fields a row), 1 row as UDP (/proc/net/udp, udp6: 13 fields)"]
        );
        // With the header, nothing was assumed: the two TCP rows (numbered 0 and 1, as the
        // kernel does) under a TCP header.
        let tcp_rows: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
        let headed = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n{tcp_rows}"
        );
        let (_, sources) = imported("tcp.txt", &headed);
        assert!(sources[0].notes.is_empty(), "{:?}", sources[0].notes);
    }

    #[test]
    fn a_bad_row_names_its_line() {
        let text = "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000 0 0 1\n";
        let e = import(&[Input { name: "p", bytes: text.as_bytes() }], &ImportOptions::default())
            .unwrap_err();
        assert!(
            e.to_string().starts_with("p:2: proc-net row: expected a 2-digit hex state"),
            "{e}"
        );
    }
}
