//! `Snapshot -> Report`: the one analysis every source and presenter shares. Pools decide the
//! verdict; processes, findings, gaps and assumptions explain it.

use std::collections::BTreeMap;

use crate::culprits;
use crate::findings;
use crate::level::{Level, Thresholds};
use crate::model::{GapKind, Os, Snapshot, State};
use crate::pool::{self, Allocation, Pool, PoolKind, Unknowns};
use crate::report::{
    ConntrackReport, Evidence, Report, SCHEMA_VERSION, SettingsReport, SourceInfo, Totals, grouped,
    plural,
};

/// How the report is cut down and judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalyzeOptions {
    pub thresholds: Thresholds,
    /// Pools kept at `ok` beside every pool above it.
    pub ok_pools: usize,
}

impl Default for AnalyzeOptions {
    fn default() -> AnalyzeOptions {
        AnalyzeOptions { thresholds: Thresholds::default(), ok_pools: 10 }
    }
}

/// Sockets from which the analysis takes a second thread: below, one costs more than it saves.
const PARALLEL_AT_LEAST: usize = 100_000;

/// Judges a snapshot: pools, verdict, culprits, findings, gaps.
pub fn analyze(snapshot: &Snapshot, opts: &AnalyzeOptions) -> Report {
    let settings = &snapshot.settings;
    let tcp = Allocation::of(snapshot.os, settings.tcp_range, settings.tcp_reserved.as_ref());
    let udp = Allocation::of(snapshot.os, settings.udp_range, settings.udp_reserved.as_ref());
    // The pools and the processes are two passes and two sorts over the same sockets, apart:
    // with many sockets, on two threads (issue 11: a million-row capture at 150 MB/s).
    let processes = || culprits::processes(snapshot, &tcp, &udp);
    let (set, processes) = if snapshot.sockets.len() >= PARALLEL_AT_LEAST {
        std::thread::scope(|s| {
            // No second thread to be had (a process or memory limit): the same work on this one.
            let Ok(processes) = std::thread::Builder::new().spawn_scoped(s, processes) else {
                return (pool::pools(snapshot, &opts.thresholds), processes());
            };
            let set = pool::pools(snapshot, &opts.thresholds);
            (set, processes.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        })
    } else {
        (pool::pools(snapshot, &opts.thresholds), processes())
    };
    let findings = findings::findings(snapshot, &set, &processes);

    let verdict = set.pools.first().map_or(Level::Ok, |p| p.level);
    let summary = summary(set.pools.first(), snapshot.sockets.len(), &opts.thresholds);
    let total_pools = set.pools.len() as u64;
    let mut pools = set.pools;
    let above_ok = pools.iter().take_while(|p| p.level > Level::Ok).count();
    pools.truncate(above_ok.saturating_add(opts.ok_pools));

    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        verdict,
        summary,
        os: snapshot.os,
        source: snapshot.source.clone(),
        netns: snapshot.netns.clone(),
        assumptions: assumptions(snapshot, &pools, &set.unknowns, tcp.assumed),
        ranges: set.ranges,
        settings: SettingsReport {
            tw_reuse: settings.tw_reuse,
            timestamps: settings.timestamps,
            reserved: settings.tcp_reserved.as_ref().map(|s| s.to_string()),
        },
        totals: totals(snapshot, total_pools, processes.len() as u64),
        pools,
        programs: culprits::programs(&processes),
        processes,
        findings,
        gaps: snapshot.gaps.clone(),
        sources: Vec::new(),
        evidence: Vec::new(),
        conntrack: None,
    };
    if let Some(ct) = &snapshot.conntrack {
        conntrack(ct, &mut report);
    }
    report
}

/// The conntrack table's summary, and its failure counters as evidence: growing
/// `insert_failed`/`drop` on a box that source-NATs is what a full SNAT pool leaves behind
/// (the client only times out), so it raises the verdict as a logged Windows 4231 does.
fn conntrack(ct: &crate::snat::Conntrack, report: &mut Report) {
    let snat_entries = ct.entries.iter().filter(|e| e.src_nat).count() as u64;
    report.conntrack = Some(ConntrackReport {
        entries: ct.entries.len() as u64,
        snat_entries,
        insert_failed: ct.stats.map(|s| s.insert_failed),
        drop: ct.stats.map(|s| s.drop),
        rules_from: ct.rules.as_ref().map(|r| r.source.clone()),
    });
    let Some(stats) = ct.stats else { return };
    for (counter, count, meaning) in [
        ("insert_failed", stats.insert_failed, crate::snat::INSERT_FAILED_MEANING),
        ("drop", stats.drop, crate::snat::DROP_MEANING),
    ] {
        if count > 0 {
            report.evidence.push(Evidence {
                kind: "conntrack".to_owned(),
                id: 0,
                counter: Some(counter.to_owned()),
                count,
                first: None,
                last: None,
                meaning: meaning.to_owned(),
            });
        }
    }
    let nat = if snat_entries > 0 || ct.rules.as_ref().is_some_and(|r| !r.rules.is_empty()) {
        Some(true)
    } else if ct.unread && ct.rules.is_none() {
        None
    } else {
        Some(false)
    };
    if let Some(f) = findings::snat_failures(&stats, nat) {
        if f.level >= Level::Critical {
            report.raise(Level::Critical, &f.message);
        }
        report.findings.push(f);
        report.findings.sort_by_key(|f| std::cmp::Reverse(f.level));
    }
}

/// Judges imported captures: the snapshot, plus what the inputs prove about the past. A logged
/// exhaustion event (4231, 4266) makes the verdict at least critical.
pub fn analyze_imported(
    snapshot: &Snapshot,
    sources: Vec<SourceInfo>,
    evidence: Vec<Evidence>,
    opts: &AnalyzeOptions,
) -> Report {
    let mut report = analyze(snapshot, opts);
    add_evidence(&mut report, evidence);
    report.sources = sources;
    report
}

/// Adds what logged events prove about the past to a report: their findings, and a logged
/// exhaustion event (4231, 4266) makes the verdict at least critical. `check` with the events
/// of `--since`, and `watch`/`record` with the events new in each interval, judge alike.
pub fn add_evidence(report: &mut Report, mut evidence: Vec<Evidence>) {
    if evidence.is_empty() {
        return;
    }
    let mut past = findings::from_evidence(&evidence);
    if let Some(f) = past.iter().find(|f| f.level >= Level::Critical) {
        report.raise(Level::Critical, &f.message);
    }
    past.append(&mut report.findings);
    report.findings = past;
    report.findings.sort_by_key(|f| std::cmp::Reverse(f.level));
    // The snapshot's own evidence (conntrack's counters) stays beside the logged one.
    evidence.append(&mut report.evidence);
    report.evidence = evidence;
}

fn totals(snapshot: &Snapshot, pools: u64, processes: u64) -> Totals {
    let mut by_state = [0u64; State::ALL.len()];
    let (mut unattributed, mut ownerless) = (0, 0);
    // Inode 0 means "no process owns it" only from a source that gives inodes at all (sock_diag,
    // /proc/net, ss -e); `ss -tanp` or netstat give none, so there only TIME_WAIT is ownerless.
    let inodes_known = snapshot.sockets.iter().any(|s| s.inode != 0);
    for s in &snapshot.sockets {
        by_state[s.state as usize] += 1;
        if s.pid.is_none() {
            if s.state == State::TimeWait || (inodes_known && s.inode == 0) {
                ownerless += 1;
            } else {
                unattributed += 1;
            }
        }
    }
    Totals {
        sockets: snapshot.sockets.len() as u64,
        by_state: State::ALL
            .iter()
            .zip(by_state)
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (s.as_str().to_owned(), n))
            .collect::<BTreeMap<_, _>>(),
        unattributed,
        ownerless,
        pools,
        processes,
    }
}

/// The verdict line after its level word.
fn summary(tightest: Option<&Pool>, sockets: usize, thresholds: &Thresholds) -> String {
    let Some(p) = tightest.filter(|p| p.used > 0 || p.level > Level::Ok) else {
        return format!("no ephemeral ports in use ({})", plural(sockets as u64, "socket"));
    };
    let tw = match (p.time_wait, p.time_wait_reusable) {
        (0, _) => String::new(),
        (t, 0) => format!(" ({} TIME_WAIT)", grouped(t)),
        (t, r) => format!(" ({} TIME_WAIT, {} of them reusable)", grouped(t), grouped(r)),
    };
    let head =
        format!("{}  {} of {} ports in use{tw}", p.label(), grouped(p.used), grouped(p.capacity));
    let left = grouped(p.capacity.saturating_sub(p.effective));
    match p.level {
        _ if p.latent => format!(
            "{head}: {left} left, so bind(port 0) would fail for a caller; none is seen here, and connect() still works"
        ),
        Level::Exhausted => format!("{head}: {}", p.failure()),
        Level::Ok | Level::Info => format!("tightest pool: {head} ({:.0} %)", p.percent),
        // Warn below the warn threshold: only the half-range rule can have raised it.
        _ if p.kind == PoolKind::Connect && p.percent < thresholds.warn_pct => format!(
            "{head}: past half the range, each connect() to it scans thousands of ports; {left} left"
        ),
        _ => format!(
            "{head}: {} left before {}",
            plural(p.capacity.saturating_sub(p.effective), "port"),
            p.failure()
        ),
    }
}

fn assumptions(
    snapshot: &Snapshot,
    pools: &[Pool],
    unknowns: &Unknowns,
    range_assumed: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    // A source that could not give the range says so in its gaps, with the command that would.
    if range_assumed && !snapshot.gaps.iter().any(|g| g.kind == GapKind::Setting) {
        out.push(match snapshot.os {
            Os::Linux => {
                "the ephemeral range is unknown: the Linux default 32768-60999 was assumed"
                    .to_owned()
            }
            Os::Windows => {
                "the dynamic port range is unknown: the Windows default 49152-65535 was assumed"
                    .to_owned()
            }
        });
    }
    if snapshot.os == Os::Linux {
        if unknowns.probable_bind_before_connect {
            let spared = match unknowns.probable_connect_made {
                Some(dest) => format!(
                    "those to {dest} (most ports of the parity connect() tries first) were taken as connect()'s own, \
                     every other connected socket"
                ),
                None => "every connected socket".to_owned(),
            };
            out.push(format!(
                "PROBABLE bind-before-connect: the source does not show which call made each port's bind bucket, and \
                 connections to several destinations share no port, which connect() alone would have done; {spared} \
                 as bind() + connect(), its port lost to every destination"
            ));
        } else if unknowns.bucket {
            out.push(
                "connected sockets were taken to have their port from connect(), not bind() first (the source does \
                 not show the bind bucket: run as root for the BPF socket iterator); a bind-before-connect port is \
                 lost to every destination, and its TIME_WAIT cannot be reused"
                    .to_owned(),
            );
        }
        if unknowns.tw_timestamps > 0 {
            out.push(format!(
                "{} TIME_WAIT sockets: whether they recorded TCP timestamps is not shown, so today's \
                 net.ipv4.tcp_timestamps was taken as what each negotiated (a peer with timestamps off makes its \
                 TIME_WAIT unreusable; turning the sysctl off later changes nothing for existing ones)",
                crate::report::grouped(unknowns.tw_timestamps)
            ));
        }
        if unknowns.device > 0 {
            out.push(format!(
                "{} connected sockets were taken as bound to no device: the source does not show SO_BINDTODEVICE, and a \
                 socket bound to a device (lo included) holds its port only for callers bound to that device, which none \
                 of the pools listed is",
                crate::report::grouped(unknowns.device)
            ));
        }
        if unknowns.v6only > 0 {
            out.push(format!(
                "{} IPv6 sockets: IPV6_V6ONLY is not shown, so off (the default) was assumed: each also holds its port against IPv4 \
                 callers (bind(0.0.0.0, 0), UDP autobind)",
                crate::report::grouped(unknowns.v6only)
            ));
        }
        let tw = || snapshot.sockets.iter().filter(|s| s.state == State::TimeWait);
        if pools.iter().any(|p| p.time_wait_reusable > 0) && tw().any(|s| s.timer_ms == 0) {
            out.push(
                "TIME_WAIT sockets without a timer in the input (ss without -o, netstat) were taken as older than the \
                 reuse delay; a burst younger than that would still block connect()"
                    .to_owned(),
            );
        }
        if snapshot.settings.tcp_reserved.is_none() {
            out.push("no reserved ports were given (net.ipv4.ip_local_reserved_ports): none were assumed".to_owned());
        }
        if snapshot.settings.timestamps.is_none() && tw().next().is_some() {
            out.push(
                "net.ipv4.tcp_timestamps was not given: on (the kernel default) was assumed"
                    .to_owned(),
            );
        }
        if let Some(range) = snapshot.settings.tcp_range
            && let Some(port) = range.chance_port()
        {
            out.push(format!(
                "net.ipv4.ip_local_port_range holds an odd number of ports ({}): connect() and bind(port 0) scan one \
                 fewer per call (the kernel pairs the parities), and from a random start, so port {port} is handed out \
                 only by chance; it was counted as free, and a pool may give one port fewer than its free count",
                range.len()
            ));
        }
        out.push("a per-socket range (IP_LOCAL_PORT_RANGE, Linux 6.3+) cannot be seen from outside and is not modelled".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::num::NonZeroU32;

    use super::*;
    use crate::level::Thresholds;
    use crate::model::{Process, Protocol, Socket, TwReuse};
    use crate::ports::PortRange;
    use crate::report::FindingKind;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn snap(range: (u16, u16)) -> Snapshot {
        let mut s = Snapshot::new(Os::Linux, "test");
        s.settings.tcp_range = PortRange::new(range.0, range.1);
        s.settings.udp_range = s.settings.tcp_range;
        s.settings.tw_reuse = Some(TwReuse::Off);
        s.settings.timestamps = Some(true);
        s
    }

    fn conn(state: State, lport: u16, dport: u16, pid: u32) -> Socket {
        Socket {
            pid: NonZeroU32::new(pid),
            inode: if pid == 0 { 0 } else { u32::from(lport) },
            ..Socket::new(Protocol::Tcp, state, (ip("127.0.0.1"), lport), (ip("127.0.0.1"), dport))
        }
    }

    fn client(pid: u32, name: &str) -> Process {
        Process {
            pid,
            name: name.into(),
            cmdline: format!("{name} --load"),
            uid: Some(0),
            user: Some("root".into()),
            ..Default::default()
        }
    }

    #[test]
    fn exhausted_pool_names_the_client_first() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40100).map(|p| conn(State::Established, p, 7070, 42)).collect();
        s.sockets.extend((40000..40003).map(|p| conn(State::Established, 7070, p, 7)));
        s.sockets.push(conn(State::Listen, 7070, 0, 7));
        s.processes = vec![client(7, "server"), client(42, "client")];
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Exhausted);
        assert_eq!(r.processes[0].pid, 42);
        assert_eq!(r.processes[0].ephemeral_ports, 100);
        assert_eq!(r.processes[1].ephemeral_ports, 0);
        assert_eq!(
            r.summary,
            "tcp 127.0.0.1 -> 127.0.0.1:7070  100 of 100 ports in use: new connect() calls fail with EADDRNOTAVAIL"
        );
        assert_eq!(r.totals.sockets, 104);
        assert_eq!(r.totals.by_state["ESTABLISHED"], 103);
        assert!(
            r.findings.iter().any(|f| f.kind == FindingKind::FanOut && f.pid == Some(42)),
            "{:#?}",
            r.findings
        );
        assert!(r.findings.iter().any(|f| f.kind == FindingKind::ShrunkRange));
    }

    #[test]
    fn time_wait_churn_is_found_and_counted_ownerless() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40095).map(|p| conn(State::TimeWait, p, 7070, 0)).collect();
        s.sockets.extend((40095..40100).map(|p| conn(State::Established, p, 7070, 42)));
        s.processes = vec![client(42, "client")];
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Exhausted);
        assert_eq!(r.totals.ownerless, 95);
        assert_eq!(r.totals.unattributed, 0);
        let churn = r.findings.iter().find(|f| f.kind == FindingKind::Churn).expect("churn");
        assert_eq!(churn.pid, Some(42));
        assert!(churn.message.starts_with("95 of 100 used ports"), "{}", churn.message);
        let owner = r
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::OwnerlessTimeWait)
            .expect("ownerless");
        assert!(owner.message.contains("client, pid 42"), "{}", owner.message);
        assert!(r.summary.contains("(95 TIME_WAIT)"), "{}", r.summary);
    }

    /// Issue 8: more destinations than shown are counted, not dropped.
    #[test]
    fn ownerless_time_wait_says_how_many_destinations_it_leaves_out() {
        let mut s = snap((40000, 40099));
        s.sockets = (0..5u16).map(|i| conn(State::TimeWait, 40000 + i, 7070 + i, 0)).collect();
        s.sockets.push(conn(State::TimeWait, 40010, 7070, 0));
        let r = analyze(&s, &AnalyzeOptions::default());
        let owner = r
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::OwnerlessTimeWait)
            .expect("ownerless");
        assert!(
            owner.message.ends_with("; and 2 sockets to 2 more destinations"),
            "{}",
            owner.message
        );
    }

    /// Issue 8: the latent bind() pool's advice follows what holds the ports.
    #[test]
    fn latent_bind_pool_advice_follows_the_numbers() {
        let latent = |tw: u16| {
            let mut s = snap((40000, 40099));
            s.sockets = (40000..40000 + tw).map(|p| conn(State::TimeWait, p, 7070, 0)).collect();
            s.sockets.extend((40000 + tw..40095).map(|p| conn(State::Established, p, 7070, 42)));
            s.sockets.extend((40000 + tw..40095).map(|p| conn(State::Established, p, 7071, 42)));
            s.processes = vec![client(42, "client")];
            let r = analyze(&s, &AnalyzeOptions::default());
            r.findings.into_iter().find(|f| f.kind == FindingKind::LatentBindPool)
        };
        let live = latent(0).expect("latent bind pool with live sockets only");
        assert!(!live.message.contains("TIME_WAIT"), "{}", live.message);
        assert!(!live.advice.contains("TIME_WAIT"), "{}", live.advice);
        assert!(live.message.contains("are held (all by live sockets)"), "{}", live.message);
        let churn = latent(80).expect("latent bind pool of TIME_WAIT");
        assert!(churn.message.contains("(80 of them by TIME_WAIT"), "{}", churn.message);
        assert!(churn.advice.starts_with("Cut the TIME_WAIT churn"), "{}", churn.advice);
    }

    #[test]
    fn close_wait_leak_and_squatting() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40010).map(|p| conn(State::CloseWait, p, 7070, 42)).collect();
        s.sockets.push(conn(State::Listen, 40050, 0, 7));
        s.processes = vec![client(7, "server"), client(42, "client")];
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Ok);
        let leak = r.findings.iter().find(|f| f.kind == FindingKind::LeakCloseWait).expect("leak");
        assert_eq!(leak.pid, Some(42));
        let squat =
            r.findings.iter().find(|f| f.kind == FindingKind::Squatting).expect("squatting");
        assert!(squat.message.contains("40050 (server, pid 7)"), "{}", squat.message);
        assert!(squat.advice.contains("ip_local_reserved_ports=40050"), "{}", squat.advice);
        let connect = r.pools.iter().find(|p| p.kind == PoolKind::Connect).unwrap();
        assert_eq!((connect.used, connect.capacity), (10, 99));
    }

    #[test]
    fn bind_before_connect_is_seen_when_no_port_is_shared() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40040).map(|p| conn(State::Established, p, 7070, 42)).collect();
        s.sockets.extend((40040..40080).map(|p| conn(State::Established, p, 7071, 42)));
        let r = analyze(&s, &AnalyzeOptions::default());
        assert!(
            r.findings.iter().any(|f| f.kind == FindingKind::BindBeforeConnect),
            "{:#?}",
            r.findings
        );
        // Shared ports (what connect() does) are not flagged.
        s.sockets = (40000..40040).map(|p| conn(State::Established, p, 7070, 42)).collect();
        s.sockets.extend((40000..40040).map(|p| conn(State::Established, p, 7071, 42)));
        let r = analyze(&s, &AnalyzeOptions::default());
        assert!(!r.findings.iter().any(|f| f.kind == FindingKind::BindBeforeConnect));
    }

    /// Issue 7, case 7: a server that never closes; its clients' ports are held by orphaned
    /// FIN_WAIT2. The headline is the leak, naming the server, not fan-out.
    #[test]
    fn a_close_wait_leak_is_the_headline_not_fan_out() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40100).map(|p| conn(State::FinWait2, p, 7070, 0)).collect();
        s.sockets.extend((40000..40100).map(|p| Socket {
            pid: NonZeroU32::new(7),
            inode: u32::from(p),
            ..Socket::new(
                Protocol::Tcp,
                State::CloseWait,
                (ip("127.0.0.1"), 7070),
                (ip("127.0.0.1"), p),
            )
        }));
        s.sockets.push(conn(State::Listen, 7070, 0, 7));
        s.processes = vec![client(7, "server")];
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Exhausted);
        let head = &r.findings[0];
        assert_eq!(
            (head.kind, head.pid),
            (FindingKind::LeakCloseWait, Some(7)),
            "{:#?}",
            r.findings
        );
        assert!(head.message.contains("server (pid 7)"), "{}", head.message);
        assert!(!r.findings.iter().any(|f| f.kind == FindingKind::FanOut), "{:#?}", r.findings);
        assert_eq!(r.findings.iter().filter(|f| f.kind == FindingKind::LeakCloseWait).count(), 1);
    }

    /// Issue 7, case 7: loopback churn under tw_reuse=2 is not advised tw_reuse=1.
    #[test]
    fn loopback_churn_under_mode_2_is_not_advised_mode_1() {
        let mut s = snap((40000, 40099));
        s.settings.tw_reuse = Some(TwReuse::Loopback);
        // Younger than the reuse delay: mode 2 covers them, but not yet.
        s.sockets = (40000..40100)
            .map(|p| Socket { timer_ms: 59_900, ..conn(State::TimeWait, p, 7070, 0) })
            .collect();
        let r = analyze(&s, &AnalyzeOptions::default());
        let churn = r.findings.iter().find(|f| f.kind == FindingKind::Churn).expect("churn");
        assert!(!churn.advice.contains("tcp_tw_reuse=1 lets"), "{}", churn.advice);
        assert!(churn.advice.contains("tcp_tw_reuse=2 (loopback) already"), "{}", churn.advice);
    }

    /// Issue 7, case 1 without facts: the exhausted pool's headline is bind-before-connect,
    /// marked PROBABLE, and the assumption is declared.
    #[test]
    fn unshared_ports_headline_probable_bind_before_connect() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40050).map(|p| conn(State::Established, p, 5000, 42)).collect();
        s.sockets.extend((40050..40100).map(|p| conn(State::Established, p, 6000, 43)));
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Exhausted);
        let head = &r.findings[0];
        assert_eq!(head.kind, FindingKind::BindBeforeConnect, "{:#?}", r.findings);
        assert!(head.message.starts_with("PROBABLE"), "{}", head.message);
        assert!(head.advice.contains("IP_BIND_ADDRESS_NO_PORT"));
        assert!(
            r.assumptions.iter().any(|a| a.starts_with("PROBABLE bind-before-connect")),
            "{:#?}",
            r.assumptions
        );
    }

    #[test]
    fn an_empty_snapshot_is_ok() {
        let r = analyze(&snap((32768, 60999)), &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Ok);
        assert_eq!(r.summary, "no ephemeral ports in use (0 sockets)");
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
        assert_eq!(r.ranges[0].usable, 28232);
    }

    #[test]
    fn ok_pools_are_trimmed_but_counted() {
        let mut s = snap((40000, 40099));
        s.sockets = (0..30).map(|i| conn(State::Established, 40000 + i, 7000 + i, 42)).collect();
        let r = analyze(&s, &AnalyzeOptions { ok_pools: 5, ..Default::default() });
        assert_eq!(r.pools.len(), 5);
        assert_eq!(r.totals.pools, 32);
    }

    #[test]
    fn conntrack_insert_failures_on_a_nat_box_raise_the_verdict_as_a_4231_does() {
        use crate::snat::{Conntrack, ConntrackEntry, ConntrackStats};
        let sa = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let entry = ConntrackEntry {
            protocol: Protocol::Tcp,
            orig_src: sa("10.0.1.2:50000"),
            orig_dst: sa("10.0.3.2:8080"),
            reply_src: sa("10.0.3.2:8080"),
            reply_dst: sa("10.0.2.1:50000"),
            src_nat: true,
            time_wait: false,
        };
        let mut s = snap((32768, 60999));
        s.conntrack = Some(std::sync::Arc::new(Conntrack {
            entries: vec![entry],
            stats: Some(ConntrackStats { insert_failed: 7, drop: 0 }),
            rules: None,
            unread: false,
        }));
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Critical);
        assert!(
            r.summary.starts_with("conntrack counted 7 failed inserts and 0 drops"),
            "{}",
            r.summary
        );
        assert_eq!(r.findings[0].kind, FindingKind::SnatFailures);
        assert_eq!(r.evidence.len(), 1);
        assert_eq!(
            (r.evidence[0].counter.as_deref(), r.evidence[0].count),
            (Some("insert_failed"), 7)
        );
        let ct = r.conntrack.as_ref().unwrap();
        assert_eq!((ct.entries, ct.snat_entries, ct.insert_failed), (1, 1, Some(7)));
        assert_eq!(r.pools[0].kind, PoolKind::Snat);
        // A saved snapshot analysed with imported evidence keeps conntrack's too.
        let logged = Evidence {
            kind: "event".into(),
            id: 4266,
            counter: None,
            count: 1,
            first: None,
            last: None,
            meaning: "a connect() found no free port".into(),
        };
        let imported = analyze_imported(&s, Vec::new(), vec![logged], &Default::default());
        let kinds: Vec<_> = imported.evidence.iter().map(|e| (e.kind.as_str(), e.count)).collect();
        assert_eq!(kinds, [("event", 1), ("conntrack", 7)]);

        // Without any source NAT, failed inserts are races: informed, not raised.
        std::sync::Arc::make_mut(s.conntrack.as_mut().unwrap()).entries[0].src_nat = false;
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Ok);
        assert_eq!(
            r.findings.iter().find(|f| f.kind == FindingKind::SnatFailures).map(|f| f.level),
            Some(Level::Info)
        );
    }

    #[test]
    fn a_logged_4231_makes_a_healthy_snapshot_critical() {
        let mut s = snap((49152, 65535));
        s.os = Os::Windows;
        let ev = vec![crate::report::Evidence {
            kind: "event".into(),
            id: 4231,
            counter: None,
            count: 3,
            first: Some("2024-01-15T10:23:45".into()),
            last: Some("2024-01-15T11:00:00".into()),
            meaning: "the global TCP ephemeral port space was exhausted".into(),
        }];
        let r = analyze_imported(&s, vec![], ev, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Critical);
        assert!(r.summary.starts_with("Tcpip event 4231 was logged 3 times between 2024-01-15T10:23:45 and 2024-01-15T11:00:00"), "{}", r.summary);
        assert_eq!(r.findings[0].kind, FindingKind::PastExhaustion);
        assert_eq!(r.evidence.len(), 1);
    }

    #[test]
    fn one_program_with_several_pids_is_grouped() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40010).map(|p| conn(State::Established, p, 443, 10)).collect();
        s.sockets.extend((40010..40030).map(|p| conn(State::Established, p, 443, 11)));
        s.sockets.push(conn(State::Established, 40030, 443, 12));
        s.processes =
            vec![client(10, "chrome.exe"), client(11, "chrome.exe"), client(12, "svchost.exe")];
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.programs.len(), 2);
        assert_eq!(
            (
                r.programs[0].name.as_str(),
                r.programs[0].pids.clone(),
                r.programs[0].ephemeral_ports
            ),
            ("chrome.exe", vec![10, 11], 30)
        );
        s.processes = vec![client(10, "a"), client(11, "b"), client(12, "c")];
        assert!(analyze(&s, &AnalyzeOptions::default()).programs.is_empty());
    }

    #[test]
    fn an_exhausted_udp_pool_names_its_holder() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40100)
            .map(|p| Socket {
                pid: NonZeroU32::new(42),
                inode: 1,
                ..Socket::new(Protocol::Udp, State::Close, (ip("0.0.0.0"), p), (ip("0.0.0.0"), 0))
            })
            .collect();
        s.processes = vec![client(42, "resolver")];
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!((r.verdict, r.pools[0].kind), (Level::Exhausted, PoolKind::Udp));
        assert_eq!(r.pools[0].owners[0].pid, 42);
        let f = r.findings.iter().find(|f| f.kind == FindingKind::FanOut).expect("udp finding");
        assert!(f.message.contains("resolver (pid 42) holds 100"), "{}", f.message);
    }

    #[test]
    fn windows_listeners_in_the_dynamic_range_are_squatting() {
        let mut s = snap((49152, 65535));
        s.os = Os::Windows;
        s.sockets = vec![conn(State::Listen, 50000, 0, 7)];
        s.processes = vec![client(7, "sqlservr.exe")];
        let r = analyze(&s, &AnalyzeOptions::default());
        let f = r.findings.iter().find(|f| f.kind == FindingKind::Squatting).expect("squatting");
        assert!(f.advice.contains("startport=50000 numberofports=1"), "{}", f.advice);
    }

    #[test]
    fn the_verdict_line_follows_the_thresholds_and_says_latent() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40045).map(|p| conn(State::Established, p, 7070, 42)).collect();
        let low = AnalyzeOptions {
            thresholds: Thresholds { warn_pct: 40.0, crit_pct: 90.0 },
            ..Default::default()
        };
        let r = analyze(&s, &low);
        assert_eq!(r.verdict, Level::Warn);
        assert!(!r.summary.contains("past half"), "45 % is not past half: {}", r.summary);

        s.settings.tw_reuse = Some(TwReuse::Loopback);
        s.sockets = (40000..40095)
            .map(|p| Socket { timer_ms: 30_000, ..conn(State::TimeWait, p, 7070, 0) })
            .collect();
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Warn);
        assert!(
            r.summary.contains("bind(port 0) would fail for a caller; none is seen here"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn exclusions_outside_the_range_are_not_listed() {
        let mut s = snap((49152, 49251));
        s.os = Os::Windows;
        s.settings.tcp_reserved = Some(crate::ports::PortSet::from_ranges([
            PortRange::new(5357, 5357).unwrap(),
            PortRange::new(49200, 49209).unwrap(),
        ]));
        s.sockets = vec![conn(State::Established, 49152, 443, 42)];
        let r = analyze(&s, &AnalyzeOptions::default());
        let f = r.findings.iter().find(|f| f.kind == FindingKind::ShrunkRange).expect("shrunk");
        assert!(f.message.contains("10 ports in it are excluded (49200-49209)"), "{}", f.message);
    }

    #[test]
    fn an_ok_on_an_incomplete_socket_list_is_undecided() {
        let mut s = snap((40000, 40099));
        s.sockets = vec![conn(State::Established, 40000, 7070, 42)];
        assert_eq!((analyze(&s, &AnalyzeOptions::default()).exit_code()), 0);
        s.gaps.push(crate::model::Gap {
            kind: crate::model::GapKind::Incomplete,
            count: Some(3),
            message: "3 malformed rows were skipped".into(),
            advice: None,
        });
        let r = analyze(&s, &AnalyzeOptions::default());
        assert_eq!(r.undecided().map(|g| g.count), Some(Some(3)));
        assert_eq!(r.exit_code(), 3);
        // A pool that is full is an answer whatever else is missing.
        s.sockets = (40000..40100).map(|p| conn(State::Established, p, 7070, 42)).collect();
        let r = analyze(&s, &AnalyzeOptions::default());
        assert!(r.undecided().is_none());
        assert_eq!(r.exit_code(), 2);
    }

    #[test]
    fn report_round_trips_through_json() {
        let mut s = snap((40000, 40099));
        s.sockets = (40000..40060).map(|p| conn(State::Established, p, 7070, 42)).collect();
        s.processes = vec![client(42, "client")];
        let r = analyze(&s, &AnalyzeOptions::default());
        let json = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["pools"][0]["remote"], "127.0.0.1:7070");
        assert_eq!(v["pools"][0]["kind"], "connect");
        assert_eq!(v["verdict"], "warn");
    }
}
