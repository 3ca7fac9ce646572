//! Over time: allocation failures the kernel reported, who opened each connection (so that its
//! TIME_WAIT, which no process owns, can still be attributed), and the JSON Lines that
//! `porthog record` writes and `analyze` / `watch --replay` read back. Pure data and
//! bookkeeping: the tracer and the sampler feed it, nothing here reads the system.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::{Protocol, Snapshot, State};
use crate::report::Report;

/// Version of the JSON Lines contract (`docs/record.schema.json`) that `record` writes.
/// Version 2 added `fleet_sample` lines (`record --all-netns`) and a failure's `netns`.
pub const RECORD_SCHEMA_VERSION: u32 = 2;

/// The versions a reader accepts: version 1 is version 2 without fleet samples.
pub const RECORD_SCHEMA_VERSIONS: std::ops::RangeInclusive<u32> = 1..=RECORD_SCHEMA_VERSION;

/// An allocation failure as the kernel returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Errno {
    /// connect() found no free port for its destination (-99).
    #[serde(rename = "EADDRNOTAVAIL")]
    AddrNotAvail,
    /// bind() found no free port, or the port asked for is taken (-98).
    #[serde(rename = "EADDRINUSE")]
    AddrInUse,
    /// UDP autobind found no free port (-11).
    #[serde(rename = "EAGAIN")]
    Again,
}

impl Errno {
    /// The errnos of port exhaustion: the only failures porthog traces (the tracer's kernel
    /// filter is made from this list).
    pub const ALL: [Errno; 3] = [Errno::AddrNotAvail, Errno::AddrInUse, Errno::Again];

    /// The Linux errno number (`include/uapi/asm-generic/errno*.h`).
    pub fn number(self) -> i64 {
        match self {
            Errno::AddrNotAvail => 99,
            Errno::AddrInUse => 98,
            Errno::Again => 11,
        }
    }

    /// From a syscall's negative return value; None for every other return.
    pub fn from_ret(ret: i64) -> Option<Errno> {
        Errno::ALL.into_iter().find(|e| -e.number() == ret)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Errno::AddrNotAvail => "EADDRNOTAVAIL",
            Errno::AddrInUse => "EADDRINUSE",
            Errno::Again => "EAGAIN",
        }
    }

    /// What the failure means for the caller, in one line.
    pub fn meaning(self) -> &'static str {
        match self {
            Errno::AddrNotAvail => {
                "connect() found no free source port for this destination (Cannot assign requested address)"
            }
            Errno::AddrInUse => "bind() found no free port (Address already in use)",
            Errno::Again => "no free UDP port to autobind (Resource temporarily unavailable)",
        }
    }
}

/// What a failed call says about the ports (DOMAIN.md 1: only the allocation of an ephemeral
/// port is evidence of exhaustion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// No ephemeral port was left: connect() EADDRNOTAVAIL, bind(port 0) EADDRINUSE, UDP
    /// autobind EAGAIN. Only this kind raises a verdict.
    Exhaustion,
    /// bind() EADDRNOTAVAIL: the address asked for is not local. Not a port problem.
    NotLocalAddress,
    /// bind() to a fixed port EADDRINUSE: that one port is taken. Not exhaustion.
    PortTaken,
    /// bind() EADDRINUSE whose requested port could not be read (the process exited, or its
    /// memory was not readable): exhaustion or a taken port.
    Unknown,
}

impl FailureClass {
    fn exhaustion() -> FailureClass {
        FailureClass::Exhaustion
    }

    /// Classifies a failed call. `bind_port` is the port bind() asked for (0: any), `None`
    /// when it could not be read; it does not matter for connect().
    pub fn of(call: &str, errno: Errno, bind_port: Option<u16>) -> FailureClass {
        match (call, errno, bind_port) {
            ("bind", Errno::AddrNotAvail, _) => FailureClass::NotLocalAddress,
            ("bind", Errno::AddrInUse, Some(0)) => FailureClass::Exhaustion,
            ("bind", Errno::AddrInUse, Some(_)) => FailureClass::PortTaken,
            ("bind", Errno::AddrInUse, None) => FailureClass::Unknown,
            _ => FailureClass::Exhaustion,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Exhaustion => "exhaustion",
            FailureClass::NotLocalAddress => "not_local_address",
            FailureClass::PortTaken => "port_taken",
            FailureClass::Unknown => "unknown",
        }
    }

    /// What it means, in one line, for a failure of `call` with `errno`.
    pub fn meaning(self, call: &str, errno: Errno) -> &'static str {
        match (self, call) {
            (FailureClass::Exhaustion, "bind") => {
                "bind(port 0) found no free port (Address already in use)"
            }
            (FailureClass::Exhaustion, _) => errno.meaning(),
            (FailureClass::NotLocalAddress, _) => {
                "bind() to an address that is not local (not a port problem)"
            }
            (FailureClass::PortTaken, _) => "bind() to a fixed port that is taken (not exhaustion)",
            (FailureClass::Unknown, _) => {
                "bind() found its port in use; the port it asked for could not be read, so exhaustion or a taken fixed port"
            }
        }
    }
}

/// One failed allocation: who, where to, and how it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Wall-clock time, RFC 3339 with milliseconds, UTC.
    pub time: String,
    pub pid: u32,
    pub name: String,
    pub container: Option<String>,
    pub protocol: Protocol,
    /// The destination the call tried to reach, when the call had one.
    pub remote: Option<SocketAddr>,
    pub errno: Errno,
    /// "connect", "bind" or "sendto".
    pub call: String,
    /// Exhaustion, or a failure that is not about the pool (recordings made before issue 7
    /// have no class: all their failures were counted as exhaustion).
    #[serde(default = "FailureClass::exhaustion")]
    pub class: FailureClass,
    /// The inode of the failing thread's network namespace (`net:[INODE]`), read when the
    /// event was handled; None where it was not (recordings before version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<u64>,
}

/// Failures seen in one interval of `watch` / `record`, or in a whole recording: exhaustion
/// failures make the verdict at least critical, naming the failing processes and
/// destinations, as a logged Windows 4231 does (issue 7). The others are only counted.
pub fn raise_for_failures<'a>(
    report: &mut Report,
    failures: impl IntoIterator<Item = &'a Failure>,
    during: &str,
) {
    let mut by_who: std::collections::BTreeMap<(String, u32, String), u64> = Default::default();
    let mut total = 0u64;
    for f in failures.into_iter().filter(|f| f.class == FailureClass::Exhaustion) {
        total += 1;
        let to =
            f.remote.map_or_else(|| format!("{}()", f.call), |r| format!("{}() to {r}", f.call));
        *by_who.entry((f.name.clone(), f.pid, to)).or_default() += 1;
    }
    if total == 0 {
        return;
    }
    let mut named: Vec<((String, u32, String), u64)> = by_who.into_iter().collect();
    named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<String> = named
        .iter()
        .take(3)
        .map(|((name, pid, to), n)| {
            format!("{name} (pid {pid}) {to} ×{}", crate::report::grouped(*n))
        })
        .collect();
    let more =
        if named.len() > 3 { format!(" and {} more", named.len() - 3) } else { String::new() };
    let why = format!(
        "the kernel refused {} for lack of a port {during}: {}{more}",
        crate::report::plural(total, "allocation"),
        shown.join(", ")
    );
    report.raise(crate::level::Level::Critical, &why);
}

/// A process and how many of something it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerCount {
    pub pid: u32,
    pub name: String,
    pub count: u64,
}

/// A connection's identity: what sock_diag shows for its TIME_WAIT socket too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FourTuple {
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The owner book and the sampler hash every connection of every sample: an IPv4 address and
/// its port as one word, where the derived hash writes the enum tag, the octets' length, the
/// octets and the port apart. Equal tuples write equal words, so `Eq` still agrees.
impl std::hash::Hash for FourTuple {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        fn write<H: std::hash::Hasher>(a: &SocketAddr, state: &mut H) {
            match a {
                SocketAddr::V4(v4) => {
                    state.write_u64(u64::from(v4.ip().to_bits()) << 16 | u64::from(v4.port()))
                }
                SocketAddr::V6(v6) => {
                    state.write_u128(v6.ip().to_bits());
                    state.write_u32(u32::from(v6.port()) | 1 << 16);
                }
            }
        }
        state.write_u8(self.protocol as u8);
        write(&self.local, state);
        write(&self.remote, state);
    }
}

impl FourTuple {
    pub fn of(s: &crate::model::Socket) -> FourTuple {
        FourTuple {
            protocol: s.protocol,
            local: SocketAddr::new(s.local_ip, s.local_port),
            remote: SocketAddr::new(s.remote_ip, s.remote_port),
        }
    }
}

/// Who opened a connection, remembered after the process exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opener {
    pub pid: u32,
    pub name: String,
    /// Seconds (monotonic, the caller's clock) when it was last seen alive or opened.
    pub seen: f64,
}

/// Remembers the opener of every connection seen, for as long as its TIME_WAIT can last, so a
/// TIME_WAIT socket can be attributed after its process closed it or exited. Memory is bounded:
/// entries expire `ttl` seconds after they were last seen (TIME_WAIT is 60 s on Linux; a
/// connection still open is refreshed by every sample or event that shows it).
#[derive(Debug, Clone)]
pub struct OwnerBook {
    ttl: f64,
    by_tuple: HashMap<FourTuple, Known>,
    by_cookie: HashMap<u64, FourTuple>,
}

/// A connection of the book: its opener, and the cookie last remembered with it while
/// `by_cookie` still points that cookie at this tuple (0: none), so that a connection seen
/// again, sample after sample, costs one lookup rather than two.
#[derive(Debug, Clone)]
struct Known {
    opener: Opener,
    cookie: u64,
}

impl OwnerBook {
    /// `ttl`: how long to keep an entry after it was last seen, in seconds.
    pub fn new(ttl: f64) -> OwnerBook {
        OwnerBook { ttl, by_tuple: HashMap::default(), by_cookie: HashMap::default() }
    }

    /// Records that `pid` (`name`) holds the connection `tuple` at time `now`.
    pub fn remember(&mut self, tuple: FourTuple, cookie: u64, pid: u32, name: &str, now: f64) {
        let e = self.by_tuple.entry(tuple).or_insert_with(|| Known {
            opener: Opener { pid, name: name.to_owned(), seen: now },
            cookie: 0,
        });
        if e.opener.pid != pid {
            e.opener = Opener { pid, name: name.to_owned(), seen: now };
        }
        e.opener.seen = now;
        // Already `by_cookie[cookie] == tuple`: nothing to write.
        if cookie == 0 || e.cookie == cookie {
            return;
        }
        e.cookie = cookie;
        let previous = self.by_cookie.insert(cookie, tuple);
        // The cookie moved from another tuple: that one no longer holds it.
        if let Some(old) = previous.filter(|old| *old != tuple)
            && let Some(k) = self.by_tuple.get_mut(&old).filter(|k| k.cookie == cookie)
        {
            k.cookie = 0;
        }
    }

    /// Learns from a sample: every owned, connected TCP socket refreshes its opener.
    pub fn learn(&mut self, snapshot: &Snapshot, now: f64) {
        for s in snapshot.sockets.iter().filter(|s| s.protocol == Protocol::Tcp && s.is_connected())
        {
            if let Some(pid) = s.pid {
                let name = snapshot.process(pid.get()).map_or("?", |p| p.name.as_str());
                self.remember(FourTuple::of(s), s.cookie, pid.get(), name, now);
            } else if s.state == State::TimeWait {
                // Still in TIME_WAIT: keep the opener alive until the socket is gone.
                if let Some(e) = self.by_tuple.get_mut(&FourTuple::of(s)) {
                    e.opener.seen = now;
                }
            }
        }
    }

    /// The opener of a connection, by cookie first (exact), else by 4-tuple.
    pub fn opener(&self, tuple: &FourTuple, cookie: u64) -> Option<&Opener> {
        let t = if cookie != 0 { self.by_cookie.get(&cookie).unwrap_or(tuple) } else { tuple };
        self.by_tuple.get(t).or_else(|| self.by_tuple.get(tuple)).map(|k| &k.opener)
    }

    /// Drops entries not seen for `ttl` seconds. Call once per sample or every few seconds.
    pub fn expire(&mut self, now: f64) {
        let ttl = self.ttl;
        // Every cookie points at a tuple of `by_tuple` (they are added together), so the
        // cookies to drop are those of the tuples dropped now: looked up in that small set
        // rather than in the whole book.
        let mut dropped: HashSet<FourTuple> = HashSet::default();
        self.by_tuple.retain(|t, e| {
            let keep = now - e.opener.seen <= ttl;
            if !keep {
                dropped.insert(*t);
            }
            keep
        });
        if !dropped.is_empty() {
            self.by_cookie.retain(|_, t| !dropped.contains(t));
        }
    }

    pub fn len(&self) -> usize {
        self.by_tuple.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tuple.is_empty()
    }

    /// Attributes the snapshot's ownerless TIME_WAIT sockets: sets their `pid` and adds the
    /// openers that exited to `processes`. Returns TIME_WAIT counts per opener, most first.
    pub fn attribute_time_wait(&self, snapshot: &mut Snapshot) -> Vec<OwnerCount> {
        let mut counts: HashMap<(u32, String), u64> = HashMap::default();
        for s in
            snapshot.sockets.iter_mut().filter(|s| s.state == State::TimeWait && s.pid.is_none())
        {
            if let Some(o) = self.opener(&FourTuple::of(s), s.cookie) {
                s.pid = std::num::NonZeroU32::new(o.pid);
                *counts.entry((o.pid, o.name.clone())).or_default() += 1;
            }
        }
        for (pid, name) in counts.keys() {
            if snapshot.process(*pid).is_none() {
                let at = snapshot.processes.partition_point(|p| p.pid < *pid);
                snapshot.processes.insert(
                    at,
                    crate::model::Process {
                        pid: *pid,
                        name: name.clone(),
                        cmdline: "(exited)".to_owned(),
                        ..Default::default()
                    },
                );
            }
        }
        let mut out: Vec<OwnerCount> = counts
            .into_iter()
            .map(|((pid, name), count)| OwnerCount { pid, name, count })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
        out
    }
}

/// One line of a `porthog record` file (JSON Lines), told apart by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordLine {
    /// First line: what was recorded, where.
    Header {
        schema_version: u32,
        porthog: String,
        netns: Option<String>,
        /// Every network namespace (`--all-netns`): samples are `fleet_sample` lines.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        all_netns: bool,
        started: String,
        interval_ms: u64,
    },
    /// A sample: the full check report at that time, and the connections that appeared since the
    /// previous sample with their openers (so a reader can attribute TIME_WAIT later).
    Sample {
        time: String,
        report: Box<Report>,
        opened: Vec<OpenedConnection>,
        time_wait_owners: Vec<OwnerCount>,
    },
    /// An allocation failure caught by the kernel tracer.
    Failure(Failure),
    /// Events the kernel dropped (ring buffer overrun) since the previous such line.
    Lost { time: String, count: u64 },
    /// `record --all-netns` (version 2): one sample of every network namespace, worst first.
    FleetSample {
        time: String,
        namespaces: Vec<NamespaceSample>,
        /// Namespaces found but not read (vanished mid-scan, or reading failed).
        #[serde(default)]
        gaps: Vec<crate::model::Gap>,
    },
}

/// One namespace of a `fleet_sample` line: its labels (as in `check --all-netns`) and what a
/// single-namespace `sample` line carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceSample {
    pub inode: u64,
    pub name: Option<String>,
    pub container: Option<String>,
    pub pids: Vec<u32>,
    pub report: Box<Report>,
    pub opened: Vec<OpenedConnection>,
    pub time_wait_owners: Vec<OwnerCount>,
}

impl NamespaceSample {
    /// The namespace's report with its labels, and what the sample adds to it: the
    /// connections it saw opened and the TIME_WAIT owners.
    pub fn split(self) -> (crate::fleet::NamespaceReport, Vec<OpenedConnection>, Vec<OwnerCount>) {
        let report = crate::fleet::NamespaceReport {
            inode: self.inode,
            name: self.name,
            container: self.container,
            pids: self.pids,
            report: *self.report,
        };
        (report, self.opened, self.time_wait_owners)
    }
}

/// A connection first seen in a sample or event, with its opener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedConnection {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub pid: u32,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use std::net::IpAddr;

    use super::*;
    use crate::model::{Os, Process, Socket};

    fn sock(state: State, lport: u16, pid: u32) -> Socket {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        Socket {
            pid: NonZeroU32::new(pid),
            cookie: u64::from(lport),
            ..Socket::new(Protocol::Tcp, state, (ip, lport), (ip, 7070))
        }
    }

    #[test]
    fn time_wait_keeps_the_owner_it_had_while_established() {
        let mut book = OwnerBook::new(65.0);
        let mut t0 = Snapshot::new(Os::Linux, "t0");
        t0.sockets = (40000..40010).map(|p| sock(State::Established, p, 42)).collect();
        t0.processes = vec![Process { pid: 42, name: "client".into(), ..Default::default() }];
        book.learn(&t0, 0.0);

        // Later the client has closed and exited: its sockets are TIME_WAIT with no owner.
        let mut t1 = Snapshot::new(Os::Linux, "t1");
        t1.sockets = (40000..40010).map(|p| sock(State::TimeWait, p, 0)).collect();
        t1.sockets.push(sock(State::TimeWait, 40099, 0)); // never seen open: stays unknown
        book.learn(&t1, 30.0);
        let owners = book.attribute_time_wait(&mut t1);
        assert_eq!(owners, vec![OwnerCount { pid: 42, name: "client".into(), count: 10 }]);
        assert_eq!(t1.sockets.iter().filter(|s| s.pid.is_some()).count(), 10);
        assert_eq!(t1.process(42).map(|p| p.cmdline.as_str()), Some("(exited)"));
    }

    #[test]
    fn memory_is_bounded_by_expiry() {
        let mut book = OwnerBook::new(65.0);
        let tuple = |p: u16| FourTuple {
            protocol: Protocol::Tcp,
            local: SocketAddr::new("10.0.0.1".parse().unwrap(), p),
            remote: "10.0.0.2:80".parse().unwrap(),
        };
        for i in 0..1000u16 {
            book.remember(tuple(i), u64::from(i) + 1, 7, "x", f64::from(i));
        }
        book.expire(1000.0);
        // Only entries seen in the last 65 s survive: 935..=999.
        assert_eq!(book.len(), 65);
        assert!(book.opener(&tuple(10), 11).is_none());
        assert_eq!(book.opener(&tuple(999), 1000).map(|o| o.pid), Some(7));
        // The cookies of the dropped tuples went with them, and only those.
        assert_eq!(book.by_cookie.len(), 65);
        // A cookie that moved to another tuple points at the new one; when the old tuple
        // expires, the moved cookie stays.
        book.remember(tuple(2000), 1000, 8, "y", 1000.0);
        book.expire(1064.5);
        assert_eq!(book.by_cookie.get(&1000), Some(&tuple(2000)));
        assert_eq!(book.opener(&tuple(2000), 1000).map(|o| o.pid), Some(8));
        assert_eq!((book.len(), book.by_cookie.len()), (1, 1));

        // A cookie moved to another tuple and back points at the first again.
        book.remember(tuple(3000), 1000, 9, "z", 1065.0);
        assert_eq!(book.by_cookie.get(&1000), Some(&tuple(3000)));
        book.remember(tuple(2000), 1000, 8, "y", 1066.0);
        assert_eq!(book.by_cookie.get(&1000), Some(&tuple(2000)));
        assert_eq!(book.opener(&tuple(3000), 1000).map(|o| o.pid), Some(8));
        book.remember(tuple(3000), 1000, 9, "z", 1067.0);
        assert_eq!(book.opener(&tuple(2000), 1000).map(|o| o.pid), Some(9));
    }

    #[test]
    fn equal_tuples_hash_alike_and_families_apart() {
        use std::hash::BuildHasher;
        let h = |t: &FourTuple| rustc_hash::FxBuildHasher.hash_one(t);
        let of = |l: &str, r: &str| FourTuple {
            protocol: Protocol::Tcp,
            local: l.parse().unwrap(),
            remote: r.parse().unwrap(),
        };
        let a = of("10.0.0.1:40000", "10.0.0.2:80");
        assert_eq!(h(&a), h(&of("10.0.0.1:40000", "10.0.0.2:80")));
        let distinct = [
            a,
            of("10.0.0.1:40001", "10.0.0.2:80"),
            of("10.0.0.2:80", "10.0.0.1:40000"),
            of("[::ffff:10.0.0.1]:40000", "[::ffff:10.0.0.2]:80"),
            of("[::1]:40000", "[::1]:80"),
            FourTuple { protocol: Protocol::Udp, ..a },
        ];
        let mut hashes: Vec<u64> = distinct.iter().map(h).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), distinct.len());
    }

    #[test]
    fn errno_from_syscall_returns() {
        assert_eq!(Errno::from_ret(-99), Some(Errno::AddrNotAvail));
        assert_eq!(Errno::from_ret(-98), Some(Errno::AddrInUse));
        assert_eq!(Errno::from_ret(-11), Some(Errno::Again));
        assert_eq!(Errno::from_ret(-1), None);
        assert_eq!(serde_json::to_string(&Errno::AddrNotAvail).unwrap(), "\"EADDRNOTAVAIL\"");
    }

    #[test]
    fn record_lines_are_tagged() {
        let line = RecordLine::Lost { time: "2026-11-24T02:00:00.000Z".into(), count: 3 };
        let json = serde_json::to_string(&line).unwrap();
        assert_eq!(json, r#"{"type":"lost","time":"2026-11-24T02:00:00.000Z","count":3}"#);
        assert_eq!(serde_json::from_str::<RecordLine>(&json).unwrap(), line);
    }
}
