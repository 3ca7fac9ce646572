//! The socket list of the inspected namespace: the sock_diag dump, or per table the
//! /proc/thread-self/net fallback (parsed by the core's `proc_net`) when sock_diag is unavailable.
//! Decides the fallback and records what each source cannot show as gaps; speaks no netlink
//! itself (`sock_diag.rs` does) and knows nothing of processes.

use std::io;

use anyhow::Context;
use porthog_core::sockstat::Sockstat;
use porthog_core::{Gap, GapKind, Protocol, Socket, proc_net};
use rustix::io::Errno;

use super::sock_diag::{ALL_STATES, DUMP_TRIES, DumpOutcome, SockDiag, TABLES, TCP_BOTH, Table};

/// socket() or the first request failing like this means no sock_diag for this table: the module
/// is missing (EPROTONOSUPPORT, ENOENT for the family or protocol) or forbidden (EPERM, e.g. by a
/// seccomp or LSM policy).
fn is_unavailable(e: &io::Error) -> bool {
    matches!(Errno::from_io_error(e), Some(Errno::PROTONOSUPPORT | Errno::NOENT | Errno::PERM))
}

/// The calling thread's namespace's socket counters (`/proc/thread-self/net/sockstat{,6}`), or
/// None when they cannot be read or parsed: they only ever spare a dump, so without them every
/// dump runs and nothing is lost.
pub fn sockstat() -> Option<Sockstat> {
    let v4 = std::fs::read_to_string("/proc/thread-self/net/sockstat").ok()?;
    // No sockstat6 without IPv6: its counters stay unknown, and unknown spares nothing.
    let v6 = std::fs::read_to_string("/proc/thread-self/net/sockstat6").unwrap_or_default();
    Sockstat::parse(&v4, &v6).ok()
}

/// Every TCP and UDP socket of the namespace `diag` was opened in (the calling thread's for the
/// fallback), appended to `out`; returns the source's name. Gaps say what may be missing. A
/// UDP table whose counter in `sockstat` is 0 has nothing to list and is not dumped.
pub fn sockets(
    diag: io::Result<SockDiag>,
    sockstat: Option<Sockstat>,
    out: &mut Vec<Socket>,
    gaps: &mut Vec<Gap>,
) -> anyhow::Result<&'static str> {
    let (mut diag, mut unavailable) = match diag {
        Ok(d) => (Some(d), None),
        Err(e) if is_unavailable(&e) => (None, Some(e)),
        Err(e) => return Err(e).context("cannot open a NETLINK_SOCK_DIAG socket"),
    };
    let mut fallback: Vec<&str> = Vec::new();
    let mut interrupted: Vec<&str> = Vec::new();
    let mut unknown_states = 0;
    // TCP of both families in one dump where the kernel takes it; else table by table below.
    let mut both = false;
    if let Some(d) = diag.as_mut() {
        let start = out.len();
        match d.dump(TCP_BOTH, ALL_STATES, out) {
            Ok(outcome) => {
                both = true;
                unknown_states += outcome.unknown_states;
                if outcome.interrupted {
                    interrupted.push(TCP_BOTH.name);
                }
            }
            Err(_) => out.truncate(start),
        }
    }
    // A table already dumped with the other family, or one with nothing to list.
    let done = |t: &Table| match t.protocol {
        Protocol::Tcp => both,
        Protocol::Udp => sockstat.is_some_and(|s| s.no_udp(t.v6())),
    };
    // Whether any table came from sock_diag (a table skipped as empty came from nowhere).
    let mut served = both;
    for table in TABLES.into_iter().filter(|t| !done(t)) {
        let start = out.len();
        let outcome = match diag.as_mut().map(|d| d.dump(table, ALL_STATES, out)) {
            Some(Ok(outcome)) => {
                served = true;
                outcome
            }
            Some(Err(e)) if !is_unavailable(&e) => {
                return Err(e).with_context(|| format!("sock_diag dump of {} failed", table.name));
            }
            Some(Err(e)) => {
                unavailable.get_or_insert(e);
                out.truncate(start);
                fallback.push(table.name);
                read_table(table, out)?
            }
            None => {
                fallback.push(table.name);
                read_table(table, out)?
            }
        };
        unknown_states += outcome.unknown_states;
        if outcome.interrupted {
            interrupted.push(table.name);
        }
    }
    if !interrupted.is_empty() {
        gaps.push(Gap {
            kind: GapKind::Incomplete,
            count: None,
            message: format!(
                "the socket list of {} changed during the dump {DUMP_TRIES} times in a row \
                 (NLM_F_DUMP_INTR): sockets may be missing or listed twice",
                interrupted.join(", ")
            ),
            advice: Some("take the snapshot again".into()),
        });
    }
    if unknown_states > 0 {
        gaps.push(Gap {
            kind: GapKind::Source,
            count: Some(unknown_states),
            message: format!(
                "{} in a state porthog does not know left out",
                porthog_core::report::plural(unknown_states, "socket")
            ),
            advice: None,
        });
    }
    if fallback.is_empty() {
        return Ok("sock_diag");
    }
    let reason = unavailable.map_or_else(String::new, |e| format!(" ({e})"));
    gaps.push(Gap {
        kind: GapKind::Source,
        count: None,
        message: format!(
            "sock_diag unavailable{reason}; read /proc/net/{{{}}} instead, which shows no \
             bound-but-unconnected TCP sockets and no socket cookies, and is read in pages, so \
             sockets that change state meanwhile may be missed or listed twice",
            fallback.join(",")
        ),
        advice: Some("load the inet_diag, tcp_diag and udp_diag kernel modules".into()),
    });
    Ok(if served { "sock_diag + /proc/net" } else { "/proc/net" })
}

/// Appends the sockets of `table` to `out`. Reads `/proc/thread-self/net`, not `/proc/net`: the
/// latter follows the thread-group leader's namespace, not the one this thread entered.
fn read_table(table: Table, out: &mut Vec<Socket>) -> anyhow::Result<DumpOutcome> {
    let path = format!("/proc/thread-self/net/{}", table.name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        // A kernel without IPv6 has no tcp6/udp6: there are no such sockets to miss.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && table.name.ends_with('6') => {
            return Ok(DumpOutcome::default());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {path}")),
    };
    let text = String::from_utf8_lossy(&bytes);
    let parsed = proc_net::parse(&text, table.protocol).with_context(|| format!("in {path}"))?;
    out.extend(parsed.sockets);
    Ok(DumpOutcome { interrupted: false, unknown_states: parsed.unknown_states as u64 })
}

#[cfg(test)]
mod tests {
    use porthog_core::{Protocol, State};

    use super::*;

    #[test]
    fn dumps_its_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut out, mut gaps) = (Vec::new(), Vec::new());
        let source = sockets(SockDiag::open(), None, &mut out, &mut gaps).unwrap();
        assert_eq!(source, "sock_diag");
        assert!(gaps.is_empty(), "{gaps:?}");
        let mine: Vec<_> = out.iter().filter(|s| s.local_port == port).collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!((mine[0].state, mine[0].protocol), (State::Listen, Protocol::Tcp));
        assert_ne!(mine[0].inode, 0);
    }

    /// (family v6, state, local port, cookie) of the sockets on `ports`, sorted.
    fn on_ports(out: &[Socket], ports: &[u16]) -> Vec<(Option<bool>, State, u16, u64)> {
        let mut mine: Vec<_> = out
            .iter()
            .filter(|s| ports.contains(&s.local_port))
            .map(|s| (s.facts.family_v6(), s.state, s.local_port, s.cookie))
            .collect();
        mine.sort_unstable();
        mine
    }

    /// The one dump of both TCP families lists exactly what the two per-family dumps list:
    /// listeners of each family, a connection, a bound-but-inactive socket.
    #[test]
    fn one_dump_of_both_tcp_families_lists_what_two_do() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(v4.local_addr().unwrap()).unwrap();
        let mut ports = vec![v4.local_addr().unwrap().port(), client.local_addr().unwrap().port()];
        // Without IPv6 on the machine, the IPv4 sockets alone.
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        ports.extend(v6.iter().map(|l| l.local_addr().unwrap().port()));
        let bound = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::STREAM,
            None,
        )
        .unwrap();
        rustix::net::bind(&bound, &std::net::SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let name = rustix::net::getsockname(&bound).unwrap();
        ports.push(std::net::SocketAddr::try_from(name).unwrap().port());
        let mut diag = SockDiag::open().unwrap();
        let mut both = Vec::new();
        let outcome = diag.dump(TCP_BOTH, ALL_STATES, &mut both).unwrap();
        assert!(!outcome.interrupted);
        let mut apart = Vec::new();
        for table in TABLES.iter().filter(|t| t.protocol == Protocol::Tcp) {
            diag.dump(*table, ALL_STATES, &mut apart).unwrap();
        }
        let (both, apart) = (on_ports(&both, &ports), on_ports(&apart, &ports));
        assert_eq!(both, apart);
        assert!(both.len() >= 4 + usize::from(v6.is_some()), "{both:?}");
        assert!(both.iter().any(|s| s.0 == Some(false) && s.1 == State::Established));
        assert_eq!(both.iter().any(|s| s.0 == Some(true) && s.1 == State::Listen), v6.is_some());
    }

    /// A bound UDP socket shows in its family's counter, so its table is dumped; a table whose
    /// counter is 0 is not.
    #[test]
    fn udp_tables_are_dumped_only_where_sockstat_counts_sockets() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let counted = sockstat().expect("sockstat of this namespace");
        assert!(!counted.no_udp(false) && !counted.no_sockets(), "{counted:?}");
        let (mut out, mut gaps) = (Vec::new(), Vec::new());
        sockets(SockDiag::open(), Some(counted), &mut out, &mut gaps).unwrap();
        assert!(out.iter().any(|s| s.local_port == port && s.protocol == Protocol::Udp));
        let none = Sockstat { udp_inuse: Some(0), udp6_inuse: Some(0), ..counted };
        out.clear();
        sockets(SockDiag::open(), Some(none), &mut out, &mut gaps).unwrap();
        assert!(!out.iter().any(|s| s.protocol == Protocol::Udp), "{out:?}");
        assert!(gaps.is_empty(), "{gaps:?}");
    }

    #[test]
    fn fallback_reads_its_own_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut out = Vec::new();
        let outcome = read_table(TABLES[0], &mut out).unwrap();
        assert_eq!(outcome.unknown_states, 0);
        let mine: Vec<_> = out.iter().filter(|s| s.local_port == port).collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        assert_eq!(mine[0].state, State::Listen);
        assert_ne!(mine[0].inode, 0);
    }

    #[test]
    fn falls_back_to_proc_net_and_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let unavailable = io::Error::from_raw_os_error(Errno::PROTONOSUPPORT.raw_os_error());
        let (mut out, mut gaps) = (Vec::new(), Vec::new());
        assert_eq!(sockets(Err(unavailable), None, &mut out, &mut gaps).unwrap(), "/proc/net");
        assert!(out.iter().any(|s| s.local_port == port && s.state == State::Listen));
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(gaps[0].kind, GapKind::Source);
        assert!(gaps[0].message.starts_with("sock_diag unavailable ("), "{}", gaps[0].message);
        assert!(gaps[0].message.contains("/proc/net/{tcp,tcp6,udp,udp6}"), "{}", gaps[0].message);

        // UDP tables skipped as empty do not make it a mix: nothing came from sock_diag.
        let no_udp = Sockstat::parse(
            "sockets: used 3\nTCP: inuse 1 orphan 0 tw 0 alloc 1 mem 0\nUDP: inuse 0 mem 0\n",
            "TCP6: inuse 0\nUDP6: inuse 0\n",
        )
        .unwrap();
        let unavailable = io::Error::from_raw_os_error(Errno::PROTONOSUPPORT.raw_os_error());
        let (mut out, mut gaps) = (Vec::new(), Vec::new());
        let source = sockets(Err(unavailable), Some(no_udp), &mut out, &mut gaps).unwrap();
        assert_eq!(source, "/proc/net");
        assert!(gaps[0].message.contains("/proc/net/{tcp,tcp6}"), "{}", gaps[0].message);

        let other = io::Error::from_raw_os_error(Errno::NOBUFS.raw_os_error());
        assert!(sockets(Err(other), None, &mut out, &mut gaps).is_err());
    }

    #[test]
    fn unavailable_means_these_errnos() {
        assert!(is_unavailable(&io::Error::from_raw_os_error(
            Errno::PROTONOSUPPORT.raw_os_error()
        )));
        assert!(is_unavailable(&io::Error::from_raw_os_error(Errno::NOENT.raw_os_error())));
        assert!(!is_unavailable(&io::Error::from_raw_os_error(Errno::NOBUFS.raw_os_error())));
    }
}
