//! The conntrack table of the calling thread's network namespace, for SNAT pools: entries over
//! ctnetlink (an `IPCTNL_MSG_CT_GET` dump), the per-CPU statistics (`IPCTNL_MSG_CT_GET_STATS_CPU`,
//! else /proc/net/stat/nf_conntrack), and the NAT rules from `nft -j list ruleset` and
//! `iptables-save`, run in this namespace. Message framing and attributes come from
//! netlink-packet-netfilter; the pool model is porthog-core's `snat`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use netlink_packet_core::{
    DefaultNla, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoInfo, ProtoInfoTCP, ProtoTuple, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
use porthog_core::nat_rules::{parse_iptables_save, parse_nft_json};
use porthog_core::snat::{
    Conntrack, ConntrackEntry, ConntrackStats, IPS_SRC_NAT, NatRules, TCP_CONNTRACK_TIME_WAIT,
    parse_proc_stat, proc_stat_entries,
};
use porthog_core::{Gap, GapKind, Protocol};

use super::netlink_dump;
use super::sock_diag::DUMP_TRIES;

/// `IPCTNL_MSG_CT_GET_STATS_CPU` (`enum cntl_msg_types`).
const IPCTNL_MSG_CT_GET_STATS_CPU: u8 = 4;
/// `CTA_STATS_INSERT_FAILED` and `CTA_STATS_DROP` (`enum ctattr_stats_cpu`), u32 big-endian.
const CTA_STATS_INSERT_FAILED: u16 = 9;
const CTA_STATS_DROP: u16 = 10;
/// One dump message is at most 32 KiB; a larger buffer only reserves address space.
const RECV_BUFFER: usize = 1 << 20;

/// Each request goes out on a socket of its own, so one sequence number serves.
const SEQ: u32 = 1;
/// The per-namespace statistics; present exactly when nf_conntrack is loaded. Through
/// thread-self: /proc/self/net would show the namespace of the main thread, not this one.
const PROC_STAT: &str = "/proc/thread-self/net/stat/nf_conntrack";

/// What conntrack shows in this namespace; `None` when nf_conntrack is not loaded (nothing can
/// be source-NATed then). What could not be read is a gap, never an error.
pub fn read(gaps: &mut Vec<Gap>) -> Option<Conntrack> {
    let (proc_stats, entries) = match std::fs::read_to_string(PROC_STAT) {
        Ok(text) => (parse_proc_stat(&text), proc_stat_entries(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(_) => (None, None),
    };
    let started = std::time::Instant::now();
    let mut ct = Conntrack::default();
    // No entry in this namespace: the dump would walk the host's whole table to find none.
    let outcome = if entries == Some(0) { Ok(true) } else { dump(&mut ct.entries) };
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
    ct.stats = cpu_stats().ok().or(proc_stats);
    // Rules only size SNAT pools and tell NAT failures from races: read them when either is
    // possible, so a box that NATs nothing pays no process spawn.
    let failures = ct.stats.is_some_and(|s| s.insert_failed > 0 || s.drop > 0);
    if failures || ct.entries.iter().any(|e| e.src_nat) {
        ct.rules = rules(gaps);
    }
    if std::env::var_os("PORTHOG_TIMINGS").is_some() {
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
    let _ = socket.set_rx_buf_sz(RECV_BUFFER);
    Ok(socket)
}

/// Sends one dump request of `message` and hands every answer to `each`, until NLMSG_DONE.
fn dump_with(
    message: ConntrackMessage,
    mut each: impl FnMut(&NetfilterMessage),
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
    let mut buf = vec![0u8; RECV_BUFFER];
    netlink_dump::receive(&socket, &mut buf, SEQ, |kind, payload| {
        let mut h = NetlinkHeader::default();
        h.message_type = kind;
        // An entry the crate cannot decode is skipped, not fatal: one odd protocol must not
        // hide every SNAT pool.
        if let Ok(m) = NetfilterMessage::deserialize(&h, payload) {
            each(&m);
        }
        Ok(())
    })
}

/// Every TCP and UDP entry of the table; retried while the kernel says the table changed under
/// the dump. Ok(false): still interrupted after [`DUMP_TRIES`] tries (the entries may be short).
fn dump(out: &mut Vec<ConntrackEntry>) -> io::Result<bool> {
    for _ in 0..DUMP_TRIES {
        out.clear();
        let interrupted = dump_with(ConntrackMessage::Get(vec![]), |m| {
            if let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) = &m.inner {
                out.extend(entry(attrs));
            }
        })?;
        if !interrupted {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The per-CPU statistics, summed.
fn cpu_stats() -> io::Result<ConntrackStats> {
    let mut stats = ConntrackStats::default();
    let mut cpus = 0;
    let message = ConntrackMessage::Other {
        message_type: IPCTNL_MSG_CT_GET_STATS_CPU,
        attributes: Vec::new(),
    };
    dump_with(message, |m| {
        if let NetfilterMessageInner::Conntrack(ConntrackMessage::Other { attributes, .. }) =
            &m.inner
        {
            cpus += 1;
            stats.insert_failed += u64::from(stat(attributes, CTA_STATS_INSERT_FAILED));
            stats.drop += u64::from(stat(attributes, CTA_STATS_DROP));
        }
    })?;
    if cpus == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no per-CPU statistics"));
    }
    Ok(stats)
}

fn stat(attrs: &[DefaultNla], kind: u16) -> u32 {
    use netlink_packet_core::Nla;
    attrs
        .iter()
        .find(|a| a.kind() == kind && a.value_len() == 4)
        .map(|a| {
            let mut v = [0u8; 4];
            a.emit_value(&mut v);
            u32::from_be_bytes(v)
        })
        .unwrap_or(0)
}

/// A TCP or UDP entry from its attributes; `None` for other protocols or a partial entry.
fn entry(attrs: &[ConntrackAttribute]) -> Option<ConntrackEntry> {
    let (mut orig, mut reply, mut status, mut tcp_state) = (None, None, 0, None);
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = tuple(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = tuple(t),
            ConntrackAttribute::CtaStatus(s) => status = s.bits(),
            ConntrackAttribute::CtaProtoInfo(info) => {
                for i in info {
                    if let ProtoInfo::TCP(tcp) = i {
                        for t in tcp {
                            if let ProtoInfoTCP::State(s) = t {
                                tcp_state = Some(*s);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let (protocol, orig_src, orig_dst) = orig?;
    let (_, reply_src, reply_dst) = reply?;
    Some(ConntrackEntry {
        protocol,
        orig_src,
        orig_dst,
        reply_src,
        reply_dst,
        src_nat: status & IPS_SRC_NAT != 0,
        time_wait: tcp_state.is_some_and(|s| s >= TCP_CONNTRACK_TIME_WAIT),
    })
}

/// (protocol, source, destination) of a tuple.
fn tuple(parts: &[Tuple]) -> Option<(Protocol, SocketAddr, SocketAddr)> {
    let (mut src, mut dst, mut sport, mut dport, mut proto): (Option<IpAddr>, _, _, _, _) =
        (None, None, None, None, None);
    for p in parts {
        match p {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src = Some(*a),
                        IPTuple::DestinationAddress(a) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for pt in ps {
                    match pt {
                        ProtoTuple::Protocol(
                            netlink_packet_netfilter::conntrack::Protocol::Tcp,
                        ) => proto = Some(Protocol::Tcp),
                        ProtoTuple::Protocol(
                            netlink_packet_netfilter::conntrack::Protocol::Udp,
                        ) => proto = Some(Protocol::Udp),
                        ProtoTuple::SourcePort(p) => sport = Some(*p),
                        ProtoTuple::DestinationPort(p) => dport = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((proto?, SocketAddr::new(src?, sport?), SocketAddr::new(dst?, dport?)))
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
    use netlink_packet_netfilter::conntrack::{Protocol as CtProtocol, Status};

    use super::*;

    fn tuple_of(src: &str, dst: &str, sport: u16, dport: u16, proto: CtProtocol) -> Vec<Tuple> {
        vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress(src.parse().unwrap()),
                IPTuple::DestinationAddress(dst.parse().unwrap()),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(proto),
                ProtoTuple::SourcePort(sport),
                ProtoTuple::DestinationPort(dport),
            ]),
        ]
    }

    #[test]
    fn a_masqueraded_tcp_entry_in_time_wait() {
        let attrs = vec![
            ConntrackAttribute::CtaTupleOrig(tuple_of(
                "10.0.1.2",
                "10.0.3.2",
                50000,
                8080,
                CtProtocol::Tcp,
            )),
            ConntrackAttribute::CtaTupleReply(tuple_of(
                "10.0.3.2",
                "10.0.2.1",
                8080,
                40003,
                CtProtocol::Tcp,
            )),
            ConntrackAttribute::CtaStatus(Status::from_bits_retain(IPS_SRC_NAT | 0b1110)),
            ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(vec![ProtoInfoTCP::State(7)])]),
        ];
        let e = entry(&attrs).unwrap();
        assert_eq!(e.protocol, Protocol::Tcp);
        assert_eq!(e.reply_dst, "10.0.2.1:40003".parse().unwrap());
        assert_eq!(e.reply_src, "10.0.3.2:8080".parse().unwrap());
        assert!(e.src_nat && e.time_wait);
    }

    /// One per-CPU statistics answer as the 6.18 kernel sends it (seen with strace): nfgenmsg,
    /// then u32 big-endian attributes; insert_failed (9) = 700, drop (10) = 3.
    #[test]
    fn per_cpu_statistics_decode() {
        let mut payload = vec![0u8, 0, 0, 1];
        for (kind, value) in [(2u16, 5u32), (8, 11), (9, 700), (10, 3), (15, 0)] {
            payload.extend(8u16.to_ne_bytes());
            payload.extend(kind.to_ne_bytes());
            payload.extend(value.to_be_bytes());
        }
        let mut header = NetlinkHeader::default();
        header.message_type = (1 << 8) | u16::from(IPCTNL_MSG_CT_GET_STATS_CPU);
        let m = NetfilterMessage::deserialize(&header, &payload).unwrap();
        let NetfilterMessageInner::Conntrack(ConntrackMessage::Other { attributes, .. }) = &m.inner
        else {
            panic!("not a conntrack statistics message: {m:?}");
        };
        assert_eq!(stat(attributes, CTA_STATS_INSERT_FAILED), 700);
        assert_eq!(stat(attributes, CTA_STATS_DROP), 3);
    }

    #[test]
    fn other_protocols_and_partial_entries_are_skipped() {
        let icmp = vec![
            ConntrackAttribute::CtaTupleOrig(tuple_of(
                "10.0.1.2",
                "10.0.3.2",
                1,
                1,
                CtProtocol::Icmp,
            )),
            ConntrackAttribute::CtaTupleReply(tuple_of(
                "10.0.3.2",
                "10.0.2.1",
                1,
                1,
                CtProtocol::Icmp,
            )),
        ];
        assert_eq!(entry(&icmp), None);
        let orig_only = vec![ConntrackAttribute::CtaTupleOrig(tuple_of(
            "10.0.1.2",
            "10.0.3.2",
            1,
            2,
            CtProtocol::Udp,
        ))];
        assert_eq!(entry(&orig_only), None);
    }
}
