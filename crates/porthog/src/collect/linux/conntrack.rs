//! The conntrack table of the calling thread's network namespace, for SNAT pools: entries over
//! ctnetlink (an `IPCTNL_MSG_CT_GET` dump), the per-CPU statistics (`IPCTNL_MSG_CT_GET_STATS_CPU`,
//! else /proc/net/stat/nf_conntrack), and the NAT rules from `nft -j list ruleset` and
//! `iptables-save`, run in this namespace. The requests are netlink-packet-netfilter's; the
//! answers are decoded in place by porthog-core's `ctnetlink`; the pool model is its `snat`.

use std::io;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use porthog_core::ctnetlink::{self, IPCTNL_MSG_CT_GET_STATS_CPU, MSG_CT_NEW, MSG_CT_STATS_CPU};
use porthog_core::nat_rules::{parse_iptables_save, parse_nft_json};
use porthog_core::snat::{
    Conntrack, ConntrackEntry, ConntrackStats, NatRules, ProcStat, parse_proc_stat,
};
use porthog_core::{Gap, GapKind, reuse};

use super::netlink_dump;
use super::sock_diag::DUMP_TRIES;

/// One dump datagram is at most 32 KiB (`netlink_dump` sizes its skb by the reader's largest
/// recv, capped there): 64 KiB always holds one, and the one buffer serves every dump of a read.
const RECV_BUFFER: usize = 64 << 10;
/// The socket's receive buffer: room for the kernel to queue several dump datagrams ahead.
const SOCKET_BUFFER: usize = 4 << 20;

/// Each request goes out on a socket of its own, so one sequence number serves.
const SEQ: u32 = 1;
/// The per-namespace statistics; present exactly when nf_conntrack is loaded. Through
/// thread-self: /proc/self/net would show the namespace of the main thread, not this one.
const PROC_STAT: &str = "/proc/thread-self/net/stat/nf_conntrack";

/// What conntrack shows in this namespace; `None` when nf_conntrack is not loaded (nothing can
/// be source-NATed then). What could not be read is a gap, never an error.
pub fn read(gaps: &mut Vec<Gap>) -> Option<Conntrack> {
    read_at(&Stat::read(), gaps)
}

/// What a read of the statistics file found.
#[derive(Debug, PartialEq, Eq)]
enum Stat {
    Text(String),
    /// No such file: nf_conntrack is not loaded.
    NotLoaded,
    /// It exists but could not be read.
    Unreadable,
}

impl Stat {
    fn read() -> Stat {
        match std::fs::read_to_string(PROC_STAT) {
            Ok(text) => Stat::Text(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Stat::NotLoaded,
            Err(_) => Stat::Unreadable,
        }
    }
}

/// A namespace's conntrack as last read, with the statistics it was read at (what
/// `--all-netns` keeps between collections).
#[derive(Debug)]
pub struct Kept {
    stat: Stat,
    /// Shared with the snapshots made from it (`Snapshot::conntrack`), not copied into each.
    pub conntrack: Option<Arc<Conntrack>>,
    pub gaps: Vec<Gap>,
    pub at: Instant,
}

impl Kept {
    /// Whether this read may stand for one that found `now`: nf_conntrack still not loaded (no
    /// table to change), or a complete dump whose statistics text reads the same while young
    /// enough (`porthog_core::reuse::conntrack_unchanged`).
    fn stands_for(&self, now: &Stat) -> bool {
        match (&self.stat, now) {
            (Stat::NotLoaded, Stat::NotLoaded) => true,
            (Stat::Text(before), Stat::Text(now)) => {
                self.conntrack.as_ref().is_some_and(|ct| !ct.unread)
                    && reuse::conntrack_unchanged(before, now, self.at.elapsed())
            }
            _ => false,
        }
    }
}

/// `previous` again where it still stands ([`Kept::stands_for`]): a NAT namespace's table is
/// not dumped (nor its rules listed) again while nothing counted changed. Else [`read`].
pub fn read_reusing(previous: Option<Kept>) -> Kept {
    let stat = Stat::read();
    if let Some(kept) = previous
        && kept.stands_for(&stat)
    {
        if crate::collect::timings() {
            eprintln!("porthog: conntrack statistics unchanged: last read re-used");
        }
        return kept;
    }
    let at = Instant::now();
    let mut gaps = Vec::new();
    let conntrack = read_at(&stat, &mut gaps).map(Arc::new);
    Kept { stat, conntrack, gaps, at }
}

/// [`read`], the statistics file already read (`stat`).
fn read_at(stat: &Stat, gaps: &mut Vec<Gap>) -> Option<Conntrack> {
    let ProcStat { stats: proc_stats, entries } = match stat {
        Stat::Text(text) => parse_proc_stat(text),
        Stat::NotLoaded => return None,
        Stat::Unreadable => ProcStat::default(),
    };
    let started = std::time::Instant::now();
    let mut ct = Conntrack::default();
    // No entry in this namespace: the dump would walk the host's whole table to find none.
    let mut buf = vec![0u8; RECV_BUFFER];
    let outcome = if entries == Some(0) { Ok(true) } else { dump(&mut buf, &mut ct.entries) };
    match outcome {
        Ok(true) => {}
        Ok(false) => gaps.push(Gap {
            kind: GapKind::Incomplete,
            count: None,
            message: format!(
                "the conntrack table changed during the dump {DUMP_TRIES} times in a row: SNAT \
                 pools may be short of some entries"
            ),
            advice: Some("run porthog again".into()),
        }),
        Err(e) => {
            ct.unread = true;
            gaps.push(unavailable(&e));
        }
    }
    let dumped = started.elapsed();
    ct.stats = cpu_stats(&mut buf).ok().or(proc_stats);
    // Rules only size SNAT pools and tell NAT failures from races: read them when either is
    // possible, so a box that NATs nothing pays no process spawn.
    let failures = ct.stats.is_some_and(|s| s.insert_failed > 0 || s.drop > 0);
    if failures || ct.entries.iter().any(|e| e.src_nat) {
        ct.rules = rules(gaps);
    }
    if crate::collect::timings() {
        eprintln!(
            "porthog: conntrack: {} entries dumped in {:.1} ms; with statistics and NAT rules {:.1} ms",
            ct.entries.len(),
            dumped.as_secs_f64() * 1e3,
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    Some(ct)
}

fn unavailable(e: &io::Error) -> Gap {
    let advice = match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => {
            "run as root (ctnetlink needs CAP_NET_ADMIN in the namespace)"
        }
        _ => "load nf_conntrack_netlink (modprobe nf_conntrack_netlink) and run as root",
    };
    Gap {
        kind: GapKind::Source,
        count: None,
        message: format!(
            "the conntrack table was not read over ctnetlink ({e}): SNAT pools are not shown \
             (conntrack's insert_failed/drop counters still are when /proc/net/stat/nf_conntrack \
             was readable)"
        ),
        advice: Some(advice.into()),
    }
}

fn socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let _ = socket.set_rx_buf_sz(SOCKET_BUFFER);
    Ok(socket)
}

/// Sends one dump request of `message` and hands every answer (netlink type, netfilter
/// message) to `each`, until NLMSG_DONE; `buf` receives the datagrams.
fn dump_with(
    message: ConntrackMessage,
    buf: &mut [u8],
    mut each: impl FnMut(u16, &[u8]),
) -> io::Result<bool> {
    let socket = socket()?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = SEQ;
    // AF_UNSPEC: every layer-3 family (ctnetlink_dump_table filters only on a given one).
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
            message,
        )),
    );
    packet.finalize();
    let mut request = vec![0; packet.buffer_len()];
    packet.serialize(&mut request);
    socket.send(&request, 0)?;
    netlink_dump::receive(&socket, buf, SEQ, |kind, payload| {
        each(kind, payload);
        Ok(())
    })
}

/// Every TCP and UDP entry of the table; retried while the kernel says the table changed under
/// the dump. Ok(false): still interrupted after [`DUMP_TRIES`] tries (the entries may be short).
fn dump(buf: &mut [u8], out: &mut Vec<ConntrackEntry>) -> io::Result<bool> {
    for _ in 0..DUMP_TRIES {
        out.clear();
        // An entry that does not decode (another protocol, an odd attribute) is skipped, not
        // fatal: one odd protocol must not hide every SNAT pool.
        let interrupted = dump_with(ConntrackMessage::Get(vec![]), buf, |kind, message| {
            if kind == MSG_CT_NEW {
                out.extend(ctnetlink::entry(message));
            }
        })?;
        if !interrupted {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The per-CPU statistics, summed.
fn cpu_stats(buf: &mut [u8]) -> io::Result<ConntrackStats> {
    let mut stats = ConntrackStats::default();
    let mut cpus = 0;
    let message = ConntrackMessage::Other {
        message_type: IPCTNL_MSG_CT_GET_STATS_CPU,
        attributes: Vec::new(),
    };
    dump_with(message, buf, |kind, message| {
        if let Some(cpu) = ctnetlink::cpu_stats(message).filter(|_| kind == MSG_CT_STATS_CPU) {
            cpus += 1;
            stats.insert_failed += cpu.insert_failed;
            stats.drop += cpu.drop;
        }
    })?;
    if cpus == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no per-CPU statistics"));
    }
    Ok(stats)
}

/// The source-NAT rules, from nft and iptables-save run in this namespace (a child process
/// inherits the calling thread's namespace). Rules iptables-nft made are opaque `xt` targets to
/// nft, so both are read; legacy iptables rules only iptables-save shows.
fn rules(gaps: &mut Vec<Gap>) -> Option<NatRules> {
    let mut sources = Vec::new();
    let mut rules = Vec::new();
    let mut failures = Vec::new();
    match run("nft", &["-j", "list", "ruleset"]) {
        Ok(text) => match parse_nft_json(&text) {
            Ok(r) => {
                sources.push("nft -j list ruleset");
                rules.extend(r);
            }
            Err(e) => failures.push(e.to_string()),
        },
        Err(e) => failures.push(e),
    }
    for tool in ["iptables-save", "ip6tables-save"] {
        match run(tool, &["-t", "nat"]) {
            Ok(text) => {
                sources.push(tool);
                rules.extend(parse_iptables_save(&text));
            }
            Err(e) => failures.push(e),
        }
    }
    if sources.is_empty() {
        gaps.push(Gap {
            kind: GapKind::Setting,
            count: None,
            message: format!(
                "the NAT rules were not read ({}): SNAT pools assume the kernel's default NAT \
                 port ranges",
                failures.join("; ")
            ),
            advice: Some("install nftables or iptables, and run as root".into()),
        });
        return None;
    }
    Some(NatRules { source: sources.join(" + "), rules })
}

fn run(tool: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(tool).args(args).output().map_err(|e| format!("{tool}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{tool}: {}", err.lines().next().unwrap_or("failed")));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::Emitable;
    use netlink_packet_netfilter::conntrack::{
        ConntrackAttribute, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Protocol, Status, Tuple,
    };
    use porthog_core::snat::IPS_SRC_NAT;

    use super::*;

    /// A kept read stands while nf_conntrack stays unloaded, or while a complete dump's
    /// statistics read the same and it is young; never for an unreadable file or a failed dump.
    #[test]
    fn a_kept_read_stands_only_where_nothing_counted_changed() {
        let stat = "entries  found\n00000003 00000000\n";
        let kept = |stat: Stat, conntrack: Option<Conntrack>| Kept {
            stat,
            conntrack: conntrack.map(Arc::new),
            gaps: vec![],
            at: Instant::now(),
        };
        let text = |t: &str| Stat::Text(t.to_owned());
        let not_loaded = kept(Stat::NotLoaded, None);
        assert!(not_loaded.stands_for(&Stat::NotLoaded));
        assert!(!not_loaded.stands_for(&text(stat)), "loaded since: read it");
        let dumped = kept(text(stat), Some(Conntrack::default()));
        assert!(dumped.stands_for(&text(stat)));
        assert!(!dumped.stands_for(&text("entries  found\n00000004 00000000\n")));
        assert!(!dumped.stands_for(&Stat::NotLoaded), "unloaded since: read it");
        assert!(!dumped.stands_for(&Stat::Unreadable));
        let failed = kept(text(stat), Some(Conntrack { unread: true, ..Conntrack::default() }));
        assert!(!failed.stands_for(&text(stat)), "a failed dump is tried again");
        assert!(!kept(Stat::Unreadable, None).stands_for(&Stat::Unreadable));
        let old =
            Kept { at: Instant::now().checked_sub(reuse::CONNTRACK_MAX_AGE).unwrap(), ..dumped };
        assert!(!old.stands_for(&text(stat)), "older than CONNTRACK_MAX_AGE: read it");
    }

    fn tuple_of(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<Tuple> {
        vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(src.parse().unwrap()),
                IPTuple::DestinationAddress(dst.parse().unwrap()),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::Tcp),
                ProtoTuple::SourcePort(sport),
                ProtoTuple::DestinationPort(dport),
            ]),
        ]
    }

    /// The in-place decoder reads what netlink-packet-netfilter encodes: two independent
    /// writers of the ctnetlink layout agree.
    #[test]
    fn an_entry_encoded_by_netlink_packet_netfilter_decodes() {
        let attrs = vec![
            ConntrackAttribute::CtaTupleOrig(tuple_of("10.0.1.2", "10.0.3.2", 50000, 8080)),
            ConntrackAttribute::CtaTupleReply(tuple_of("10.0.3.2", "10.0.2.1", 8080, 40003)),
            ConntrackAttribute::CtaStatus(Status::from_bits_retain(IPS_SRC_NAT | 0b1110)),
            ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(vec![ProtoInfoTCP::State(7)])]),
        ];
        let message = NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            ConntrackMessage::New(attrs),
        );
        let mut bytes = vec![0; message.buffer_len()];
        message.emit(&mut bytes);
        let e = ctnetlink::entry(&bytes).unwrap();
        assert_eq!(e.orig_src, "10.0.1.2:50000".parse().unwrap());
        assert_eq!(e.reply_dst, "10.0.2.1:40003".parse().unwrap());
        assert_eq!(e.reply_src, "10.0.3.2:8080".parse().unwrap());
        assert!(e.src_nat && e.time_wait);
    }
}
