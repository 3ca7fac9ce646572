//! Linux `netstat` (net-tools: `-n`, `-tan`, `-tanp`, `-antup`, `-tanpe`, `-tanpo`) and busybox
//! `netstat` (`-tan`, `-an`, `-tanp` where built with it): `Proto Recv-Q Send-Q Local Foreign
//! State [User Inode] [PID/Program name] [Timer]`, protocols in lower case (`tcp`, `tcp6`,
//! `udp`, `udp6`; busybox says `tcp` for IPv6 too), IPv6 addresses without brackets. The
//! `Active UNIX domain sockets` section is skipped. Told apart from Windows netstat by the lower
//! case protocol and the two queue columns. The hot path allocates nothing per row.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::{Gap, GapKind, Protocol, Socket, State};

const EXPECTED: &str = "tcp|tcp6|udp|udp6, Recv-Q, Send-Q, local address:port, foreign address:port, state, [user inode] [PID/name] (run netstat with -n so addresses are numeric, -W so IPv6 addresses are not cut)";

/// The one command that adds owners to a netstat capture.
const OWNERS_COMMAND: &str =
    "capture `netstat -tanp` as root (busybox builds without -p: `ss -tanp`)";

/// A header line of the section, or a row.
pub fn starts(line: Line<'_>) -> bool {
    let t = line.text.trim_start();
    t.starts_with("Active Internet connections") || is_columns(t) || is_row(t)
}

/// `Proto Recv-Q Send-Q Local Address ...`
fn is_columns(t: &str) -> bool {
    t.starts_with("Proto") && t.split_ascii_whitespace().nth(1) == Some("Recv-Q")
}

fn protocol(token: &str) -> Option<(Protocol, bool)> {
    Some(match token {
        "tcp" | "tcp6" => (Protocol::Tcp, token.len() == 4),
        "udp" | "udp6" | "udpl" | "udpl6" => (Protocol::Udp, token.ends_with('6')),
        _ => return None,
    })
}

/// `tcp 0 0 ADDR:PORT ADDR:PORT STATE ...`: a protocol, two numbers, an endpoint and, for TCP,
/// a state after the peer (a header-less `ss -tuan state X` row has none: it is ss's).
fn is_row(t: &str) -> bool {
    let mut f = t.split_ascii_whitespace();
    let Some((proto, _)) = f.next().and_then(protocol) else { return false };
    f.next().is_some_and(is_number)
        && f.next().is_some_and(is_number)
        && f.next().is_some_and(|a| a.contains(':'))
        && (proto == Protocol::Udp || f.nth(1).is_some_and(|s| state(s).is_some()))
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// What a section's rows showed, for the conclusions drawn once all are read (`finish`).
#[derive(Debug, Default)]
pub struct Rows {
    header: bool,
    rows: u64,
    owned_rows: u64,
    live: u64,
    cut: u64,
    without_servers: bool,
}

impl Rows {
    /// What both halves of a section showed (split.rs).
    pub fn merge(self, other: Rows) -> Rows {
        Rows {
            header: self.header || other.header,
            rows: self.rows + other.rows,
            owned_rows: self.owned_rows + other.owned_rows,
            live: self.live + other.live,
            cut: self.cut + other.cut,
            without_servers: self.without_servers || other.without_servers,
        }
    }
}

/// The header lines a section starts with (for a read in two halves, split.rs).
pub fn is_header(t: &str) -> bool {
    let t = t.trim_start();
    t.starts_with("Active Internet connections") || is_columns(t)
}

/// Whether a line is a row (for a read in two halves, split.rs).
pub fn is_row_start(t: &str) -> bool {
    is_row(t.trim_start())
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let rows = rows(cur, b, lenient)?;
    finish(b, rows);
    Ok(())
}

/// Reads the rows of a section, or of one half of it: the conclusions wait for `finish`.
pub fn rows(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<Rows, ImportError> {
    b.sockets.reserve(cur.remaining().0.len() / 96);
    let mut header = false;
    // Rows, rows with an owner column, rows not in TIME_WAIT (which -p would give an owner).
    let (mut rows, mut owned_rows, mut live, mut cut) = (0u64, 0u64, 0u64, 0u64);
    let mut without_servers = false;
    while let Some(line) = cur.peek() {
        let t = super::text::trim_start(line.text);
        if t.starts_with("Active Internet connections") {
            header = true;
            without_servers |= t.contains("w/o servers");
            cur.consume(line);
            continue;
        }
        if is_columns(t) {
            header = true;
            cur.consume(line);
            continue;
        }
        if t.starts_with("Active UNIX domain sockets") || t.starts_with("Active Bluetooth") {
            cur.consume(line);
            skip_other_sockets(cur);
            continue;
        }
        // One tokenizing pass per row: a line that is no row is then told apart from a bad one.
        let Some(r) = row(t) else {
            // A row of this format that does not parse is an error; anything else ends it.
            if t.split_ascii_whitespace().next().and_then(protocol).is_some() {
                cur.consume(line);
                b.malformed(
                    lenient,
                    ImportError::malformed(cur.name(), line, Format::NetstatLinux, EXPECTED),
                )?;
                continue;
            }
            break;
        };
        cur.consume(line);
        rows += 1;
        live += u64::from(r.sock.state != State::TimeWait);
        cut += u64::from(r.maybe_cut);
        if let Some((pid, name)) = r.owner {
            owned_rows += 1;
            if pid != 0 && !name.is_empty() {
                b.name(pid, name);
            }
        }
        let pid = r.owner.map_or(0, |(p, _)| p);
        b.socket(Format::NetstatLinux, r.sock, pid);
    }
    Ok(Rows { header, rows, owned_rows, live, cut, without_servers })
}

/// The section's conclusions from all its rows: what it cannot show.
pub fn finish(b: &mut Builder, rows: Rows) {
    let Rows { header, rows, owned_rows, live, cut, without_servers } = rows;
    if rows == 0 {
        return;
    }
    if !header {
        b.fragment(
            Format::NetstatLinux,
            "rows without their header (e.g. `netstat -n | grep ...`), recognised by their shape: \
             only the rows given are counted",
        );
    }
    if owned_rows == 0 && live > 0 {
        b.gap(Gap {
            kind: GapKind::Unattributed,
            count: Some(live),
            message:
                "the netstat capture has no PID/Program name column (no -p): no socket has an owner"
                    .into(),
            advice: Some(OWNERS_COMMAND.into()),
        });
    }
    if without_servers {
        b.gap(Gap {
            kind: GapKind::Invisible,
            count: None,
            message: "netstat without -a shows no listening sockets: a listener inside the ephemeral range, which takes a port from every pool, is not seen".into(),
            advice: Some("capture `netstat -tanp` (with -a)".into()),
        });
    }
    if cut > 0 {
        b.gap(Gap {
            kind: GapKind::Source,
            count: Some(cut),
            message: format!("{cut} IPv6 endpoints fill netstat's 23-character column and may have been cut short: their addresses may be wrong"),
            advice: Some("capture with `netstat -tanpW` (wide) or `ss -tanp`".into()),
        });
    }
}

/// Skips the rows of a UNIX domain (or Bluetooth) section, up to the next section or format.
fn skip_other_sockets(cur: &mut Cursor<'_>) {
    while let Some(line) = cur.peek() {
        let t = line.text.trim_start();
        let mut f = t.split_ascii_whitespace();
        let first = f.next().unwrap_or("");
        let other = first == "Proto" && f.next() == Some("RefCnt")
            || matches!(first, "unix" | "l2cap" | "rfcomm");
        if !other {
            return;
        }
        cur.consume(line);
    }
}

struct Row<'a> {
    sock: Socket,
    /// `Some((pid, name))` when the row has a PID/Program name column; `(0, "")` for `-`.
    owner: Option<(u32, &'a str)>,
    maybe_cut: bool,
}

fn row(t: &str) -> Option<Row<'_>> {
    let t = super::text::trim_end(t);
    let mut f = t.split_ascii_whitespace();
    let (proto, _) = protocol(f.next()?)?;
    if !(f.next().is_some_and(is_number) && f.next().is_some_and(is_number)) {
        return None;
    }
    let local_text = f.next()?;
    let remote_text = f.next()?;
    let local = endpoint(local_text)?;
    let remote = endpoint(remote_text)?;
    let maybe_cut =
        [local_text, remote_text].iter().any(|e| e.len() >= 23 && e.matches(':').count() > 1);
    // What follows the endpoints: [state] [user inode] [PID/name (may hold spaces)] [timer].
    let mut rest = super::text::trim_start(after(t, remote_text));
    let first = rest.split_ascii_whitespace().next().unwrap_or("");
    let state = match state(first) {
        Some(s) => {
            rest = super::text::trim_start(after(rest, first));
            s
        }
        None if proto == Protocol::Tcp => return None,
        // UDP: net-tools leaves the state empty unless connected.
        None if remote.1 == 0 => State::Close,
        None => State::Established,
    };
    let mut sock = Socket::new(proto, state, local, remote);
    let rest = timer(rest, &mut sock);
    let mut words = rest.split_ascii_whitespace();
    let (first, second) = (words.next(), words.next());
    // `-e`: a user (name or uid) and an inode come before the owner.
    let owner_text = match (first, second) {
        (Some(user), Some(inode)) if is_number(inode) && !is_owner(user) => {
            if let Ok(uid) = user.parse() {
                sock.uid = uid;
            }
            sock.inode = inode.parse().unwrap_or(0);
            super::text::trim(after(rest, inode))
        }
        _ => super::text::trim(rest),
    };
    let owner = if owner_text.is_empty() {
        None
    } else if owner_text == "-" {
        Some((0, ""))
    } else {
        let (pid, name) = owner_text.split_once('/')?;
        Some((pid.parse().ok()?, super::text::trim_end(name)))
    };
    Some(Row { sock, owner, maybe_cut })
}

/// What follows `token`, a slice of `t` that `split_ascii_whitespace` returned.
fn after<'a>(t: &'a str, token: &str) -> &'a str {
    let end = token.as_ptr() as usize - t.as_ptr() as usize + token.len();
    &t[end..]
}

fn is_owner(s: &str) -> bool {
    s == "-" || s.split_once('/').is_some_and(|(p, _)| is_number(p))
}

/// Strips a `-o` timer (`timewait (46.21/0/0)`, `off (0.00/0/0)`, `keepalive (...)`) from the
/// end, keeping a TIME_WAIT's remaining time.
fn timer<'a>(rest: &'a str, sock: &mut Socket) -> &'a str {
    // Cheap test first: almost every row without -o ends in an owner or a state.
    if !rest.ends_with(')') {
        return rest;
    }
    let Some(open) = rest.rfind(" (") else { return rest };
    let before = rest[..open].trim_end();
    let kind_at = before.rfind(|c: char| c.is_ascii_whitespace()).map_or(0, |i| i + 1);
    let kind = &before[kind_at..];
    if !matches!(kind, "off" | "on" | "keepalive" | "timewait" | "probe" | "unkn") {
        return rest;
    }
    if kind == "timewait" {
        let secs = rest[open + 2..].split('/').next().unwrap_or("");
        if let Ok(secs) = secs.parse::<f64>()
            && (0.0..4_000_000.0).contains(&secs)
        {
            sock.timer_ms = (secs * 1000.0) as u32;
        }
    }
    &before[..kind_at]
}

/// `127.0.0.1:7070`, `0.0.0.0:*`, `::1:40000`, `:::*`, `::ffff:10.0.0.1:80`, `*:*`.
fn endpoint(s: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = super::text::rsplit_colon(s)?;
    let port: u16 = if port == "*" { 0 } else { super::text::number(port)? };
    let addr = memchr::memchr(b'%', addr.as_bytes()).map_or(addr, |at| &addr[..at]);
    let ip = if addr == "*" {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else if memchr::memchr(b':', addr.as_bytes()).is_some() {
        IpAddr::V6(addr.parse::<Ipv6Addr>().ok()?)
    } else {
        IpAddr::V4(super::netstat::dotted_quad(addr).or_else(|| addr.parse().ok())?)
    };
    Some((ip, port))
}

/// net-tools and busybox state names (`tcp_state` in net-tools' netstat.c): the kernel's names,
/// which are the model's.
fn state(s: &str) -> Option<State> {
    State::from_name(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportOptions, Imported, Input, import};
    use crate::model::{Os, Snapshot};

    fn read(text: &str) -> (Snapshot, Vec<crate::import::SourceInfo>) {
        match import(&[Input { name: "n.txt", bytes: text.as_bytes() }], &ImportOptions::default())
        {
            Ok(Imported::Snapshot { snapshot, sources, .. }) => (snapshot, sources),
            other => panic!("{other:?}"),
        }
    }

    /// `netstat -tanpe` of net-tools 2.10, as captured in a test namespace (fixed pids).
    const TANPE: &str = "\
Active Internet connections (servers and established)
Proto Recv-Q Send-Q Local Address           Foreign Address         State       User       Inode      PID/Program name    
tcp        0      0 127.0.0.1:7070          0.0.0.0:*               LISTEN      0          14635      12157/porthog-loadg 
tcp        0      0 127.0.0.1:40000         127.0.0.1:7070          ESTABLISHED 1000       15696      12200/Web Content   
tcp6       0      0 ::1:7071                :::*                    LISTEN      0          14636      12157/porthog-loadg 
tcp6       0      0 ::1:40000               ::1:7071                TIME_WAIT   0          0          -                   
tcp6       0      0 ::ffff:127.0.0.1:40001  ::ffff:127.0.0.1:7070   ESTABLISHED 0          15697      12201/java: worker  
udp        0      0 0.0.0.0:68              0.0.0.0:*                           0          2222       500/dhclient        
udp6       0      0 ::1:40002               ::1:53                  ESTABLISHED 0          2223       501/resolver        
Active UNIX domain sockets (servers and established)
Proto RefCnt Flags       Type       State         I-Node   PID/Program name     Path
unix  2      [ ACC ]     STREAM     LISTENING     12345    1/init               /run/systemd/private
unix  3      [ ]         STREAM     CONNECTED     12346    -                    
";

    #[test]
    fn tanpe_owners_users_inodes_and_the_unix_section() {
        let (s, sources) = read(TANPE);
        assert_eq!(s.os, Os::Linux);
        assert_eq!(s.sockets.len(), 7, "the UNIX sockets are skipped");
        assert_eq!((sources[0].format.as_str(), sources[0].records), ("netstat-linux", 7));
        assert!(sources[0].notes.is_empty(), "a capture with its header needs no note");
        let est = &s.sockets[1];
        assert_eq!((est.state, est.uid, est.inode), (State::Established, 1000, 15696));
        assert_eq!(est.pid.map(|p| p.get()), Some(12200));
        assert_eq!(s.process(12200).map(|p| p.name.as_str()), Some("Web Content"));
        assert_eq!(s.process(12201).map(|p| p.name.as_str()), Some("java: worker"));
        let tw = &s.sockets[3];
        assert_eq!(
            (tw.state, tw.pid, tw.local_ip),
            (State::TimeWait, None, "::1".parse().unwrap())
        );
        assert_eq!(s.sockets[4].local_ip, "127.0.0.1".parse::<IpAddr>().unwrap(), "v4-mapped");
        assert_eq!((s.sockets[5].protocol, s.sockets[5].state), (Protocol::Udp, State::Close));
        assert_eq!(
            (s.sockets[6].protocol, s.sockets[6].state),
            (Protocol::Udp, State::Established)
        );
        assert!(!s.gaps.iter().any(|g| g.kind == GapKind::Unattributed), "{:?}", s.gaps);
    }

    #[test]
    fn without_p_the_report_says_owners_are_missing_and_how_to_add_them() {
        let (s, _) = read(
            "Active Internet connections (w/o servers)\n\
             Proto Recv-Q Send-Q Local Address           Foreign Address         State      \n\
             tcp        0      0 127.0.0.1:40000         127.0.0.1:7070          ESTABLISHED\n\
             tcp        0      0 127.0.0.1:40001         127.0.0.1:7070          TIME_WAIT  \n\
             Active UNIX domain sockets (w/o servers)\n\
             Proto RefCnt Flags       Type       State         I-Node   Path\n",
        );
        assert_eq!(s.sockets.len(), 2);
        let owners = s.gaps.iter().find(|g| g.kind == GapKind::Unattributed).expect("owner gap");
        assert_eq!(owners.count, Some(1), "the live socket; -p names no TIME_WAIT owner anyway");
        assert!(owners.advice.as_deref().unwrap_or("").contains("netstat -tanp"), "{owners:?}");
        let listeners = s.gaps.iter().find(|g| g.kind == GapKind::Invisible).expect("-a gap");
        assert!(listeners.message.contains("without -a"), "{listeners:?}");
    }

    #[test]
    fn busybox_says_tcp_for_ipv6_and_timers_give_time_wait_age() {
        let (s, _) = read(
            "Proto Recv-Q Send-Q Local Address           Foreign Address         State       \n\
             tcp        0      0 ::1:40000               ::1:7071                TIME_WAIT   \n\
             tcp        0      0 ::1:40001               ::1:7071                TIME_WAIT   -                    timewait (46.21/0/0)\n\
             tcp        0      0 127.0.0.1:7070          0.0.0.0:*               LISTEN      12157/a b            off (0.00/0/0)\n",
        );
        assert_eq!(s.sockets[0].local_ip, "::1".parse::<IpAddr>().unwrap());
        assert_eq!((s.sockets[1].timer_ms, s.sockets[1].pid), (46_210, None));
        assert_eq!(s.sockets[2].pid.map(|p| p.get()), Some(12157));
        assert_eq!(s.process(12157).map(|p| p.name.as_str()), Some("a b"));
    }

    #[test]
    fn a_grep_fragment_is_read_by_shape_and_says_so() {
        let (s, sources) = read(
            "$ netstat -n | grep TIME_WAIT\n\
             tcp        0      0 10.0.0.7:40000          10.0.0.5:5432           TIME_WAIT  \n\
             tcp        0      0 10.0.0.7:40001          10.0.0.5:5432           TIME_WAIT  \n",
        );
        assert_eq!(s.sockets.len(), 2);
        assert!(sources[0].notes.join("; ").contains("without their header"));
        // What the filter dropped is not seen: an `ok` from it is no answer, and the gap names
        // the unfiltered capture.
        let gap = s.gaps.iter().find(|g| g.kind == GapKind::Incomplete).expect("fragment gap");
        assert_eq!(gap.count, Some(2));
        assert!(gap.message.contains("2 netstat-linux rows without their header"), "{gap:?}");
        assert_eq!(gap.advice.as_deref(), Some("capture `netstat -tanp` without the filter"));
    }

    #[test]
    fn windows_netstat_is_not_taken_for_linux() {
        let (s, sources) = read("  TCP    10.0.0.7:49152   10.0.0.5:443   ESTABLISHED   4321\n");
        assert_eq!((s.os, sources[0].format.as_str()), (Os::Windows, "netstat"));
    }

    #[test]
    fn a_bad_row_names_its_line_and_the_fix() {
        let text = "Proto Recv-Q Send-Q Local Address Foreign Address State\ntcp 0 0 db01:https 10.0.0.5:5432 ESTABLISHED\n";
        let e =
            import(&[Input { name: "n.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("n.txt:2: netstat-linux row"), "{msg}");
        assert!(msg.contains("-n so addresses are numeric"), "{msg}");
    }

    #[test]
    fn a_headerless_ss_row_with_a_netid_is_left_to_ss() {
        let (s, sources) =
            read("tcp 0 0 127.0.0.1:40000 127.0.0.1:7070 users:((\"curl\",pid=9,fd=3))\n");
        assert_eq!(sources[0].format, "ss");
        assert_eq!(s.sockets[0].pid.map(|p| p.get()), Some(9));
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint(":::*"), Some(("::".parse().unwrap(), 0)));
        assert_eq!(endpoint("0.0.0.0:*"), Some(("0.0.0.0".parse().unwrap(), 0)));
        assert_eq!(endpoint("fe80::1%eth0:546"), Some(("fe80::1".parse().unwrap(), 546)));
        assert_eq!(endpoint("localhost:https"), None);
    }
}
