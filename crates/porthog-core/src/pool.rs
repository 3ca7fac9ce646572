//! The port pools the kernel allocates from, and how full each one is (DOMAIN.md 1 and 2).
//! Linux: one connect() pool per (local IP, remote IP, remote port), one global bind() pool and
//! one UDP pool per namespace. Windows: one global pool per protocol. Linear in the sockets:
//! one pass to mark ports, one sort of compact (pool, port) entries to count distinct ports.

use rustc_hash::FxHashMap as HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::level::{Level, Thresholds, percent};
use crate::model::{Os, Protocol, Settings, Snapshot, Socket, State, TwReuse};
use crate::ports::{PortRange, PortSet};

/// Linux keeps TIME_WAIT for a fixed 60 s (`TCP_TIMEWAIT_LEN`); `tcp_fin_timeout` does not change it.
pub const LINUX_TIME_WAIT_MS: u32 = 60_000;
/// Default `tcp_tw_reuse_delay` (and the fixed delay before it became a sysctl in 6.x).
pub const LINUX_TW_REUSE_DELAY_MS: u32 = 1_000;

/// Which allocator a pool models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// Linux connect() without bind(): ports per destination (`__inet_hash_connect`).
    Connect,
    /// Linux bind(port 0): ports not held by any TCP socket (`inet_csk_find_open_port`).
    Bind,
    /// Linux UDP autobind: ports not held by any UDP socket (`udp_lib_get_port`).
    Udp,
    /// Windows: the machine-wide dynamic port pool of one protocol.
    Global,
}

/// A process's share of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolOwner {
    pub pid: u32,
    pub ports: u32,
}

/// One pool and how full it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub kind: PoolKind,
    pub protocol: Protocol,
    /// Local address of a connect() pool; `None` for global pools.
    pub local: Option<IpAddr>,
    /// Destination of a connect() pool, e.g. "127.0.0.1:7070" or "[::1]:7070".
    pub remote: Option<SocketAddr>,
    /// Ports of the pool in use, TIME_WAIT included.
    pub used: u32,
    /// Ports the allocator can hand out at all.
    pub capacity: u32,
    /// Used ports held only by TIME_WAIT sockets.
    pub time_wait: u32,
    /// TIME_WAIT ports `tcp_tw_reuse` lets connect() take again for this pool.
    pub time_wait_reusable: u32,
    /// Ports that count against the pool: `used - time_wait_reusable`.
    pub effective: u32,
    /// `effective` as a percentage of `capacity`.
    pub percent: f64,
    pub level: Level,
    /// The bind() pool is fuller than its level says: capped at warn because nothing seen
    /// allocates ports with bind(port 0) now (see the `latent_bind_pool` finding).
    #[serde(default)]
    pub latent: bool,
    /// Processes holding the most ports of this pool (live sockets only: TIME_WAIT has no owner).
    pub owners: Vec<PoolOwner>,
}

impl Pool {
    fn new(kind: PoolKind, protocol: Protocol, capacity: u32) -> Pool {
        Pool {
            kind,
            protocol,
            local: None,
            remote: None,
            used: 0,
            capacity,
            time_wait: 0,
            time_wait_reusable: 0,
            effective: 0,
            percent: 0.0,
            level: Level::Ok,
            latent: false,
            owners: Vec::new(),
        }
    }

    /// "tcp 127.0.0.1 -> 127.0.0.1:7070", "tcp bind() pool", "udp pool", "tcp global pool".
    pub fn label(&self) -> String {
        match (self.kind, self.local, self.remote) {
            (PoolKind::Connect, Some(l), Some(r)) => format!("{} {l} -> {r}", self.protocol),
            (PoolKind::Connect, _, _) => format!("{} connect() pool", self.protocol),
            (PoolKind::Bind, _, _) => format!("{} bind() pool", self.protocol),
            (PoolKind::Udp, _, _) => "udp pool".to_owned(),
            (PoolKind::Global, _, _) => format!("{} global pool", self.protocol),
        }
    }

    /// What fails when this pool is exhausted.
    pub fn failure(&self) -> &'static str {
        match self.kind {
            PoolKind::Connect => "new connect() calls fail with EADDRNOTAVAIL",
            PoolKind::Bind => "bind() to port 0 fails with EADDRINUSE",
            PoolKind::Udp => "UDP sockets cannot get a port: sendto()/connect() fail with EAGAIN",
            PoolKind::Global => {
                "new connections fail (WSAENOBUFS 10055 or WSAEADDRINUSE 10048; Tcpip event 4231/4266)"
            }
        }
    }

    /// The Linux connect() half-range rule applies to per-destination pools only.
    fn half_range(&self) -> bool {
        self.kind == PoolKind::Connect
    }

    /// The fewest effective ports at which this pool reaches `level` under `thresholds`.
    pub fn first_used_at(&self, level: Level, thresholds: &Thresholds) -> u32 {
        thresholds.first_used_at(level, self.capacity, self.half_range())
    }

    fn finish(&mut self, thresholds: &Thresholds) {
        self.effective = self.used - self.time_wait_reusable;
        // One decimal is all a reader needs, and keeps the JSON tidy.
        self.percent = (percent(self.effective, self.capacity) * 10.0).round() / 10.0;
        self.level = thresholds.classify(self.effective, self.capacity, self.half_range());
    }
}

/// The ephemeral range of one protocol after reserved or excluded ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeReport {
    pub protocol: Protocol,
    pub start: u16,
    pub end: u16,
    /// Ports of the range that can be handed out: range minus reserved/excluded ports.
    pub usable: u32,
    /// Reserved (Linux) or excluded (Windows) ports inside the range.
    pub reserved: u32,
    /// True when the source did not give the range and the OS default was assumed.
    pub assumed: bool,
}

/// Pools and ranges of a snapshot, before trimming for display.
#[derive(Debug, Clone, Default)]
pub struct PoolSet {
    pub ranges: Vec<RangeReport>,
    /// Tightest first.
    pub pools: Vec<Pool>,
    /// TCP ports in the range held by listeners or bound sockets (they shrink every connect() pool).
    pub bind_type_ports: Vec<u16>,
    /// Connections to two or more destinations share no port although they cannot all fit in
    /// one parity half of the range: connect() alone would have shared, so bind() chose their
    /// ports (bind-before-connect).
    pub no_port_sharing: bool,
}

/// A set of port numbers as a 64 Ki-bit map.
struct PortBits(Box<[u64; 1024]>);

impl PortBits {
    fn new() -> PortBits {
        PortBits(Box::new([0; 1024]))
    }
    fn set(&mut self, p: u16) {
        self.0[usize::from(p >> 6)] |= 1 << (p & 63);
    }
    fn get(&self, p: u16) -> bool {
        self.0[usize::from(p >> 6)] & (1 << (p & 63)) != 0
    }
    fn count_in(&self, range: PortRange, skip: &PortSet) -> u32 {
        (range.start..=range.end).filter(|&p| self.get(p) && !skip.contains(p)).count() as u32
    }
}

/// The effective range and reserved set of a protocol, with the OS default when unknown.
pub(crate) struct Allocation {
    pub(crate) range: PortRange,
    pub(crate) reserved: PortSet,
    pub(crate) assumed: bool,
}

impl Allocation {
    pub(crate) fn of(os: Os, range: Option<PortRange>, reserved: Option<&PortSet>) -> Allocation {
        let default = match os {
            Os::Linux => PortRange::LINUX_DEFAULT,
            Os::Windows => PortRange::WINDOWS_DEFAULT,
        };
        Allocation {
            range: range.unwrap_or(default),
            reserved: reserved.cloned().unwrap_or_default(),
            assumed: range.is_none(),
        }
    }

    /// A port the allocator may hand out.
    pub(crate) fn is_pool_port(&self, port: u16) -> bool {
        self.range.contains(port) && !self.reserved.contains(port)
    }

    fn report(&self, protocol: Protocol) -> RangeReport {
        let reserved = self.reserved.count_within(self.range);
        RangeReport {
            protocol,
            start: self.range.start,
            end: self.range.end,
            usable: self.range.len() - reserved,
            reserved,
            assumed: self.assumed,
        }
    }
}

/// Whether `tcp_tw_reuse` lets connect() take this TIME_WAIT socket's port again
/// (`tcp_twsk_unique`): mode 1 always, mode 2 for loopback, only with timestamps, and only once
/// the socket is older than the reuse delay (its age is 60 s minus the remaining timer).
pub fn tw_reusable(s: &Socket, settings: &Settings) -> bool {
    let mode = settings.tw_reuse.unwrap_or(TwReuse::Loopback);
    let allowed = match mode {
        TwReuse::Off => false,
        TwReuse::On => true,
        TwReuse::Loopback => s.is_loopback(),
    };
    let delay = settings.tw_reuse_delay_ms.unwrap_or(LINUX_TW_REUSE_DELAY_MS);
    let old_enough = s.timer_ms == 0 || LINUX_TIME_WAIT_MS.saturating_sub(s.timer_ms) >= delay;
    allowed && settings.timestamps != Some(false) && old_enough
}

/// Computes every pool of the snapshot, tightest first.
pub fn pools(snapshot: &Snapshot, thresholds: &Thresholds) -> PoolSet {
    let mut set = match snapshot.os {
        Os::Linux => linux_pools(snapshot, thresholds),
        Os::Windows => windows_pools(snapshot, thresholds),
    };
    set.pools.sort_by(|a, b| {
        b.level
            .cmp(&a.level)
            .then(b.percent.total_cmp(&a.percent))
            .then(kind_rank(a.kind).cmp(&kind_rank(b.kind)))
            .then(b.used.cmp(&a.used))
            .then(a.remote.cmp(&b.remote))
            .then(a.local.cmp(&b.local))
    });
    set
}

/// At equal fullness, the pool whose failure is most specific comes first.
fn kind_rank(kind: PoolKind) -> u8 {
    match kind {
        PoolKind::Connect => 0,
        PoolKind::Global => 1,
        PoolKind::Bind => 2,
        PoolKind::Udp => 3,
    }
}

/// A connected socket's place in a connect() pool: sorted to count distinct ports per pool.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    pool: u32,
    port: u16,
    /// 0 live, 1 TIME_WAIT reusable, 2 TIME_WAIT blocking: the smallest wins per port.
    tw: u8,
    pid: u32,
}

fn linux_pools(snapshot: &Snapshot, thresholds: &Thresholds) -> PoolSet {
    let settings = &snapshot.settings;
    let tcp = Allocation::of(Os::Linux, settings.tcp_range, settings.tcp_reserved.as_ref());
    let udp = Allocation::of(Os::Linux, settings.udp_range, settings.udp_reserved.as_ref());

    // Pass 1: ports by holder. A listener or bound socket takes its port out of every
    // connect() pool, whatever its address: the bind bucket match ignores it.
    let (mut bind_type, mut tcp_live, mut tcp_tw, mut udp_any) =
        (PortBits::new(), PortBits::new(), PortBits::new(), PortBits::new());
    for s in &snapshot.sockets {
        match s.protocol {
            Protocol::Tcp if s.state == State::TimeWait => tcp_tw.set(s.local_port),
            Protocol::Tcp => {
                tcp_live.set(s.local_port);
                if s.state.is_bind_type() {
                    bind_type.set(s.local_port);
                }
            }
            Protocol::Udp => udp_any.set(s.local_port),
        }
    }
    let tcp_usable = tcp.range.len() - tcp.reserved.count_within(tcp.range);
    let bind_type_in_range = bind_type.count_in(tcp.range, &tcp.reserved);
    let connect_capacity = tcp_usable - bind_type_in_range;

    // Pass 2: connected TCP sockets on pool ports, keyed by destination.
    let mut keys: HashMap<(IpAddr, IpAddr, u16), u32> = HashMap::default();
    let mut entries: Vec<Entry> = Vec::new();
    for s in &snapshot.sockets {
        if s.protocol != Protocol::Tcp
            || !s.is_connected()
            || !tcp.is_pool_port(s.local_port)
            || bind_type.get(s.local_port)
        {
            continue;
        }
        let next = keys.len() as u32;
        let pool = *keys.entry((s.local_ip, s.remote_ip, s.remote_port)).or_insert(next);
        let tw = match s.state {
            State::TimeWait if tw_reusable(s, settings) => 1,
            State::TimeWait => 2,
            _ => 0,
        };
        entries.push(Entry { pool, port: s.local_port, tw, pid: s.pid.map_or(0, |p| p.get()) });
    }
    entries.sort_unstable();
    let mut distinct = PortBits::new();
    entries.iter().for_each(|e| distinct.set(e.port));
    let connect_ports = distinct.count_in(tcp.range, &PortSet::new());

    let mut pools: Vec<Pool> =
        vec![Pool::new(PoolKind::Connect, Protocol::Tcp, connect_capacity); keys.len()];
    for ((local, remote, port), i) in keys {
        pools[i as usize].local = Some(local);
        pools[i as usize].remote = Some(SocketAddr::new(remote, port));
    }
    count_entries(&entries, &mut pools);
    for p in &mut pools {
        p.finish(thresholds);
    }

    // Global pools: any socket on a port makes bind(port 0) / UDP autobind skip it.
    let mut bind = Pool::new(PoolKind::Bind, Protocol::Tcp, tcp_usable);
    for port in (tcp.range.start..=tcp.range.end).filter(|&p| !tcp.reserved.contains(p)) {
        if tcp_live.get(port) || tcp_tw.get(port) {
            bind.used += 1;
            bind.time_wait += u32::from(!tcp_live.get(port));
        }
    }
    bind.finish(thresholds);
    // bind(port 0) cannot take TIME_WAIT ports (measured: with 95 of 100 ports in TIME_WAIT,
    // bind() got 5 ports, then EADDRINUSE), but it only fails someone who calls it. Without a
    // sign of such a caller, a full bind() pool is a risk, not an outage: cap it at warn and let
    // the `latent_bind_pool` finding say what would fail.
    let connect_used: u64 = pools.iter().map(|p| u64::from(p.used)).sum();
    let no_port_sharing = pools.len() >= 2
        && u64::from(connect_ports) == connect_used
        && connect_ports > tcp_usable / 2;
    let binds_now =
        snapshot.sockets.iter().any(|s| s.protocol == Protocol::Tcp && s.state == State::Bound)
            || no_port_sharing;
    if !binds_now && bind.level > Level::Warn {
        bind.level = Level::Warn;
        bind.latent = true;
    }
    let mut udp_pool = Pool::new(
        PoolKind::Udp,
        Protocol::Udp,
        udp.range.len() - udp.reserved.count_within(udp.range),
    );
    udp_pool.used = udp_any.count_in(udp.range, &udp.reserved);
    udp_pool.finish(thresholds);
    bind.owners = global_owners(snapshot, Protocol::Tcp, &tcp);
    udp_pool.owners = global_owners(snapshot, Protocol::Udp, &udp);
    pools.push(bind);
    pools.push(udp_pool);

    let bind_type_ports = (tcp.range.start..=tcp.range.end)
        .filter(|&p| bind_type.get(p) && !tcp.reserved.contains(p))
        .collect();
    PoolSet {
        ranges: vec![tcp.report(Protocol::Tcp), udp.report(Protocol::Udp)],
        pools,
        bind_type_ports,
        no_port_sharing,
    }
}

/// The processes holding the most distinct pool ports of one protocol: the owners of a global
/// pool (Linux bind() and UDP, Windows).
fn global_owners(snapshot: &Snapshot, protocol: Protocol, alloc: &Allocation) -> Vec<PoolOwner> {
    // (pid, port) packed in one u64, sorted once.
    let mut held: Vec<u64> = snapshot
        .sockets
        .iter()
        .filter(|s| s.protocol == protocol && alloc.is_pool_port(s.local_port))
        .filter_map(|s| Some(u64::from(s.pid?.get()) << 16 | u64::from(s.local_port)))
        .collect();
    held.sort_unstable();
    held.dedup();
    let mut counts: HashMap<u32, u32> = HashMap::default();
    for key in held {
        *counts.entry((key >> 16) as u32).or_default() += 1;
    }
    top_owners(counts)
}

/// Counts distinct ports, TIME_WAIT ports and owners per pool from sorted entries.
fn count_entries(entries: &[Entry], pools: &mut [Pool]) {
    for group in entries.chunk_by(|a, b| a.pool == b.pool) {
        let pool = &mut pools[group[0].pool as usize];
        let mut owners: HashMap<u32, u32> = HashMap::default();
        for port in group.chunk_by(|a, b| a.port == b.port) {
            // Sorted by `tw`: the first entry of a port says whether anything live holds it.
            pool.used += 1;
            match port[0].tw {
                1 => {
                    pool.time_wait += 1;
                    pool.time_wait_reusable += 1;
                }
                2 => pool.time_wait += 1,
                _ => {}
            }
            if port[0].pid != 0 {
                *owners.entry(port[0].pid).or_default() += 1;
            }
        }
        pool.owners = top_owners(owners);
    }
}

fn top_owners(owners: HashMap<u32, u32>) -> Vec<PoolOwner> {
    let mut v: Vec<PoolOwner> =
        owners.into_iter().map(|(pid, ports)| PoolOwner { pid, ports }).collect();
    v.sort_by(|a, b| b.ports.cmp(&a.ports).then(a.pid.cmp(&b.pid)));
    v.truncate(3);
    v
}

/// Windows: one global pool per protocol; every socket on a pool port holds it, whatever its
/// state or address family (DOMAIN.md 2).
fn windows_pools(snapshot: &Snapshot, thresholds: &Thresholds) -> PoolSet {
    let settings = &snapshot.settings;
    let mut ranges = Vec::new();
    let mut pools = Vec::new();
    // Listeners inside the dynamic range: they squat a port a service may need (DOMAIN.md 3).
    let mut listeners: Vec<u16> = Vec::new();
    for (protocol, range, reserved) in [
        (Protocol::Tcp, settings.tcp_range, settings.tcp_reserved.as_ref()),
        (Protocol::Udp, settings.udp_range, settings.udp_reserved.as_ref()),
    ] {
        let alloc = Allocation::of(Os::Windows, range, reserved);
        let (mut live, mut tw) = (PortBits::new(), PortBits::new());
        for s in snapshot.sockets.iter().filter(|s| s.protocol == protocol) {
            if s.state == State::TimeWait {
                tw.set(s.local_port)
            } else {
                live.set(s.local_port)
            }
            if protocol == Protocol::Tcp
                && s.state == State::Listen
                && alloc.is_pool_port(s.local_port)
            {
                listeners.push(s.local_port);
            }
        }
        let report = alloc.report(protocol);
        let mut pool = Pool::new(PoolKind::Global, protocol, report.usable);
        for port in (alloc.range.start..=alloc.range.end).filter(|&p| !alloc.reserved.contains(p)) {
            if live.get(port) || tw.get(port) {
                pool.used += 1;
                pool.time_wait += u32::from(!live.get(port));
            }
        }
        pool.owners = global_owners(snapshot, protocol, &alloc);
        pool.finish(thresholds);
        ranges.push(report);
        pools.push(pool);
    }
    listeners.sort_unstable();
    listeners.dedup();
    PoolSet { ranges, pools, bind_type_ports: listeners, no_port_sharing: false }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::model::Snapshot;
    use proptest::prelude::*;

    const LO: &str = "127.0.0.1";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn tcp(state: State, lport: u16, remote: (&str, u16)) -> Socket {
        Socket::new(Protocol::Tcp, state, (ip(LO), lport), (ip(remote.0), remote.1))
    }

    fn snapshot(range: (u16, u16), sockets: Vec<Socket>) -> Snapshot {
        let mut s = Snapshot::new(Os::Linux, "test");
        s.settings.tcp_range = PortRange::new(range.0, range.1);
        s.settings.udp_range = s.settings.tcp_range;
        s.settings.tw_reuse = Some(TwReuse::Off);
        s.sockets = sockets;
        s
    }

    fn connect_pool<'a>(set: &'a PoolSet, remote: &str) -> &'a Pool {
        let remote: SocketAddr = remote.parse().unwrap();
        set.pools.iter().find(|p| p.remote == Some(remote)).expect("pool")
    }

    #[test]
    fn full_destination_is_exhausted_and_first() {
        let socks = (40000..40100).map(|p| tcp(State::Established, p, (LO, 7070))).collect();
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        let p = &set.pools[0];
        assert_eq!(
            (p.kind, p.used, p.capacity, p.level),
            (PoolKind::Connect, 100, 100, Level::Exhausted)
        );
        assert_eq!(p.remote, Some("127.0.0.1:7070".parse().unwrap()));
    }

    #[test]
    fn destinations_share_ports() {
        // 60 ports to each of two destinations, 40 of them the same numbers: 120 sockets on
        // 80 distinct ports. Each pool is 60 % full, not the range 120 % full.
        let mut socks: Vec<Socket> =
            (40000..40060).map(|p| tcp(State::Established, p, (LO, 7070))).collect();
        socks.extend((40020..40080).map(|p| tcp(State::Established, p, (LO, 7071))));
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        for r in ["127.0.0.1:7070", "127.0.0.1:7071"] {
            let p = connect_pool(&set, r);
            assert_eq!((p.used, p.capacity, p.level), (60, 100, Level::Warn), "{r}");
        }
        let bind = set.pools.iter().find(|p| p.kind == PoolKind::Bind).unwrap();
        assert_eq!((bind.used, bind.capacity, bind.level), (80, 100, Level::Warn));
        assert_ne!(set.pools[0].level, Level::Exhausted);
    }

    #[test]
    fn listener_in_range_shrinks_every_connect_pool_and_its_accepted_sockets_do_not_count() {
        let mut socks = vec![
            tcp(State::Listen, 40050, ("0.0.0.0", 0)),
            // A connection accepted by that listener: its local port is the listener's.
            tcp(State::Established, 40050, (LO, 40001)),
        ];
        socks.extend((40000..40010).map(|p| tcp(State::Established, p, (LO, 7070))));
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        let p = connect_pool(&set, "127.0.0.1:7070");
        assert_eq!((p.used, p.capacity), (10, 99));
        assert!(set.pools.iter().all(|p| p.kind != PoolKind::Connect || p.capacity == 99));
        assert_eq!(set.bind_type_ports, vec![40050]);
    }

    #[test]
    fn reserved_and_outside_ports_are_not_pool_ports() {
        let mut snap = snapshot(
            (40000, 40099),
            vec![
                tcp(State::Established, 40000, (LO, 7070)),
                tcp(State::Established, 40010, (LO, 7070)),
                tcp(State::Established, 5000, (LO, 7070)),
            ],
        );
        snap.settings.tcp_reserved =
            Some(PortSet::from_ranges([PortRange::new(40010, 40019).unwrap()]));
        let set = pools(&snap, &Thresholds::default());
        let p = connect_pool(&set, "127.0.0.1:7070");
        assert_eq!((p.used, p.capacity), (1, 90));
        assert_eq!(set.ranges[0].usable, 90);
        assert_eq!(set.ranges[0].reserved, 10);
    }

    #[test]
    fn time_wait_reuse_follows_mode_and_age() {
        let young = |p| Socket { timer_ms: 59_800, ..tcp(State::TimeWait, p, (LO, 7070)) };
        let old = |p| Socket { timer_ms: 30_000, ..tcp(State::TimeWait, p, (LO, 7070)) };
        let remote_old =
            |p| Socket { timer_ms: 30_000, ..tcp(State::TimeWait, p, ("10.0.0.5", 5432)) };
        let mut socks: Vec<Socket> = (40000..40050).map(old).collect();
        socks.extend((40050..40060).map(young));
        socks.extend((40000..40040).map(remote_old));
        let mut snap = snapshot((40000, 40099), socks);

        snap.settings.tw_reuse = Some(TwReuse::Off);
        let set = pools(&snap, &Thresholds::default());
        let p = connect_pool(&set, "127.0.0.1:7070");
        assert_eq!((p.used, p.time_wait, p.time_wait_reusable), (60, 60, 0));

        snap.settings.tw_reuse = Some(TwReuse::Loopback);
        let set = pools(&snap, &Thresholds::default());
        let p = connect_pool(&set, "127.0.0.1:7070");
        assert_eq!((p.used, p.time_wait, p.time_wait_reusable, p.effective), (60, 60, 50, 10));
        assert_eq!(p.level, Level::Ok);
        // The local address is loopback here, so mode 2 applies to the remote pool too.
        let r = connect_pool(&set, "10.0.0.5:5432");
        assert_eq!(r.time_wait_reusable, 40);

        snap.settings.timestamps = Some(false);
        let set = pools(&snap, &Thresholds::default());
        assert_eq!(connect_pool(&set, "127.0.0.1:7070").time_wait_reusable, 0);
    }

    #[test]
    fn a_live_socket_and_time_wait_on_one_port_count_once_as_live() {
        // A dump taken while a 4-tuple is reused shows both; the port is used once, not TIME_WAIT.
        let socks = vec![
            tcp(State::TimeWait, 40000, (LO, 7070)),
            tcp(State::Established, 40000, (LO, 7070)),
        ];
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        let p = connect_pool(&set, "127.0.0.1:7070");
        assert_eq!((p.used, p.time_wait), (1, 0));
    }

    #[test]
    fn a_bind_pool_full_of_time_wait_is_latent_unless_something_binds() {
        let mut snap = snapshot(
            (40000, 40099),
            (40000..40095)
                .map(|p| Socket { timer_ms: 30_000, ..tcp(State::TimeWait, p, (LO, 7070)) })
                .collect(),
        );
        snap.settings.tw_reuse = Some(TwReuse::Loopback);
        let set = pools(&snap, &Thresholds::default());
        let bind = set.pools.iter().find(|p| p.kind == PoolKind::Bind).unwrap();
        assert_eq!(
            (bind.used, bind.time_wait, bind.level, bind.latent),
            (95, 95, Level::Warn, true)
        );
        assert_eq!(connect_pool(&set, "127.0.0.1:7070").level, Level::Ok);
        // A bound socket shows that something here allocates with bind(): the pool is critical.
        snap.sockets.push(tcp(State::Bound, 40096, ("0.0.0.0", 0)));
        let set = pools(&snap, &Thresholds::default());
        let bind = set.pools.iter().find(|p| p.kind == PoolKind::Bind).unwrap();
        assert_eq!((bind.used, bind.level, bind.latent), (96, Level::Critical, false));
    }

    #[test]
    fn owners_are_counted_per_pool() {
        let pid = |n| NonZeroU32::new(n);
        let mut socks: Vec<Socket> = (40000..40030)
            .map(|p| Socket { pid: pid(7), ..tcp(State::Established, p, (LO, 7070)) })
            .collect();
        socks.extend(
            (40030..40035)
                .map(|p| Socket { pid: pid(9), ..tcp(State::Established, p, (LO, 7070)) }),
        );
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        let p = connect_pool(&set, "127.0.0.1:7070");
        assert_eq!(p.owners, vec![PoolOwner { pid: 7, ports: 30 }, PoolOwner { pid: 9, ports: 5 }]);
    }

    #[test]
    fn udp_pool_is_global() {
        let udp =
            |p, r: &str| Socket::new(Protocol::Udp, State::Established, (ip(LO), p), (ip(r), 53));
        let socks = (40000..40080)
            .map(|p| udp(p, if p % 2 == 0 { "10.0.0.1" } else { "10.0.0.2" }))
            .collect();
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        let p = set.pools.iter().find(|p| p.kind == PoolKind::Udp).unwrap();
        assert_eq!((p.used, p.capacity, p.level), (80, 100, Level::Warn));
        assert!(set.pools.iter().all(|p| p.kind != PoolKind::Connect));
    }

    #[test]
    fn windows_pool_counts_distinct_ports_of_any_state_minus_exclusions() {
        let mut snap = snapshot((0, 0), vec![]);
        snap.os = Os::Windows;
        snap.settings.tcp_range = PortRange::new(49152, 49251);
        snap.settings.tcp_reserved =
            Some(PortSet::from_ranges([PortRange::new(49200, 49219).unwrap()]));
        snap.sockets = vec![
            tcp(State::Established, 49152, ("10.0.0.1", 443)),
            tcp(State::Established, 49152, ("10.0.0.2", 443)), // same number: one port
            tcp(State::TimeWait, 49153, ("10.0.0.1", 443)),
            tcp(State::Bound, 49154, ("0.0.0.0", 0)),
            tcp(State::Established, 49205, ("10.0.0.1", 443)), // excluded: not counted
            tcp(State::Established, 3389, ("10.0.0.1", 443)),  // outside the range
        ];
        let set = pools(&snap, &Thresholds::default());
        let tcp_pool = set.pools.iter().find(|p| p.protocol == Protocol::Tcp).unwrap();
        assert_eq!(
            (tcp_pool.kind, tcp_pool.used, tcp_pool.capacity, tcp_pool.time_wait),
            (PoolKind::Global, 3, 80, 1)
        );
    }

    proptest! {
        /// Against a brute-force model: a destination's pool counts the distinct pool ports of
        /// its connected sockets, and never exceeds its capacity when the data is consistent.
        #[test]
        fn connect_pool_matches_brute_force(
            conns in prop::collection::vec((0u16..40, 0usize..3, any::<bool>()), 0..200),
            listeners in prop::collection::vec(0u16..40, 0..4),
        ) {
            let dests = [7070u16, 7071, 7072];
            let mut socks: Vec<Socket> = listeners.iter().map(|&p| tcp(State::Listen, 1000 + p, ("0.0.0.0", 0))).collect();
            for &(p, d, tw) in &conns {
                socks.push(tcp(if tw { State::TimeWait } else { State::Established }, 1000 + p, (LO, dests[d])));
            }
            let set = pools(&snapshot((1000, 1039), socks), &Thresholds::default());
            for (d, &port) in dests.iter().enumerate() {
                let mut ports: Vec<u16> = conns.iter().filter(|c| c.1 == d).map(|c| 1000 + c.0)
                    .filter(|p| !listeners.contains(&(p - 1000))).collect();
                ports.sort_unstable();
                ports.dedup();
                let mut uniq_l = listeners.clone();
                uniq_l.sort_unstable();
                uniq_l.dedup();
                let cap = 40 - uniq_l.len() as u32;
                match set.pools.iter().find(|p| p.remote.map(|r| r.port()) == Some(port)) {
                    Some(p) => {
                        prop_assert_eq!(p.used as usize, ports.len());
                        prop_assert_eq!(p.capacity, cap);
                        prop_assert!(p.used <= p.capacity);
                        prop_assert!(p.time_wait_reusable <= p.time_wait && p.time_wait <= p.used);
                    }
                    None => prop_assert!(ports.is_empty()),
                }
            }
        }
    }
}
