//! Reading the situation: causes and the fix that fits each (docs/DOMAIN.md §3). Each rule looks at
//! the pools and processes already computed and at the settings; none rescans the sockets
//! except `ownerless_time_wait`, which needs the TIME_WAIT sockets' destinations.

use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;

use crate::level::Level;
use crate::model::{Os, Protocol, Snapshot, State, TwReuse};
use crate::pool::{LINUX_TIME_WAIT_MS, Pool, PoolKind, PoolSet};
use crate::report::{Evidence, Finding, FindingKind, ProcessReport, grouped, plural};
use crate::snat::ConntrackStats;

/// Most findings of one kind that are listed one by one.
const MAX_PER_KIND: usize = 5;

pub(crate) fn findings(
    snapshot: &Snapshot,
    set: &PoolSet,
    procs: &[ProcessReport],
) -> Vec<Finding> {
    let mut out = Vec::new();
    pressure(snapshot, set, procs, &mut out);
    half_range(set, &mut out);
    leaks(set, procs, &mut out);
    squatting(snapshot, set, &mut out);
    shrunk_range(snapshot, set, &mut out);
    ownerless_time_wait(snapshot, procs, &mut out);
    bind_before_connect(set, &mut out);
    latent_bind_pool(set, &mut out);
    out.sort_by_key(|f| std::cmp::Reverse(f.level));
    out
}

fn name_of(procs: &[ProcessReport], pid: u32) -> String {
    procs
        .iter()
        .find(|p| p.pid == pid)
        .map_or_else(|| format!("pid {pid}"), |p| format!("{} (pid {pid})", p.name))
}

/// The pool's largest live holder, as "name (pid N), which holds M of its ports".
fn culprit(pool: &Pool, procs: &[ProcessReport]) -> (Option<u32>, String) {
    match pool.owners.first() {
        Some(o) => {
            (Some(o.pid), format!("; {} holds {} of them", name_of(procs, o.pid), grouped(o.ports)))
        }
        None => (None, String::new()),
    }
}

/// Connections of a connect() pool that the other end never closed: orphaned FIN_WAIT2 on
/// this side, and the server's CLOSE_WAIT sockets when it runs in the same namespace.
#[derive(Default)]
struct Unclosed {
    fin_wait2: u32,
    close_wait: u32,
    /// The process holding the most of those CLOSE_WAIT sockets.
    server: Option<u32>,
}

fn unclosed(snapshot: &Snapshot, pool: &Pool) -> Unclosed {
    let (Some(local), Some(remote)) = (pool.local, pool.remote) else {
        return Unclosed::default();
    };
    let mut u = Unclosed::default();
    let mut servers: HashMap<u32, u32> = HashMap::default();
    for s in snapshot.sockets.iter().filter(|s| s.protocol == Protocol::Tcp) {
        if s.state == State::FinWait2
            && s.local_ip == local
            && SocketAddr::new(s.remote_ip, s.remote_port) == remote
        {
            u.fin_wait2 += 1;
        } else if s.state == State::CloseWait
            && SocketAddr::new(s.local_ip, s.local_port) == remote
            && s.remote_ip == local
        {
            u.close_wait += 1;
            if let Some(pid) = s.pid {
                *servers.entry(pid.get()).or_default() += 1;
            }
        }
    }
    u.server = servers.into_iter().max_by_key(|&(pid, n)| (n, std::cmp::Reverse(pid))).map(|e| e.0);
    u
}

/// Churn, fan-out, leak or bind-before-connect for every pool at warn or above: the headline
/// names what holds the pool's ports (issue 7).
fn pressure(snapshot: &Snapshot, set: &PoolSet, procs: &[ProcessReport], out: &mut Vec<Finding>) {
    // A latent bind() pool has its own finding.
    let candidates = set.pools.iter().filter(|p| p.level >= Level::Warn && !p.latent);
    for pool in candidates.take(MAX_PER_KIND) {
        if pool.kind == PoolKind::Snat {
            out.push(snat_pool(pool));
            continue;
        }
        let blocking_tw = pool.time_wait - pool.time_wait_reusable;
        let live = pool.used - pool.time_wait;
        let (pid, who) = culprit(pool, procs);
        let what = pool_phrase(pool);
        let lost_to_bind = if pool.kind == PoolKind::Connect {
            set.bind_made_ports.saturating_sub(pool.capacity.saturating_sub(set.connect_base))
        } else {
            0
        };
        let unclosed = if pool.kind == PoolKind::Connect {
            unclosed(snapshot, pool)
        } else {
            Unclosed::default()
        };
        let leaked = unclosed.fin_wait2.max(unclosed.close_wait);
        if pool.kind == PoolKind::Connect && lost_to_bind > 0 && lost_to_bind >= pool.effective {
            let probable =
                if set.unknowns.probable_bind_before_connect { "PROBABLE: " } else { "" };
            out.push(Finding {
                kind: FindingKind::BindBeforeConnect,
                level: pool.level,
                pid: set.pools.iter().find(|p| p.kind == PoolKind::Bind).and_then(|b| b.owners.first()).map(|o| o.pid),
                message: format!(
                    "{probable}{} ports are taken out of {what} by connections that bound their port with bind() before \
                     connect(): connect() skips a bind-made port for every destination, and its TIME_WAIT keeps it{}",
                    grouped(lost_to_bind),
                    if probable.is_empty() {
                        String::new()
                    } else {
                        " (the source does not show the bind bucket; ports here are never shared across destinations, \
                         which connect() alone would do)"
                            .to_owned()
                    }
                ),
                advice: "Set IP_BIND_ADDRESS_NO_PORT on the socket before bind() (Linux 4.2+): the port is then chosen at \
                         connect() and shared across destinations; or do not bind() outgoing sockets at all."
                    .to_owned(),
            });
        } else if leaked > 0 && leaked * 2 >= live && live > 0 {
            let server =
                unclosed.server.map_or_else(|| "the server".to_owned(), |pid| name_of(procs, pid));
            let remote = pool.remote.map_or("?".into(), |r| r.to_string());
            out.push(Finding {
                kind: FindingKind::LeakCloseWait,
                level: pool.level,
                pid: unclosed.server.or(pid),
                message: format!(
                    "{} of {} live connections of {what} were closed by this side and never by {server} ({} CLOSE_WAIT \
                     at {remote}, {} orphaned FIN_WAIT2 here): a leak in the server, not too many connections{who}",
                    grouped(leaked),
                    grouped(live),
                    grouped(unclosed.close_wait),
                    grouped(unclosed.fin_wait2),
                ),
                advice: format!(
                    "Fix {server}: it must close() a socket once a read returns end-of-stream. Restarting it frees the ports \
                     now; this side's orphaned FIN_WAIT2 sockets end after net.ipv4.tcp_fin_timeout."
                ),
            });
        } else if pool.kind == PoolKind::Udp {
            out.push(Finding {
                kind: FindingKind::FanOut,
                level: pool.level,
                pid,
                message: format!("{} UDP sockets hold ports of {what}{who}", grouped(pool.used)),
                advice: "Every UDP socket holds its port for every destination (the pool is global per namespace): \
                         send to many peers from one socket with sendto(), close idle sockets, or widen \
                         net.ipv4.ip_local_port_range."
                    .to_owned(),
            });
        } else if blocking_tw * 2 >= pool.used && blocking_tw > 0 {
            out.push(Finding {
                kind: FindingKind::Churn,
                level: pool.level,
                pid,
                message: format!(
                    "{} of {} used ports of {what} are in TIME_WAIT: connections are opened and closed by this side faster than TIME_WAIT gives ports back{who}",
                    grouped(blocking_tw),
                    grouped(pool.used)
                ),
                advice: format!(
                    "Reuse connections instead of opening one per request: HTTP keep-alive and a connection pool \
                     (Go http.Transport MaxIdleConnsPerHost, .NET IHttpClientFactory / SocketsHttpHandler, a JDBC pool){}.",
                    churn_stopgap(snapshot, pool)
                ),
            });
        } else {
            let more = match (pool.kind, snapshot.os) {
                (PoolKind::Connect, _) => {
                    "each local IP has its own pool per destination, so a second source IP or more destination IPs/ports \
                     multiply it; or widen net.ipv4.ip_local_port_range"
                }
                (_, Os::Windows) => {
                    "widen the dynamic range (netsh int ipv4 set dynamicport tcp start=10000 num=55535) or remove exclusions"
                }
                // Connected sockets made by connect() fill the range: the bind(port 0) caller
                // (an ephemeral listener, say) is the victim, not the cause.
                (PoolKind::Bind, _) if set.bind_made_ports == 0 => {
                    "give listeners a fixed port outside the ephemeral range (or reserve theirs in \
                     net.ipv4.ip_local_reserved_ports) so they never depend on bind(port 0), or widen \
                     net.ipv4.ip_local_port_range"
                }
                _ => {
                    "use IP_BIND_ADDRESS_NO_PORT before bind() so ports are shared per destination, or widen net.ipv4.ip_local_port_range"
                }
            };
            out.push(Finding {
                kind: FindingKind::FanOut,
                level: pool.level,
                pid,
                message: format!("{} live sockets hold {what}{who}", grouped(pool.used - pool.time_wait)),
                advice: format!("Open fewer parallel connections (cap the client's pool size), or spread them: {more}."),
            });
        }
    }
}

/// The setting that relieves TIME_WAIT churn on this pool, if any, with its current value.
fn churn_stopgap(snapshot: &Snapshot, pool: &Pool) -> String {
    if snapshot.os == Os::Windows {
        return format!(
            "; as a stopgap lower TcpTimedWaitDelay (HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters, default {} s)",
            crate::pool::WINDOWS_TIME_WAIT_MS / 1000
        );
    }
    let rate = format!(
        ". Sustainable rate: about {} new connections/s ({} ports / {} s of TIME_WAIT)",
        grouped(pool.sustainable_rate().unwrap_or(0.0) as u64),
        grouped(pool.capacity),
        pool.time_wait_ms().unwrap_or(LINUX_TIME_WAIT_MS) / 1000
    );
    if pool.kind != PoolKind::Connect {
        // bind(port 0) never takes a TIME_WAIT port, whatever tcp_tw_reuse says.
        return format!(
            "{rate}. tcp_tw_reuse does not help bind(port 0): only fewer closes by this side do"
        );
    }
    let settings = &snapshot.settings;
    let delay = settings.tw_reuse_delay_ms.unwrap_or(crate::pool::LINUX_TW_REUSE_DELAY_MS);
    let loopback = pool.local.is_some_and(|l| l.is_loopback())
        || pool.remote.is_some_and(|r| r.ip().is_loopback());
    let fix = match (settings.tw_reuse, settings.timestamps) {
        (Some(TwReuse::Loopback) | None, _) if loopback => format!(
            "tcp_tw_reuse=2 (loopback) already lets connect() reuse this loopback pool's TIME_WAIT ports once they are \
             older than {delay} ms and recorded timestamps; these are not (closed within the last {delay} ms, or the \
             connections did not negotiate timestamps), so tcp_tw_reuse=1 would change nothing: only fewer closes by this side help"
        ),
        (_, Some(false)) => "TCP timestamps are off (net.ipv4.tcp_timestamps=0), and tcp_tw_reuse needs them: turning them \
                              on is what lets TIME_WAIT ports be reused"
            .to_owned(),
        (Some(TwReuse::On), _) => format!(
            "tcp_tw_reuse is already 1: these TIME_WAIT sockets are younger than {delay} ms or did not negotiate timestamps"
        ),
        (mode, _) => format!(
            "net.ipv4.tcp_tw_reuse=1 lets connect() reuse TIME_WAIT ports older than {delay} ms for any destination \
             (now: {})",
            match mode {
                Some(TwReuse::Loopback) => "2, loopback only",
                Some(TwReuse::Off) => "0, off",
                _ => "unknown",
            }
        ),
    };
    format!("{rate}. {fix}")
}

fn pool_phrase(pool: &Pool) -> String {
    match (pool.kind, pool.remote) {
        (PoolKind::Connect, Some(r)) => {
            format!("the pool to {r} (from {})", pool.local.map_or("?".into(), |l| l.to_string()))
        }
        _ => format!("the {}", pool.label()),
    }
}

fn half_range(set: &PoolSet, out: &mut Vec<Finding>) {
    let past: Vec<&Pool> = set
        .pools
        .iter()
        .filter(|p| {
            p.kind == PoolKind::Connect
                && p.level < Level::Exhausted
                && u64::from(p.effective) * 2 > u64::from(p.capacity)
        })
        .collect();
    if past.is_empty() {
        return;
    }
    let names: Vec<String> = past
        .iter()
        .take(3)
        .map(|p| format!("{} ({:.0} %)", p.remote.map_or("?".into(), |r| r.to_string()), p.percent))
        .collect();
    let more = if past.len() > 3 { format!(" and {} more", past.len() - 3) } else { String::new() };
    out.push(Finding {
        kind: FindingKind::HalfRange,
        level: Level::Warn,
        pid: None,
        message: format!(
            "{} destination pool{} past half the range: {}{more}. connect() tries the ports of one parity first, \
             so each new connection to these destinations now scans thousands of ports (about 1.5-5 ms instead of 10-25 µs)",
            past.len(),
            if past.len() == 1 { " is" } else { "s are" },
            names.join(", ")
        ),
        advice: "Keep each destination's pool under half: reuse connections, add source or destination addresses, \
                 or widen net.ipv4.ip_local_port_range."
            .to_owned(),
    });
}

/// A process's CLOSE_WAIT or BOUND sockets count as a leak past this many.
fn leak_threshold(set: &PoolSet) -> u32 {
    let usable = set.ranges.first().map_or(28_232, |r| r.usable);
    (usable / 20).clamp(5, 50)
}

fn leaks(set: &PoolSet, procs: &[ProcessReport], out: &mut Vec<Finding>) {
    let threshold = leak_threshold(set);
    for (state, kind) in
        [(State::CloseWait, FindingKind::LeakCloseWait), (State::Bound, FindingKind::LeakBound)]
    {
        // A leak already named as the headline of its pool is not listed twice.
        let leaking: Vec<&ProcessReport> = procs
            .iter()
            .filter(|p| p.states.get(state.as_str()).is_some_and(|&n| n >= threshold))
            .filter(|p| !out.iter().any(|f| f.kind == kind && f.pid == Some(p.pid)))
            .take(MAX_PER_KIND)
            .collect();
        for p in leaking {
            let n = p.states[state.as_str()];
            let (message, advice) = if state == State::CloseWait {
                (
                    format!(
                        "{} (pid {}) has {} in CLOSE_WAIT: the peer closed them and the application never did",
                        p.name,
                        p.pid,
                        plural(n, "socket")
                    ),
                    "This is a bug in the application: it must close() a socket once a read returns end-of-stream \
                     (or dispose the response / stream). Restarting it frees the ports for now.",
                )
            } else {
                (
                    format!(
                        "{} (pid {}) has {} bound to a port but never connected or closed",
                        p.name,
                        p.pid,
                        plural(n, "socket")
                    ),
                    "The application binds sockets and leaks them: close sockets whose connect() failed or was \
                     abandoned; set IP_BIND_ADDRESS_NO_PORT if it binds only to pick a source address.",
                )
            };
            out.push(Finding {
                kind,
                level: Level::Warn,
                pid: Some(p.pid),
                message,
                advice: advice.to_owned(),
            });
        }
    }
}

fn squatting(snapshot: &Snapshot, set: &PoolSet, out: &mut Vec<Finding>) {
    if set.bind_type_ports.is_empty() {
        return;
    }
    // Listeners only: a bound socket is a leak (above), a listener is a service in the wrong place.
    let mut listeners: Vec<(u16, Option<u32>)> = snapshot
        .sockets
        .iter()
        .filter(|s| {
            s.protocol == Protocol::Tcp
                && s.state == State::Listen
                && set.bind_type_ports.binary_search(&s.local_port).is_ok()
        })
        .map(|s| (s.local_port, s.pid.map(|p| p.get())))
        .collect();
    listeners.sort_unstable();
    listeners.dedup_by_key(|l| l.0);
    if listeners.is_empty() {
        return;
    }
    if snapshot.os == Os::Windows {
        windows_dynamic_listeners(snapshot, set, &listeners, out);
        return;
    }
    let shown: Vec<String> = listeners
        .iter()
        .take(10)
        .map(|(port, pid)| match pid.and_then(|pid| snapshot.process(pid)) {
            Some(p) => format!("{port} ({}, pid {})", p.name, p.pid),
            None => port.to_string(),
        })
        .collect();
    let ports: Vec<String> = listeners.iter().map(|l| l.0.to_string()).collect();
    let range = set.ranges.first().map_or(String::new(), |r| format!("{}-{}", r.start, r.end));
    let (n, s) = (listeners.len(), if listeners.len() == 1 { "" } else { "s" });
    let advice = format!(
        "Reserve the port{s} so connect() never hands {} out: sysctl -w net.ipv4.ip_local_reserved_ports={} \
         (and in /etc/sysctl.d/), or move the service{s} outside {range}.",
        if n == 1 { "it" } else { "them" },
        ports.join(",")
    );
    out.push(Finding {
        kind: FindingKind::Squatting,
        level: Level::Warn,
        pid: listeners.first().and_then(|l| l.1),
        message: format!(
            "{n} listener{s} inside the ephemeral range {range}: {}. Each takes its port out of every destination's pool, \
             and a service there fails to start (EADDRINUSE) when an outgoing connection took its port first",
            shown.join(", ")
        ),
        advice,
    });
}

/// Windows hosts RPC dynamic endpoints in these processes on every machine (DOMAIN.md 2): the
/// endpoint mapper takes their ports from the dynamic range (typically 49664-49670). Normal, not
/// squatting; excluding their ports would be wrong advice (issue 8).
const RPC_ENDPOINT_HOSTS: [&str; 5] = ["lsass", "wininit", "services", "spoolsv", "svchost"];

/// Listeners in the Windows dynamic range become a problem whoever they are once they hold this
/// share of the pool, in percent. A host's usual RPC endpoints hold about 0.05 % (6-15 of
/// 16,384 ports); the levels step at 70 % and 90 %, so below 1 % no listener count moves a
/// verdict. In a narrowed range (255 ports minimum) 1 % is 3 listeners, which do matter there.
const WINDOWS_LISTENER_SHARE_PCT: u32 = 1;

fn is_rpc_endpoint_host(name: &str) -> bool {
    let base = name.rsplit(['\\', '/']).next().unwrap_or(name);
    let stem = match base.len().checked_sub(4) {
        Some(i) if base.is_char_boundary(i) && base[i..].eq_ignore_ascii_case(".exe") => &base[..i],
        _ => base,
    };
    RPC_ENDPOINT_HOSTS.iter().any(|h| h.eq_ignore_ascii_case(stem))
}

/// Windows: listeners in the dynamic range. Dynamic endpoints (RPC) are normal: one INFO line.
/// A named listener of another program may be a fixed-port service that fails to start when an
/// outgoing connection took its port: WARN, with the exclusion. Listeners holding
/// `WINDOWS_LISTENER_SHARE_PCT` of the pool: WARN, whoever they are.
fn windows_dynamic_listeners(
    snapshot: &Snapshot,
    set: &PoolSet,
    listeners: &[(u16, Option<u32>)],
    out: &mut Vec<Finding>,
) {
    let Some(r) = set.ranges.first() else { return };
    let range = format!("{}-{}", r.start, r.end);
    let name = |pid: Option<u32>| {
        pid.and_then(|pid| snapshot.process(pid)).map(|p| p.name.as_str()).filter(|n| *n != "?")
    };
    let show = |l: &[(u16, Option<u32>)]| {
        let mut v: Vec<String> = l
            .iter()
            .take(10)
            .map(|&(port, pid)| match (name(pid), pid) {
                (Some(n), Some(pid)) => format!("{port} ({n}, pid {pid})"),
                (None, Some(pid)) => format!("{port} (pid {pid})"),
                _ => port.to_string(),
            })
            .collect();
        if l.len() > 10 {
            v.push(format!("and {} more", l.len() - 10));
        }
        v.join(", ")
    };
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let n = listeners.len();
    let share = |k: usize| 100.0 * k as f64 / f64::from(r.usable.max(1));
    let threshold = (r.usable * WINDOWS_LISTENER_SHARE_PCT).div_ceil(100).max(1);
    if n as u64 >= u64::from(threshold) {
        out.push(Finding {
            kind: FindingKind::Squatting,
            level: Level::Warn,
            pid: listeners.first().and_then(|l| l.1),
            message: format!(
                "{n} listener{} inside the dynamic range {range} hold {:.1} % of the pool (the usual RPC endpoints hold \
                 about 0.05 %): {}",
                plural(n),
                share(n),
                show(listeners)
            ),
            advice: "Find the service that opens so many listeners (`netstat -anob` names them) and cap it, or widen \
                     the dynamic range (`netsh int ipv4 set dynamicport tcp start=49152 num=16384`)."
                .to_owned(),
        });
        return;
    }
    let (named, usual): (Vec<(u16, Option<u32>)>, Vec<_>) = listeners
        .iter()
        .copied()
        .partition(|l| name(l.1).is_some_and(|n| !is_rpc_endpoint_host(n)));
    if !named.is_empty() {
        let k = named.len();
        out.push(Finding {
            kind: FindingKind::Squatting,
            level: Level::Warn,
            pid: named.first().and_then(|l| l.1),
            message: format!(
                "{k} listener{} inside the dynamic range {range} belong to programs that are not RPC endpoint hosts: {}. \
                 A service configured for a fixed port there fails to start (WSAEADDRINUSE) when an outgoing \
                 connection took its port first",
                plural(k),
                show(&named)
            ),
            advice: format!(
                "If the service is configured for {} port{}, exclude it from the dynamic range ({}) or move it outside \
                 {range}; if it takes any free port when it starts, nothing to do.",
                if k == 1 { "this" } else { "these" },
                plural(k),
                named
                    .iter()
                    .take(3)
                    .map(|(p, _)| format!("netsh int ipv4 add excludedportrange protocol=tcp startport={p} numberofports=1"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    if !usual.is_empty() {
        let k = usual.len();
        let unnamed = usual.iter().filter(|l| name(l.1).is_none()).count();
        let (message_tail, advice) = if unnamed == 0 {
            (
                String::new(),
                "Nothing to do: every Windows host has these dynamic endpoints.".to_owned(),
            )
        } else {
            (
                format!(
                    "; {unnamed} of them have no process name in the input, and are taken for dynamic endpoints"
                ),
                "Nothing to do for dynamic endpoints. To tell a fixed-port service from them, capture the owners' \
                 names: `netstat -anob` in cmd.exe as Administrator."
                    .to_owned(),
            )
        };
        out.push(Finding {
            kind: FindingKind::Squatting,
            level: Level::Info,
            pid: None,
            message: format!(
                "{k} listener{} inside the dynamic range {range} ({:.2} % of the pool): {}. Windows RPC endpoints \
                 (lsass, wininit, services, spoolsv, svchost) take their ports from the dynamic range on every host; \
                 that is normal{message_tail}",
                plural(k),
                share(k),
                show(&usual)
            ),
            advice,
        });
    }
}

fn shrunk_range(snapshot: &Snapshot, set: &PoolSet, out: &mut Vec<Finding>) {
    let Some(r) = set.ranges.first() else { return };
    if r.assumed {
        return;
    }
    let (default, how) = match snapshot.os {
        Os::Linux => (28_232u32, "net.ipv4.ip_local_port_range (default 32768 60999)"),
        Os::Windows => (16_384, "the dynamic port range (default start 49152, 16,384 ports)"),
    };
    if r.usable >= default {
        return;
    }
    let span = r.end as u32 - r.start as u32 + 1;
    let mut parts = Vec::new();
    if span < default {
        parts.push(format!(
            "the range {}-{} holds {} ports instead of {}",
            r.start,
            r.end,
            grouped(span),
            grouped(default)
        ));
    }
    if r.reserved > 0 {
        let what = if snapshot.os == Os::Windows { "excluded" } else { "reserved" };
        // Only the blocks inside the range matter: exclusions elsewhere take nothing from it.
        let inside = crate::ports::PortRange::new(r.start, r.end).and_then(|range| {
            Some(crate::ports::PortSet::from_ranges(
                snapshot.settings.tcp_reserved.as_ref()?.within(range),
            ))
        });
        let blocks = inside.map(|s| s.to_string()).unwrap_or_default();
        parts.push(format!("{} ports in it are {what} ({blocks})", grouped(r.reserved)));
    }
    let level = if r.usable * 4 < default { Level::Warn } else { Level::Info };
    out.push(Finding {
        kind: FindingKind::ShrunkRange,
        level,
        pid: None,
        message: format!("Only {} usable ephemeral ports: {}", grouped(r.usable), parts.join("; ")),
        advice: format!("Unless narrowed on purpose, restore {how}, and drop reservations or exclusions that are not needed."),
    });
}

fn ownerless_time_wait(snapshot: &Snapshot, procs: &[ProcessReport], out: &mut Vec<Finding>) {
    let mut by_remote: HashMap<SocketAddr, u64> = HashMap::default();
    for s in snapshot.sockets.iter().filter(|s| s.state == State::TimeWait && s.pid.is_none()) {
        *by_remote.entry(SocketAddr::new(s.remote_ip, s.remote_port)).or_default() += 1;
    }
    let total: u64 = by_remote.values().sum();
    if total == 0 {
        return;
    }
    let mut top: Vec<(SocketAddr, u64)> = by_remote.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let shown: Vec<String> = top
        .iter()
        .take(3)
        .map(|(remote, n)| {
            // The likeliest owner is whoever still talks to that destination.
            let talker = procs.iter().find(|p| p.top_remotes.iter().any(|r| r.remote == *remote));
            match talker {
                Some(p) => format!(
                    "{} to {remote} (live connections there: {}, pid {})",
                    grouped(*n),
                    p.name,
                    p.pid
                ),
                None => format!("{} to {remote}", grouped(*n)),
            }
        })
        .collect();
    let rest: Vec<&(SocketAddr, u64)> = top.iter().skip(3).collect();
    let more = if rest.is_empty() {
        String::new()
    } else {
        let sockets: u64 = rest.iter().map(|(_, n)| n).sum();
        let to = plural(rest.len() as u64, "more destination");
        format!("; and {} to {to}", plural(sockets, "socket"))
    };
    out.push(Finding {
        kind: FindingKind::OwnerlessTimeWait,
        level: Level::Info,
        pid: None,
        message: format!(
            "{} TIME_WAIT sockets have no owning process ({}): {}{more}",
            grouped(total),
            match snapshot.os {
                Os::Linux => "the kernel drops the owner at close, so ss -p, netstat -p and lsof cannot name it",
                Os::Windows => "Windows lists them under PID 0",
            },
            shown.join("; ")
        ),
        advice: "Their owner is the process that opened them: the one with live connections to the same destination \
                 is the likeliest; to be sure, catch the connections while they are open (a snapshot every few seconds, or kernel tracing)."
            .to_owned(),
    });
}

fn latent_bind_pool(set: &PoolSet, out: &mut Vec<Finding>) {
    let Some(bind) = set.pools.iter().find(|p| p.kind == PoolKind::Bind && p.latent) else {
        return;
    };
    // The advice follows the numbers: TIME_WAIT churn only when TIME_WAIT holds most of it.
    let (held_by, advice) = if bind.time_wait * 2 >= bind.used && bind.time_wait > 0 {
        (
            format!(
                " ({} of them by TIME_WAIT, which connect() may reuse but bind() may not)",
                grouped(bind.time_wait)
            ),
            "Cut the TIME_WAIT churn (reuse connections), or keep services that bind(port 0) out of this namespace; \
             give fixed ports to listeners.",
        )
    } else {
        let held_by = if bind.time_wait > 0 {
            format!(
                " ({} by live sockets, {} by TIME_WAIT)",
                grouped(bind.used - bind.time_wait),
                grouped(bind.time_wait)
            )
        } else {
            " (all by live sockets)".to_owned()
        };
        (
            held_by,
            "Find who holds the ports (the processes above) and open fewer connections at once, or widen the range; \
             keep services that bind(port 0) out of this namespace and give fixed ports to listeners.",
        )
    };
    out.push(Finding {
        kind: FindingKind::LatentBindPool,
        level: Level::Warn,
        pid: None,
        message: format!(
            "bind() to port 0 would fail now: {} of {} TCP ports are held{held_by}. Nothing seen here allocates that way \
             (no bound sockets; connections share ports), so connect() is unaffected, but an ephemeral listener, a \
             bind-before-connect client or an FTP/RPC data port would get EADDRINUSE",
            grouped(bind.used),
            grouped(bind.capacity),
        ),
        advice: advice.to_owned(),
    });
}

/// Connections to several destinations that share no port although they cannot all fit in one
/// parity half of the range: connect() alone would have shared, so bind() chose their ports.
fn bind_before_connect(set: &PoolSet, out: &mut Vec<Finding>) {
    if !set.no_port_sharing || out.iter().any(|f| f.kind == FindingKind::BindBeforeConnect) {
        return;
    }
    let Some(bind) = set.pools.iter().find(|p| p.kind == PoolKind::Bind) else { return };
    let connect: Vec<&Pool> = set.pools.iter().filter(|p| p.kind == PoolKind::Connect).collect();
    let sockets: u64 = connect.iter().map(|p| u64::from(p.used)).sum();
    out.push(Finding {
        kind: FindingKind::BindBeforeConnect,
        level: bind.level.max(Level::Warn),
        pid: bind.owners.first().map(|o| o.pid),
        message: format!(
            "{} to {} share no port, which connect() alone would have done: they took \
             their ports with bind() first, so they all draw from the bind() pool ({:.0} % full)",
            plural(sockets, "outgoing connection"),
            plural(connect.len() as u64, "destination"),
            bind.percent
        ),
        advice: "Set IP_BIND_ADDRESS_NO_PORT on the socket before bind() (Linux 4.2+): the port is then chosen at \
                 connect() and shared across destinations; or do not bind() outgoing sockets at all."
            .to_owned(),
    });
}

/// A full SNAT pool: the NAT box's clients, not a process here, hold its ports.
fn snat_pool(pool: &Pool) -> Finding {
    Finding {
        kind: FindingKind::SnatPool,
        level: pool.level,
        pid: None,
        message: format!(
            "{} conntrack entries ({} in TIME_WAIT) hold translated ports of {}, from {}",
            grouped(pool.used),
            grouped(pool.time_wait),
            pool.label(),
            pool.range_from.as_deref().unwrap_or("the kernel's default NAT range")
        ),
        advice: "Widen the rule's port range (snat to IP:LOW-HIGH, MASQUERADE --to-ports) or SNAT to more \
                 addresses; clients behind the NAT should reuse connections. Entries outlive their clients \
                 (conntrack keeps TIME_WAIT 120 s), so the pool stays full after they exit."
            .to_owned(),
    }
}

/// conntrack's failure counters on this namespace: on a box that source-NATs (a SNAT entry or
/// rule exists) they are past SNAT failures, critical as a logged Windows 4231 is; elsewhere
/// they are insert races (e.g. parallel DNS queries over UDP) and only inform; when neither the
/// table nor the rules could be read (`nat` None) they are a warning.
pub(crate) fn snat_failures(stats: &ConntrackStats, nat: Option<bool>) -> Option<Finding> {
    if stats.insert_failed == 0 && stats.drop == 0 {
        return None;
    }
    let counted = format!(
        "conntrack counted {} and {} in this namespace since it started",
        plural(stats.insert_failed, "failed insert"),
        plural(stats.drop, "drop")
    );
    Some(if nat.is_none() {
        Finding {
            kind: FindingKind::SnatFailures,
            level: Level::Warn,
            pid: None,
            message: format!(
                "{counted}; whether this box source-NATs could not be read (the conntrack table and NAT rules need CAP_NET_ADMIN), so they may be dropped connections through a full SNAT range"
            ),
            advice:
                "Run porthog as root to see the SNAT pools and tell a full range from insert races."
                    .to_owned(),
        }
    } else if nat == Some(true) {
        Finding {
            kind: FindingKind::SnatFailures,
            level: Level::Critical,
            pid: None,
            message: format!(
                "{counted}: connections through the source NAT were dropped (their clients saw a timeout, not an error)"
            ),
            advice: "Widen the SNAT port range (snat to IP:LOW-HIGH, MASQUERADE --to-ports) or add SNAT addresses, and \
                     reuse connections; watch porthog_conntrack_insert_failed_total grow to see when it happens."
                .to_owned(),
        }
    } else {
        Finding {
            kind: FindingKind::SnatFailures,
            level: Level::Info,
            pid: None,
            message: format!("{counted}; no source NAT is seen here, so these were insert races, not a full pool"),
            advice: "Nothing to do for ports; parallel UDP queries with the same tuple (DNS over one socket) cause these."
                .to_owned(),
        }
    })
}

/// Findings from logged events: what failed before, even if the snapshot looks healthy now.
pub(crate) fn from_evidence(evidence: &[Evidence]) -> Vec<Finding> {
    let when = |e: &Evidence| match (&e.first, &e.last) {
        (Some(a), Some(z)) if a != z => format!(" between {a} and {z}"),
        (Some(a), _) => format!(" at {a}"),
        _ => String::new(),
    };
    evidence
        .iter()
        .filter(|e| e.kind == "event")
        .filter_map(|e| {
            let times = if e.count == 1 { "once".to_owned() } else { format!("{} times", grouped(e.count)) };
            let (kind, level, advice) = match e.id {
                4231 | 4266 => (
                    FindingKind::PastExhaustion,
                    Level::Critical,
                    "The pool ran out then even if this snapshot looks healthy: capture netstat -anoq while it happens again \
                     to name the process, and see the pools and processes above for who holds ports now.",
                ),
                4227 => (
                    FindingKind::TimeWaitCollision,
                    Level::Warn,
                    "Connections to the same remote endpoint are opened and closed faster than TIME_WAIT frees them: \
                     reuse connections (keep-alive, pooling).",
                ),
                _ => return None,
            };
            Some(Finding {
                kind,
                level,
                pid: None,
                message: format!("Tcpip event {} was logged {times}{}: {}", e.id, when(e), e.meaning),
                advice: advice.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod windows_listener_tests {
    use std::net::IpAddr;
    use std::num::NonZeroU32;

    use crate::model::{Os, Process, Protocol, Snapshot, Socket, State};
    use crate::ports::PortRange;
    use crate::report::{Finding, FindingKind};
    use crate::{AnalyzeOptions, Level, analyze};

    fn listener(port: u16, pid: u32) -> Socket {
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        Socket {
            pid: NonZeroU32::new(pid),
            ..Socket::new(Protocol::Tcp, State::Listen, (any, port), (any, 0))
        }
    }

    fn windows(listeners: &[(u16, u32)], names: &[(u32, &str)], range: (u16, u16)) -> Vec<Finding> {
        let mut s = Snapshot::new(Os::Windows, "test");
        s.settings.tcp_range = PortRange::new(range.0, range.1);
        s.sockets = listeners.iter().map(|&(port, pid)| listener(port, pid)).collect();
        s.processes = names
            .iter()
            .map(|&(pid, name)| Process { pid, name: name.into(), ..Default::default() })
            .collect();
        s.processes.sort_by_key(|p| p.pid);
        s.processes.dedup_by_key(|p| p.pid);
        analyze(&s, &AnalyzeOptions::default())
            .findings
            .into_iter()
            .filter(|f| f.kind == FindingKind::Squatting)
            .collect()
    }

    const RPC: [(u16, u32); 6] =
        [(49664, 700), (49665, 560), (49666, 1200), (49667, 1300), (49668, 2400), (49670, 690)];
    const RPC_NAMES: [(u32, &str); 6] = [
        (700, "lsass.exe"),
        (560, "wininit.exe"),
        (1200, "svchost.exe"),
        (1300, "svchost.exe"),
        (2400, "spoolsv.exe"),
        (690, "services.exe"),
    ];

    #[test]
    fn rpc_endpoints_are_info_without_exclusion_advice() {
        let f = windows(&RPC, &RPC_NAMES, (49152, 65535));
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].level, Level::Info);
        assert!(
            f[0].message.starts_with("6 listeners inside the dynamic range 49152-65535"),
            "{}",
            f[0].message
        );
        assert!(f[0].message.contains("49664 (lsass.exe, pid 700)"), "{}", f[0].message);
        assert!(!f[0].advice.contains("excludedportrange"), "{}", f[0].advice);
        assert!(f[0].advice.starts_with("Nothing to do"), "{}", f[0].advice);
    }

    #[test]
    fn unnamed_listeners_are_taken_for_dynamic_endpoints_and_the_capture_is_named() {
        let f = windows(&RPC, &[], (49152, 65535));
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].level, Level::Info);
        assert!(f[0].message.contains("6 of them have no process name"), "{}", f[0].message);
        assert!(f[0].advice.contains("netstat -anob"), "{}", f[0].advice);
        assert!(!f[0].advice.contains("excludedportrange"), "{}", f[0].advice);
    }

    #[test]
    fn a_named_service_in_the_range_is_a_warning_beside_the_rpc_info() {
        let mut l = RPC.to_vec();
        l.push((50000, 7));
        let mut names = RPC_NAMES.to_vec();
        names.push((7, "sqlservr.exe"));
        let f = windows(&l, &names, (49152, 65535));
        assert_eq!(f.iter().map(|f| f.level).collect::<Vec<_>>(), [Level::Warn, Level::Info]);
        assert!(f[0].message.contains("50000 (sqlservr.exe, pid 7)"), "{}", f[0].message);
        assert!(!f[0].message.contains("lsass"), "{}", f[0].message);
        assert!(f[0].advice.contains("startport=50000 numberofports=1"), "{}", f[0].advice);
        assert!(!f[0].advice.contains("startport=49664"), "{}", f[0].advice);
    }

    #[test]
    fn listeners_holding_one_percent_of_the_pool_warn_whoever_they_are() {
        // 16,384 ports: 1 % is 164 listeners.
        let many: Vec<(u16, u32)> = (0..164).map(|i| (49664 + i, 1200)).collect();
        let f = windows(&many, &RPC_NAMES, (49152, 65535));
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].level, Level::Warn);
        assert!(f[0].message.contains("hold 1.0 % of the pool"), "{}", f[0].message);
        assert!(f[0].message.contains("and 154 more"), "{}", f[0].message);
        let f = windows(&many[..163], &RPC_NAMES, (49152, 65535));
        assert_eq!(f[0].level, Level::Info);
        // A 255-port range: the six usual endpoints are 2.4 % of it.
        let f = windows(&RPC, &RPC_NAMES, (49500, 49754));
        assert_eq!(f[0].level, Level::Warn);
    }

    #[test]
    fn rpc_host_names_match_with_or_without_exe_and_path() {
        use super::is_rpc_endpoint_host as rpc;
        assert!(
            rpc("svchost.exe")
                && rpc("LSASS.EXE")
                && rpc("wininit")
                && rpc(r"C:\\Windows\\System32\\services.exe")
        );
        assert!(!rpc("sqlservr.exe") && !rpc("svchost.exe.bak") && !rpc(".exe") && !rpc("é"));
    }
}
