//! Checking a pool by making the kernel's next allocations of that kind until it refuses.
//! `probes_for` is the one place that says how a reported pool is probed: extend it when the
//! report grows new pool shapes. The probe sockets are held until the pool is done, then closed
//! without leaving TIME_WAIT (SO_LINGER 0), so one pool's probe does not change the next.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Result, bail};
use porthog_core::{Pool, PoolKind, Protocol};
use socket2::Socket;

use crate::sock;

/// Who asks the kernel for a port: the address of a bind(addr, 0) or autobind. `0.0.0.0` is
/// the IPv4 wildcard, `::` the dual-stack IPv6 wildcard (IPV6_V6ONLY off, the Linux default,
/// so it conflicts with both families); a specific IPv6 address is v6only by bind() itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller(pub IpAddr);

impl Caller {
    pub const V4_ANY: Caller = Caller(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    pub const DUAL_STACK_ANY: Caller = Caller(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) if a.is_unspecified() => f.write_str("[::] dual-stack"),
            IpAddr::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// One kind of allocation, made again and again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// TCP: IP_BIND_ADDRESS_NO_PORT + bind(local, 0) + non-blocking connect(remote): the port
    /// comes from `__inet_hash_connect`, for exactly this (local IP, remote) pool.
    Connect { local: IpAddr, remote: SocketAddr },
    /// TCP bind(caller, 0): `inet_csk_find_open_port`.
    Bind(Caller),
    /// UDP bind(caller, 0): the same autobind `udp_lib_get_port` does for connect()/sendto().
    Udp(Caller),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Connect { local, remote } => write!(f, "connect() {local} -> {remote}"),
            Probe::Bind(c) => write!(f, "tcp bind({c}, 0)"),
            Probe::Udp(c) => write!(f, "udp bind({c}, 0)"),
        }
    }
}

/// How a reported pool is checked: the allocations its numbers make a claim about.
/// - connect() pool (local, remote): connect() from `local` to `remote`.
/// - bind() / UDP pool of one caller (`local` = the caller's address or wildcard, report
///   schema 2, issue 7 item 3): bind(that address, 0).
/// - bind() / UDP pool without an address (schema 1: one per namespace, claiming to hold for
///   every caller): both wildcard callers, IPv4 and dual-stack IPv6.
pub fn probes_for(pool: &Pool) -> Vec<Probe> {
    match (pool.kind, pool.protocol, pool.local, pool.remote) {
        (PoolKind::Connect, Protocol::Tcp, Some(local), Some(remote)) => {
            vec![Probe::Connect { local, remote }]
        }
        (PoolKind::Bind, Protocol::Tcp, Some(addr), None) => vec![Probe::Bind(Caller(addr))],
        (PoolKind::Bind, Protocol::Tcp, None, None) => {
            vec![Probe::Bind(Caller::V4_ANY), Probe::Bind(Caller::DUAL_STACK_ANY)]
        }
        (PoolKind::Udp, Protocol::Udp, Some(addr), None) => vec![Probe::Udp(Caller(addr))],
        (PoolKind::Udp, Protocol::Udp, None, None) => {
            vec![Probe::Udp(Caller::V4_ANY), Probe::Udp(Caller::DUAL_STACK_ANY)]
        }
        // Windows pools, or a shape this oracle does not know yet: not probed, and counted.
        _ => Vec::new(),
    }
}

/// What the kernel did: how many allocations it granted before refusing, and the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub granted: u32,
    pub refusal: i32,
}

/// Allocates with `probe` until the kernel refuses (at most `limit` times, which no pool can
/// reach), holding every socket; closes them all before returning. The calling thread must be
/// in the pool's namespace.
pub fn run(probe: Probe, limit: u32) -> Result<Granted> {
    let mut held = Vec::new();
    loop {
        match allocate(probe) {
            Ok(s) => held.push(s),
            Err(e) => {
                let errno = sock::errno(&e);
                if !refusal(probe, errno) {
                    bail!(
                        "{probe}: unexpected {} ({e}) after {} grants",
                        sock::errno_name(errno),
                        held.len()
                    );
                }
                return Ok(Granted { granted: held.len() as u32, refusal: errno });
            }
        }
        if held.len() as u32 > limit {
            bail!("{probe}: the kernel granted more than {limit} ports, more than the range holds");
        }
    }
}

/// The errors that mean "no free port" for this kind of allocation (DOMAIN.md 1).
fn refusal(probe: Probe, errno: i32) -> bool {
    match probe {
        Probe::Connect { .. } => errno == libc::EADDRNOTAVAIL,
        Probe::Bind(_) | Probe::Udp(_) => errno == libc::EADDRINUSE,
    }
}

fn allocate(probe: Probe) -> io::Result<Socket> {
    match probe {
        Probe::Connect { local, remote } => {
            let v6 = local.is_ipv6();
            let s = sock::tcp(v6)?;
            // Closed with RST, not FIN: no TIME_WAIT is left for the next pool's probe.
            s.set_linger(Some(Duration::ZERO))?;
            sock::bind_address_no_port(&s)?;
            s.bind(&SocketAddr::new(local, 0).into())?;
            s.set_nonblocking(true)?;
            let remote = if v6 { sock::as_v6(remote) } else { remote };
            match s.connect(&remote.into()) {
                Ok(()) => Ok(s),
                Err(e) if sock::errno(&e) == libc::EINPROGRESS => Ok(s),
                Err(e) => Err(e),
            }
        }
        Probe::Bind(Caller(ip)) => {
            let s = sock::tcp(ip.is_ipv6())?;
            bind_port_0(&s, ip)?;
            Ok(s)
        }
        Probe::Udp(Caller(ip)) => {
            let s = sock::udp(ip.is_ipv6())?;
            bind_port_0(&s, ip)?;
            Ok(s)
        }
    }
}

/// bind(ip, 0); an IPv6 socket stays dual-stack (what `[::]` means in a pool).
fn bind_port_0(s: &Socket, ip: IpAddr) -> io::Result<()> {
    if ip.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.bind(&SocketAddr::new(ip, 0).into())
}
