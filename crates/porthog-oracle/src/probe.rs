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

/// Who asks the kernel for a port: the family and address of a bind(addr, 0) or autobind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// AF_INET, 0.0.0.0.
    V4Any,
    /// AF_INET6, [::] without IPV6_V6ONLY: conflicts with both families.
    DualStackAny,
}

impl Caller {
    fn addr(self) -> (bool, IpAddr) {
        match self {
            Caller::V4Any => (false, sock::wildcard(false)),
            Caller::DualStackAny => (true, sock::wildcard(true)),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Caller::V4Any => "0.0.0.0",
            Caller::DualStackAny => "[::] dual-stack",
        })
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

/// How a reported pool is checked: the allocations its numbers make a claim about. Today's
/// report has one bind() and one UDP pool per namespace, which claim to hold for every caller;
/// they are probed with the two wildcard callers (IPv4, and IPv6 dual-stack). Pools per family
/// and address (issue 7, item 3) map to a caller of that family and address here.
pub fn probes_for(pool: &Pool) -> Vec<Probe> {
    match (pool.kind, pool.protocol, pool.local, pool.remote) {
        (PoolKind::Connect, Protocol::Tcp, Some(local), Some(remote)) => {
            vec![Probe::Connect { local, remote }]
        }
        (PoolKind::Bind, Protocol::Tcp, _, _) => {
            vec![Probe::Bind(Caller::V4Any), Probe::Bind(Caller::DualStackAny)]
        }
        (PoolKind::Udp, Protocol::Udp, _, _) => {
            vec![Probe::Udp(Caller::V4Any), Probe::Udp(Caller::DualStackAny)]
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
        Probe::Bind(caller) => {
            let (v6, ip) = caller.addr();
            let s = sock::tcp(v6)?;
            if v6 {
                s.set_only_v6(false)?;
            }
            s.bind(&SocketAddr::new(ip, 0).into())?;
            Ok(s)
        }
        Probe::Udp(caller) => {
            let (v6, ip) = caller.addr();
            let s = sock::udp(v6)?;
            if v6 {
                s.set_only_v6(false)?;
            }
            s.bind(&SocketAddr::new(ip, 0).into())?;
            Ok(s)
        }
    }
}
