//! Over time: allocation failures the kernel reported, who opened each connection (so that its
//! TIME_WAIT, which no process owns, can still be attributed), and the JSON Lines that
//! `porthog record` writes and `analyze` / `watch --replay` read back. Pure data and
//! bookkeeping: the tracer and the sampler feed it, nothing here reads the system.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::Protocol;
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

pub use crate::owner_book::{Opener, OwnerBook};

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
    use super::*;

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
