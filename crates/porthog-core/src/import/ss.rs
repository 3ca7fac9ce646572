//! Linux `ss -tanp`, `ss -tanpe`, `ss -uanp` (and `-tuanp`, which adds a Netid column). The
//! owner comes from `users:(("name",pid=N,fd=M),...)`; `-e` adds `uid:` and `ino:`, `-o` the
//! TIME_WAIT timer. Without a Netid column the protocol is the section's: UDP when any row is
//! UNCONN, else TCP (the header is the same for both).

use std::net::{IpAddr, Ipv4Addr};

use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::{Protocol, Socket, State};

const EXPECTED: &str = "[Netid] State Recv-Q Send-Q Local-Address:Port Peer-Address:Port [users:((...))] (run ss with -n)";

/// `State  Recv-Q Send-Q Local Address:Port ...` (or `Netid State ...` with `-tu`).
fn is_header(t: &str) -> bool {
    let t = t.trim_start();
    (t.starts_with("State") || t.starts_with("Netid")) && t.contains("Recv-Q")
}

/// A header (alone it is a listing of zero sockets), or a row.
pub fn starts(line: Line<'_>) -> bool {
    is_header(line.text) || is_row_start(line)
}

fn is_row_start(line: Line<'_>) -> bool {
    let mut f = line.text.split_ascii_whitespace();
    let Some(first) = f.next() else { return false };
    let state_tok = if matches!(first, "tcp" | "udp") { f.next() } else { Some(first) };
    state_tok.and_then(state).is_some()
        && f.next().is_some_and(|q| q.parse::<u64>().is_ok())
        && f.next().is_some_and(|q| q.parse::<u64>().is_ok())
}

struct Row<'a> {
    netid: Option<Protocol>,
    sock: Socket,
    pid: u32,
    name: Option<&'a str>,
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let mut rows = Vec::new();
    let mut any_unconn = false;
    if cur.peek().is_some_and(|l| is_header(l.text)) {
        cur.next();
    }
    while let Some(line) = cur.peek() {
        let t = line.text.trim();
        if t.is_empty()
            || t.starts_with("State")
            || t.starts_with("Netid")
            || t.starts_with("Recv-Q")
        {
            break;
        }
        // A row of another format ends the section; anything else is a bad ss row.
        if !is_row_start(line) && !looks_like_row(t) {
            break;
        }
        cur.next();
        any_unconn |= t.split_ascii_whitespace().take(2).any(|x| x == "UNCONN");
        match row(t) {
            Some(r) => rows.push(r),
            None => b.malformed(
                lenient,
                ImportError::malformed(cur.name(), line, Format::Ss, EXPECTED),
            )?,
        }
    }
    let section = if any_unconn { Protocol::Udp } else { Protocol::Tcp };
    for mut r in rows {
        r.sock.protocol = r.netid.unwrap_or(section);
        if let Some(name) = r.name {
            b.names.entry(r.pid).or_insert_with(|| name.to_owned());
        }
        b.socket(Format::Ss, r.sock, r.pid);
    }
    Ok(())
}

/// Looks like an ss row that went wrong: an ss state word up front.
fn looks_like_row(t: &str) -> bool {
    let mut f = t.split_ascii_whitespace();
    let first = f.next().unwrap_or("");
    state(first).is_some() || (matches!(first, "tcp" | "udp") && f.next().and_then(state).is_some())
}

fn row(t: &str) -> Option<Row<'_>> {
    // `users:((...))` is cut out first: a process name may hold spaces (`"Web Content"`).
    let (head, users, tail) = split_users(t);
    let mut f = head.split_ascii_whitespace().chain(tail.split_ascii_whitespace()).peekable();
    let netid = match f.peek() {
        Some(&"tcp") => Some(Protocol::Tcp),
        Some(&"udp") => Some(Protocol::Udp),
        _ => None,
    };
    if netid.is_some() {
        f.next();
    }
    let st = state(f.next()?)?;
    f.next()?.parse::<u64>().ok()?;
    f.next()?.parse::<u64>().ok()?;
    let local = endpoint(f.next()?)?;
    let remote = endpoint(f.next()?)?;
    let mut sock = Socket::new(netid.unwrap_or(Protocol::Tcp), st, local, remote);
    let (pid, name) = match users.and_then(lowest_owner) {
        Some((p, n)) => (p, Some(n)),
        None => (0, None),
    };
    for extra in f {
        if let Some(ino) = extra.strip_prefix("ino:") {
            sock.inode = ino.parse().unwrap_or(0);
        } else if let Some(uid) = extra.strip_prefix("uid:") {
            sock.uid = uid.parse().unwrap_or(Socket::UID_UNKNOWN);
        } else if let Some(timer) = extra.strip_prefix("timer:(timewait,") {
            sock.timer_ms = timer_ms(timer).unwrap_or(0);
        }
    }
    Some(Row { netid, sock, pid, name })
}

/// Splits a row into what precedes `users:(`, the users list, and what follows its `))`.
fn split_users(t: &str) -> (&str, Option<&str>, &str) {
    const MARK: &str = "users:(";
    let Some(i) = t.find(MARK) else { return (t, None, "") };
    let rest = &t[i + MARK.len()..];
    let end = rest.find("))").map_or(rest.len(), |e| e + 2);
    (&t[..i], Some(&rest[..end]), &rest[end..])
}

/// `("nginx",pid=10,fd=6),("nginx",pid=11,fd=6))`: the lowest pid and its name; a socket shared
/// by several processes goes to the lowest pid, as the live collector does. A name with spaces
/// or commas is whole between its quotes (ss prints the comm as is).
fn lowest_owner(users: &str) -> Option<(u32, &str)> {
    users
        .split("(\"")
        .filter_map(|entry| {
            let (name, rest) = entry.split_once("\",pid=")?;
            let pid: u32 = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
            Some((pid, name))
        })
        .min_by_key(|(pid, _)| *pid)
}

/// `55sec,0)` or `1min2sec,0)` or `500ms,0)`.
fn timer_ms(t: &str) -> Option<u32> {
    let mut rest = t.split(',').next()?;
    let mut total: u32 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let num: u32 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "min" => 60_000,
            "sec" => 1000,
            "ms" => 1,
            _ => return None,
        };
        total = total.checked_add(num.checked_mul(scale)?)?;
        rest = &rest[unit..];
    }
    Some(total)
}

/// `127.0.0.1:631`, `[::1]:631`, `*:*`, `0.0.0.0:*`, `127.0.0.53%lo:53`, `[fe80::1]%eth0:546`.
fn endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = s.rsplit_once(':')?;
    let port: u16 = if port == "*" { 0 } else { port.parse().ok()? };
    let addr = match addr.find('%') {
        Some(i) if !addr[i..].contains(']') => &addr[..i],
        _ => addr,
    };
    let ip = match addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.split_once('%').map_or(v6, |(a, _)| a).parse().ok()?),
        None if addr == "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        None => addr.parse().ok()?,
    };
    Some((ip, port))
}

fn state(s: &str) -> Option<State> {
    Some(match s {
        "ESTAB" => State::Established,
        "SYN-SENT" => State::SynSent,
        "SYN-RECV" => State::SynRecv,
        "FIN-WAIT-1" => State::FinWait1,
        "FIN-WAIT-2" => State::FinWait2,
        "TIME-WAIT" => State::TimeWait,
        "UNCONN" | "CLOSE" | "CLOSED" => State::Close,
        "CLOSE-WAIT" => State::CloseWait,
        "LAST-ACK" => State::LastAck,
        "LISTEN" => State::Listen,
        "CLOSING" => State::Closing,
        "BOUND-INACTIVE" => State::Bound,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportOptions, Input, import};
    use crate::model::Snapshot;

    fn snapshot(text: &str) -> Snapshot {
        crate::import::testing::snapshot_of("ss.txt", text)
    }

    #[test]
    fn tanp_with_owners_and_time_wait() {
        let s = snapshot(
            "State      Recv-Q Send-Q     Local Address:Port      Peer Address:Port Process\n\
             LISTEN     0      4096           127.0.0.1:631            0.0.0.0:*     users:((\"cupsd\",pid=1234,fd=7))\n\
             ESTAB      0      0               10.0.0.7:40000         10.0.0.5:5432  users:((\"java\",pid=4322,fd=55),(\"java\",pid=4321,fd=55))\n\
             TIME-WAIT  0      0               10.0.0.7:40001         10.0.0.5:5432\n\
             ESTAB      0      0     [::ffff:10.0.0.7]:40002  [::ffff:10.0.0.5]:5432  users:((\"java\",pid=4321,fd=56))\n",
        );
        assert_eq!(s.sockets.len(), 4);
        assert!(s.sockets.iter().all(|x| x.protocol == Protocol::Tcp));
        assert_eq!(s.sockets[1].pid.map(|p| p.get()), Some(4321), "lowest pid of a shared socket");
        assert_eq!((s.sockets[2].state, s.sockets[2].pid), (State::TimeWait, None));
        assert_eq!(
            s.sockets[3].local_ip,
            "10.0.0.7".parse::<IpAddr>().unwrap(),
            "v4-mapped is canonical"
        );
        assert_eq!(s.process(1234).map(|p| p.name.as_str()), Some("cupsd"));
        assert_eq!(s.process(4321).map(|p| p.name.as_str()), Some("java"));
    }

    #[test]
    fn uanp_is_udp_and_tanpe_gives_inode_uid_timer() {
        let s = snapshot(
            "State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n\
             UNCONN 0      0      127.0.0.53%lo:53        0.0.0.0:*    users:((\"systemd-resolve\",pid=500,fd=13))\n\
             ESTAB  0      0          10.0.0.7:41000     10.0.0.9:53\n\
             \n\
             State     Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n\
             TIME-WAIT 0      0      127.0.0.1:40001    127.0.0.1:7070    timer:(timewait,55sec,0) ino:0 sk:1\n\
             ESTAB     0      0      127.0.0.1:40002    127.0.0.1:7070    users:((\"curl\",pid=9,fd=3)) uid:1000 ino:12345 sk:2 <->\n",
        );
        assert_eq!(s.sockets.len(), 4);
        assert_eq!((s.sockets[0].protocol, s.sockets[0].state), (Protocol::Udp, State::Close));
        assert_eq!(s.sockets[1].protocol, Protocol::Udp);
        assert_eq!((s.sockets[2].protocol, s.sockets[2].timer_ms), (Protocol::Tcp, 55_000));
        assert_eq!((s.sockets[3].inode, s.sockets[3].uid), (12345, 1000));
    }

    #[test]
    fn a_process_name_with_spaces_keeps_its_owner() {
        let s = snapshot(
            "ESTAB 0 0 10.0.0.7:40000 10.0.0.5:443 users:((\"Web Content\",pid=4321,fd=55)) uid:1000 ino:77\n",
        );
        assert_eq!(s.sockets[0].pid.map(|p| p.get()), Some(4321));
        assert_eq!(s.sockets[0].inode, 77);
        assert_eq!(s.process(4321).map(|p| p.name.as_str()), Some("Web Content"));
    }

    #[test]
    fn netid_column() {
        let s = snapshot(
            "Netid State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n\
             udp   UNCONN 0      0            0.0.0.0:68        0.0.0.0:*\n\
             tcp   ESTAB  0      0           10.0.0.7:40000    10.0.0.5:443\n",
        );
        assert_eq!(s.sockets[0].protocol, Protocol::Udp);
        assert_eq!(s.sockets[1].protocol, Protocol::Tcp);
    }

    #[test]
    fn timers() {
        assert_eq!(timer_ms("55sec,0)"), Some(55_000));
        assert_eq!(timer_ms("1min2sec,0)"), Some(62_000));
        assert_eq!(timer_ms("500ms,0)"), Some(500));
        assert_eq!(timer_ms("71583min,0)"), None, "overflow is no timer, not a panic");
        assert_eq!(timer_ms("garbage"), None);
    }

    #[test]
    fn bad_row_is_an_error_with_its_line() {
        let text = "State Recv-Q Send-Q Local Address:Port Peer Address:Port\nESTAB 0 0 10.0.0.7:40000 db01:postgres\n";
        let e =
            import(&[Input { name: "ss.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(e.to_string().starts_with("ss.txt:2: ss row"), "{e}");
    }
}
