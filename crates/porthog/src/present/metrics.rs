//! Prometheus metrics (text exposition format 0.0.4) from a fleet report: what `porthog serve`
//! answers on /metrics. Cardinality is bounded: per namespace the `top_pools` tightest pools
//! and `top_processes` biggest holders, the rest summed in `other` series. Every series is
//! distinct by construction (one registry; pools keyed by kind, protocol, local, remote;
//! processes grouped by name and container). Encoded with the `prometheus` crate's
//! `TextEncoder`: prometheus-client 0.25 only writes OpenMetrics, whose `counter` families
//! (`# TYPE x counter` over `x_total` samples) `promtool check metrics` rejects as 0.0.4 text.

use std::collections::BTreeMap;

use porthog_core::{FleetReport, Pool};
use prometheus::{Encoder, Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// The content type of what `render` returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The label value of a series that sums what the top-N cut left out.
pub const OTHER: &str = "other";

/// Reasons of `porthog_collect_errors_total`: the whole collection failed; a namespace vanished
/// between being found and being read; a namespace could not be read.
pub const ERROR_REASONS: [&str; 3] =
    ["collect_failed", "namespace_vanished", "namespace_unreadable"];

/// What one exposition shows besides the reports.
pub struct Scrape<'a> {
    pub fleet: &'a FleetReport,
    /// "root" (pools, owners, containers) or "unprivileged" (pools only; owners need root).
    pub mode: &'a str,
    pub collect_seconds: f64,
    /// Failed collections since start, by reason.
    pub errors: &'a BTreeMap<String, u64>,
    pub top_pools: usize,
    pub top_processes: usize,
    /// Failures the kernel tracer caught since start, by (netns, process, remote, errno);
    /// `None` when no tracer runs (not root).
    pub failures: Option<&'a FailureCounts>,
    /// With `--all-netns` as root: the change signal's state and what the last collection
    /// walked and re-used; `None` leaves those three series out.
    pub reuse: Option<Reuse>,
}

/// `porthog_change_signal`, `porthog_netns_walked`, `porthog_netns_reused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// The per-namespace change signal is attached (unchanged namespaces are re-used).
    pub signal: bool,
    pub walked: usize,
    pub reused: usize,
}

/// Allocation failures since start: (netns label, process name, remote or "", errno name) ->
/// count.
pub type FailureCounts = BTreeMap<(String, String, String, String), u64>;

const POOL_LABELS: [&str; 5] = ["netns", "kind", "protocol", "local", "remote"];

struct PoolGauges {
    used: IntGaugeVec,
    capacity: IntGaugeVec,
    time_wait: IntGaugeVec,
    reusable: IntGaugeVec,
    level: IntGaugeVec,
}

pub fn render(s: &Scrape<'_>) -> prometheus::Result<String> {
    let registry = Registry::new();
    let vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    };
    let pools = PoolGauges {
        used: vec(
            "porthog_pool_used_ports",
            "Ports of the pool in use, TIME_WAIT included (kind connect: per local IP and destination; bind, udp: per namespace; snat: translated ports per SNAT IP (local) and destination (remote), from conntrack).",
            &POOL_LABELS,
        )?,
        capacity: vec(
            "porthog_pool_capacity_ports",
            "Ports the kernel's allocator can hand out in this pool: the range minus reserved ports and, for connect(), ports held by listeners or bound sockets; for snat, the NAT rule's port range or the kernel's default NAT range.",
            &POOL_LABELS,
        )?,
        time_wait: vec(
            "porthog_pool_time_wait_ports",
            "Used ports held only by TIME_WAIT sockets.",
            &POOL_LABELS,
        )?,
        reusable: vec(
            "porthog_pool_reusable_ports",
            "TIME_WAIT ports that tcp_tw_reuse lets connect() take again for this pool.",
            &POOL_LABELS,
        )?,
        level: vec(
            "porthog_pool_level",
            "How full the pool is: 0 ok, 1 warn, 2 critical, 3 exhausted.",
            &POOL_LABELS,
        )?,
    };
    let verdict = vec(
        "porthog_verdict_level",
        "Verdict of the network namespace (its tightest pool): 0 ok, 1 warn, 2 critical, 3 exhausted.",
        &["netns"],
    )?;
    let holders = vec(
        "porthog_process_ephemeral_ports",
        "Distinct ephemeral ports held by the biggest holders per namespace (processes grouped by name and container; the rest summed as process=\"other\"). Empty without root: owners need /proc/PID/fd.",
        &["netns", "process", "container"],
    )?;
    let namespaces =
        IntGauge::new("porthog_namespaces", "Network namespaces read by the last collection.")?;
    registry.register(Box::new(namespaces.clone()))?;
    let duration =
        Gauge::new("porthog_collect_duration_seconds", "How long the last collection took.")?;
    registry.register(Box::new(duration.clone()))?;
    let errors = IntCounterVec::new(
        Opts::new(
            "porthog_collect_errors_total",
            "Collections (or namespaces of one) that failed, by reason, since porthog started.",
        ),
        &["reason"],
    )?;
    registry.register(Box::new(errors.clone()))?;
    let info = vec(
        "porthog_info",
        "Always 1. mode=root: pools, owners and containers; mode=unprivileged: pools only (sock_diag needs no privilege), no owners, one namespace, no porthog_allocation_failures_total.",
        &["mode"],
    )?;

    if let Some(failures) = s.failures {
        let counter = IntCounterVec::new(
            Opts::new(
                "porthog_allocation_failures_total",
                "Port allocations the kernel refused since porthog started (connect() EADDRNOTAVAIL, bind() EADDRINUSE, UDP EAGAIN), from its tracepoints: root only. netns is the namespace the failing thread was in (net:[INODE] until a collection names it). The first 100 (netns, process, remote, errno) get a series; later ones count as netns=\"other\", process=\"other\".",
            ),
            &["netns", "process", "remote", "errno"],
        )?;
        registry.register(Box::new(counter.clone()))?;
        for ((netns, process, remote, errno), n) in failures {
            counter.with_label_values(&[netns, process, remote, errno]).inc_by(*n);
        }
    }
    let conntrack = |name: &str, help: &str| -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help), &["netns"])?;
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    };
    let insert_failed = conntrack(
        "porthog_conntrack_insert_failed_total",
        "conntrack entries the kernel could not insert in this namespace (summed over CPUs, since conntrack started there): on a box that source-NATs, a full SNAT port range drops the SYN and counts here. Absent where conntrack is not loaded or not readable (ctnetlink needs CAP_NET_ADMIN).",
    )?;
    let dropped = conntrack(
        "porthog_conntrack_drop_total",
        "Packets conntrack dropped in this namespace because no entry could be made (summed over CPUs, since conntrack started there). Absent where conntrack is not loaded or not readable.",
    )?;
    if let Some(reuse) = s.reuse {
        let gauge = |name: &str, help: &str, value: i64| -> prometheus::Result<()> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            g.set(value);
            Ok(())
        };
        gauge(
            "porthog_change_signal",
            "1 when the per-namespace change signal (BPF, sock:inet_sock_set_state) is attached and unchanged namespaces are re-used.",
            i64::from(reuse.signal),
        )?;
        gauge(
            "porthog_netns_walked",
            "Network namespaces whose sockets the last collection read.",
            i64::try_from(reuse.walked).unwrap_or(i64::MAX),
        )?;
        gauge(
            "porthog_netns_reused",
            "Network namespaces whose previous walk the last collection re-used (no change seen).",
            i64::try_from(reuse.reused).unwrap_or(i64::MAX),
        )?;
    }
    info.with_label_values(&[s.mode]).set(1);
    namespaces.set(s.fleet.namespaces.len() as i64);
    duration.set(s.collect_seconds);
    // Known reasons start at 0, so a rate() over them works before the first failure.
    for reason in ERROR_REASONS {
        errors.with_label_values(&[reason]);
    }
    for (reason, n) in s.errors {
        errors.with_label_values(&[reason.as_str()]).inc_by(*n);
    }
    for ns in &s.fleet.namespaces {
        let netns = ns.label();
        verdict
            .with_label_values(&[netns.as_str()])
            .set(i64::from(ns.report.verdict.metric_value()));
        export_pools(&pools, &netns, &ns.report.pools, s.top_pools);
        if let Some(ct) = &ns.report.conntrack
            && let (Some(failed), Some(drop)) = (ct.insert_failed, ct.drop)
        {
            insert_failed.with_label_values(&[netns.as_str()]).inc_by(failed);
            dropped.with_label_values(&[netns.as_str()]).inc_by(drop);
        }
        export_holders(&holders, &netns, &ns.report.processes, s.top_processes);
    }

    let mut out = Vec::new();
    prometheus::TextEncoder::new().encode(&registry.gather(), &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// Sums of the pools past the cut, per kind and protocol.
#[derive(Default)]
struct Rest {
    used: u64,
    capacity: u64,
    time_wait: u64,
    reusable: u64,
    level: u8,
}

fn export_pools(g: &PoolGauges, netns: &str, pools: &[Pool], top: usize) {
    let set = |labels: &[&str], used: u64, capacity: u64, tw: u64, reusable: u64, level: u8| {
        g.used.with_label_values(labels).set(used as i64);
        g.capacity.with_label_values(labels).set(capacity as i64);
        g.time_wait.with_label_values(labels).set(tw as i64);
        g.reusable.with_label_values(labels).set(reusable as i64);
        g.level.with_label_values(labels).set(i64::from(level));
    };
    // The report lists pools tightest first.
    for p in pools.iter().take(top) {
        let local = p.local.map(|ip| ip.to_string()).unwrap_or_default();
        let remote = p.remote.map(|r| r.to_string()).unwrap_or_default();
        let kind = kind_label(p);
        set(
            &[netns, kind, p.protocol.as_str(), &local, &remote],
            p.used.into(),
            p.capacity.into(),
            p.time_wait.into(),
            p.time_wait_reusable.into(),
            p.level.metric_value(),
        );
    }
    let mut rest: BTreeMap<(&str, &str), Rest> = BTreeMap::new();
    for p in pools.iter().skip(top) {
        let r = rest.entry((kind_label(p), p.protocol.as_str())).or_default();
        r.used += u64::from(p.used);
        r.capacity += u64::from(p.capacity);
        r.time_wait += u64::from(p.time_wait);
        r.reusable += u64::from(p.time_wait_reusable);
        r.level = r.level.max(p.level.metric_value());
    }
    for ((kind, protocol), r) in rest {
        set(
            &[netns, kind, protocol, OTHER, OTHER],
            r.used,
            r.capacity,
            r.time_wait,
            r.reusable,
            r.level,
        );
    }
}

fn kind_label(p: &Pool) -> &'static str {
    match p.kind {
        porthog_core::PoolKind::Connect => "connect",
        porthog_core::PoolKind::Bind => "bind",
        porthog_core::PoolKind::Udp => "udp",
        porthog_core::PoolKind::Global => "global",
        porthog_core::PoolKind::Snat => "snat",
    }
}

fn export_holders(
    g: &IntGaugeVec,
    netns: &str,
    processes: &[porthog_core::report::ProcessReport],
    top: usize,
) {
    // One series per (name, container): two processes of one program are one holder.
    let mut grouped: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for p in processes.iter().filter(|p| p.ephemeral_ports > 0) {
        let container = p.container.as_deref().or(p.pod.as_deref()).or(p.unit.as_deref());
        *grouped.entry((p.name.as_str(), container.unwrap_or(""))).or_default() +=
            u64::from(p.ephemeral_ports);
    }
    let mut ranked: Vec<((&str, &str), u64)> = grouped.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut other = 0u64;
    for (i, ((name, container), ports)) in ranked.into_iter().enumerate() {
        if i < top && !(name == OTHER && container.is_empty()) {
            g.with_label_values(&[netns, name, container]).set(ports as i64);
        } else {
            other += ports;
        }
    }
    if other > 0 {
        g.with_label_values(&[netns, OTHER, ""]).set(other as i64);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use porthog_core::report::ProcessReport;
    use porthog_core::{AnalyzeOptions, Level, NamespaceReport, Os, PoolKind, Protocol, Snapshot};

    use super::*;

    fn pool(remote_port: u16, used: u32, level: Level) -> Pool {
        Pool {
            kind: PoolKind::Connect,
            protocol: Protocol::Tcp,
            local: Some("10.0.0.1".parse().unwrap()),
            remote: Some(format!("10.0.0.2:{remote_port}").parse().unwrap()),
            used,
            capacity: 100,
            time_wait: 1,
            time_wait_reusable: 0,
            effective: used,
            percent: f64::from(used),
            level,
            latent: false,
            owners: vec![],
            range_from: None,
        }
    }

    fn process(pid: u32, name: &str, ports: u32) -> ProcessReport {
        ProcessReport {
            pid,
            name: name.into(),
            cmdline: String::new(),
            user: None,
            container: None,
            unit: None,
            pod: None,
            sockets: ports,
            ephemeral_ports: ports,
            states: Default::default(),
            top_remotes: vec![],
        }
    }

    fn namespace(inode: u64, name: Option<&str>) -> NamespaceReport {
        let mut report =
            porthog_core::analyze(&Snapshot::new(Os::Linux, "test"), &AnalyzeOptions::default());
        report.pools = (0..30).map(|i| pool(7000 + i, 100 - u32::from(i), Level::Warn)).collect();
        report.pools[0].level = Level::Exhausted;
        report.pools[1].kind = PoolKind::Snat;
        report.verdict = Level::Exhausted;
        report.conntrack = Some(porthog_core::report::ConntrackReport {
            entries: 10,
            snat_entries: 10,
            insert_failed: Some(30),
            drop: Some(2),
            rules_from: None,
        });
        report.processes = vec![
            process(1, "client", 50),
            process(2, "client", 30),
            process(3, "other", 7),
            process(4, "cron", 2),
            process(5, "idle", 0),
        ];
        NamespaceReport {
            inode,
            name: name.map(str::to_owned),
            container: None,
            pids: vec![],
            report,
        }
    }

    fn series(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (s, v) = l.rsplit_once(' ').unwrap();
                (s.to_owned(), v.parse().unwrap())
            })
            .collect()
    }

    /// The top pools and holders are exported one by one, the rest summed in `other`; no
    /// series repeats even where two namespaces and two processes share names.
    #[test]
    fn bounded_and_distinct() {
        let fleet = FleetReport::new(vec![namespace(1, Some("a")), namespace(2, None)], vec![]);
        let errors = BTreeMap::from([("namespace_vanished".to_owned(), 2)]);
        let text = render(&Scrape {
            fleet: &fleet,
            mode: "root",
            collect_seconds: 0.25,
            errors: &errors,
            top_pools: 5,
            top_processes: 1,
            failures: None,
            reuse: Some(Reuse { signal: true, walked: 1, reused: 49 }),
        })
        .unwrap();
        let all = series(&text);
        let distinct: HashSet<&String> = all.iter().map(|(s, _)| s).collect();
        assert_eq!(distinct.len(), all.len(), "a series repeats:\n{text}");
        let used: Vec<&(String, f64)> =
            all.iter().filter(|(s, _)| s.starts_with("porthog_pool_used_ports{")).collect();
        assert_eq!(used.len(), 2 * 6, "5 pools and one `other` per namespace:\n{text}");
        let other = used
            .iter()
            .find(|(s, _)| s.contains("netns=\"a\"") && s.contains("remote=\"other\""))
            .unwrap();
        // Pools 6..30 hold 95 + 94 + ... + 71 ports.
        assert_eq!(other.1, (71..=95).sum::<u32>() as f64);
        assert!(text.contains(
            "porthog_process_ephemeral_ports{container=\"\",netns=\"a\",process=\"client\"} 80"
        ));
        // `other` holds the rest, the process named "other" included; idle holders are left out.
        assert!(text.contains(
            "porthog_process_ephemeral_ports{container=\"\",netns=\"a\",process=\"other\"} 9"
        ));
        assert!(text.contains("porthog_verdict_level{netns=\"net:[2]\"} 3"));
        assert!(text.contains("porthog_collect_errors_total{reason=\"namespace_vanished\"} 2"));
        assert!(text.contains("porthog_collect_errors_total{reason=\"collect_failed\"} 0"));
        assert!(text.contains("porthog_namespaces 2"));
        assert!(text.contains("porthog_conntrack_insert_failed_total{netns=\"a\"} 30"), "{text}");
        assert!(text.contains("porthog_conntrack_drop_total{netns=\"net:[2]\"} 2"), "{text}");
        assert!(text.contains("# TYPE porthog_conntrack_insert_failed_total counter"));
        assert!(text.contains("porthog_pool_level{kind=\"snat\",local=\"10.0.0.1\",netns=\"a\",protocol=\"tcp\",remote=\"10.0.0.2:7001\"} 1"), "{text}");
        assert!(text.contains("# TYPE porthog_collect_errors_total counter"));
        for line in ["porthog_change_signal 1", "porthog_netns_walked 1", "porthog_netns_reused 49"]
        {
            assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
        }
        assert!(text.contains("# TYPE porthog_netns_reused gauge"));
    }

    /// The dashboard and the alert rules only use metric names the exporter writes.
    #[test]
    fn deploy_files_use_exported_names() {
        let fleet = FleetReport::new(vec![namespace(1, Some("a"))], vec![]);
        let text = render(&Scrape {
            fleet: &fleet,
            mode: "root",
            collect_seconds: 0.1,
            errors: &BTreeMap::new(),
            top_pools: 5,
            top_processes: 5,
            failures: Some(&BTreeMap::from([(
                (
                    "a".to_owned(),
                    "client".to_owned(),
                    "10.0.0.2:7000".to_owned(),
                    "EADDRNOTAVAIL".to_owned(),
                ),
                3,
            )])),
            reuse: None,
        })
        .unwrap();
        let exported: HashSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../../deploy/grafana/porthog-dashboard.json"))
                .expect("the dashboard is JSON");
        let rules = include_str!("../../../../deploy/prometheus/porthog-alerts.yml");
        let mut used = vec![];
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                used.push(target["expr"].as_str().unwrap().to_owned());
            }
        }
        used.push(rules.to_owned());
        for text in used {
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("porthog_") {
                    assert!(exported.contains(word), "{word} is not exported: {exported:?}");
                }
            }
        }
    }
}
