//! SNAT pools from the conntrack table (docs/DOMAIN.md §1.7): a box that masquerades or SNATs
//! for others hands out one translated source port per connection, unique per (protocol,
//! SNAT IP, destination IP, destination port). This module owns that model, the kernel's
//! default NAT port ranges and the conntrack statistics' meaning; it reads nothing itself
//! (the live collector reads ctnetlink, `nat_rules.rs` parses the rule listings).

use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use crate::level::Thresholds;
use crate::model::Protocol;
use crate::pool::{Pool, PoolKind};
use crate::ports::PortRange;

/// How long conntrack keeps a TCP entry in TIME_WAIT (`tcp_timeouts[TCP_CONNTRACK_TIME_WAIT]`,
/// `nf_conntrack_tcp_timeout_time_wait`, 120 s): the translated port stays taken that long.
pub const CONNTRACK_TIME_WAIT_MS: u32 = 120_000;

/// `IPS_SRC_NAT` in `ct->status` (`enum ip_conntrack_status`): the source was translated.
pub const IPS_SRC_NAT: u32 = 1 << 4;

/// `TCP_CONNTRACK_TIME_WAIT` (`enum tcp_conntrack`); CLOSE (8) and later also hold the tuple.
pub const TCP_CONNTRACK_TIME_WAIT: u8 = 7;

/// What a growing `insert_failed` means, for the report's evidence.
pub const INSERT_FAILED_MEANING: &str = "conntrack entries that could not be inserted: the tuple was taken (a full SNAT port range, or a race); the packet was dropped";
/// What a growing `drop` means.
pub const DROP_MEANING: &str = "packets dropped because no conntrack entry could be made (table full, or NAT found no free tuple)";

/// One conntrack entry, as far as SNAT pools need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackEntry {
    pub protocol: Protocol,
    /// Original direction: the client and where it connected to.
    pub orig_src: SocketAddr,
    pub orig_dst: SocketAddr,
    /// Reply direction: the server (after any DNAT) and the translated source (SNAT IP, port).
    pub reply_src: SocketAddr,
    pub reply_dst: SocketAddr,
    /// `IPS_SRC_NAT` was set: the kernel translated the source.
    pub src_nat: bool,
    /// TCP entry in TIME_WAIT or CLOSE: the client is gone, the port is still taken.
    pub time_wait: bool,
}

/// Per-namespace conntrack statistics summed over CPUs (`IPCTNL_MSG_CT_GET_STATS_CPU`, or
/// `/proc/net/stat/nf_conntrack`): counters since conntrack started in the namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackStats {
    /// Entries that could not be inserted (`__nf_conntrack_confirm` found the tuple taken):
    /// the packet, a SYN through an exhausted SNAT pool among others, was dropped.
    pub insert_failed: u64,
    /// Packets dropped because no entry could be made (table full, or NAT found no tuple).
    pub drop: u64,
}

/// One source-NAT rule: where its translated sources come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatRule {
    /// The rule as the report names it, e.g. "snat to 10.0.2.1:40000-40009", "masquerade".
    pub text: String,
    /// The protocol the rule matches, when it matches one.
    pub protocol: Option<Protocol>,
    /// `snat to` addresses (first, last); `None` for masquerade (the outgoing interface's).
    pub addrs: Option<(IpAddr, IpAddr)>,
    /// `snat to IP:LOW-HIGH`, `MASQUERADE --to-ports`; `None`: the kernel's default ranges.
    pub ports: Option<PortRange>,
}

/// The NAT rules of a namespace and which tool listed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatRules {
    /// "nft -j list ruleset", "iptables-save", ...
    pub source: String,
    pub rules: Vec<NatRule>,
}

/// What a snapshot read from conntrack.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conntrack {
    pub entries: Vec<ConntrackEntry>,
    /// `None` when the statistics could not be read (a gap says why).
    pub stats: Option<ConntrackStats>,
    /// `None` when no rule listing could be read (a gap says why): capacities then assume the
    /// kernel's default ranges.
    pub rules: Option<NatRules>,
    /// The table itself could not be read (ctnetlink refused: a gap says why): `entries` is
    /// empty because unseen, not because nothing is NATed.
    #[serde(default)]
    pub unread: bool,
}

/// What `/proc/net/stat/nf_conntrack` tells: a header of column names, then one line of hex
/// counters per CPU (`ct_cpu_seq_show`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// `insert_failed` and `drop` summed over the CPUs; `None` when the header lacks either
    /// column or a line is not hex under them.
    pub stats: Option<ConntrackStats>,
    /// The namespace's entry count: the `entries` column, which every CPU's line repeats
    /// (`nf_conntrack_count(net)`, per namespace). The table's hash is shared by every namespace
    /// and each namespace's dump walks it whole, so a namespace with 0 entries is not dumped.
    /// `None` without that column or a hex number under it on the first line.
    pub entries: Option<u64>,
}

/// Parses `/proc/net/stat/nf_conntrack` (see [`ProcStat`]); never fails, what is unreadable is
/// `None`.
pub fn parse_proc_stat(text: &str) -> ProcStat {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return ProcStat::default() };
    let header: Vec<&str> = header.split_whitespace().collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let counters = col("insert_failed").zip(col("drop"));
    let entries_col = col("entries");
    let mut stats = counters.map(|_| ConntrackStats::default());
    let mut entries = None;
    for (i, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| cells.get(i).and_then(|c| u64::from_str_radix(c, 16).ok());
        if i == 0 {
            entries = entries_col.and_then(hex);
        }
        if let (Some(s), Some((failed, drop))) = (stats.as_mut(), counters) {
            match (hex(failed), hex(drop)) {
                (Some(f), Some(d)) => {
                    s.insert_failed = s.insert_failed.saturating_add(f);
                    s.drop = s.drop.saturating_add(d);
                }
                _ => stats = None,
            }
        }
    }
    ProcStat { stats, entries }
}

/// The ports the kernel picks from when the rule gives no range (`nf_nat_l4proto_unique_tuple`,
/// net/netfilter/nf_nat_core.c): it keeps the client's port class, 1-511 for ports below 512,
/// 600-1023 for 512-1023, 1024-65535 for the rest. (It first keeps the client's own port when
/// that tuple is free: `get_unique_tuple`.)
pub fn default_range(orig_src_port: u16) -> PortRange {
    match orig_src_port {
        0..=511 => PortRange { start: 1, end: 511 },
        512..=1023 => PortRange { start: 600, end: 1023 },
        _ => PortRange { start: 1024, end: 65535 },
    }
}

/// Where a pool's ports come from, for the report.
fn range_note(rule: Option<&NatRule>, rules: Option<&NatRules>, range: PortRange) -> String {
    let default = format!(
        "the kernel's default NAT port range {}-{} (nf_nat_l4proto_unique_tuple)",
        range.start, range.end
    );
    match (rule, rules) {
        (Some(r), Some(rs)) if r.ports.is_some() => format!("{} ({})", r.text, rs.source),
        (Some(r), Some(rs)) => {
            format!("{default}: `{}` gives no port range ({})", r.text, rs.source)
        }
        (None, Some(rs)) => format!("{default}: no source-NAT rule in {} matches", rs.source),
        _ => format!("{default}: the NAT rules were not read"),
    }
}

impl NatRule {
    fn matches(&self, protocol: Protocol, snat_ip: IpAddr) -> bool {
        self.protocol.is_none_or(|p| p == protocol)
            && self.addrs.is_none_or(|(lo, hi)| lo <= snat_ip && snat_ip <= hi)
    }
}

/// The rule that made this entry's translation: the first that matches its protocol and SNAT
/// address (the kernel stops at the first NAT verdict of the chain).
fn rule_for<'a>(rules: Option<&'a NatRules>, e: &ConntrackEntry) -> Option<&'a NatRule> {
    rules?.rules.iter().find(|r| r.matches(e.protocol, e.reply_dst.ip()))
}

/// Key of a SNAT pool: the tuple space one translated port must be unique in. The server is
/// the reply direction's source: the original destination after any DNAT (a Kubernetes
/// service VIP becomes the pod), which is what `nf_nat_used_tuple` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    protocol: Protocol,
    snat_ip: IpAddr,
    server: SocketAddr,
    range: PortRange,
}

/// SNAT pools of a conntrack table: one per (protocol, SNAT IP, server, port range) that a
/// source-NAT entry uses. Used ports are the distinct translated ports of every entry in that
/// tuple space (the box's own connections from the SNAT IP take ports too); TIME_WAIT entries
/// count as used (the kernel evicts one only in its last attempts for a new TCP SYN whose
/// sequence number advanced: `nf_nat_used_tuple_harder`, recent kernels).
pub fn pools(ct: &Conntrack, thresholds: &Thresholds) -> Vec<Pool> {
    let rules = ct.rules.as_ref();
    let mut keys: HashMap<Key, usize> = HashMap::default();
    let mut pools: Vec<Pool> = Vec::new();
    for e in ct.entries.iter().filter(|e| e.src_nat) {
        let rule = rule_for(rules, e);
        let range = rule.and_then(|r| r.ports).unwrap_or_else(|| default_range(e.orig_src.port()));
        let key =
            Key { protocol: e.protocol, snat_ip: e.reply_dst.ip(), server: e.reply_src, range };
        keys.entry(key).or_insert_with(|| {
            let mut p = Pool::new(PoolKind::Snat, e.protocol, range.len());
            p.local = Some(key.snat_ip);
            p.remote = Some(key.server);
            p.range_from = Some(range_note(rule, rules, range));
            pools.push(p);
            pools.len() - 1
        });
    }
    if pools.is_empty() {
        return pools;
    }
    // (pool, port, time_wait) of every entry in a pool's tuple space, then distinct ports.
    let mut taken: Vec<(usize, u16, bool)> = Vec::new();
    let mut by_space: HashMap<(Protocol, IpAddr, SocketAddr), Vec<(PortRange, usize)>> =
        HashMap::default();
    for (k, i) in &keys {
        by_space.entry((k.protocol, k.snat_ip, k.server)).or_default().push((k.range, *i));
    }
    for e in &ct.entries {
        let Some(spaces) = by_space.get(&(e.protocol, e.reply_dst.ip(), e.reply_src)) else {
            continue;
        };
        let port = e.reply_dst.port();
        for (_, i) in spaces.iter().filter(|(r, _)| r.contains(port)) {
            taken.push((*i, port, e.time_wait));
        }
    }
    // A port held by a live entry and a TIME_WAIT one counts as live: sort puts false first.
    taken.sort_unstable();
    taken.dedup_by(|b, a| a.0 == b.0 && a.1 == b.1);
    for (i, _, tw) in taken {
        pools[i].used += 1;
        pools[i].time_wait += u32::from(tw);
    }
    for p in &mut pools {
        p.finish(thresholds);
    }
    pools
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::Level;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A client 10.0.1.2:sport masqueraded to 10.0.2.1:nat_port towards 10.0.3.2:8080.
    fn nat(sport: u16, nat_port: u16) -> ConntrackEntry {
        ConntrackEntry {
            protocol: Protocol::Tcp,
            orig_src: SocketAddr::new("10.0.1.2".parse().unwrap(), sport),
            orig_dst: sa("10.0.3.2:8080"),
            reply_src: sa("10.0.3.2:8080"),
            reply_dst: SocketAddr::new("10.0.2.1".parse().unwrap(), nat_port),
            src_nat: true,
            time_wait: false,
        }
    }

    fn rules(text: &str, ports: Option<(u16, u16)>) -> Option<NatRules> {
        Some(NatRules {
            source: "nft -j list ruleset".into(),
            rules: vec![NatRule {
                text: text.into(),
                protocol: None,
                addrs: None,
                ports: ports.and_then(|(a, b)| PortRange::new(a, b)),
            }],
        })
    }

    #[test]
    fn a_full_ten_port_range_is_exhausted() {
        let ct = Conntrack {
            entries: (0..10).map(|i| nat(50000 + i, 40000 + i)).collect(),
            stats: None,
            rules: rules("masquerade to :40000-40009", Some((40000, 40009))),
            unread: false,
        };
        let p = pools(&ct, &Thresholds::default());
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].kind, p[0].used, p[0].capacity, p[0].level),
            (PoolKind::Snat, 10, 10, Level::Exhausted)
        );
        assert_eq!(p[0].local, Some("10.0.2.1".parse().unwrap()));
        assert_eq!(p[0].remote, Some(sa("10.0.3.2:8080")));
        assert_eq!(
            p[0].range_from.as_deref(),
            Some("masquerade to :40000-40009 (nft -j list ruleset)")
        );
        assert_eq!(p[0].label(), "tcp SNAT 10.0.2.1 -> 10.0.3.2:8080");
    }

    #[test]
    fn without_a_port_range_the_kernel_default_keeps_the_port_class() {
        let mut entries = vec![nat(50000, 50000), nat(50001, 50001), nat(700, 700)];
        // Not translated, but the box's own connection from the SNAT IP takes a port too.
        entries.push(ConntrackEntry {
            src_nat: false,
            orig_src: sa("10.0.2.1:50002"),
            reply_dst: sa("10.0.2.1:50002"),
            ..nat(0, 0)
        });
        let ct =
            Conntrack { entries, stats: None, rules: rules("masquerade", None), unread: false };
        let p = pools(&ct, &Thresholds::default());
        assert_eq!(p.len(), 2);
        let high = p.iter().find(|p| p.capacity == 64512).unwrap();
        assert_eq!(high.used, 3);
        assert!(
            high.range_from.as_deref().unwrap().contains("default NAT port range 1024-65535"),
            "{:?}",
            high.range_from
        );
        assert!(high.range_from.as_deref().unwrap().contains("`masquerade` gives no port range"));
        let low = p.iter().find(|p| p.capacity == 424).unwrap();
        assert_eq!(low.used, 1);
    }

    #[test]
    fn pools_split_by_destination_and_count_time_wait() {
        let mut entries: Vec<ConntrackEntry> = (0..4).map(|i| nat(50000 + i, 40000 + i)).collect();
        entries[3].time_wait = true;
        let mut other = nat(50010, 40000);
        other.reply_src = sa("10.0.3.3:8080");
        entries.push(other);
        let ct = Conntrack { entries, stats: None, rules: None, unread: false };
        let mut p = pools(&ct, &Thresholds::default());
        p.sort_by_key(|p| std::cmp::Reverse(p.used));
        assert_eq!((p[0].used, p[0].time_wait, p[0].capacity), (4, 1, 64512));
        assert_eq!(p[1].used, 1);
        assert!(p[0].range_from.as_deref().unwrap().ends_with("the NAT rules were not read"));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rs = NatRules {
            source: "iptables-save".into(),
            rules: vec![
                NatRule {
                    text: "udp only".into(),
                    protocol: Some(Protocol::Udp),
                    addrs: None,
                    ports: PortRange::new(1, 2),
                },
                NatRule {
                    text: "other ip".into(),
                    protocol: None,
                    addrs: Some(("10.9.0.1".parse().unwrap(), "10.9.0.9".parse().unwrap())),
                    ports: PortRange::new(3, 4),
                },
                NatRule {
                    text: "SNAT --to-source 10.0.2.1:40000-40019".into(),
                    protocol: None,
                    addrs: None,
                    ports: PortRange::new(40000, 40019),
                },
            ],
        };
        let ct = Conntrack {
            entries: vec![nat(50000, 40005)],
            stats: None,
            rules: Some(rs),
            unread: false,
        };
        let p = pools(&ct, &Thresholds::default());
        assert_eq!(p[0].capacity, 20);
    }

    #[test]
    fn proc_stat_sums_the_cpus() {
        let text = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
            00000014  00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000 000002bc 00000001 00000000 00000000  00000000 00000000 00000000 00000000\n\
            00000014  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n";
        assert_eq!(
            parse_proc_stat(text),
            ProcStat {
                stats: Some(ConntrackStats { insert_failed: 700 + 16, drop: 1 }),
                entries: Some(20)
            }
        );
        let entries = |t: &str| parse_proc_stat(t).entries;
        let stats = |t: &str| parse_proc_stat(t).stats;
        assert_eq!(entries("entries drop\n00000000 2\n"), Some(0));
        assert_eq!(entries("drop entries\n0 zz\n"), None);
        assert_eq!(entries("entries\n"), None);
        assert_eq!(entries(""), None);
        assert_eq!(stats("entries drop\n1 2\n"), None);
        assert_eq!(stats("insert_failed drop\nzz 1\n"), None);
        assert_eq!(stats("insert_failed drop\n1 2\n3 zz\n"), None);
        assert_eq!(stats("insert_failed drop\n"), Some(ConntrackStats::default()));
    }

    #[test]
    fn default_ranges_follow_nf_nat_l4proto_unique_tuple() {
        assert_eq!(default_range(1).len(), 511);
        assert_eq!(default_range(511), PortRange { start: 1, end: 511 });
        assert_eq!(default_range(512), PortRange { start: 600, end: 1023 });
        assert_eq!(default_range(1024).len(), 64512);
    }
}
