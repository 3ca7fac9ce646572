//! Decoding of the ctnetlink answers porthog reads (conntrack entries and per-CPU statistics)
//! from the bytes of one netfilter message (nfgenmsg, then attributes). Only the attributes a
//! SNAT pool needs are looked at, in place, with netlink-packet-core's attribute iterator: a
//! dump of 100k entries must not build nested vectors per entry (issue 9). Never reads a socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_packet_core::{NlaBuffer, NlasIterator};

use crate::model::Protocol;
use crate::snat::{ConntrackEntry, ConntrackStats, IPS_SRC_NAT, TCP_CONNTRACK_TIME_WAIT};

/// `struct nfgenmsg` precedes the attributes of every netfilter message.
const NFGENMSG_LEN: usize = 4;

// include/uapi/linux/netfilter/nfnetlink_conntrack.h
/// `enum ctattr_type`.
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
/// `enum ctattr_tuple`.
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
/// `enum ctattr_ip`.
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
/// `enum ctattr_l4proto`.
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
/// `enum ctattr_protoinfo` and `enum ctattr_protoinfo_tcp`.
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;
/// `enum ctattr_stats_cpu`: u32 big-endian counters.
const CTA_STATS_INSERT_FAILED: u16 = 9;
const CTA_STATS_DROP: u16 = 10;

/// `nfnl_msg_type(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW)`: the type of each entry of a dump.
pub const MSG_CT_NEW: u16 = 1 << 8;
/// `IPCTNL_MSG_CT_GET_STATS_CPU` (`enum cntl_msg_types`), the request for per-CPU statistics.
pub const IPCTNL_MSG_CT_GET_STATS_CPU: u8 = 4;
/// The type of each per-CPU statistics answer: `nfnl_msg_type(NFNL_SUBSYS_CTNETLINK,
/// IPCTNL_MSG_CT_GET_STATS_CPU)`.
pub const MSG_CT_STATS_CPU: u16 = MSG_CT_NEW & 0xff00 | IPCTNL_MSG_CT_GET_STATS_CPU as u16;

/// The attributes of `buf` as (kind, value); stops at the first malformed one.
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    NlasIterator::new(buf).map_while(Result::ok).map(|a: NlaBuffer<&[u8]>| {
        // new_checked (in the iterator) made sure 4 <= length <= the bytes left.
        let (kind, len) = (a.kind(), usize::from(a.length()));
        (kind, a.into_inner().get(4..len).unwrap_or_default())
    })
}

/// A TCP or UDP entry from one `IPCTNL_MSG_CT_NEW` message (nfgenmsg included); `None` for
/// other protocols, a partial entry or bytes that are not an entry.
pub fn entry(message: &[u8]) -> Option<ConntrackEntry> {
    let (mut orig, mut reply, mut status, mut tcp_state) = (None, None, 0, None);
    for (kind, value) in attrs(message.get(NFGENMSG_LEN..)?) {
        match kind {
            CTA_TUPLE_ORIG => orig = tuple(value),
            CTA_TUPLE_REPLY => reply = tuple(value),
            CTA_STATUS => status = be_u32(value)?,
            CTA_PROTOINFO => {
                for (kind, tcp) in attrs(value) {
                    if kind == CTA_PROTOINFO_TCP {
                        tcp_state = attrs(tcp)
                            .find(|(k, _)| *k == CTA_PROTOINFO_TCP_STATE)
                            .and_then(|(_, v)| v.first().copied());
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

/// (protocol, source, destination) of a `CTA_TUPLE_*` nest.
fn tuple(nest: &[u8]) -> Option<(Protocol, SocketAddr, SocketAddr)> {
    let (mut src, mut dst, mut sport, mut dport, mut proto) = (None, None, None, None, None);
    for (kind, value) in attrs(nest) {
        match kind {
            CTA_TUPLE_IP => {
                for (kind, ip) in attrs(value) {
                    match kind {
                        CTA_IP_V4_SRC => src = v4(ip),
                        CTA_IP_V4_DST => dst = v4(ip),
                        CTA_IP_V6_SRC => src = v6(ip),
                        CTA_IP_V6_DST => dst = v6(ip),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (kind, v) in attrs(value) {
                    match kind {
                        CTA_PROTO_NUM => {
                            proto = match v.first() {
                                Some(6) => Some(Protocol::Tcp),
                                Some(17) => Some(Protocol::Udp),
                                _ => return None,
                            }
                        }
                        CTA_PROTO_SRC_PORT => sport = be_u16(v),
                        CTA_PROTO_DST_PORT => dport = be_u16(v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((proto?, SocketAddr::new(src?, sport?), SocketAddr::new(dst?, dport?)))
}

/// `insert_failed` and `drop` of one CPU's `IPCTNL_MSG_CT_GET_STATS_CPU` answer (nfgenmsg
/// included); a missing counter is 0, bytes too short for the header are `None`.
pub fn cpu_stats(message: &[u8]) -> Option<ConntrackStats> {
    let mut stats = ConntrackStats::default();
    for (kind, value) in attrs(message.get(NFGENMSG_LEN..)?) {
        match kind {
            CTA_STATS_INSERT_FAILED => stats.insert_failed = be_u32(value).map_or(0, u64::from),
            CTA_STATS_DROP => stats.drop = be_u32(value).map_or(0, u64::from),
            _ => {}
        }
    }
    Some(stats)
}

fn be_u16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

fn be_u32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn v4(v: &[u8]) -> Option<IpAddr> {
    let b: [u8; 4] = v.get(..4)?.try_into().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(b)))
}

fn v6(v: &[u8]) -> Option<IpAddr> {
    let b: [u8; 16] = v.get(..16)?.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends one attribute (4-byte header, value, padding to 4) to `out`.
    fn nla(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        let len = u16::try_from(4 + value.len()).unwrap();
        out.extend(len.to_ne_bytes());
        out.extend(kind.to_ne_bytes());
        out.extend(value);
        out.resize(out.len().next_multiple_of(4), 0);
    }

    /// A nested attribute, with NLA_F_NESTED set as the kernel sets it.
    fn nest(out: &mut Vec<u8>, kind: u16, inner: &[u8]) {
        nla(out, kind | 0x8000, inner);
    }

    fn tuple_of(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> Vec<u8> {
        let mut ip = Vec::new();
        let octets = |a: IpAddr| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let (s, d) = if src.is_ipv4() {
            (CTA_IP_V4_SRC, CTA_IP_V4_DST)
        } else {
            (CTA_IP_V6_SRC, CTA_IP_V6_DST)
        };
        nla(&mut ip, s, &octets(src));
        nla(&mut ip, d, &octets(dst));
        let mut l4 = Vec::new();
        nla(&mut l4, CTA_PROTO_NUM, &[proto]);
        nla(&mut l4, CTA_PROTO_SRC_PORT, &sport.to_be_bytes());
        nla(&mut l4, CTA_PROTO_DST_PORT, &dport.to_be_bytes());
        let mut t = Vec::new();
        nest(&mut t, CTA_TUPLE_IP, &ip);
        nest(&mut t, CTA_TUPLE_PROTO, &l4);
        t
    }

    /// An entry as ctnetlink_fill_info lays it out: orig, reply, status, protoinfo.
    fn message(orig: &[u8], reply: Option<&[u8]>, status: u32, tcp_state: Option<u8>) -> Vec<u8> {
        let mut m = vec![2, 0, 0, 0];
        nest(&mut m, CTA_TUPLE_ORIG, orig);
        if let Some(reply) = reply {
            nest(&mut m, CTA_TUPLE_REPLY, reply);
        }
        nla(&mut m, CTA_STATUS, &status.to_be_bytes());
        if let Some(state) = tcp_state {
            let mut tcp = Vec::new();
            nla(&mut tcp, CTA_PROTOINFO_TCP_STATE, &[state]);
            let mut info = Vec::new();
            nest(&mut info, CTA_PROTOINFO_TCP, &tcp);
            nest(&mut m, CTA_PROTOINFO, &info);
        }
        m
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_masqueraded_tcp_entry_in_time_wait() {
        let orig = tuple_of(ip("10.0.1.2"), ip("10.0.3.2"), 50000, 8080, 6);
        let reply = tuple_of(ip("10.0.3.2"), ip("10.0.2.1"), 8080, 40003, 6);
        let e = entry(&message(&orig, Some(&reply), IPS_SRC_NAT | 0b1110, Some(7))).unwrap();
        assert_eq!(e.protocol, Protocol::Tcp);
        assert_eq!(e.orig_src, "10.0.1.2:50000".parse().unwrap());
        assert_eq!(e.orig_dst, "10.0.3.2:8080".parse().unwrap());
        assert_eq!(e.reply_dst, "10.0.2.1:40003".parse().unwrap());
        assert_eq!(e.reply_src, "10.0.3.2:8080".parse().unwrap());
        assert!(e.src_nat && e.time_wait);
        let established = message(&orig, Some(&reply), 0b1110, Some(3));
        let e = entry(&established).unwrap();
        assert!(!e.src_nat && !e.time_wait);
    }

    #[test]
    fn an_ipv6_udp_entry() {
        let orig = tuple_of(ip("fd00::2"), ip("fd00:1::2"), 40000, 53, 17);
        let reply = tuple_of(ip("fd00:1::2"), ip("fd00::1"), 53, 1025, 17);
        let e = entry(&message(&orig, Some(&reply), IPS_SRC_NAT, None)).unwrap();
        assert_eq!(e.protocol, Protocol::Udp);
        assert_eq!(e.reply_dst, "[fd00::1]:1025".parse().unwrap());
        assert!(e.src_nat && !e.time_wait);
    }

    #[test]
    fn other_protocols_partial_entries_and_garbage_are_skipped() {
        let icmp = tuple_of(ip("10.0.1.2"), ip("10.0.3.2"), 1, 1, 1);
        assert_eq!(entry(&message(&icmp, Some(&icmp), 0, None)), None);
        let udp = tuple_of(ip("10.0.1.2"), ip("10.0.3.2"), 1, 2, 17);
        assert_eq!(entry(&message(&udp, None, 0, None)), None);
        let whole = message(&udp, Some(&udp), 0, None);
        for cut in 0..whole.len() - 8 {
            // A message cut short loses its reply tuple or status: never a wrong entry.
            let e = entry(&whole[..cut]);
            assert!(e.is_none(), "cut at {cut}: {e:?}");
        }
        assert_eq!(entry(&[]), None);
        assert_eq!(entry(&[0xff; 64]), None);
    }

    /// The fuzz seeds are real messages: the entry and the statistics decode.
    #[test]
    fn the_fuzz_seeds_decode() {
        let e =
            entry(include_bytes!("../../../fuzz/seeds/ctnetlink/masqueraded_tcp_time_wait.bin"));
        let e = e.unwrap();
        assert_eq!(e.reply_dst, "10.0.2.1:40003".parse().unwrap());
        assert!(e.src_nat && e.time_wait);
        let s = cpu_stats(include_bytes!("../../../fuzz/seeds/ctnetlink/stats_cpu.bin"));
        assert_eq!(s, Some(ConntrackStats { insert_failed: 700, drop: 3 }));
    }

    /// One per-CPU statistics answer as the 6.18 kernel sends it (seen with strace): nfgenmsg,
    /// then u32 big-endian attributes; insert_failed (9) = 700, drop (10) = 3.
    #[test]
    fn per_cpu_statistics_decode() {
        let mut payload = vec![0u8, 0, 0, 1];
        for (kind, value) in [(2u16, 5u32), (8, 11), (9, 700), (10, 3), (15, 0)] {
            nla(&mut payload, kind, &value.to_be_bytes());
        }
        assert_eq!(cpu_stats(&payload), Some(ConntrackStats { insert_failed: 700, drop: 3 }));
        assert_eq!(cpu_stats(&payload[..4]), Some(ConntrackStats::default()));
        assert_eq!(cpu_stats(&payload[..3]), None);
    }
}
