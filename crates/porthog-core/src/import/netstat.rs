//! Windows `netstat -ano` (and `-anob`, `-anoq`), in any language: rows are split on white space
//! (long IPv6 endpoints overflow the columns), the protocol column stays TCP/UDP, UDP rows have
//! `*:*` and no state, and German Windows translates the state names. With `-b` the owner
//! follows a row on its own lines: a service name, then ` [exe]`, or a localized "cannot obtain
//! ownership" line. Without `-o` (`netstat -an`, `-n`) there is no PID column: the sockets count
//! in the pools, their owners are unknown and the report says so. Without `-n` (`netstat -a`)
//! hosts and ports are names (`localhost:50051`, `HOST:https`): well-known service names become
//! their ports, host names an unspecified address (Windows pools are per port, not per address),
//! and a row whose port cannot be placed is counted, not guessed. The hot path of a
//! 1,000,000-row capture: no allocation per row.

use std::net::{IpAddr, Ipv4Addr};

use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::{Protocol, Socket, State};

const EXPECTED_TCP: &str = "TCP, local address:port, remote address:port, state, [PID]";
const EXPECTED_UDP: &str = "UDP, local address:port, *:*, [PID]";

/// What `sources[]` says of a section without the PID column.
pub const NOTE_NO_PID: &str = "no PID column (netstat without -o): owners unknown";
/// What `sources[]` says of rows with host or service names.
pub const NOTE_NAMES: &str = "names instead of numbers (netstat without -n): service names read as their ports, host names as unspecified addresses";
/// What `sources[]` says of rows without the header above them.
pub const NOTE_FRAGMENT: &str = "rows without the netstat header (a filtered fragment, e.g. `netstat -ano | findstr TIME_WAIT`), recognised by their shape";

/// A netstat row starts with the protocol column.
pub fn starts(line: Line<'_>) -> bool {
    let mut f = line.text.split_ascii_whitespace();
    matches!(f.next(), Some("TCP" | "UDP")) && f.next().is_some_and(|a| endpoint(a).is_some())
}

/// A header line above the rows, in any language: words, no digits, no colon, not a row (`Proto
/// Local Address ...`, `プロトコル  ローカル アドレス ...`); not a command (`netstat -ano |
/// findstr ...`). Used to tell a full listing from a fragment.
pub fn is_header(t: &str) -> bool {
    let t = t.trim();
    t.split_whitespace().count() >= 3
        && !t.contains([':', '|', '>'])
        && !t.split_whitespace().any(|w| w.starts_with('-'))
        && !t.chars().any(|c| c.is_ascii_digit())
        && !t.starts_with("TCP")
        && !t.starts_with("UDP")
}

/// Whether the line before the rows says they end in a PID: a header with a PID column, or
/// the command (`netstat -ano`, `-aon`, `/o`); `None` when it says nothing.
fn says_pid(before: &str) -> Option<bool> {
    if is_header(before) {
        return Some(before.split_whitespace().any(|w| w == "PID"));
    }
    let (_, args) = before.split_once("netstat")?;
    let flags = args.split_whitespace().take_while(|w| !w.starts_with('|'));
    let flags: Vec<&str> = flags.filter(|w| w.starts_with(['-', '/'])).collect();
    (!flags.is_empty()).then(|| flags.iter().any(|w| w[1..].contains(['o', 'O'])))
}

/// Whether the line before the rows (`before`) says if they end in a PID, so that no row
/// needs to decide it (a section read in two halves, split.rs).
pub fn header_decides(before: Option<&str>) -> bool {
    before.and_then(says_pid).is_some()
}

/// Whether a line is a row (a `-b` owner line goes with the row above it).
pub fn is_row_start(t: &str) -> bool {
    let t = t.trim_start();
    t.starts_with("TCP") || t.starts_with("UDP")
}

/// Reads a section; `before` is the last line before it no parser took (a header, a prompt).
pub fn parse(
    cur: &mut Cursor<'_>,
    b: &mut Builder,
    lenient: bool,
    before: Option<&str>,
) -> Result<(), ImportError> {
    if !before.is_some_and(is_header) {
        b.fragment(Format::Netstat, NOTE_FRAGMENT);
    }
    // A row is 60-80 bytes: reserving for the rest of the input saves the regrowth copies of a
    // million-row capture, and stays within its own size in memory.
    b.sockets.reserve(cur.remaining().0.len() / 72);
    // The pid of the last row, to which `-b` owner lines below it belong.
    let mut last_pid: Option<u32> = None;
    // Whether the section's rows end in a PID: the header or command above says, else its first
    // row decides; the others must agree (a row missing its PID in an `-ano` listing is a broken
    // row, not `-an`).
    let mut with_pid: Option<bool> = before.and_then(says_pid);
    // Notes are taken once per section, not per row (the hot path).
    let mut named_rows = false;
    while let Some(line) = cur.peek() {
        let t = super::text::trim_start(line.text);
        let proto = if t.starts_with("TCP") {
            Protocol::Tcp
        } else if t.starts_with("UDP") {
            Protocol::Udp
        } else {
            match owner_line(t) {
                Some(owner) if last_pid.is_some() => {
                    if let (Owner::Exe(exe), Some(pid)) = (owner, last_pid) {
                        b.name(pid, exe);
                    }
                    cur.consume(line);
                    continue;
                }
                _ => break,
            }
        };
        cur.consume(line);
        let parsed = row(t, proto).filter(|r| match r {
            Row::Placed(_, pid, _) => *with_pid.get_or_insert(pid.is_some()) == pid.is_some(),
            Row::Unplaced => true,
        });
        match parsed {
            Some(Row::Placed(sock, pid, named)) => {
                named_rows |= named;
                match pid {
                    Some(pid) => {
                        last_pid = Some(pid);
                        b.socket(Format::Netstat, sock, pid);
                    }
                    None => {
                        last_pid = None;
                        // TIME_WAIT has no owner anyway: only the others lack one.
                        b.no_pid_rows += u64::from(sock.state != State::TimeWait);
                        b.socket(Format::Netstat, sock, 0);
                    }
                }
            }
            Some(Row::Unplaced) => {
                last_pid = None;
                named_rows = true;
                b.unplaced_rows += 1;
                if b.first_unplaced.is_none() {
                    b.first_unplaced =
                        Some(format!("{}:{}: {}", cur.name(), line.no, super::printable(t.trim())));
                }
                b.record(Format::Netstat);
            }
            None => {
                last_pid = None;
                let expected = if proto == Protocol::Tcp { EXPECTED_TCP } else { EXPECTED_UDP };
                b.malformed(
                    lenient,
                    ImportError::malformed(cur.name(), line, Format::Netstat, expected),
                )?;
            }
        }
    }
    if named_rows {
        b.note(Format::Netstat, NOTE_NAMES);
    }
    if with_pid == Some(false) {
        b.note(Format::Netstat, NOTE_NO_PID);
    }
    Ok(())
}

enum Owner<'a> {
    /// ` [chrome.exe]`
    Exe(&'a str),
    /// A service name (`  RpcSs`) or "Can not obtain ownership information" in any language.
    Other,
}

/// A `-b` line: `[exe]`, or one short line of text that is not a row and not a header.
fn owner_line(t: &str) -> Option<Owner<'_>> {
    let t = t.trim();
    if let Some(exe) = t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        return Some(Owner::Exe(exe));
    }
    let looks_like_text = !t.is_empty() && !t.contains(':') && t.len() < 120;
    looks_like_text.then_some(Owner::Other)
}

/// A row read: a socket with its owner (`None` without `-o`) and whether names were read, or a
/// row whose port is a name porthog does not know (it cannot be placed in a pool).
enum Row {
    Placed(Socket, Option<u32>, bool),
    Unplaced,
}

/// An endpoint as `-n` prints it, or as names.
enum Endpoint {
    Numeric((IpAddr, u16)),
    Named((IpAddr, u16)),
    UnknownPort,
}

/// `TCP local remote state [pid]` or `UDP local *:* [pid]`.
fn row(t: &str, proto: Protocol) -> Option<Row> {
    let mut f = t.split_ascii_whitespace();
    f.next()?;
    let local = endpoint(f.next()?)?;
    let remote_text = f.next()?;
    let (state, pid_text) = match proto {
        Protocol::Tcp => (state(f.next()?)?, f.next()),
        // "*:*" (unconnected); a connected UDP endpoint is rare but has an address.
        Protocol::Udp => {
            (if remote_text == "*:*" { State::Close } else { State::Established }, f.next())
        }
    };
    if f.next().is_some() {
        return None;
    }
    let remote = if remote_text == "*:*" {
        Endpoint::Numeric((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    } else {
        endpoint(remote_text)?
    };
    let pid = match pid_text {
        Some(p) => Some(p.parse::<u32>().ok()?),
        None => None,
    };
    let named = matches!(local, Endpoint::Named(_)) || matches!(remote, Endpoint::Named(_));
    match (local, remote) {
        (Endpoint::Numeric(l) | Endpoint::Named(l), Endpoint::Numeric(r) | Endpoint::Named(r)) => {
            Some(Row::Placed(Socket::new(proto, state, l, r), pid, named))
        }
        // Windows pools are per local port: an unknown remote port still places the row.
        (Endpoint::Numeric(l) | Endpoint::Named(l), Endpoint::UnknownPort) => Some(Row::Placed(
            Socket::new(proto, state, l, (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
            pid,
            true,
        )),
        (Endpoint::UnknownPort, _) => Some(Row::Unplaced),
    }
}

/// A numeric endpoint (the hot path), else one with names: a host name (`localhost`, `DB01`,
/// `db01.corp.example`) and a port number or service name.
fn endpoint(s: &str) -> Option<Endpoint> {
    let (host, port) = s.rsplit_once(':')?;
    // A host name that starts with a letter (`APP02`, `db01.corp.example`): no address parser
    // reads a letter, so the numeric attempt is skipped (`netstat -a`'s hot path); an address
    // (`10.0.0.5`, `[::1]`) is told by its first byte alone.
    let is_name =
        host.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && host.bytes().all(name_byte);
    if !is_name && let Some(e) = parse_endpoint(s) {
        return Some(Endpoint::Numeric(e));
    }
    let ip = match if is_name { None } else { parse_host(host) } {
        Some(ip) => ip,
        None if host.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None if !host.is_empty() && host.bytes().all(name_byte) => {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
        None => return None,
    };
    if port.is_empty() || !port.bytes().all(name_byte) {
        return None;
    }
    Some(match port.parse::<u16>().ok().or_else(|| super::services::port(port)) {
        Some(p) => Endpoint::Named((ip, p)),
        None => Endpoint::UnknownPort,
    })
}

/// A character of a host or service name as `netstat -a` prints it.
fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// `10.0.0.7:49152`, `[::]:135`, `[fe80::1%12]:49153`, `0.0.0.0:0`.
pub(super) fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.rsplit_once(':')?;
    let port: u16 = if port == "*" { 0 } else { port.parse().ok()? };
    Some((parse_host(addr)?, port))
}

/// `10.0.0.7`, `[::]`, `[fe80::1%12]`, `*`.
fn parse_host(addr: &str) -> Option<IpAddr> {
    Some(match addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.split_once('%').map_or(v6, |(a, _)| a).parse().ok()?),
        None if addr == "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        None => IpAddr::V4(dotted_quad(addr).or_else(|| addr.parse().ok())?),
    })
}

/// An address as text: dotted IPv4 on the fast path below, anything else (IPv6, odd forms) by
/// std. Every importer's rows go through it.
pub(super) fn ip_addr(s: &str) -> Option<IpAddr> {
    match dotted_quad(s) {
        Some(v4) => Some(IpAddr::V4(v4)),
        None => s.parse().ok(),
    }
}

/// `10.0.0.7` without std's general parser, which is a tenth of a million-row import; anything
/// unusual (leading zeros, too many digits) returns `None` and goes to std, which decides.
pub(super) fn dotted_quad(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut i, mut value, mut digits) = (0usize, 0u16, 0u8);
    for &b in s.as_bytes() {
        match b {
            b'0'..=b'9' => {
                // A leading zero ("01") or a fourth digit: let std decide.
                if digits == 3 || (digits == 1 && value == 0) {
                    return None;
                }
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && i < 3 => {
                octets[i] = u8::try_from(value).ok()?;
                (i, value, digits) = (i + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if i != 3 || digits == 0 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
}

/// English and German state names (German Windows translates them; other languages keep English).
fn state(s: &str) -> Option<State> {
    Some(match s {
        "ESTABLISHED" | "HERGESTELLT" => State::Established,
        "TIME_WAIT" | "WARTEND" | "ZEIT_WARTEN" => State::TimeWait,
        "LISTENING" | "LISTEN" | "ABHÖREN" | "ABHOEREN" => State::Listen,
        "CLOSE_WAIT" | "SCHLIESSEN_WARTEN" => State::CloseWait,
        "SYN_SENT" | "SYN_GESENDET" => State::SynSent,
        "SYN_RECEIVED" | "SYN_RECV" | "SYN_EMPFANGEN" => State::SynRecv,
        "FIN_WAIT_1" | "FIN_WAIT1" | "FIN_WARTEN_1" => State::FinWait1,
        "FIN_WAIT_2" | "FIN_WAIT2" | "FIN_WARTEN_2" => State::FinWait2,
        "LAST_ACK" | "LETZTE_BESTÄTIGUNG" | "LETZTES_ACK" => State::LastAck,
        "CLOSING" | "SCHLIESSEND" => State::Closing,
        "CLOSED" | "GESCHLOSSEN" | "DELETE_TCB" => State::Close,
        "BOUND" | "GEBUNDEN" => State::Bound,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportOptions, Imported, Input, import};

    fn snapshot(text: &str) -> crate::model::Snapshot {
        crate::import::testing::snapshot_of("t.txt", text)
    }

    #[test]
    fn ano_with_ipv6_and_udp() {
        let s = snapshot(
            "\r\nActive Connections\r\n\r\n  Proto  Local Address          Foreign Address        State           PID\r\n\
             \x20 TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1000\r\n\
             \x20 TCP    10.0.0.7:49152         10.0.0.5:443           ESTABLISHED     4321\r\n\
             \x20 TCP    10.0.0.7:49153         10.0.0.5:443           TIME_WAIT       0\r\n\
             \x20 TCP    [fe80::1c2d:3e4f:5a6b:7c8d%12]:49154  [fe80::2%12]:445  ESTABLISHED     4321\r\n\
             \x20 UDP    0.0.0.0:123            *:*                                    1234\r\n\
             \x20 UDP    [::]:500               *:*                                    5678\r\n",
        );
        assert_eq!(s.sockets.len(), 6);
        assert_eq!(s.os, crate::model::Os::Windows);
        let tw = &s.sockets[2];
        assert_eq!((tw.state, tw.pid, tw.local_port), (State::TimeWait, None, 49153));
        let v6 = &s.sockets[3];
        assert_eq!(v6.local_ip, "fe80::1c2d:3e4f:5a6b:7c8d".parse::<IpAddr>().unwrap());
        assert_eq!(v6.pid.map(|p| p.get()), Some(4321));
        assert_eq!((s.sockets[4].protocol, s.sockets[4].state), (Protocol::Udp, State::Close));
        assert_eq!(
            s.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
            vec![1000, 1234, 4321, 5678]
        );
    }

    #[test]
    fn dotted_quads_agree_with_std() {
        for s in [
            "10.0.0.7",
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "a.b.c.d",
            "1..2.3",
            "",
        ] {
            assert_eq!(dotted_quad(s), s.parse::<Ipv4Addr>().ok(), "{s:?}");
        }
    }

    #[test]
    fn anob_owner_lines() {
        let s = snapshot(
            "  TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1000\n  RpcSs\n [svchost.exe]\n\
             \x20 TCP    0.0.0.0:445            0.0.0.0:0              LISTENING       4\n Can not obtain ownership information\n\
             \x20 TCP    10.0.0.7:49152         10.0.0.5:443           ESTABLISHED     4321\n [chrome.exe]\n",
        );
        assert_eq!(s.sockets.len(), 3);
        let name = |pid| s.process(pid).map(|p| p.name.as_str());
        assert_eq!(name(1000), Some("svchost.exe"));
        assert_eq!(name(4), Some("?"));
        assert_eq!(name(4321), Some("chrome.exe"));
    }

    #[test]
    fn anoq_and_anob_of_the_same_moment_count_each_socket_once() {
        let anoq = "  TCP    10.0.0.7:49152   10.0.0.5:443   ESTABLISHED   4321\n  TCP    0.0.0.0:49153   0.0.0.0:0   BOUND   4321\n";
        let anob = "  TCP    10.0.0.7:49152   10.0.0.5:443   ESTABLISHED   4321\n [chrome.exe]\n";
        let inputs = [
            Input { name: "q.txt", bytes: anoq.as_bytes() },
            Input { name: "b.txt", bytes: anob.as_bytes() },
        ];
        let Imported::Snapshot { snapshot: s, sources, .. } =
            import(&inputs, &ImportOptions::default()).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.sockets.len(), 2);
        assert_eq!(s.process(4321).map(|p| p.name.as_str()), Some("chrome.exe"));
        assert!(
            s.gaps
                .iter()
                .any(|g| g.count == Some(1) && g.message.contains("more than one listing"))
        );
        assert_eq!(sources.len(), 2);
        // The same two listings pasted into one file, with a prompt between them.
        let blob = format!("C:\\> netstat -anoq\n{anoq}C:\\> netstat -anob\n{anob}");
        let Imported::Snapshot { snapshot: s, .. } = import(
            &[Input { name: "blob.txt", bytes: blob.as_bytes() }],
            &ImportOptions::default(),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(s.sockets.len(), 2);
        assert_eq!(s.process(4321).map(|p| p.name.as_str()), Some("chrome.exe"));
    }

    #[test]
    fn german_states_and_bound_rows() {
        let s = snapshot(
            "  Proto  Lokale Adresse         Remoteadresse          Status           PID\n\
             \x20 TCP    0.0.0.0:135            0.0.0.0:0              ABHÖREN         1000\n\
             \x20 TCP    10.0.0.7:49152         10.0.0.5:443           HERGESTELLT     4321\n\
             \x20 TCP    10.0.0.7:49153         10.0.0.5:443           WARTEND         0\n\
             \x20 TCP    10.0.0.7:49154         10.0.0.5:443           SCHLIESSEN_WARTEN 4321\n\
             \x20 TCP    0.0.0.0:49155          0.0.0.0:0              GEBUNDEN        4321\n",
        );
        let states: Vec<State> = s.sockets.iter().map(|x| x.state).collect();
        assert_eq!(
            states,
            [State::Listen, State::Established, State::TimeWait, State::CloseWait, State::Bound]
        );
    }

    #[test]
    fn malformed_row_names_file_and_line() {
        let text = "  TCP    0.0.0.0:135   0.0.0.0:0   LISTENING   1000\n  TCP    10.0.0.7:49152   10.0.0.5:443   ESTABLISHED\n";
        let e =
            import(&[Input { name: "cap.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("cap.txt:2: netstat row: expected TCP, local address:port"),
            "{msg}"
        );
        let lenient = ImportOptions { lenient: true, ..Default::default() };
        match import(&[Input { name: "cap.txt", bytes: text.as_bytes() }], &lenient).unwrap() {
            Imported::Snapshot { snapshot, .. } => {
                assert_eq!(snapshot.sockets.len(), 1);
                assert!(
                    snapshot
                        .gaps
                        .iter()
                        .any(|g| g.count == Some(1) && g.message.contains("cap.txt:2"))
                );
            }
            Imported::Report(_) => unreachable!(),
        }
    }

    #[test]
    fn an_without_pids_gives_the_same_sockets_with_owners_unknown() {
        let ano = "  Proto  Local Address          Foreign Address        State           PID\n\
                   \x20 TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1000\n\
                   \x20 TCP    10.0.0.7:49152         10.0.0.5:443           ESTABLISHED     4321\n\
                   \x20 TCP    10.0.0.7:49153         10.0.0.5:443           TIME_WAIT       0\n\
                   \x20 UDP    0.0.0.0:123            *:*                                    1234\n";
        let an: String = ano
            .lines()
            .map(|l| {
                if l.contains("PID") {
                    l.replace("PID", "")
                } else {
                    l.rsplit_once(' ').unwrap().0.to_owned()
                }
            })
            .map(|l| l + "\n")
            .collect();
        let (with, without) = (snapshot(ano), snapshot(&an));
        let key = |s: &crate::model::Snapshot| {
            s.sockets
                .iter()
                .map(|x| (x.protocol, x.state, x.local_port, x.remote_port))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&with), key(&without));
        assert!(without.sockets.iter().all(|x| x.pid.is_none()));
        let gap =
            without.gaps.iter().find(|g| g.kind == crate::model::GapKind::Unattributed).unwrap();
        assert_eq!(gap.count, Some(3), "TIME_WAIT has no owner anyway");
        assert!(
            gap.message.starts_with("3 sockets have no owner in the input: netstat ran without -o"),
            "{}",
            gap.message
        );
        assert_eq!(gap.advice.as_deref(), Some("capture `netstat -anoq` instead"));
        // The same listing with a PowerShell prompt: the advice is PowerShell's.
        let ps = snapshot(&format!("PS C:\\Users\\admin> netstat -an\n{an}"));
        let gap = ps.gaps.iter().find(|g| g.kind == crate::model::GapKind::Unattributed).unwrap();
        assert!(
            gap.advice.as_deref().unwrap().contains("Get-NetTCPConnection | Export-Csv"),
            "{:?}",
            gap.advice
        );
    }

    #[test]
    fn a_with_names_places_known_services_and_counts_the_rest() {
        let text = "  Proto  Local Address          Foreign Address        State\n\
                    \x20 TCP    0.0.0.0:epmap          APP02:0                LISTENING\n\
                    \x20 TCP    [::]:microsoft-ds      APP02:0                LISTENING\n\
                    \x20 TCP    127.0.0.1:50051        localhost:50052        ESTABLISHED\n\
                    \x20 TCP    APP02:49702            db01:https             ESTABLISHED\n\
                    \x20 TCP    APP02:49703            db01.corp.example:my-api  TIME_WAIT\n\
                    \x20 TCP    0.0.0.0:my-app         APP02:0                LISTENING\n\
                    \x20 UDP    0.0.0.0:ntp            *:*\n";
        let Imported::Snapshot { snapshot: s, sources, .. } =
            import(&[Input { name: "a.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap()
        else {
            panic!()
        };
        let ports: Vec<(u16, u16)> =
            s.sockets.iter().map(|x| (x.local_port, x.remote_port)).collect();
        assert_eq!(ports, [(135, 0), (445, 0), (50051, 50052), (49702, 443), (49703, 0), (123, 0)]);
        assert_eq!(s.sockets[2].remote_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(sources[0].records, 7);
        assert_eq!(sources[0].notes, [NOTE_NAMES, NOTE_NO_PID]);
        let gap = s.gaps.iter().find(|g| g.message.contains("could not be placed")).unwrap();
        assert_eq!(gap.count, Some(1));
        assert!(gap.message.contains("a.txt:7: TCP    0.0.0.0:my-app"), "{}", gap.message);
    }

    #[test]
    fn the_header_or_command_says_whether_rows_end_in_a_pid() {
        assert_eq!(
            says_pid("  Proto  Local Address          Foreign Address        State           PID"),
            Some(true)
        );
        assert_eq!(
            says_pid("  Proto  Local Address          Foreign Address        State"),
            Some(false)
        );
        assert_eq!(says_pid("C:\\> netstat -ano | findstr TIME_WAIT"), Some(true));
        assert_eq!(says_pid("PS C:\\> netstat -an"), Some(false));
        assert_eq!(says_pid("C:\\> netstat /a /n /o"), Some(true));
        assert_eq!(says_pid("C:\\> netstat"), None);
        assert_eq!(says_pid("some text: here"), None);
    }

    #[test]
    fn a_findstr_fragment_says_it_had_no_header() {
        let frag = "C:\\> netstat -ano | findstr TIME_WAIT\n  TCP    10.0.0.7:49153   10.0.0.5:443   TIME_WAIT   0\n";
        let Imported::Snapshot { sources, .. } =
            import(&[Input { name: "f.txt", bytes: frag.as_bytes() }], &ImportOptions::default())
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(sources[0].notes, [NOTE_FRAGMENT]);
        let full = "Active Connections\n\n  Proto  Local Address  Foreign Address  State  PID\n  TCP    10.0.0.7:49153   10.0.0.5:443   TIME_WAIT   0\n";
        let Imported::Snapshot { sources, .. } =
            import(&[Input { name: "f.txt", bytes: full.as_bytes() }], &ImportOptions::default())
                .unwrap()
        else {
            panic!()
        };
        assert!(sources[0].notes.is_empty(), "{:?}", sources[0].notes);
    }
}
