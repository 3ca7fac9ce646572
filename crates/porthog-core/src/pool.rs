//! The port pools the kernel allocates from, and how full each one is (docs/DOMAIN.md §1.2-1.4 and §2).
//! Linux: one connect() pool per (local IP, remote IP, remote port); bind(port 0) and UDP
//! autobind pools per caller address (`bind_pool.rs`). Windows: one global pool per protocol.
//! Linear in the sockets: one pass to mark ports, one sort of compact (pool, port) entries to
//! count distinct ports.

use rustc_hash::FxHashMap as HashMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::bind_pool::{self, Caller, V6onlyFrom};
use crate::level::{Level, Thresholds, percent};
use crate::model::{BucketOrigin, Os, Protocol, Settings, Snapshot, Socket, State, TwReuse};
use crate::ports::{PortRange, PortSet};

/// Linux keeps TIME_WAIT for a fixed 60 s (`TCP_TIMEWAIT_LEN`); `tcp_fin_timeout` does not change it.
pub const LINUX_TIME_WAIT_MS: u32 = 60_000;
/// Windows keeps TIME_WAIT for `TcpTimedWaitDelay`, 120 s by default (2 MSL).
pub const WINDOWS_TIME_WAIT_MS: u32 = 120_000;
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
    /// Linux source NAT: translated ports per (SNAT IP, destination), from conntrack
    /// (`nf_nat_l4proto_unique_tuple`; `snat.rs`).
    Snat,
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
    /// Local address of a connect() pool; the caller's address of a bind() or UDP pool
    /// (`0.0.0.0` and `::` for the wildcards); `None` for Windows global pools.
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
    /// Where the capacity comes from where that is not the ephemeral range: a SNAT pool's NAT
    /// rule, or the kernel's default NAT port range and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_from: Option<String>,
}

impl Pool {
    pub(crate) fn new(kind: PoolKind, protocol: Protocol, capacity: u32) -> Pool {
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
            range_from: None,
        }
    }

    /// "tcp 127.0.0.1 -> 127.0.0.1:7070", "tcp bind(0.0.0.0, 0)", "udp autobind [::]",
    /// "tcp global pool".
    pub fn label(&self) -> String {
        match (self.kind, self.local, self.remote) {
            (PoolKind::Connect, Some(l), Some(r)) => format!("{} {l} -> {r}", self.protocol),
            (PoolKind::Connect, _, _) => format!("{} connect() pool", self.protocol),
            (PoolKind::Bind, Some(l), _) => {
                format!("{} bind({}, 0)", self.protocol, bind_pool::caller_addr(l))
            }
            (PoolKind::Bind, None, _) => format!("{} bind() pool", self.protocol),
            (PoolKind::Udp, Some(l), _) => format!("udp autobind {}", bind_pool::caller_addr(l)),
            (PoolKind::Udp, None, _) => "udp pool".to_owned(),
            (PoolKind::Global, _, _) => format!("{} global pool", self.protocol),
            (PoolKind::Snat, Some(l), Some(r)) => format!("{} SNAT {l} -> {r}", self.protocol),
            (PoolKind::Snat, _, _) => format!("{} SNAT pool", self.protocol),
        }
    }

    /// How long a port of this pool stays in TIME_WAIT after this side closes first (ms);
    /// None where there is no TIME_WAIT (UDP).
    pub fn time_wait_ms(&self) -> Option<u32> {
        match (self.kind, self.protocol) {
            (PoolKind::Udp, _) | (_, Protocol::Udp) => None,
            (PoolKind::Connect | PoolKind::Bind, Protocol::Tcp) => Some(LINUX_TIME_WAIT_MS),
            (PoolKind::Global, Protocol::Tcp) => Some(WINDOWS_TIME_WAIT_MS),
            (PoolKind::Snat, Protocol::Tcp) => Some(crate::snat::CONNTRACK_TIME_WAIT_MS),
        }
    }

    /// New ports per second the pool can take forever when each ends in TIME_WAIT on this
    /// side: capacity / TIME_WAIT duration. None for UDP, which has no TIME_WAIT.
    pub fn sustainable_rate(&self) -> Option<f64> {
        self.time_wait_ms().map(|ms| f64::from(self.capacity) * 1000.0 / f64::from(ms))
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
            PoolKind::Snat => {
                "new connections through the NAT are dropped (conntrack insert_failed): clients see a timeout, never EADDRNOTAVAIL"
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

    pub(crate) fn finish(&mut self, thresholds: &Thresholds) {
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
    /// What the pools rest on that the source could not read.
    pub unknowns: Unknowns,
    /// Pool ports of connected and TIME_WAIT sockets whose bind bucket bind() made (a fact, or
    /// every connected port when bind-before-connect is probable): lost to other destinations.
    pub bind_made_ports: u32,
    /// Capacity of a connect() pool that holds none of those ports itself.
    pub connect_base: u32,
}

/// Kernel facts the Linux pools needed and the source did not give (sock_diag without a BPF
/// iterator): each was replaced by the assumption its field names, and the report says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unknowns {
    /// Connected sockets whose port's bind bucket origin is unknown: taken as connect()'s own
    /// (shareable), unless `probable_bind_before_connect`.
    pub bucket: bool,
    /// Ports are never shared across destinations: every connected socket but those of
    /// `probable_connect_made` was taken as bind-before-connect, its port lost to every other
    /// destination.
    pub probable_bind_before_connect: bool,
    /// The destination whose connections were taken as connect()'s own when bind-before-connect
    /// is probable: the one with most ports of connect()'s first parity.
    pub probable_connect_made: Option<SocketAddr>,
    /// TIME_WAIT sockets tw_reuse could take, whose recorded timestamps are unknown: today's
    /// `tcp_timestamps` was taken as what they negotiated.
    pub tw_timestamps: u32,
    /// Connected sockets on pool ports whose bound device (SO_BINDTODEVICE) is unknown: taken
    /// as bound to none, so holding their port in the unbound caller's pools.
    pub device: u32,
    /// IPv6 sockets whose v6only flag is unknown: the default, off, was assumed.
    pub v6only: u32,
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
/// (`tcp_twsk_unique`): mode 1 always, mode 2 for loopback (either address, or bound to lo:
/// `tw_bound_dev_if == LOOPBACK_IFINDEX`); only if the socket recorded timestamps from its
/// peer (`tw_ts_recent_stamp`; when unknown, today's `tcp_timestamps` stands in), and only
/// once it is older than the reuse delay (its age is 60 s minus the remaining timer). A port
/// whose bind bucket bind() made is never reused: connect() skips the bucket first.
pub fn tw_reusable(s: &Socket, settings: &Settings) -> bool {
    let mode = settings.tw_reuse.unwrap_or(TwReuse::Loopback);
    let allowed = match mode {
        TwReuse::Off => false,
        TwReuse::On => true,
        TwReuse::Loopback => s.is_loopback() || s.facts.loopback_dev() == Some(true),
    };
    let delay = settings.tw_reuse_delay_ms.unwrap_or(LINUX_TW_REUSE_DELAY_MS);
    let old_enough = s.timer_ms == 0 || LINUX_TIME_WAIT_MS.saturating_sub(s.timer_ms) >= delay;
    let timestamps = s.facts.tw_timestamps().unwrap_or(settings.timestamps != Some(false));
    allowed && timestamps && old_enough && s.facts.bucket() != Some(BucketOrigin::Bind)
}

/// Computes every pool of the snapshot, tightest first.
pub fn pools(snapshot: &Snapshot, thresholds: &Thresholds) -> PoolSet {
    let mut set = match snapshot.os {
        Os::Linux => linux_pools(snapshot, thresholds),
        Os::Windows => windows_pools(snapshot, thresholds),
    };
    if let Some(ct) = &snapshot.conntrack {
        set.pools.extend(crate::snat::pools(ct, thresholds));
    }
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
        PoolKind::Snat => 1,
        PoolKind::Global => 2,
        PoolKind::Bind => 3,
        PoolKind::Udp => 4,
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
    let mut unknowns = Unknowns::default();

    // Pass 1: ports whose bind bucket bind() made. Listeners and bound sockets (`listen_bound`)
    // own their port; connected and TIME_WAIT sockets of such a bucket (`bind_bucket`: a
    // bind-before-connect, and its TIME_WAIT keeps the bucket through `tw_tb`) still count in
    // their own destination's pool. connect() skips both kinds for every destination, whatever
    // the address: the bucket match ignores it (`__inet_hash_connect`).
    let (mut listen_bound, mut bind_bucket) = (PortBits::new(), PortBits::new());
    let mut buckets_known = false;
    for s in snapshot.sockets.iter().filter(|s| s.protocol == Protocol::Tcp) {
        if s.state.is_bind_type() {
            listen_bound.set(s.local_port);
        } else if s.facts.bucket() == Some(BucketOrigin::Bind) {
            bind_bucket.set(s.local_port);
        }
        buckets_known |= s.facts.bucket().is_some();
    }
    let tcp_usable = tcp.range.len() - tcp.reserved.count_within(tcp.range);

    // Pass 2: connected TCP sockets on pool ports, keyed by destination; an accepted socket
    // lives on its listener's port and is not ephemeral.
    let mut keys: HashMap<(IpAddr, IpAddr, u16), u32> = HashMap::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut last: Option<((IpAddr, IpAddr, u16), u32)> = None;
    for s in &snapshot.sockets {
        if s.protocol != Protocol::Tcp
            || !s.is_connected()
            || !tcp.is_pool_port(s.local_port)
            || listen_bound.get(s.local_port)
        {
            continue;
        }
        let key = (s.local_ip, s.remote_ip, s.remote_port);
        // A dump lists a destination's sockets mostly together: the last pool first.
        let pool = match last {
            Some((k, pool)) if k == key => pool,
            _ => {
                let next = keys.len() as u32;
                let pool = *keys.entry(key).or_insert(next);
                last = Some((key, pool));
                pool
            }
        };
        // A connection bound to a device holds its 4-tuple only for callers bound to that
        // device: `__inet_check_established` passes the caller's `sk_bound_dev_if` to
        // `inet_match`, and `inet_bound_dev_eq` never matches a device-bound socket for an
        // unbound caller (dif 0). The pools are the unbound caller's: the destination stays,
        // the port is free for it (its bucket, connect-made, is shareable; a bind-made one
        // was taken off every pool in pass 1).
        if s.facts.bound_dev() == Some(true) {
            continue;
        }
        unknowns.device += u32::from(s.facts.bound_dev().is_none());
        let tw = match s.state {
            State::TimeWait if tw_reusable(s, settings) => 1,
            State::TimeWait => 2,
            _ => 0,
        };
        if s.state == State::TimeWait && settings.tw_reuse != Some(TwReuse::Off) {
            unknowns.tw_timestamps += u32::from(s.facts.tw_timestamps().is_none());
        }
        entries.push(Entry { pool, port: s.local_port, tw, pid: s.pid.map_or(0, |p| p.get()) });
    }
    // The order of `Entry`'s fields, as one integer: a million compare faster so than field by
    // field. (Radix sorts were tried twice, 5cd9e1d and s17-analysis: more peak memory, no
    // measured gain.)
    entries.sort_unstable_by_key(|e| {
        u128::from(e.pool) << 56
            | u128::from(e.port) << 40
            | u128::from(e.tw) << 32
            | u128::from(e.pid)
    });
    let mut distinct = PortBits::new();
    entries.iter().for_each(|e| distinct.set(e.port));
    let connect_ports = distinct.count_in(tcp.range, &PortSet::new());
    let connect_used = entries.chunk_by(|a, b| a.pool == b.pool && a.port == b.port).count() as u64;
    let no_port_sharing = keys.len() >= 2
        && u64::from(connect_ports) == connect_used
        && connect_ports > tcp_usable / 2;
    unknowns.bucket = !buckets_known && !entries.is_empty();
    if unknowns.bucket && no_port_sharing {
        // Without the kernel's word, the pattern decides: ports that connect() alone would have
        // shared are not, so bind() made their buckets, and they are lost to every destination.
        // Two connect()-made groups would have shared (each bucket is shareable), so at most
        // one destination's ports came from connect(): the one holding most ports of the
        // parity connect() scans first (`PortRange::connect_parity`; bind(0) starts with the
        // other), e.g. a plain connect() fill beside an earlier bind-before-connect.
        unknowns.probable_bind_before_connect = true;
        let connect_made = likely_connect_made(&entries, tcp.range);
        unknowns.probable_connect_made = connect_made.and_then(|pool| {
            keys.iter()
                .find(|(_, i)| **i == pool)
                .map(|(&(_, remote, port), _)| SocketAddr::new(remote, port))
        });
        bind_bucket = PortBits::new();
        entries
            .iter()
            .filter(|e| Some(e.pool) != connect_made)
            .for_each(|e| bind_bucket.set(e.port));
    }
    let skipped = (tcp.range.start..=tcp.range.end)
        .filter(|&p| !tcp.reserved.contains(p) && (listen_bound.get(p) || bind_bucket.get(p)))
        .count() as u32;

    let bind_made_ports = (tcp.range.start..=tcp.range.end)
        .filter(|&p| !tcp.reserved.contains(p) && !listen_bound.get(p) && bind_bucket.get(p))
        .count() as u32;
    let mut pools: Vec<Pool> =
        vec![Pool::new(PoolKind::Connect, Protocol::Tcp, tcp_usable - skipped); keys.len()];
    for ((local, remote, port), i) in keys {
        pools[i as usize].local = Some(local);
        pools[i as usize].remote = Some(SocketAddr::new(remote, port));
    }
    count_entries(&entries, &mut pools, &bind_bucket);
    for p in &mut pools {
        p.finish(thresholds);
    }

    // bind(port 0) cannot take TIME_WAIT ports (measured: with 95 of 100 ports in TIME_WAIT,
    // bind() got 5 ports, then EADDRINUSE), but it only fails someone who calls it. Without a
    // sign of such a caller, a full bind() pool is a risk, not an outage: cap it at warn and let
    // the `latent_bind_pool` finding say what would fail. Signs: a bound socket, a listener on
    // an ephemeral port (it got its port from bind(0)), a port bind() gave a connected socket.
    let binds_now = no_port_sharing
        || snapshot.sockets.iter().any(|s| {
            s.protocol == Protocol::Tcp
                && (s.state == State::Bound
                    || (s.state == State::Listen && tcp.is_pool_port(s.local_port))
                    // A bind-made port in the range; an accepted socket on a listener's
                    // fixed port outside it shares that listener's bucket and says nothing.
                    || (s.facts.bucket() == Some(BucketOrigin::Bind)
                        && tcp.is_pool_port(s.local_port)))
        });
    for caller in bind_pool::callers(&snapshot.sockets, Protocol::Tcp, |p| tcp.is_pool_port(p)) {
        let mut pool = caller_pool(snapshot, caller, PoolKind::Bind, &tcp, thresholds);
        if !binds_now && pool.level > Level::Warn {
            pool.level = Level::Warn;
            pool.latent = true;
        }
        pools.push(pool);
    }
    for caller in bind_pool::callers(&snapshot.sockets, Protocol::Udp, |p| udp.is_pool_port(p)) {
        pools.push(caller_pool(snapshot, caller, PoolKind::Udp, &udp, thresholds));
    }
    unknowns.v6only = snapshot
        .sockets
        .iter()
        .filter(|s| bind_pool::holder_v6only(s).1 == V6onlyFrom::Assumed)
        .count() as u32;

    let bind_type_ports = (tcp.range.start..=tcp.range.end)
        .filter(|&p| listen_bound.get(p) && !tcp.reserved.contains(p))
        .collect();
    PoolSet {
        ranges: vec![tcp.report(Protocol::Tcp), udp.report(Protocol::Udp)],
        pools,
        bind_type_ports,
        no_port_sharing,
        unknowns,
        bind_made_ports,
        connect_base: tcp_usable - skipped,
    }
}

/// The connect() pool (index) whose ports most likely came from connect() itself, when ports are
/// never shared across destinations: the one with most ports of the parity connect() scans
/// first; None when no pool holds such a port. `entries` are sorted by pool, then port.
fn likely_connect_made(entries: &[Entry], range: PortRange) -> Option<u32> {
    entries
        .chunk_by(|a, b| a.pool == b.pool)
        .map(|group| {
            let first_parity = group
                .chunk_by(|a, b| a.port == b.port)
                .filter(|port| range.connect_parity(port[0].port))
                .count();
            (first_parity, std::cmp::Reverse(group[0].pool))
        })
        .filter(|&(n, _)| n > 0)
        .max()
        .map(|(_, std::cmp::Reverse(pool))| pool)
}

/// The bind(port 0) or UDP autobind pool of one caller: the pool ports on which no socket
/// overlaps the caller's address (`bind_pool::conflicts`). TIME_WAIT holds its port too.
fn caller_pool(
    snapshot: &Snapshot,
    caller: Caller,
    kind: PoolKind,
    alloc: &Allocation,
    thresholds: &Thresholds,
) -> Pool {
    // One pass: the ports the caller cannot take, and their holders.
    let mut held = Held::new();
    for s in snapshot.sockets.iter().filter(|s| bind_pool::conflicts(s, caller)) {
        held.add(s, alloc);
    }
    let usable = alloc.range.len() - alloc.reserved.count_within(alloc.range);
    let mut pool = Pool::new(kind, caller.protocol, usable);
    pool.local = Some(caller.addr);
    held.count_into(&mut pool, alloc);
    pool.finish(thresholds);
    pool
}

/// The ports a global pool's sockets hold (live and TIME_WAIT apart) and the (pid, port) of
/// their holders, packed in one u64 each, gathered in one pass over the sockets.
struct Held {
    live: PortBits,
    time_wait: PortBits,
    by_pid: Vec<u64>,
}

impl Held {
    fn new() -> Held {
        Held { live: PortBits::new(), time_wait: PortBits::new(), by_pid: Vec::new() }
    }

    /// `s` holds its port; a TIME_WAIT socket holds it too, as TIME_WAIT unless a live one does.
    fn add(&mut self, s: &Socket, alloc: &Allocation) {
        if s.state == State::TimeWait {
            self.time_wait.set(s.local_port)
        } else {
            self.live.set(s.local_port)
        }
        if let Some(pid) = s.pid.filter(|_| alloc.is_pool_port(s.local_port)) {
            self.by_pid.push(u64::from(pid.get()) << 16 | u64::from(s.local_port));
        }
    }

    /// The held pool ports into `pool.used` and `pool.time_wait`, their holders into `owners`.
    fn count_into(self, pool: &mut Pool, alloc: &Allocation) {
        for port in (alloc.range.start..=alloc.range.end).filter(|&p| !alloc.reserved.contains(p)) {
            if self.live.get(port) || self.time_wait.get(port) {
                pool.used += 1;
                pool.time_wait += u32::from(!self.live.get(port));
            }
        }
        pool.owners = owners_of(self.by_pid);
    }
}

/// The processes holding the most distinct ports, from (pid, port) packed in one u64 each.
fn owners_of(mut held: Vec<u64>) -> Vec<PoolOwner> {
    held.sort_unstable();
    held.dedup();
    let mut counts: HashMap<u32, u32> = HashMap::default();
    for key in held {
        *counts.entry((key >> 16) as u32).or_default() += 1;
    }
    top_owners(counts)
}

/// Counts distinct ports, TIME_WAIT ports and owners per pool from sorted entries. A pool's
/// own ports of bind-made buckets count as used and give back the capacity that every pool
/// lost to them; their TIME_WAIT is never reusable.
fn count_entries(entries: &[Entry], pools: &mut [Pool], bind_bucket: &PortBits) {
    for group in entries.chunk_by(|a, b| a.pool == b.pool) {
        let pool = &mut pools[group[0].pool as usize];
        let mut owners: HashMap<u32, u32> = HashMap::default();
        for port in group.chunk_by(|a, b| a.port == b.port) {
            let bound = bind_bucket.get(port[0].port);
            pool.capacity += u32::from(bound);
            // The smallest `tw` of a port says whether anything live holds it; its owner is the
            // smallest pid among the sockets of that kind.
            let (tw, pid) = port.iter().map(|e| (e.tw, e.pid)).min().unwrap_or((0, 0));
            pool.used += 1;
            match (tw, bound) {
                (0, _) => {}
                (1, false) => {
                    pool.time_wait += 1;
                    pool.time_wait_reusable += 1;
                }
                _ => pool.time_wait += 1,
            }
            if pid != 0 {
                *owners.entry(pid).or_default() += 1;
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
/// state or address family (docs/DOMAIN.md §2).
fn windows_pools(snapshot: &Snapshot, thresholds: &Thresholds) -> PoolSet {
    let settings = &snapshot.settings;
    let mut ranges = Vec::new();
    let mut pools = Vec::new();
    // Listeners inside the dynamic range: they squat a port a service may need (docs/DOMAIN.md §3).
    let mut listeners: Vec<u16> = Vec::new();
    for (protocol, range, reserved) in [
        (Protocol::Tcp, settings.tcp_range, settings.tcp_reserved.as_ref()),
        (Protocol::Udp, settings.udp_range, settings.udp_reserved.as_ref()),
    ] {
        let alloc = Allocation::of(Os::Windows, range, reserved);
        // One pass: the ports held, and their holders.
        let mut held = Held::new();
        for s in snapshot.sockets.iter().filter(|s| s.protocol == protocol) {
            held.add(s, &alloc);
            if protocol == Protocol::Tcp
                && s.state == State::Listen
                && alloc.is_pool_port(s.local_port)
            {
                listeners.push(s.local_port);
            }
        }
        let report = alloc.report(protocol);
        let mut pool = Pool::new(PoolKind::Global, protocol, report.usable);
        held.count_into(&mut pool, &alloc);
        pool.finish(thresholds);
        ranges.push(report);
        pools.push(pool);
    }
    listeners.sort_unstable();
    listeners.dedup();
    PoolSet {
        ranges,
        pools,
        bind_type_ports: listeners,
        no_port_sharing: false,
        unknowns: Unknowns::default(),
        bind_made_ports: 0,
        connect_base: 0,
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::model::Snapshot;
    use proptest::prelude::*;

    /// One rule for the churn a pool sustains, used by the findings and the live view.
    #[test]
    fn sustainable_rate_is_capacity_over_time_wait() {
        let linux = Pool::new(PoolKind::Connect, Protocol::Tcp, 28_232);
        assert_eq!(linux.sustainable_rate(), Some(28_232.0 / 60.0));
        assert_eq!(Pool::new(PoolKind::Bind, Protocol::Tcp, 600).sustainable_rate(), Some(10.0));
        let windows = Pool::new(PoolKind::Global, Protocol::Tcp, 16_384);
        assert_eq!(windows.sustainable_rate(), Some(16_384.0 / 120.0));
        assert_eq!(Pool::new(PoolKind::Global, Protocol::Udp, 16_384).sustainable_rate(), None);
        assert_eq!(Pool::new(PoolKind::Udp, Protocol::Udp, 16_384).sustainable_rate(), None);
    }

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

    fn with(
        s: Socket,
        f: impl FnOnce(crate::model::KernelFacts) -> crate::model::KernelFacts,
    ) -> Socket {
        Socket { facts: f(s.facts), ..s }
    }

    /// Issue 7, case 1: 50 sockets bind(0)+connect to :5000, then plain connect() to :6000
    /// got only the 50 other ports of 100.
    #[test]
    fn bind_made_buckets_leave_every_connect_pool() {
        let mut socks: Vec<Socket> = (40000..40050)
            .map(|p| {
                with(tcp(State::Established, p, (LO, 5000)), |f| f.with_bucket(BucketOrigin::Bind))
            })
            .collect();
        socks.extend((40050..40100).map(|p| {
            with(tcp(State::Established, p, (LO, 6000)), |f| f.with_bucket(BucketOrigin::Connect))
        }));
        let set = pools(&snapshot((40000, 40099), socks.clone()), &Thresholds::default());
        let plain = connect_pool(&set, "127.0.0.1:6000");
        assert_eq!((plain.used, plain.capacity, plain.level), (50, 50, Level::Exhausted));
        // The :5000 pool keeps its own 50 and may still take :6000's connect-made ports.
        let bound = connect_pool(&set, "127.0.0.1:5000");
        assert_eq!((bound.used, bound.capacity), (50, 100));
        assert!(!set.unknowns.bucket);

        // In TIME_WAIT under tw_reuse=1 the bind-made ports stay lost (`tw_tb` keeps the bucket).
        for s in &mut socks {
            s.state = State::TimeWait;
            s.timer_ms = 30_000;
        }
        let mut snap = snapshot((40000, 40099), socks);
        snap.settings.tw_reuse = Some(TwReuse::On);
        let set = pools(&snap, &Thresholds::default());
        // Plain connect() to :5000 skips its own bind-made ports but may share :6000's.
        let p = connect_pool(&set, "127.0.0.1:5000");
        assert_eq!((p.time_wait, p.time_wait_reusable, p.effective, p.capacity), (50, 0, 50, 100));
        let p = connect_pool(&set, "127.0.0.1:6000");
        assert_eq!((p.time_wait, p.time_wait_reusable, p.level), (50, 50, Level::Ok));
    }

    #[test]
    fn without_bucket_facts_unshared_ports_are_probable_bind_before_connect() {
        let mut socks: Vec<Socket> =
            (40000..40050).map(|p| tcp(State::Established, p, (LO, 5000))).collect();
        socks.extend((40050..40100).map(|p| tcp(State::Established, p, (LO, 6000))));
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        assert!(set.unknowns.bucket && set.unknowns.probable_bind_before_connect);
        // Both hold 25 ports of connect()'s first parity: the first destination seen is taken
        // as connect()'s, the other as bind-before-connect.
        assert_eq!(set.unknowns.probable_connect_made, Some("127.0.0.1:5000".parse().unwrap()));
        let p = connect_pool(&set, "127.0.0.1:5000");
        assert_eq!((p.used, p.capacity, p.level), (50, 50, Level::Exhausted));
        // Shared ports are what connect() does: nothing is assumed beyond "unknown".
        let mut socks: Vec<Socket> =
            (40000..40060).map(|p| tcp(State::Established, p, (LO, 5000))).collect();
        socks.extend((40000..40060).map(|p| tcp(State::Established, p, (LO, 6000))));
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        assert!(set.unknowns.bucket && !set.unknowns.probable_bind_before_connect);
        assert_eq!(connect_pool(&set, "127.0.0.1:6000").capacity, 100);
    }

    /// The kernel's parities: bind(0) took the 50 odd-offset ports for :5000 (bind-before-
    /// connect), then plain connect() to :6000 took 30 of the others. Only the :5000 ports
    /// are lost to other destinations: connect() to :5000 may still share :6000's 30.
    #[test]
    fn probable_bind_before_connect_spares_the_group_connect_made() {
        let mut socks: Vec<Socket> =
            (40001..40100).step_by(2).map(|p| tcp(State::Established, p, (LO, 5000))).collect();
        socks.extend((40000..40060).step_by(2).map(|p| tcp(State::Established, p, (LO, 6000))));
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        assert!(set.unknowns.probable_bind_before_connect);
        assert_eq!(set.unknowns.probable_connect_made, Some("127.0.0.1:6000".parse().unwrap()));
        let bound = connect_pool(&set, "127.0.0.1:5000");
        assert_eq!((bound.used, bound.capacity), (50, 100));
        let plain = connect_pool(&set, "127.0.0.1:6000");
        assert_eq!((plain.used, plain.capacity), (30, 50));
    }

    /// Connections bound to a device (SO_BINDTODEVICE) do not block an unbound caller's
    /// connect() to the same destination (`inet_bound_dev_eq` with dif 0): the pool stays,
    /// empty of them.
    #[test]
    fn device_bound_connections_leave_the_unbound_callers_pool() {
        let socks: Vec<Socket> = (40000..40100)
            .map(|p| with(tcp(State::Established, p, (LO, 7000)), |f| f.with_bound_dev(true)))
            .collect();
        let set = pools(&snapshot((40000, 40099), socks.clone()), &Thresholds::default());
        let p = connect_pool(&set, "127.0.0.1:7000");
        assert_eq!((p.used, p.capacity, p.level), (0, 100, Level::Ok));
        // They still hold their ports against bind(0.0.0.0, 0) (`inet_csk_bind_conflict`).
        let bind = set.pools.iter().find(|p| p.kind == PoolKind::Bind).unwrap();
        assert_eq!(bind.used, 100);
        // Unbound ones block it.
        let socks = socks.into_iter().map(|s| with(s, |f| f.with_bound_dev(false))).collect();
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        assert_eq!(connect_pool(&set, "127.0.0.1:7000").level, Level::Exhausted);
    }

    /// Issue 7, cases 2 and 4: reuse follows what the TIME_WAIT socket recorded and its device.
    #[test]
    fn time_wait_reuse_follows_the_socket_not_todays_settings() {
        let tw = |p| Socket { timer_ms: 30_000, ..tcp(State::TimeWait, p, (LO, 7070)) };
        let mut snap = snapshot((40000, 40099), (40000..40100).map(tw).collect());
        snap.settings.tw_reuse = Some(TwReuse::On);
        snap.settings.timestamps = Some(true);
        // The peer had timestamps off: nothing recorded, nothing reusable.
        snap.sockets =
            snap.sockets.into_iter().map(|s| with(s, |f| f.with_tw_timestamps(false))).collect();
        let set = pools(&snap, &Thresholds::default());
        assert_eq!(set.pools[0].level, Level::Exhausted);
        assert_eq!(set.unknowns.tw_timestamps, 0);
        // Recorded, though today's sysctl is off: reusable.
        snap.settings.timestamps = Some(false);
        snap.sockets =
            snap.sockets.into_iter().map(|s| with(s, |f| f.with_tw_timestamps(true))).collect();
        let set = pools(&snap, &Thresholds::default());
        assert_eq!(connect_pool(&set, "127.0.0.1:7070").time_wait_reusable, 100);
        // Unknown: today's sysctl stands in, and the count of such sockets is reported.
        snap.sockets = (40000..40100).map(tw).collect();
        let set = pools(&snap, &Thresholds::default());
        assert_eq!(connect_pool(&set, "127.0.0.1:7070").time_wait_reusable, 0);
        assert_eq!(set.unknowns.tw_timestamps, 100);

        // tw_reuse=2: a non-loopback address bound to lo is loopback.
        let away = |p| Socket {
            timer_ms: 30_000,
            ..Socket::new(
                Protocol::Tcp,
                State::TimeWait,
                (ip("10.1.1.1"), p),
                (ip("10.1.1.1"), 7070),
            )
        };
        let mut snap = snapshot((40000, 40099), (40000..40100).map(away).collect());
        snap.settings.tw_reuse = Some(TwReuse::Loopback);
        // The device unknown: taken as bound to none, holding every port, and counted.
        let set = pools(&snap, &Thresholds::default());
        assert_eq!((set.pools[0].level, set.unknowns.device), (Level::Exhausted, 100));
        // Bound to lo: a device-bound socket holds its 4-tuple only for callers bound to that
        // device, so the unbound caller's pool has every port, and nothing was assumed.
        snap.sockets = snap
            .sockets
            .into_iter()
            .map(|s| with(s, |f| f.with_bound_dev(true).with_loopback_dev(true)))
            .collect();
        let set = pools(&snap, &Thresholds::default());
        assert_eq!(connect_pool(&set, "10.1.1.1:7070").used, 0);
        assert_eq!(set.unknowns.device, 0);
        // Known to be bound to no device: holding, nothing assumed.
        snap.sockets = (40000..40100)
            .map(|p| with(away(p), |f| f.with_bound_dev(false).with_loopback_dev(false)))
            .collect();
        let set = pools(&snap, &Thresholds::default());
        assert_eq!((set.pools[0].level, set.unknowns.device), (Level::Exhausted, 0));
    }

    /// Issue 7, case 3: bind() and UDP pools are per family and address.
    #[test]
    fn bind_and_udp_pools_are_per_family_and_address() {
        let udp6 = |p| {
            with(
                Socket::new(Protocol::Udp, State::Established, (ip("::1"), p), (ip("::1"), 53)),
                |f| f.with_v6only(true).with_family_v6(true),
            )
        };
        let set = pools(
            &snapshot((40000, 40099), (40000..40100).map(udp6).collect()),
            &Thresholds::default(),
        );
        let udp = |addr: &str| {
            set.pools
                .iter()
                .find(|p| p.kind == PoolKind::Udp && p.local == Some(ip(addr)))
                .expect(addr)
        };
        assert_eq!((udp("::").used, udp("::").level), (100, Level::Exhausted));
        assert_eq!((udp("0.0.0.0").used, udp("0.0.0.0").level), (0, Level::Ok));
        assert_eq!(udp("::").label(), "udp autobind [::]");

        let bound = |addr: &str, p| {
            Socket::new(Protocol::Tcp, State::Bound, (ip(addr), p), (ip("0.0.0.0"), 0))
        };
        let mut socks: Vec<Socket> = (40000..40050).map(|p| bound("::1", p)).collect();
        socks.extend((40050..40100).map(|p| bound("127.0.0.1", p)));
        let set = pools(&snapshot((40000, 40099), socks), &Thresholds::default());
        let bind = |addr: &str| {
            set.pools
                .iter()
                .find(|p| p.kind == PoolKind::Bind && p.local == Some(ip(addr)))
                .expect(addr)
        };
        assert_eq!(bind("::").used, 100);
        assert_eq!(bind("0.0.0.0").used, 50);
        assert_eq!(bind("127.0.0.1").used, 50);
        assert_eq!(bind("::1").used, 50);
        assert!(set.pools.iter().all(|p| p.local != Some(ip("127.0.0.2"))));
        assert_eq!(bind("0.0.0.0").label(), "tcp bind(0.0.0.0, 0)");
    }

    /// Issue 7, case 6: a listener on an ephemeral port got it from bind(0): bind() is in use.
    #[test]
    fn an_ephemeral_listener_makes_a_full_bind_pool_real() {
        let mut socks: Vec<Socket> = (40000..40099)
            .map(|p| Socket { timer_ms: 30_000, ..tcp(State::TimeWait, p, (LO, 7070)) })
            .collect();
        socks.push(tcp(State::Listen, 40099, ("0.0.0.0", 0)));
        let mut snap = snapshot((40000, 40099), socks);
        snap.settings.tw_reuse = Some(TwReuse::Loopback);
        let set = pools(&snap, &Thresholds::default());
        let bind = set.pools.iter().find(|p| p.kind == PoolKind::Bind).unwrap();
        assert_eq!((bind.used, bind.level, bind.latent), (100, Level::Exhausted, false));
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
                // The bucket is known (connect()'s own), so no bind-before-connect is inferred.
                let s = tcp(if tw { State::TimeWait } else { State::Established }, 1000 + p, (LO, dests[d]));
                socks.push(with(s, |f| f.with_bucket(BucketOrigin::Connect)));
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
