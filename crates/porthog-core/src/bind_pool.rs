//! The bind(port 0) and UDP autobind pools, one per caller: (protocol, family, local address or
//! wildcard). A port is free for a caller unless a socket on it overlaps the caller's address
//! as `inet_rcv_saddr_equal` decides (`inet_csk_bind_conflict`, `udp_lib_lport_inuse`; the
//! caller binds without SO_REUSEADDR). Pure: the sockets come from the snapshot.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{BucketOrigin, Protocol, Socket, State};

/// The IPv4 receive address the kernel gives an IPv6 socket bound or connected to a non-mapped
/// IPv6 address (`LOOPBACK4_IPV6` in `__inet6_bind` and `tcp_v6_connect`): such a socket still
/// meets an IPv4 wildcard caller unless it is v6only. Measured: a connected `[::1]` socket
/// blocks `bind(0.0.0.0, 0)` on its port but not `bind(127.0.0.1, 0)`.
const LOOPBACK4_IPV6: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

/// Most specific-address callers modelled besides the wildcards: the addresses that bind-type
/// sockets use, fullest first after sorting.
const MAX_SPECIFIC_CALLERS: usize = 8;

/// Who allocates: `bind(addr, 0)` (TCP) or an autobind on an unbound socket (UDP). A wildcard
/// address stands for `0.0.0.0` or a dual-stack `[::]` (the Linux default, bindv6only=0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Caller {
    pub protocol: Protocol,
    pub addr: IpAddr,
}

/// Whether a holder's v6only flag is the kernel's own word, derived, or assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6onlyFrom {
    /// Not an IPv6 socket, or the source read the flag.
    Known,
    /// Unknown; the Linux default (off) was assumed.
    Assumed,
}

/// An IPv6 holder's v6only: the fact when the source read it; else on for a port taken with
/// bind() to a specific IPv6 address (`__inet6_bind` sets `sk_ipv6only` then); else the
/// default, off, assumed.
pub fn holder_v6only(s: &Socket) -> (bool, V6onlyFrom) {
    let IpAddr::V6(local) = s.local_ip else { return (false, V6onlyFrom::Known) };
    if let Some(v) = s.facts.v6only() {
        return (v, V6onlyFrom::Known);
    }
    let bound = s.state.is_bind_type() || s.facts.bucket() == Some(BucketOrigin::Bind);
    if bound && !local.is_unspecified() {
        return (true, V6onlyFrom::Known);
    }
    (false, V6onlyFrom::Assumed)
}

/// Whether `holder` makes its port unusable for `caller` (`inet_rcv_saddr_equal` with
/// wildcards matching: `ipv4_rcv_saddr_equal`, `ipv6_rcv_saddr_equal`).
pub fn conflicts(holder: &Socket, caller: Caller) -> bool {
    if holder.protocol != caller.protocol {
        return false;
    }
    match (caller.addr, holder.local_ip) {
        (IpAddr::V4(a), IpAddr::V4(s)) => a == s || a.is_unspecified() || s.is_unspecified(),
        (IpAddr::V4(a), IpAddr::V6(s)) => {
            if holder_v6only(holder).0 {
                return false;
            }
            let s4 = if s.is_unspecified() { Ipv4Addr::UNSPECIFIED } else { LOOPBACK4_IPV6 };
            a == s4 || a.is_unspecified() || s4.is_unspecified()
        }
        // An IPv4 holder meets an IPv6 caller only through a dual-stack wildcard.
        (IpAddr::V6(a), IpAddr::V4(_)) => a.is_unspecified(),
        (IpAddr::V6(a), IpAddr::V6(s)) => a == s || a.is_unspecified() || s.is_unspecified(),
    }
}

/// The callers worth a pool: the IPv4 wildcard always; the dual-stack IPv6 wildcard when the
/// protocol has IPv6 sockets; and, for TCP, each specific address that bind-type sockets use
/// (bound sockets, bind-before-connect, listeners on ephemeral ports: `is_pool_port`), where a
/// caller binding to that address finds its own pool.
pub fn callers(
    sockets: &[Socket],
    protocol: Protocol,
    is_pool_port: impl Fn(u16) -> bool,
) -> Vec<Caller> {
    let mut out = vec![Caller { protocol, addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED) }];
    let of_protocol = || sockets.iter().filter(move |s| s.protocol == protocol);
    if of_protocol().any(|s| s.local_ip.is_ipv6() || s.facts.family_v6() == Some(true)) {
        out.push(Caller { protocol, addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED) });
    }
    if protocol == Protocol::Tcp {
        let mut specific: Vec<IpAddr> = of_protocol()
            .filter(|s| {
                s.state == State::Bound
                    || s.facts.bucket() == Some(BucketOrigin::Bind)
                    || (s.state == State::Listen && is_pool_port(s.local_port))
            })
            .map(|s| s.local_ip)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        specific.sort_unstable();
        specific.dedup();
        specific.truncate(MAX_SPECIFIC_CALLERS);
        out.extend(specific.into_iter().map(|addr| Caller { protocol, addr }));
    }
    out
}

/// "0.0.0.0", "[::]", "127.0.0.1", "[::1]": an address as it reads in `bind(ADDR, 0)`.
pub fn caller_addr(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KernelFacts;

    fn sock(protocol: Protocol, state: State, local: &str, v6only: Option<bool>) -> Socket {
        let mut s = Socket::new(protocol, state, (local.parse().unwrap(), 40000), {
            let remote: IpAddr = if state == State::Established {
                if local.contains(':') {
                    "::1".parse().unwrap()
                } else {
                    "127.0.0.1".parse().unwrap()
                }
            } else if local.contains(':') {
                "::".parse().unwrap()
            } else {
                "0.0.0.0".parse().unwrap()
            };
            (remote, if state == State::Established { 7070 } else { 0 })
        });
        if let Some(v) = v6only {
            s.facts = KernelFacts::default().with_v6only(v);
        }
        s
    }

    fn caller(addr: &str) -> Caller {
        Caller { protocol: Protocol::Tcp, addr: addr.parse().unwrap() }
    }

    /// Each row measured on a 6.18 kernel with a one-port range (see the commit message).
    #[test]
    fn conflicts_follow_the_kernel() {
        use State::*;
        let tcp = Protocol::Tcp;
        // (holder, caller, blocked)
        let cases = [
            // A port bound on [::1] (v6only set by the bind) blocks [::] callers, not IPv4.
            (sock(tcp, Bound, "::1", None), "0.0.0.0", false),
            (sock(tcp, Bound, "::1", None), "127.0.0.2", false),
            (sock(tcp, Bound, "::1", None), "::", true),
            (sock(tcp, Bound, "::1", None), "::1", true),
            // A port bound on 127.0.0.1 blocks the wildcards, not 127.0.0.2 nor [::1].
            (sock(tcp, Bound, "127.0.0.1", None), "0.0.0.0", true),
            (sock(tcp, Bound, "127.0.0.1", None), "127.0.0.2", false),
            (sock(tcp, Bound, "127.0.0.1", None), "::", true),
            (sock(tcp, Bound, "127.0.0.1", None), "::1", false),
            // A connected [::1] socket without v6only blocks bind(0.0.0.0, 0), not 127.0.0.1.
            (sock(tcp, Established, "::1", Some(false)), "0.0.0.0", true),
            (sock(tcp, Established, "::1", Some(false)), "127.0.0.1", false),
            (sock(tcp, Established, "::1", Some(true)), "0.0.0.0", false),
            // A dual-stack [::] listener holds both families; a v6only one only IPv6.
            (sock(tcp, Listen, "::", Some(false)), "127.0.0.1", true),
            (sock(tcp, Listen, "::", Some(true)), "127.0.0.1", false),
            (sock(tcp, Listen, "::", Some(true)), "::1", true),
            // Another protocol never conflicts.
            (sock(Protocol::Udp, Bound, "0.0.0.0", None), "0.0.0.0", false),
        ];
        for (i, (holder, addr, blocked)) in cases.iter().enumerate() {
            assert_eq!(conflicts(holder, caller(addr)), *blocked, "case {i}: {holder:?} vs {addr}");
        }
    }

    #[test]
    fn v6only_is_known_derived_or_assumed() {
        assert_eq!(
            holder_v6only(&sock(Protocol::Tcp, State::Bound, "127.0.0.1", None)).1,
            V6onlyFrom::Known
        );
        assert_eq!(
            holder_v6only(&sock(Protocol::Tcp, State::Bound, "::1", None)),
            (true, V6onlyFrom::Known)
        );
        assert_eq!(
            holder_v6only(&sock(Protocol::Udp, State::Established, "::1", None)),
            (false, V6onlyFrom::Assumed)
        );
        assert_eq!(
            holder_v6only(&sock(Protocol::Udp, State::Established, "::1", Some(true))),
            (true, V6onlyFrom::Known)
        );
    }

    #[test]
    fn callers_are_the_wildcards_and_bound_addresses() {
        let socks = vec![
            sock(Protocol::Tcp, State::Bound, "127.0.0.1", None),
            sock(Protocol::Tcp, State::Established, "127.0.0.2", None),
            sock(Protocol::Udp, State::Established, "::1", Some(true)),
        ];
        let tcp: Vec<String> =
            callers(&socks, Protocol::Tcp, |_| true).iter().map(|c| caller_addr(c.addr)).collect();
        assert_eq!(tcp, ["0.0.0.0", "127.0.0.1"]);
        let udp: Vec<String> =
            callers(&socks, Protocol::Udp, |_| true).iter().map(|c| caller_addr(c.addr)).collect();
        assert_eq!(udp, ["0.0.0.0", "[::]"]);
    }
}
