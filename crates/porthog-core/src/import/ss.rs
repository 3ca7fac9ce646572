//! Linux `ss -tanp`, `ss -tanpe`, `ss -uanp` (and `-tuanp`, which adds a Netid column). The
//! owner comes from `users:(("name",pid=N,fd=M),...)`; `-e` adds `uid:` and `ino:`, `-o` the
//! TIME_WAIT timer. Without a Netid column the protocol is the section's: UDP when any row is
//! UNCONN, else TCP (the header is the same for both).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use memchr::memmem;

use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::{Gap, GapKind, Protocol, Socket, State};

const EXPECTED: &str = "[Netid] State Recv-Q Send-Q Local-Address:Port Peer-Address:Port [users:((...))] (run ss with -n)";

pub fn starts(line: Line<'_>) -> bool {
    let t = line.text;
    is_header(t) || is_stateless_row(t) || {
        let mut f = t.split_ascii_whitespace();
        let Some(first) = f.next() else { return false };
        let state_tok = if matches!(first, "tcp" | "udp") { f.next() } else { Some(first) };
        state_tok.and_then(state).is_some()
            && f.next().is_some_and(|q| q.parse::<u64>().is_ok())
            && f.next().is_some_and(|q| q.parse::<u64>().is_ok())
    }
}

/// `State Recv-Q ...`, `Netid State Recv-Q ...`, or `Recv-Q Send-Q ...` (a state filter such
/// as `state time-wait` drops the State column).
pub fn is_header(t: &str) -> bool {
    let mut f = t.split_ascii_whitespace();
    let mut first = f.next();
    if first == Some("Netid") {
        first = f.next();
    }
    match first {
        Some("State") => f.next() == Some("Recv-Q"),
        Some("Recv-Q") => f.next() == Some("Send-Q"),
        _ => false,
    }
}

/// A row of `ss ... state FILTER`: `[netid] Recv-Q Send-Q local peer`, with no state word.
fn is_stateless_row(t: &str) -> bool {
    let mut f = t.split_ascii_whitespace();
    let mut first = f.next();
    if matches!(first, Some("tcp" | "udp")) {
        first = f.next();
    }
    first.is_some_and(|q| q.parse::<u64>().is_ok())
        && f.next().is_some_and(|q| q.parse::<u64>().is_ok())
        && f.next().and_then(endpoint).is_some()
        && f.next().and_then(endpoint).is_some()
}

/// A line `-i` or `-m` prints under each socket: indented, not a row.
fn is_continuation(t: &str) -> bool {
    t.starts_with(['\t', ' ']) && {
        let inner = t.trim_start();
        !(starts(Line { no: 0, text: inner }) || looks_like_row(inner))
    }
}

struct Row<'a> {
    netid: Option<Protocol>,
    sock: Socket,
    pid: u32,
    name: Option<&'a str>,
    /// No State column (a state filter): the state was assumed.
    assumed: bool,
}

/// What a section's rows showed, for the conclusions drawn once all are read (`finish`).
#[derive(Debug, Default)]
pub struct Rows {
    header: bool,
    /// Where the section's sockets start in the builder.
    start: usize,
    total: u64,
    assumed: u64,
    owned: u64,
    live: u64,
    any_unconn: bool,
    netid: bool,
}

impl Rows {
    /// What both halves of a section showed, `self` the first (split.rs), which is also where
    /// the sockets start.
    pub fn merge(self, other: Rows) -> Rows {
        Rows {
            header: self.header,
            start: self.start,
            total: self.total + other.total,
            assumed: self.assumed + other.assumed,
            owned: self.owned + other.owned,
            live: self.live + other.live,
            any_unconn: self.any_unconn || other.any_unconn,
            netid: self.netid || other.netid,
        }
    }
}

/// Whether a line begins a row (for a read in two halves, split.rs): not one `-i` or `-m`
/// indents under a row.
pub fn is_row_start(t: &str) -> bool {
    !t.starts_with(['\t', ' ']) && starts(Line { no: 0, text: t })
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let rows = rows(cur, b, lenient)?;
    finish(b, rows);
    Ok(())
}

/// Reads the rows of a section, or of one half of it: the conclusions wait for `finish`.
pub fn rows(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<Rows, ImportError> {
    let mut header = false;
    let mut stateless = false;
    if let Some(line) = cur.peek().filter(|l| is_header(l.text)) {
        header = true;
        let mut f = line.text.split_ascii_whitespace();
        stateless = match f.next() {
            Some("Netid") => f.next() == Some("Recv-Q"),
            first => first == Some("Recv-Q"),
        };
        cur.next();
    }
    // Sockets go straight into the builder (a million-row capture holds no second copy); the
    // section's protocol is fixed up at the end, once an UNCONN row may have shown it is UDP.
    let start = b.sockets.len();
    let (mut total, mut assumed, mut owned, mut live) = (0u64, 0u64, 0u64, 0u64);
    let (mut any_unconn, mut netid) = (false, false);
    while let Some(line) = cur.peek() {
        let t = super::text::trim(line.text);
        if total > 0 && is_continuation(line.text) {
            cur.next();
            continue;
        }
        if t.is_empty() || is_header(t) {
            break;
        }
        // The hot path: a row that parses is taken at once; the shape tests below only tell a
        // line of another format (the section ends) from a bad ss row.
        let parsed = row(t, stateless).or_else(|| if stateless { None } else { row(t, true) });
        let parsed = match parsed {
            Some(r) => Some(r),
            None => {
                let stateless_row = is_stateless_row(t);
                if !starts(line) && !looks_like_row(t) && !stateless_row {
                    break;
                }
                None
            }
        };
        cur.consume(line);
        match parsed {
            Some(r) => {
                any_unconn |= r.sock.state == State::Close
                    && t.split_ascii_whitespace().take(2).any(|x| x == "UNCONN");
                total += 1;
                netid |= r.netid.is_some();
                assumed += u64::from(r.assumed);
                owned += u64::from(r.name.is_some());
                live += u64::from(r.sock.state != State::TimeWait);
                if let Some(name) = r.name {
                    b.name(r.pid, name);
                }
                b.socket(Format::Ss, r.sock, r.pid);
            }
            None => {
                any_unconn |= t.split_ascii_whitespace().take(2).any(|x| x == "UNCONN");
                b.malformed(
                    lenient,
                    ImportError::malformed(cur.name(), line, Format::Ss, EXPECTED),
                )?
            }
        }
    }
    Ok(Rows { header, start, total, assumed, owned, live, any_unconn, netid })
}

/// The section's conclusions from all its rows: its protocol, and what it cannot show.
pub fn finish(b: &mut Builder, rows: Rows) {
    let Rows { header, start, total, assumed, owned, live, any_unconn, netid } = rows;
    if total == 0 {
        return;
    }
    // Without a Netid column the protocol is the section's: UDP when any row is UNCONN.
    let section = if any_unconn && !netid { Protocol::Udp } else { Protocol::Tcp };
    // `ss -tan` and `ss -uan` print the same header: say which the rows were taken for.
    if !netid {
        b.note(
            Format::Ss,
            if section == Protocol::Udp {
                "no Netid column: read as UDP (`ss -uan`), as its rows are UNCONN"
            } else {
                "no Netid column: read as TCP (`ss -tan`), as no row is UNCONN"
            },
        );
    }
    let mut listeners = 0u64;
    for sock in &mut b.sockets[start..] {
        if section == Protocol::Udp {
            sock.protocol = Protocol::Udp;
        }
        if sock.protocol == Protocol::Udp && sock.state == State::Listen {
            sock.state = State::Close;
        }
        listeners += u64::from(sock.state == State::Listen);
    }
    if !header {
        b.fragment(
            Format::Ss,
            "rows without their header (e.g. `ss -tan | grep 5432`), recognised by their shape: only the rows given are counted",
        );
    }
    // Without -p no row has `users:(...)`; with it, every live socket has one (TIME_WAIT never).
    if owned == 0 && live > 0 {
        b.gap(Gap {
            kind: GapKind::Unattributed,
            count: Some(total),
            message:
                "the ss capture has no users:((...)) owners (ss without -p): no socket has an owner"
                    .into(),
            advice: Some("capture `ss -tanp` as root".into()),
        });
    }
    if assumed > 0 {
        b.note(
            Format::Ss,
            "no State column (`ss ... state FILTER`): rows with a peer were read as ESTABLISHED, rows without as LISTEN",
        );
        b.gap(Gap {
            kind: GapKind::Source,
            count: Some(assumed),
            message: "the ss capture has no State column (a state filter such as `state time-wait`): these sockets are in the filtered state or unknown; \
                      pools count them as in use either way, but none is taken for a TIME_WAIT that tcp_tw_reuse could give back"
                .into(),
            advice: Some("capture `ss -tanpo` without a state filter".into()),
        });
    }
    if section == Protocol::Tcp && listeners == 0 {
        b.gap(Gap {
            kind: GapKind::Invisible,
            count: None,
            message: "the ss capture shows no listening TCP socket (ss without -a, or a state filter): a listener inside the ephemeral range, which takes a port from every pool, would not be seen".into(),
            advice: Some("capture `ss -tanp` (with -a)".into()),
        });
    }
}

/// Looks like an ss row that went wrong: an ss state word up front.
fn looks_like_row(t: &str) -> bool {
    let mut f = t.split_ascii_whitespace();
    let first = f.next().unwrap_or("");
    state(first).is_some() || (matches!(first, "tcp" | "udp") && f.next().and_then(state).is_some())
}

fn row(t: &str, stateless: bool) -> Option<Row<'_>> {
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
    let st = if stateless { None } else { Some(state(f.next()?)?) };
    f.next()?.parse::<u64>().ok()?;
    f.next()?.parse::<u64>().ok()?;
    let local = endpoint(f.next()?)?;
    let remote = endpoint(f.next()?)?;
    let mut sock = Socket::new(
        netid.unwrap_or(Protocol::Tcp),
        st.unwrap_or(if remote.1 == 0 { State::Listen } else { State::Established }),
        local,
        remote,
    );
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
            // Under a state filter the timer is the one proof of TIME_WAIT.
            if st.is_none() {
                sock.state = State::TimeWait;
            }
        }
    }
    let assumed = st.is_none() && sock.state != State::TimeWait;
    Some(Row { netid, sock, pid, name, assumed })
}

/// Splits a row into what precedes `users:(`, the users list, and what follows its `))`.
fn split_users(t: &str) -> (&str, Option<&str>, &str) {
    const MARK: &str = "users:(";
    static FIND: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(MARK));
    static CLOSE: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("))"));
    let Some(i) = FIND.find(t.as_bytes()) else { return (t, None, "") };
    let rest = &t[i + MARK.len()..];
    let end = CLOSE.find(rest.as_bytes()).map_or(rest.len(), |e| e + 2);
    (&t[..i], Some(&rest[..end]), &rest[end..])
}

/// `("nginx",pid=10,fd=6),("nginx",pid=11,fd=6))`: the lowest pid and its name; a socket shared
/// by several processes goes to the lowest pid, as the live collector does. A name with spaces
/// or commas is whole between its quotes (ss prints the comm as is).
fn lowest_owner(users: &str) -> Option<(u32, &str)> {
    static OPEN: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new("(\""));
    static PID: LazyLock<memmem::Finder<'static>> =
        LazyLock::new(|| memmem::Finder::new("\",pid="));
    // The entries are what lies between the `("` marks (memmem: no searcher built per row).
    let mut starts = OPEN.find_iter(users.as_bytes()).map(|i| i + 2).peekable();
    let mut best: Option<(u32, &str)> = None;
    let mut from = 0;
    loop {
        let next = starts.next();
        let to = next.map_or(users.len(), |i| i - 2);
        let entry = &users[from..to];
        if let Some(i) = PID.find(entry.as_bytes()) {
            let rest = &entry[i + 6..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if let Ok(pid) = rest[..digits].parse::<u32>()
                && best.is_none_or(|(b, _)| pid < b)
            {
                best = Some((pid, &entry[..i]));
            }
        }
        match next {
            Some(i) => from = i,
            None => return best,
        }
    }
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
    let (addr, port) = super::text::rsplit_colon(s)?;
    let port: u16 = if port == "*" { 0 } else { super::text::number(port)? };
    let addr = match memchr::memchr(b'%', addr.as_bytes()) {
        Some(i) if !addr[i..].contains(']') => &addr[..i],
        _ => addr,
    };
    let ip = match addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.split_once('%').map_or(v6, |(a, _)| a).parse().ok()?),
        None if addr == "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        None => super::netstat::ip_addr(addr)?,
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
    use crate::import::{ImportOptions, Imported, Input, import};
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
    fn the_protocol_read_without_a_netid_column_is_said() {
        let notes = |text: &str| match import(
            &[Input { name: "ss.txt", bytes: text.as_bytes() }],
            &ImportOptions::default(),
        ) {
            Ok(Imported::Snapshot { sources, .. }) => sources[0].notes.join("; "),
            other => panic!("{other:?}"),
        };
        let header = "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n";
        let udp = notes(&format!("{header}UNCONN 0 0 0.0.0.0:68 0.0.0.0:*\n"));
        assert!(udp.contains("no Netid column: read as UDP"), "{udp}");
        let tcp = notes(&format!("{header}ESTAB 0 0 10.0.0.7:40000 10.0.0.5:443\n"));
        assert!(tcp.contains("no Netid column: read as TCP"), "{tcp}");
        let both = notes(
            "Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port\nudp UNCONN 0 0 0.0.0.0:68 0.0.0.0:*\n",
        );
        assert!(!both.contains("Netid"), "{both}");
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
    fn a_state_filter_has_no_state_column_and_the_report_says_so() {
        let text = "Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess\n\
                    0      0              [::1]:40000        [::1]:7071       \n\
                    0      0              [::1]:40008        [::1]:7071        timer:(timewait,46sec,0) ino:0 sk:1\n";
        let Imported::Snapshot { snapshot: s, sources, .. } =
            import(&[Input { name: "tw.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(s.sockets.len(), 2);
        assert_eq!(s.sockets[0].state, State::Established, "assumed in use");
        assert_eq!(s.sockets[1].state, State::TimeWait, "the timewait timer proves it");
        let gap = s.gaps.iter().find(|g| g.message.contains("no State column")).expect("gap");
        assert_eq!(gap.count, Some(1));
        assert!(gap.advice.as_deref().unwrap_or("").contains("without a state filter"));
        assert!(sources[0].notes.join("; ").contains("no State column"), "{sources:?}");
    }

    #[test]
    fn info_and_memory_lines_belong_to_the_socket_above() {
        let s = snapshot(
            "State     Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n\
             LISTEN    0      4096       127.0.0.1:7070       0.0.0.0:*    \n\
             \t bbr cwnd:10\n\
             ESTAB     0      0          127.0.0.1:7070     127.0.0.1:40000\n\
             \t skmem:(r0,rb131072,t0,tb3939840,f0,w0,o0,bl0,d0) bbr wscale:10,10 rto:204 rtt:0.015/0.007\n\
             TIME-WAIT 0      0              [::1]:40000        [::1]:7071 \n\
             \t                                     \n",
        );
        assert_eq!(s.sockets.len(), 3);
        assert_eq!(s.sockets[2].state, State::TimeWait);
    }

    #[test]
    fn a_grep_fragment_says_it_was_read_by_shape() {
        let text =
            "ESTAB 0 0 10.0.0.7:40000 10.0.0.5:5432\nESTAB 0 0 10.0.0.7:40001 10.0.0.5:5432\n";
        let Imported::Snapshot { snapshot, sources, .. } =
            import(&[Input { name: "g.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(sources[0].records, 2);
        assert!(sources[0].notes.join("; ").contains("without their header"));
        let gap = snapshot.gaps.iter().find(|g| g.message.contains("filtered fragment"));
        assert_eq!(
            gap.map(|g| (g.count, g.advice.as_deref())),
            Some((Some(2), Some("capture `ss -tanp` without the filter"))),
            "{:?}",
            snapshot.gaps
        );
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
