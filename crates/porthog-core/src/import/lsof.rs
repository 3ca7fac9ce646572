//! `lsof -nP -iTCP`, `lsof -i -n -P`: `COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME`, one
//! row per open file descriptor. Sockets only: a TIME_WAIT (or orphaned) socket has no
//! descriptor, so lsof never lists it, and the report says so. A socket shared by several
//! processes (or fds) is one row each: they are counted once, by inode (DEVICE), for the lowest
//! pid, as the live collector does.

use std::net::{IpAddr, Ipv4Addr};

use super::{Builder, Cursor, Format, ImportError, Line, text};
use crate::model::{Gap, GapKind, Protocol, Socket, State};

const EXPECTED: &str = "COMMAND PID USER FD IPv4|IPv6 DEVICE SIZE/OFF TCP|UDP local[->remote] [(STATE)] (run lsof with -n -P so addresses and ports are numeric)";

pub fn starts(line: Line<'_>) -> bool {
    is_header(line.text) || is_row(line.text)
}

pub fn is_header(t: &str) -> bool {
    let mut f = t.split_ascii_whitespace();
    f.next() == Some("COMMAND") && f.next() == Some("PID") && t.contains(" NAME")
}

/// A row has `IPv4`/`IPv6` then, three columns on, `TCP`/`UDP`.
pub fn is_row(t: &str) -> bool {
    let words: [&str; 12] = {
        let mut w = [""; 12];
        for (slot, word) in w.iter_mut().zip(t.split_ascii_whitespace()) {
            *slot = word;
        }
        w
    };
    words.iter().enumerate().any(|(i, w)| {
        matches!(*w, "IPv4" | "IPv6") && matches!(words.get(i + 3), Some(&("TCP" | "UDP")))
    })
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let start = b.sockets.len();
    parse_half(cur, b, lenient)?;
    after_halves(b, start);
    Ok(())
}

/// A socket shared by several processes or fds, counted once among the sockets the section
/// read from `start` on (once both halves of a section read on two threads are in, split.rs).
pub fn after_halves(b: &mut Builder, start: usize) {
    if once_per_inode(&mut b.sockets, start) > 0 {
        b.note(Format::Lsof, "a socket open in several processes or fds is counted once, by inode (DEVICE), for the lowest pid");
    }
}

/// Reads the rows of a section, or of one half of it, without counting shared sockets once.
pub fn parse_half(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let mut header = false;
    if cur.peek().is_some_and(|l| is_header(l.text)) {
        header = true;
        cur.next();
    }
    let mut rows = 0u64;
    while let Some(line) = cur.peek() {
        let t = super::text::trim(line.text);
        // The hot path: a row that parses is one; the shape test only tells a bad row from a
        // line of another format.
        let parsed = row(t);
        if parsed.is_none() && !is_row(t) {
            if is_header(t) {
                cur.consume(line);
                continue;
            }
            break;
        }
        cur.consume(line);
        let Some(r) = parsed else {
            b.malformed(lenient, ImportError::malformed(cur.name(), line, Format::Lsof, EXPECTED))?;
            continue;
        };
        rows += 1;
        b.name(r.pid, r.command);
        b.socket(Format::Lsof, r.sock, r.pid);
    }
    if rows == 0 {
        return Ok(());
    }
    if !header {
        b.fragment(
            Format::Lsof,
            "rows without their header (e.g. `lsof -i | grep ...`), recognised by their shape: only the rows given are counted",
        );
    }
    b.gap(Gap {
        kind: GapKind::Invisible,
        count: None,
        message: "lsof lists only sockets a process holds open: TIME_WAIT (and orphaned FIN_WAIT2) sockets, which no process owns, are not in it, so pools may be fuller than shown".into(),
        advice: Some("capture `ss -tanp` too".into()),
    });
    Ok(())
}

/// Keeps one socket per inode among `sockets[start..]` (a socket open in several processes or
/// fds is one row each), owned by the lowest pid, in input order. Returns how many rows went.
/// Sorting 8-byte keys (a radix sort) costs less memory than a hash map of a million inodes.
fn once_per_inode(sockets: &mut Vec<Socket>, start: usize) -> u64 {
    let mut keys: Vec<(u32, u32)> = sockets[start..]
        .iter()
        .enumerate()
        .filter(|(_, s)| s.inode != 0)
        .map(|(i, s)| (s.inode, i as u32))
        .collect();
    // Stable by inode = by (inode, index): the indexes went in ascending.
    crate::radix::sort_by_u32_key(&mut keys, |k| k.0);
    let mut gone = vec![false; sockets.len() - start];
    let mut shared = 0;
    for run in keys.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
        let first = run.iter().map(|&(_, i)| i as usize).min().unwrap_or(0);
        let lowest = run.iter().filter_map(|&(_, i)| sockets[start + i as usize].pid).min();
        sockets[start + first].pid = lowest;
        for &(_, i) in run {
            if i as usize != first {
                gone[i as usize] = true;
                shared += 1;
            }
        }
    }
    if shared > 0 {
        let mut i = 0;
        sockets.retain(|_| {
            i += 1;
            i <= start || !gone[i - 1 - start]
        });
    }
    shared
}

struct Row<'a> {
    sock: Socket,
    pid: u32,
    command: &'a str,
}

fn row(t: &str) -> Option<Row<'_>> {
    let mut slots = [""; 16];
    let n = words(t, &mut slots);
    let words = &slots[..n];
    let ty = words.iter().position(|w| matches!(*w, "IPv4" | "IPv6"))?;
    let command = *words.first()?;
    // PID is the first number after COMMAND (a command name cut by lsof has no spaces, but
    // `-K` adds a TID column after it).
    let pid: u32 = words[1..ty].iter().find_map(|w| text::number(w))?;
    let inode: u32 = words.get(ty + 1).and_then(|w| text::number(w)).unwrap_or(0);
    let proto = match *words.get(ty + 3)? {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        _ => return None,
    };
    let name = *words.get(ty + 4)?;
    let state_word = words.get(ty + 5).and_then(|w| w.strip_prefix('(')?.strip_suffix(')'));
    let (local, remote) = match split_arrow(name) {
        Some((l, r)) => (endpoint(l)?, endpoint(r)?),
        None => (endpoint(name)?, (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
    };
    let st = match (proto, state_word) {
        (_, Some(w)) => state(w)?,
        (Protocol::Udp, None) if remote.1 != 0 => State::Established,
        (Protocol::Udp, None) => State::Close,
        // A TCP socket bound but not listening or connected: lsof prints `(CLOSED)` or nothing.
        (Protocol::Tcp, None) => State::Bound,
    };
    let mut sock = Socket::new(proto, st, local, remote);
    sock.inode = inode;
    Some(Row { sock, pid, command })
}

/// `local->remote` split at the arrow. A byte search: `str::split_once("->")` builds a
/// substring searcher on every call, a tenth of a million-row import.
fn split_arrow(name: &str) -> Option<(&str, &str)> {
    let b = name.as_bytes();
    let at = memchr::memchr_iter(b'-', b).find(|&i| b.get(i + 1) == Some(&b'>'))?;
    Some((&name[..at], &name[at + 2..]))
}

/// `127.0.0.1:7070`, `[::1]:7071`, `*:68`, `*:*`.
fn endpoint(s: &str) -> Option<(IpAddr, u16)> {
    // Byte searches: `rsplit_once(':')`/`split_once('%')` run a char searcher per row.
    let (addr, port) = text::rsplit_colon(s)?;
    let port: u16 = if port == "*" { 0 } else { text::number(port)? };
    let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
    let addr = memchr::memchr(b'%', addr.as_bytes()).map_or(addr, |at| &addr[..at]);
    let ip = if addr == "*" {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        super::netstat::ip_addr(addr)?
    };
    Some((ip, port))
}

/// `t.split_ascii_whitespace()` into `slots`, as many words as fit; returns how many. A byte
/// loop: the hot path of a million-row import.
fn words<'a>(t: &'a str, slots: &mut [&'a str]) -> usize {
    let b = t.as_bytes();
    let (mut n, mut i) = (0, 0);
    while n < slots.len() {
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while b.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
            i += 1;
        }
        // Both ends are at ASCII bytes (or the end): character boundaries.
        slots[n] = t.get(start..i).unwrap_or("");
        n += 1;
    }
    n
}

/// lsof's TCP state names (`print_tcptpi` in lsof's dialects/linux): the kernel's names, which
/// are the model's, except CLOSED for a bound socket, and IDLE, which other dialects print for one.
fn state(s: &str) -> Option<State> {
    match s {
        "CLOSED" | "CLOSE" | "IDLE" => Some(State::Bound),
        _ => State::from_name(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportOptions, Imported, Input, import};

    /// `lsof -nP -iTCP -iUDP` (lsof 4.95) in a test namespace: a server with three accepted
    /// sockets, a client with three connections, a listener inside the range, one socket shared
    /// by two processes.
    const CAPTURE: &str = "\
COMMAND     PID USER   FD   TYPE DEVICE SIZE/OFF NODE NAME
porthog-l 12157 root    3u  IPv4  14635      0t0  TCP 127.0.0.1:7070 (LISTEN)
porthog-l 12157 root    4u  IPv6  14636      0t0  TCP [::1]:7071 (LISTEN)
porthog-l 12157 root    6u  IPv4  15688      0t0  TCP 127.0.0.1:7070->127.0.0.1:40004 (ESTABLISHED)
porthog-l 12200 root    3u  IPv4  15687      0t0  TCP 127.0.0.1:40004->127.0.0.1:7070 (ESTABLISHED)
porthog-l 12199 root    3u  IPv4  15687      0t0  TCP 127.0.0.1:40004->127.0.0.1:7070 (ESTABLISHED)
porthog-l 12206 root    3u  IPv4  15702      0t0  TCP 127.0.0.1:40005 (LISTEN)
dhclient    500 root    7u  IPv4   2222      0t0  UDP *:68
";

    use proptest::prelude::*;

    proptest! {
        /// The byte-wise word split and number parse give std's results for any line.
        #[test]
        fn words_and_numbers_as_std(s in "[ \t\u{b}\u{c}\u{a0}a0-9+:*\\[\\]%.>-]{0,40}|\\PC*") {
            let mut slots = [""; 16];
            let n = words(&s, &mut slots);
            let want: Vec<&str> = s.split_ascii_whitespace().take(16).collect();
            prop_assert_eq!(&slots[..n], &want[..]);
            for w in &want {
                prop_assert_eq!(text::number::<u32>(w), w.parse::<u32>().ok(), "{:?}", w);
                prop_assert_eq!(text::number::<u16>(w), w.parse::<u16>().ok(), "{:?}", w);
            }
            prop_assert_eq!(endpoint(&s), endpoint_std(&s));
        }
    }

    /// `endpoint` as it was written with std's searches and parsers.
    fn endpoint_std(s: &str) -> Option<(IpAddr, u16)> {
        let (addr, port) = s.rsplit_once(':')?;
        let port: u16 = if port == "*" { 0 } else { port.parse().ok()? };
        let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
        let addr = addr.split_once('%').map_or(addr, |(a, _)| a);
        let ip = if addr == "*" {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            crate::import::netstat::ip_addr(addr)?
        };
        Some((ip, port))
    }

    #[test]
    fn numbers_at_their_limits() {
        for w in [
            "0",
            "65535",
            "65536",
            "4294967295",
            "4294967296",
            "999999999",
            "1000000000",
            "+7",
            "007",
            "",
            "-1",
        ] {
            assert_eq!(text::number::<u32>(w), w.parse::<u32>().ok(), "{w}");
            assert_eq!(text::number::<u16>(w), w.parse::<u16>().ok(), "{w}");
        }
    }

    #[test]
    fn bound_sockets_by_every_name_lsof_gives_them() {
        for name in ["CLOSED", "CLOSE", "IDLE", "BOUND"] {
            assert_eq!(state(name), Some(State::Bound), "{name}");
        }
        assert_eq!(state("ESTABLISHED"), Some(State::Established));
        assert_eq!(state("SYN_SENT"), Some(State::SynSent));
        assert_eq!(state("NONSENSE"), None);
    }

    #[test]
    fn owners_sockets_once_and_the_time_wait_gap() {
        let Imported::Snapshot { snapshot: s, sources, .. } = import(
            &[Input { name: "lsof.txt", bytes: CAPTURE.as_bytes() }],
            &ImportOptions::default(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(s.sockets.len(), 6, "the shared socket is counted once");
        assert_eq!((sources[0].format.as_str(), sources[0].records), ("lsof", 7));
        let shared = &s.sockets[3];
        assert_eq!((shared.inode, shared.pid.map(|p| p.get())), (15687, Some(12199)));
        assert_eq!(s.sockets[1].local_ip, "::1".parse::<IpAddr>().unwrap());
        assert_eq!((s.sockets[5].protocol, s.sockets[5].state), (Protocol::Udp, State::Close));
        assert_eq!(s.process(500).map(|p| p.name.as_str()), Some("dhclient"));
        let tw = s.gaps.iter().find(|g| g.kind == GapKind::Invisible).expect("TIME_WAIT gap");
        assert!(tw.message.contains("TIME_WAIT"), "{tw:?}");
        assert!(tw.advice.as_deref().unwrap_or("").contains("ss -tanp"), "{tw:?}");
    }

    #[test]
    fn names_instead_of_numbers_are_an_error_with_the_fix() {
        let text = "COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\ncurl 9 root 3u IPv4 1 0t0 TCP host:40000->db01:https (ESTABLISHED)\n";
        let e =
            import(&[Input { name: "l.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(e.to_string().contains("-n -P"), "{e}");
    }
}
