//! Windows `netstat -ano` (and `-anob`, `-anoq`), in any language: rows are split on white space
//! (long IPv6 endpoints overflow the columns), the protocol column stays TCP/UDP, UDP rows have
//! `*:*` and no state, and German Windows translates the state names. With `-b` the owner
//! follows a row on its own lines: a service name, then ` [exe]`, or a localized "cannot obtain
//! ownership" line. The hot path of a 1,000,000-row capture: no allocation per row.

use std::net::{IpAddr, Ipv4Addr};

use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::{Protocol, Socket, State};

const EXPECTED_TCP: &str = "TCP, local address:port, remote address:port, state, PID (run netstat with -n so addresses are numeric)";
const EXPECTED_UDP: &str = "UDP, local address:port, *:*, PID";

/// A netstat row starts with the protocol column.
pub fn starts(line: Line<'_>) -> bool {
    let mut f = line.text.split_ascii_whitespace();
    matches!(f.next(), Some("TCP" | "UDP")) && f.next().is_some_and(|a| parse_endpoint(a).is_some())
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    // A row is 60-80 bytes: reserving for the rest of the input saves the regrowth copies of a
    // million-row capture, and stays within its own size in memory.
    b.sockets.reserve(cur.remaining().0.len() / 72);
    // The pid of the last row, to which `-b` owner lines below it belong.
    let mut last_pid: Option<u32> = None;
    while let Some(line) = cur.peek() {
        let t = line.text.trim_start();
        let proto = if t.starts_with("TCP") {
            Protocol::Tcp
        } else if t.starts_with("UDP") {
            Protocol::Udp
        } else {
            match owner_line(t) {
                Some(owner) if last_pid.is_some() => {
                    if let (Owner::Exe(exe), Some(pid)) = (owner, last_pid) {
                        b.names.entry(pid).or_insert_with(|| exe.to_owned());
                    }
                    cur.consume(line);
                    continue;
                }
                _ => return Ok(()),
            }
        };
        cur.consume(line);
        match row(t, proto) {
            Some((sock, pid)) => {
                last_pid = Some(pid);
                b.socket(Format::Netstat, sock, pid);
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

/// `TCP local remote state pid` or `UDP local *:* pid`.
fn row(t: &str, proto: Protocol) -> Option<(Socket, u32)> {
    let mut f = t.split_ascii_whitespace();
    f.next()?;
    let local = parse_endpoint(f.next()?)?;
    let remote_text = f.next()?;
    let (state, pid_text) = match proto {
        Protocol::Tcp => {
            let state = state(f.next()?)?;
            (state, f.next()?)
        }
        Protocol::Udp => {
            // "*:*" (unconnected); a connected UDP endpoint is rare but has an address.
            let pid = f.next()?;
            (if remote_text == "*:*" { State::Close } else { State::Established }, pid)
        }
    };
    if f.next().is_some() {
        return None;
    }
    let remote = if remote_text == "*:*" {
        (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        parse_endpoint(remote_text)?
    };
    let pid: u32 = pid_text.parse().ok()?;
    Some((Socket::new(proto, state, local, remote), pid))
}

/// `10.0.0.7:49152`, `[::]:135`, `[fe80::1%12]:49153`, `0.0.0.0:0`.
pub(super) fn parse_endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.rsplit_once(':')?;
    let port: u16 = if port == "*" { 0 } else { port.parse().ok()? };
    let addr = match addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.split_once('%').map_or(v6, |(a, _)| a).parse().ok()?),
        None if addr == "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        None => IpAddr::V4(dotted_quad(addr).or_else(|| addr.parse().ok())?),
    };
    Some((addr, port))
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
    fn hostnames_are_refused_with_the_fix() {
        let text = "  TCP    0.0.0.0:135   0.0.0.0:0   LISTENING   1000\n  TCP    10.0.0.7:49152   db01:https   ESTABLISHED  7\n";
        let e =
            import(&[Input { name: "cap.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(e.to_string().contains("run netstat with -n"), "{e}");
    }
}
