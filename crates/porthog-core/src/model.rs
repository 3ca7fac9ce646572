//! The snapshot every source produces and every analysis reads: sockets, their owners, the
//! port settings of one network namespace (or one Windows machine), and what could not be seen.
//! Plain data only: no collection, no I/O, no per-OS fields (what an OS cannot show is `None`,
//! and the reason is a [`Gap`]).

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use crate::ports::{PortRange, PortSet};

/// Transport protocol of a socket or a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TCP states as the Linux kernel numbers them (`include/net/tcp_states.h`): the one table
/// for sock_diag, /proc/net and the tracepoints (their filters and records).
pub mod linux_tcp {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;
    pub const BOUND_INACTIVE: u8 = 13;
}

/// Socket state, with the names of the JSON contract. UDP sockets are `Close` (unconnected)
/// or `Established` (connected), as the Linux kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Established,
    SynSent,
    SynRecv,
    #[serde(rename = "FIN_WAIT1")]
    FinWait1,
    #[serde(rename = "FIN_WAIT2")]
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// Bound to a port but neither listening nor connected (Linux `BOUND_INACTIVE`, Windows
    /// `BOUND`).
    Bound,
}

// `State as usize` indexes per-state counters: the declaration order is `State::ALL`'s.
const _: () = assert!(State::Bound as usize == State::ALL.len() - 1);

impl State {
    pub const ALL: [State; 12] = [
        State::Established,
        State::SynSent,
        State::SynRecv,
        State::FinWait1,
        State::FinWait2,
        State::TimeWait,
        State::Close,
        State::CloseWait,
        State::LastAck,
        State::Listen,
        State::Closing,
        State::Bound,
    ];

    /// The kernel's numbering (`linux_tcp`): NEW_SYN_RECV (a request socket) reads as
    /// SYN_RECV, BOUND_INACTIVE (6.10+) as BOUND.
    pub fn from_linux(code: u8) -> Option<State> {
        use linux_tcp::*;
        Some(match code {
            ESTABLISHED => State::Established,
            SYN_SENT => State::SynSent,
            SYN_RECV | NEW_SYN_RECV => State::SynRecv,
            FIN_WAIT1 => State::FinWait1,
            FIN_WAIT2 => State::FinWait2,
            TIME_WAIT => State::TimeWait,
            CLOSE => State::Close,
            CLOSE_WAIT => State::CloseWait,
            LAST_ACK => State::LastAck,
            LISTEN => State::Listen,
            CLOSING => State::Closing,
            BOUND_INACTIVE => State::Bound,
            _ => return None,
        })
    }

    /// The name used in the JSON contract and in the text report.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Established => "ESTABLISHED",
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::FinWait1 => "FIN_WAIT1",
            State::FinWait2 => "FIN_WAIT2",
            State::TimeWait => "TIME_WAIT",
            State::Close => "CLOSE",
            State::CloseWait => "CLOSE_WAIT",
            State::LastAck => "LAST_ACK",
            State::Listen => "LISTEN",
            State::Closing => "CLOSING",
            State::Bound => "BOUND",
        }
    }

    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Listening or bound sockets own their port through bind(): the kernel's connect() skips
    /// such ports for every destination (`__inet_hash_connect`, docs/DOMAIN.md §1.2).
    pub fn is_bind_type(self) -> bool {
        matches!(self, State::Listen | State::Bound)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a port's bind bucket came from (`inet_bind_bucket.fastreuse`): `bind()` or a listener
/// (>= 0), or `connect()` itself (-1). Only connect-made buckets can be shared by another
/// connect() (`__inet_hash_connect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketOrigin {
    Bind,
    Connect,
}

/// What the kernel holds about a socket that sock_diag does not show, read where a source can
/// (a BPF socket iterator, issue 7). Each fact is `None` when the source could not see it; the
/// analysis then follows the documented assumption and says so. Two bits a fact: known, value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelFacts(u16);

impl KernelFacts {
    const BUCKET: u16 = 0;
    const TW_TIMESTAMPS: u16 = 2;
    const LOOPBACK_DEV: u16 = 4;
    const V6ONLY: u16 = 6;
    const FAMILY_V6: u16 = 8;
    const BOUND_DEV: u16 = 10;

    fn get(self, at: u16) -> Option<bool> {
        (self.0 & (1 << at) != 0).then_some(self.0 & (1 << (at + 1)) != 0)
    }

    fn with(mut self, at: u16, value: bool) -> KernelFacts {
        self.0 &= !(0b11 << at);
        self.0 |= (1 << at) | (u16::from(value) << (at + 1));
        self
    }

    /// Which call created the port's bind bucket.
    pub fn bucket(self) -> Option<BucketOrigin> {
        self.get(Self::BUCKET)
            .map(|bind| if bind { BucketOrigin::Bind } else { BucketOrigin::Connect })
    }
    pub fn with_bucket(self, origin: BucketOrigin) -> KernelFacts {
        self.with(Self::BUCKET, origin == BucketOrigin::Bind)
    }
    /// A TIME_WAIT socket recorded TCP timestamps from its peer (`tw_ts_recent_stamp != 0`),
    /// which `tcp_twsk_unique` needs before tw_reuse may take the port.
    pub fn tw_timestamps(self) -> Option<bool> {
        self.get(Self::TW_TIMESTAMPS)
    }
    pub fn with_tw_timestamps(self, recorded: bool) -> KernelFacts {
        self.with(Self::TW_TIMESTAMPS, recorded)
    }
    /// Bound to the loopback device (`skc_bound_dev_if` / `tw_bound_dev_if` is lo's ifindex).
    pub fn loopback_dev(self) -> Option<bool> {
        self.get(Self::LOOPBACK_DEV)
    }
    pub fn with_loopback_dev(self, bound: bool) -> KernelFacts {
        self.with(Self::LOOPBACK_DEV, bound)
    }
    /// Bound to a network device (SO_BINDTODEVICE, or an IPv6 link-local scope):
    /// `skc_bound_dev_if != 0`, which sock_diag shows as `idiag_if` for every socket.
    pub fn bound_dev(self) -> Option<bool> {
        self.get(Self::BOUND_DEV)
    }
    pub fn with_bound_dev(self, bound: bool) -> KernelFacts {
        self.with(Self::BOUND_DEV, bound)
    }
    /// An AF_INET6 socket with `IPV6_V6ONLY` set.
    pub fn v6only(self) -> Option<bool> {
        self.get(Self::V6ONLY)
    }
    pub fn with_v6only(self, v6only: bool) -> KernelFacts {
        self.with(Self::V6ONLY, v6only)
    }
    /// The socket's family is AF_INET6 (its addresses may still be v4-mapped, which
    /// [`Socket::new`] turns into IPv4).
    pub fn family_v6(self) -> Option<bool> {
        self.get(Self::FAMILY_V6)
    }
    pub fn with_family_v6(self, v6: bool) -> KernelFacts {
        self.with(Self::FAMILY_V6, v6)
    }
}

/// One TCP or UDP socket. Kept at 72 bytes: a live snapshot holds hundreds of thousands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    /// Kernel socket cookie (Linux sock_diag); 0 when the source has none.
    pub cookie: u64,
    /// Socket inode; 0 for TIME_WAIT and orphaned sockets, which no process owns.
    pub inode: u32,
    /// Owning user id as the kernel reports it; [`Socket::UID_UNKNOWN`] when the source has none.
    pub uid: u32,
    /// Remaining timer in milliseconds (for TIME_WAIT: time left before the port is free);
    /// 0 when none runs or the source does not say.
    pub timer_ms: u32,
    /// Owning process, when attributed.
    pub pid: Option<NonZeroU32>,
    pub local_ip: IpAddr,
    pub remote_ip: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    pub protocol: Protocol,
    pub state: State,
    /// Kernel state beyond sock_diag, where the source could read it.
    pub facts: KernelFacts,
}

impl Socket {
    /// `uid` of a socket whose source gives no user ((uid_t)-1 is never a real user).
    pub const UID_UNKNOWN: u32 = u32::MAX;

    /// A socket with no owner, timer, uid or cookie yet.
    pub fn new(
        protocol: Protocol,
        state: State,
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
    ) -> Socket {
        Socket {
            cookie: 0,
            inode: 0,
            uid: Socket::UID_UNKNOWN,
            timer_ms: 0,
            pid: None,
            local_ip: local.0.to_canonical(),
            remote_ip: remote.0.to_canonical(),
            local_port: local.1,
            remote_port: remote.1,
            protocol,
            state,
            facts: KernelFacts::default(),
        }
    }

    /// Connected to a peer (a remote port is set), as opposed to listening or merely bound.
    pub fn is_connected(&self) -> bool {
        self.remote_port != 0 && !self.state.is_bind_type()
    }

    /// Either end is loopback: what `tcp_tw_reuse=2` requires (`tcp_twsk_unique`).
    pub fn is_loopback(&self) -> bool {
        self.local_ip.is_loopback() || self.remote_ip.is_loopback()
    }
}

/// The operating system whose allocation rules apply (docs/DOMAIN.md §1 and §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Windows,
}

/// `net.ipv4.tcp_tw_reuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TwReuse {
    Off,
    On,
    /// Mode 2, the default: only connections where either end is loopback.
    Loopback,
}

/// Port allocation settings of one namespace (Linux) or machine (Windows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Ephemeral range for TCP (Linux: `ip_local_port_range`, which governs UDP too).
    pub tcp_range: Option<PortRange>,
    /// Ephemeral range for UDP.
    pub udp_range: Option<PortRange>,
    /// Ports never handed out automatically (Linux `ip_local_reserved_ports`, Windows
    /// excluded port ranges for TCP).
    pub tcp_reserved: Option<PortSet>,
    pub udp_reserved: Option<PortSet>,
    pub tw_reuse: Option<TwReuse>,
    pub timestamps: Option<bool>,
    /// `net.ipv4.tcp_tw_reuse_delay` (ms, Linux 6.x; 1000 when absent).
    pub tw_reuse_delay_ms: Option<u32>,
}

/// A running process that owns at least one socket of the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// Short name (Linux `comm`, Windows image name).
    pub name: String,
    /// Command line, arguments joined by spaces; empty when unknown.
    pub cmdline: String,
    pub uid: Option<u32>,
    pub user: Option<String>,
    /// Where it runs, from its cgroup.
    pub placement: Placement,
}

/// Container, systemd unit and Kubernetes pod of a process, from its cgroup path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub container: Option<String>,
    pub unit: Option<String>,
    pub pod: Option<String>,
}

impl Placement {
    /// The most specific of container, pod and unit, for one-column display.
    pub fn label(&self) -> Option<String> {
        match (&self.container, &self.pod, &self.unit) {
            (Some(c), Some(p), _) => Some(format!("pod {p} / {}", short_container_id(c))),
            (Some(c), None, _) => Some(format!("container {}", short_container_id(c))),
            (None, Some(p), _) => Some(format!("pod {p}")),
            (None, None, Some(u)) => Some(u.clone()),
            (None, None, None) => None,
        }
    }
}

/// A container id as `docker ps` shows it: the first 12 hex digits of a long hex id; other
/// ids (names, short ids) as they are.
pub fn short_container_id(id: &str) -> &str {
    if id.len() > 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) { &id[..12] } else { id }
}

/// What kind of thing a [`Gap`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapKind {
    /// Sockets whose owning process could not be determined.
    Unattributed,
    /// Processes that exited while they were being scanned.
    ProcessGone,
    /// A setting could not be read and a default was assumed.
    Setting,
    /// The socket source was a fallback, or showed less than it could.
    Source,
    /// The socket list itself may be short (a dump that kept changing, rows skipped with
    /// --lenient): an `ok` verdict from it cannot be trusted, so porthog exits 3.
    Incomplete,
    /// A kind of socket the source cannot show.
    Invisible,
}

/// Something the snapshot could not see, with why and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub kind: GapKind,
    /// How many sockets or processes it concerns, where countable.
    pub count: Option<u64>,
    /// What could not be seen and why, e.g. "permission denied reading /proc/PID/fd".
    pub message: String,
    /// What to do about it, e.g. "run as root".
    pub advice: Option<String>,
}

/// Everything one source saw at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub os: Os,
    /// Where the sockets came from, e.g. "sock_diag", "/proc/net", "netstat -ano".
    pub source: String,
    /// The network namespace inspected, when not the caller's own.
    pub netns: Option<String>,
    pub settings: Settings,
    pub sockets: Vec<Socket>,
    /// Owners of the sockets' `pid`s, sorted by pid.
    pub processes: Vec<Process>,
    pub gaps: Vec<Gap>,
    /// The conntrack table, its statistics and NAT rules, when the source read them (live
    /// Linux): SNAT pools come from it. Shared: `--all-netns` keeps a namespace's table between
    /// collections, and a copy per snapshot would double the peak memory of a NAT namespace's
    /// 100k entries (~14 MB).
    pub conntrack: Option<std::sync::Arc<crate::snat::Conntrack>>,
}

impl Snapshot {
    pub fn new(os: Os, source: impl Into<String>) -> Snapshot {
        Snapshot {
            os,
            source: source.into(),
            netns: None,
            settings: Settings::default(),
            sockets: Vec::new(),
            processes: Vec::new(),
            gaps: Vec::new(),
            conntrack: None,
        }
    }

    /// The process with this pid, if the source knows it.
    pub fn process(&self, pid: u32) -> Option<&Process> {
        self.processes.binary_search_by_key(&pid, |p| p.pid).ok().map(|i| &self.processes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_stays_small() {
        assert!(std::mem::size_of::<Socket>() <= 72, "{}", std::mem::size_of::<Socket>());
    }

    #[test]
    fn kernel_facts_are_unknown_until_set() {
        let f = KernelFacts::default();
        assert_eq!((f.bucket(), f.tw_timestamps(), f.loopback_dev()), (None, None, None));
        let f = f.with_bucket(BucketOrigin::Bind).with_tw_timestamps(false).with_v6only(true);
        assert_eq!(f.bucket(), Some(BucketOrigin::Bind));
        assert_eq!(f.tw_timestamps(), Some(false));
        assert_eq!(f.v6only(), Some(true));
        assert_eq!(f.family_v6(), None);
        let f = f.with_bucket(BucketOrigin::Connect);
        assert_eq!(f.bucket(), Some(BucketOrigin::Connect));
        assert_eq!(f.v6only(), Some(true));
    }

    #[test]
    fn state_names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::from_name(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn linux_state_codes() {
        assert_eq!(State::from_linux(6), Some(State::TimeWait));
        assert_eq!(State::from_linux(12), Some(State::SynRecv));
        assert_eq!(State::from_linux(13), Some(State::Bound));
        assert_eq!(State::from_linux(0), None);
        assert_eq!(State::from_linux(14), None);
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        let s = Socket::new(
            Protocol::Tcp,
            State::Established,
            ("::ffff:127.0.0.1".parse().unwrap(), 40000),
            ("::ffff:10.0.0.5".parse().unwrap(), 5432),
        );
        assert_eq!(s.local_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(s.is_loopback());
    }
}
