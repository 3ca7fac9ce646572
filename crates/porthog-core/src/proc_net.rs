//! Parser for the Linux `/proc/net/{tcp,tcp6,udp,udp6}` tables (`tcp4_seq_show`,
//! `udp4_format_sock` and their v6 twins), shared by the live collector's fallback and the
//! offline importer. Text in, sockets out: no file access, and no panic on any input, since the
//! importer feeds it whatever a user pasted.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::model::{Protocol, Socket, State};

/// A row that does not have the form the kernel writes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("/proc/net line {line}: expected {expected}, found {found:?}")]
pub struct ProcNetError {
    /// 1-based line number in the text given to [`parse`].
    pub line: usize,
    pub expected: &'static str,
    /// The offending field (or line), cut to 60 characters.
    pub found: String,
}

/// The sockets of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcNetTable {
    pub sockets: Vec<Socket>,
    /// Rows skipped because their state code is not one porthog knows.
    pub unknown_states: usize,
}

/// Parses a whole table. Header lines (first field `sl`) and blank lines are skipped.
///
/// Addresses are printed as 32-bit words in the byte order of the kernel that wrote the file;
/// this reads them as little-endian, the order of every machine porthog runs on (x86, arm64).
pub fn parse(text: &str, protocol: Protocol) -> Result<ProcNetTable, ProcNetError> {
    let mut table = ProcNetTable::default();
    for (i, line) in text.lines().enumerate() {
        let first = line.split_ascii_whitespace().next();
        if first.is_none() || first == Some("sl") {
            continue;
        }
        match parse_row(line, i + 1, protocol)? {
            Some(socket) => table.sockets.push(socket),
            None => table.unknown_states += 1,
        }
    }
    Ok(table)
}

/// Parses one row: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
/// `Ok(None)` when the state code is unknown. `line` is only used in errors.
pub fn parse_row(
    text: &str,
    line: usize,
    protocol: Protocol,
) -> Result<Option<Socket>, ProcNetError> {
    let err =
        |expected: &'static str, found: &str| ProcNetError { line, expected, found: cut(found) };
    let fields: Vec<&str> = text.split_ascii_whitespace().take(10).collect();
    let &[sl, local, remote, st, queues, timer, _retransmits, uid, _timeout, inode] =
        fields.as_slice()
    else {
        return Err(err(
            "at least 10 fields (sl local rem st queues timer retr uid timeout inode)",
            text,
        ));
    };
    if sl.strip_suffix(':').and_then(|n| n.parse::<u64>().ok()).is_none() {
        return Err(err("a slot number like \"12:\"", sl));
    }
    let local = endpoint(local).ok_or_else(|| err(ENDPOINT, local))?;
    let remote = endpoint(remote).ok_or_else(|| err(ENDPOINT, remote))?;
    if local.0.is_ipv4() != remote.0.is_ipv4() {
        return Err(err("local and remote addresses of the same width", text));
    }
    let code = hex_field(st, 2).ok_or_else(|| err("a 2-digit hex state like \"0A\"", st))?;
    hex_pair(queues, 8, 8).ok_or_else(|| err("tx:rx queues like \"00000000:00000000\"", queues))?;
    let (timer_kind, when) =
        hex_pair(timer, 2, 16).ok_or_else(|| err("a timer like \"03:00001770\"", timer))?;
    let uid: u32 = uid.parse().map_err(|_| err("a decimal uid", uid))?;
    let inode: u32 = inode.parse().map_err(|_| err("a decimal inode", inode))?;

    let Some(state) = u8::try_from(code).ok().and_then(State::from_linux) else {
        return Ok(None);
    };
    let mut socket = Socket::new(protocol, state, local, remote);
    socket.uid = uid;
    socket.inode = inode;
    if timer_kind != 0 {
        // `tm->when` is in clock ticks (USER_HZ, always 100 in the /proc ABI).
        socket.timer_ms = u32::try_from(when.saturating_mul(10)).unwrap_or(u32::MAX);
    }
    Ok(Some(socket))
}

const ENDPOINT: &str = "ADDRESS:PORT in hex, 8 or 32 address digits and 4 port digits";

/// `0100007F:1F90` is 127.0.0.1:8080; IPv6 addresses are four such words.
fn endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::try_from(hex_field(port, 4)?).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(addr.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some((ip, port))
}

/// One 32-bit word as the kernel printed it (`%08X` of a value in memory order).
fn word(hex: &str) -> Option<[u8; 4]> {
    let value = u32::try_from(hex_field(hex, 8)?).ok()?;
    Some(value.to_le_bytes())
}

/// `A:B` with A of exactly `width_a` hex digits and B of 1..=`max_b` hex digits.
fn hex_pair(text: &str, width_a: usize, max_b: usize) -> Option<(u64, u64)> {
    let (a, b) = text.split_once(':')?;
    if b.is_empty() || b.len() > max_b {
        return None;
    }
    Some((hex_field(a, width_a)?, u64::from_str_radix(b, 16).ok().filter(|_| is_hex(b))?))
}

/// Exactly `width` hex digits (no sign, unlike `from_str_radix` alone).
fn hex_field(text: &str, width: usize) -> Option<u64> {
    (text.len() == width && is_hex(text)).then(|| u64::from_str_radix(text, 16).ok()).flatten()
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn cut(text: &str) -> String {
    let mut found: String = text.trim().chars().take(60).collect();
    if text.trim().chars().count() > 60 {
        found.push('…');
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 02:000008E4 00000000  1000        0 123457 2 0000000000000000 20 4 30 10 -1
   2: 0100007F:9C41 0100007F:1F90 06 00000000:00000000 03:00000F37 00000000     0        0 0 3 0000000000000000
";

    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 22222 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:C350 0000000000000000FFFF00000500000A:1538 01 00000000:00000000 00:00000000 00000000    33        0 33333 1 0000000000000000 20 4 30 10 -1
   2: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0D 00000000:00000000 00:00000000 00000000     0        0 44444 1 0000000000000000 100 0 0 10 0
";

    const UDP: &str = "\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 17385 2 0000000000000000 0
  456: 0F02000A:D431 08080808:0035 01 00000000:00000000 00:00000000 00000000  1000        0 98765 2 0000000000000000 0
";

    fn ep(s: &str) -> (IpAddr, u16) {
        let (ip, port) = s.rsplit_once(':').unwrap();
        (ip.trim_matches(['[', ']']).parse().unwrap(), port.parse().unwrap())
    }

    #[test]
    fn tcp_rows() {
        let t = parse(TCP, Protocol::Tcp).unwrap();
        assert_eq!(t.unknown_states, 0);
        let mut listen =
            Socket::new(Protocol::Tcp, State::Listen, ep("127.0.0.1:8080"), ep("0.0.0.0:0"));
        listen.uid = 1000;
        listen.inode = 123456;
        let mut est = Socket::new(
            Protocol::Tcp,
            State::Established,
            ep("127.0.0.1:40000"),
            ep("127.0.0.1:8080"),
        );
        est.uid = 1000;
        est.inode = 123457;
        est.timer_ms = 0x8E4 * 10;
        let mut tw = Socket::new(
            Protocol::Tcp,
            State::TimeWait,
            ep("127.0.0.1:40001"),
            ep("127.0.0.1:8080"),
        );
        tw.uid = 0;
        tw.timer_ms = 38_950;
        assert_eq!(t.sockets, vec![listen, est, tw]);
    }

    #[test]
    fn tcp6_rows_and_mapped_addresses() {
        let t = parse(TCP6, Protocol::Tcp).unwrap();
        assert_eq!(t.sockets.len(), 3);
        assert_eq!((t.sockets[0].local_ip, t.sockets[0].local_port), ep("[::1]:22"));
        assert_eq!(t.sockets[0].state, State::Listen);
        // ::ffff:127.0.0.1 is canonicalised to IPv4.
        assert_eq!((t.sockets[1].local_ip, t.sockets[1].local_port), ep("127.0.0.1:50000"));
        assert_eq!((t.sockets[1].remote_ip, t.sockets[1].remote_port), ep("10.0.0.5:5432"));
        assert_eq!((t.sockets[1].uid, t.sockets[1].inode), (33, 33333));
        assert_eq!(t.sockets[2].state, State::Bound);
        assert_eq!(t.sockets[2].local_ip, "::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn udp_rows() {
        let t = parse(UDP, Protocol::Udp).unwrap();
        let s = &t.sockets;
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].protocol, s[0].state), (Protocol::Udp, State::Close));
        assert_eq!((s[0].local_ip, s[0].local_port), ep("127.0.0.53:53"));
        assert_eq!((s[1].local_ip, s[1].local_port), ep("10.0.2.15:54321"));
        assert_eq!((s[1].remote_ip, s[1].remote_port), ep("8.8.8.8:53"));
        assert_eq!((s[1].state, s[1].uid, s[1].inode), (State::Established, 1000, 98765));
    }

    #[test]
    fn unknown_states_are_counted_not_fatal() {
        let text = "0: 0100007F:1F90 00000000:0000 0E 00000000:00000000 00:00000000 00000000 0 0 1\n\
                    1: 0100007F:1F90 00000000:0000 00 00000000:00000000 00:00000000 00000000 0 0 2\n";
        let t = parse(text, Protocol::Tcp).unwrap();
        assert_eq!((t.sockets.len(), t.unknown_states), (0, 2));
    }

    fn error_of(row: &str) -> ProcNetError {
        parse(&format!("  sl header\n{row}\n"), Protocol::Tcp).unwrap_err()
    }

    #[test]
    fn bad_rows_name_the_line_and_the_field() {
        let ok = "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1";
        assert!(parse(ok, Protocol::Tcp).is_ok());

        let e = error_of("0: 0100007F:1F90 00000000:0000 0A");
        assert_eq!(e.line, 2);
        assert!(e.expected.starts_with("at least 10 fields"), "{e}");

        let e = error_of(&ok.replace("0100007F:1F90", "100007F:1F90"));
        assert_eq!((e.line, e.expected, e.found.as_str()), (2, ENDPOINT, "100007F:1F90"));
        assert_eq!(error_of(&ok.replace(":1F90", ":01F90")).found, "0100007F:01F90");
        assert_eq!(error_of(&ok.replace("0A", "A")).found, "A");
        assert_eq!(error_of(&ok.replace("0A", "+A")).found, "+A");
        assert_eq!(error_of(&ok.replace("0: ", "x: ")).found, "x:");
        assert_eq!(error_of(&ok.replace(" 0 0 1", " 0 0 -1")).found, "-1");
        assert_eq!(error_of(&ok.replace(" 0 0 1", " 0 0 99999999999")).found, "99999999999");
        assert_eq!(error_of(&ok.replace(" 00:00000000 ", " 00:+0000000 ")).found, "00:+0000000");
        let mixed = ok.replace("00000000:0000", "00000000000000000000000000000000:0000");
        assert!(error_of(&mixed).expected.contains("same width"));
        assert!(error_of(&"é".repeat(100)).found.ends_with('…'));
    }

    #[test]
    fn header_and_blank_lines_only() {
        assert_eq!(parse("", Protocol::Udp), Ok(ProcNetTable::default()));
        assert_eq!(parse(" sl local\n\n  \n", Protocol::Udp), Ok(ProcNetTable::default()));
    }

    #[test]
    fn garbage_never_panics() {
        for junk in
            ["\u{0}\u{1}:::", "0:", "0: :", ": : : : : : : : : :", "0: é:é é:é é é:é é:é é é é é"]
        {
            assert!(parse(junk, Protocol::Tcp).is_err(), "{junk:?}");
        }
    }
}
