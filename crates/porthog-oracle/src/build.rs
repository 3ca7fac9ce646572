//! Puts a `Scenario` into the kernel: sysctls, listeners, connections, TIME_WAIT, leaks, bound
//! and UDP sockets, all held by this process in `Live` until the scenario ends. Runs on a thread
//! that has entered the scenario's namespace; the peer's side is made from inside the peer.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::Socket;

use crate::netns::{self, Netns};
use crate::scenario::{Dest, End, Origin, Scenario, Step, TwAge};
use crate::sock;

/// How long a connection, an accept or a close may take on loopback or veth.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything a scenario holds open, and what happened while building it.
pub struct Live {
    pub sockets: Vec<Socket>,
    /// One listener per destination (index = `Scenario::dests`).
    listeners: Vec<Socket>,
    /// When the first and the last TIME_WAIT of the scenario began.
    pub first_tw: Option<Instant>,
    pub last_tw: Option<Instant>,
    /// Steps the kernel cut short, e.g. "connect 40 of 120 to ...: EADDRNOTAVAIL".
    pub notes: Vec<String>,
    /// Orphaned FIN_WAIT2 sockets expected in this namespace.
    leaks: u32,
    /// Open sockets that hold a port from bind(port 0): ephemeral listeners, bound sockets,
    /// bind-before-connect (what issue 7 wrong 6 says porthog must see as a bind(0) caller).
    pub bind0: u32,
}

/// Builds `scn` in `ns` (the calling thread must already be inside it); `peer` is the peer
/// namespace when the scenario has one.
pub fn build(scn: &Scenario, ns: &Netns, peer: Option<&Netns>) -> Result<Live> {
    let (lo, hi) = scn.range;
    netns::sysctl("ipv4/ip_local_port_range", &format!("{lo} {hi}"))?;
    netns::sysctl("ipv4/ip_local_reserved_ports", &scn.reserved_sysctl())?;
    netns::sysctl("ipv4/tcp_tw_reuse", &scn.tw_reuse.to_string())?;
    netns::sysctl("ipv4/tcp_tw_reuse_delay", &scn.tw_age.delay_ms().to_string())?;
    netns::sysctl("ipv4/tcp_timestamps", if scn.timestamps { "1" } else { "0" })?;

    let mut live = Live {
        sockets: Vec::new(),
        listeners: Vec::new(),
        first_tw: None,
        last_tw: None,
        notes: Vec::new(),
        leaks: 0,
        bind0: 0,
    };
    for d in &scn.dests {
        let listener = match (d.in_peer, peer) {
            (true, Some(peer)) => {
                peer.enter()?;
                let ts = if scn.peer == Some(false) { "0" } else { "1" };
                let made = netns::sysctl("ipv4/tcp_timestamps", ts).and_then(|()| listen_on(d));
                ns.enter()?;
                made?
            }
            (true, None) => bail!("destination {} is in a peer the scenario lacks", d.addr),
            (false, _) => listen_on(d)?,
        };
        live.listeners.push(listener);
    }
    // Fixed-port listeners first: made later, their port could already be taken by a
    // connection, and the scenario would depend on the kernel's random port choice.
    let (fixed, rest): (Vec<&Step>, Vec<&Step>) =
        scn.steps.iter().partition(|s| matches!(s, Step::Listen { port: Some(_), .. }));
    for step in fixed.into_iter().chain(rest) {
        apply(scn, step, &mut live)?;
        // Each step's closes finish before the next step connects: an unbound connect() may
        // take the 4-tuple of a device-bound connection (`__inet_check_established` skips
        // it), and when that connection's FIN was not acknowledged yet, its orphan stayed in
        // FIN_WAIT1, retransmitting, past the timeout (full mix seed 971, named case
        // `unbound_connect_after_device_bound_leaks_settles`).
        netns::settle(live.leaks, STEP_TIMEOUT)?;
    }
    if scn.tw_age == TwAge::Old && live.last_tw.is_some() {
        // Past the 1 ms reuse delay by a wide margin, also in sock_diag's rounded timer.
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(after) = scn.timestamps_after {
        netns::sysctl("ipv4/tcp_timestamps", if after { "1" } else { "0" })?;
    }
    Ok(live)
}

fn listen_on(d: &Dest) -> Result<Socket> {
    let s = sock::tcp(d.addr.is_ipv6())?;
    s.set_reuse_address(true)?;
    s.bind(&d.addr.into()).with_context(|| format!("bind listener {}", d.addr))?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn apply(scn: &Scenario, step: &Step, live: &mut Live) -> Result<()> {
    match *step {
        Step::Connect { dest, origin, count, end } => {
            let to = scn.dests[dest].addr;
            let mut clients = Vec::new();
            for i in 0..count {
                match client(origin, to) {
                    Ok(s) => clients.push(s),
                    Err(e) if is_exhaustion(&e) => {
                        live.notes.push(format!(
                            "{origin:?} to {to}: {i} of {count}, then {}",
                            sock::errno_name(sock::errno(&e))
                        ));
                        break;
                    }
                    Err(e) => return Err(e).context(format!("{origin:?} connect to {to}")),
                }
            }
            // Only an open socket shows its bind(0) port to an outside observer; a TIME_WAIT or
            // orphan has no owner left to show it.
            if matches!(origin, Origin::BindFirst(_)) && end == End::Open {
                live.bind0 += clients.len() as u32;
            }
            let servers = accept(&live.listeners[dest], clients.len())?;
            finish(clients, servers, end, live)
        }
        Step::Fill { dest } => {
            let to = scn.dests[dest].addr;
            let mut clients = Vec::new();
            let limit = scn.usable() + 2;
            loop {
                match client(Origin::Plain, to) {
                    Ok(s) => clients.push(s),
                    Err(e) if sock::errno(&e) == libc::EADDRNOTAVAIL => break,
                    Err(e) => return Err(e).context(format!("fill {to}")),
                }
                if clients.len() as u32 > limit {
                    bail!("fill {to}: more than {limit} connections in a {limit}-port range");
                }
            }
            let servers = accept(&live.listeners[dest], clients.len())?;
            finish(clients, servers, End::Open, live)
        }
        Step::Listen { ip, port, reuseaddr, reuseport } => {
            let s = sock::tcp(ip.is_ipv6())?;
            s.set_reuse_address(reuseaddr)?;
            s.set_reuse_port(reuseport)?;
            if let Some(port) = port
                && let Err(e) = s.bind(&SocketAddr::new(ip, port).into())
            {
                live.notes
                    .push(format!("listener {ip}:{port}: {}", sock::errno_name(sock::errno(&e))));
                return Ok(());
            }
            match s.listen(128) {
                Ok(()) => {
                    live.bind0 += u32::from(port.is_none());
                    live.sockets.push(s);
                }
                Err(e) => {
                    live.notes.push(format!("listen(): {}", sock::errno_name(sock::errno(&e))))
                }
            }
            Ok(())
        }
        Step::Bound { ip, count } => {
            for i in 0..count {
                let s = sock::tcp(ip.is_ipv6())?;
                match s.bind(&SocketAddr::new(ip, 0).into()) {
                    Ok(()) => {
                        live.bind0 += 1;
                        live.sockets.push(s);
                    }
                    Err(e) => {
                        live.notes.push(format!(
                            "bind({ip}, 0): {i} of {count}, then {}",
                            sock::errno_name(sock::errno(&e))
                        ));
                        break;
                    }
                }
            }
            Ok(())
        }
        Step::Udp { v6, v6only, to, count } => {
            for i in 0..count {
                let s = sock::udp(v6)?;
                if v6 {
                    s.set_only_v6(v6only)?;
                }
                let made = match to {
                    Some(to) => s.connect(&if v6 { sock::as_v6(to) } else { to }.into()),
                    None => s.bind(&SocketAddr::new(sock::wildcard(v6), 0).into()),
                };
                match made {
                    Ok(()) => live.sockets.push(s),
                    Err(e) if is_exhaustion(&e) => {
                        live.notes.push(format!(
                            "UDP: {i} of {count}, then {}",
                            sock::errno_name(sock::errno(&e))
                        ));
                        break;
                    }
                    Err(e) => return Err(e).context("UDP socket"),
                }
            }
            Ok(())
        }
    }
}

fn is_exhaustion(e: &io::Error) -> bool {
    matches!(sock::errno(e), libc::EADDRNOTAVAIL | libc::EADDRINUSE | libc::EAGAIN)
}

/// One connected client socket (blocking connect: loopback and veth answer at once).
fn client(origin: Origin, to: SocketAddr) -> io::Result<Socket> {
    let v6 = match origin {
        Origin::V4Mapped => true,
        Origin::NoPort(ip) | Origin::BindFirst(ip) => ip.is_ipv6(),
        Origin::Plain | Origin::Device => to.is_ipv6(),
    };
    let s = sock::tcp(v6)?;
    match origin {
        Origin::Plain | Origin::V4Mapped => {}
        Origin::NoPort(ip) => {
            sock::bind_address_no_port(&s)?;
            s.bind(&SocketAddr::new(ip, 0).into())?;
        }
        Origin::BindFirst(ip) => s.bind(&SocketAddr::new(ip, 0).into())?,
        Origin::Device => s.bind_device(Some(b"lo"))?,
    }
    let to = if v6 { sock::as_v6(to) } else { to };
    s.connect_timeout(&to.into(), STEP_TIMEOUT)?;
    Ok(s)
}

/// Accepts `n` connections that completed on `listener`.
fn accept(listener: &Socket, n: usize) -> Result<Vec<Socket>> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut servers = Vec::with_capacity(n);
    while servers.len() < n {
        match listener.accept() {
            Ok((s, _)) => servers.push(s),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!("accepted {} of {n} connections within {STEP_TIMEOUT:?}", servers.len());
                }
                // Polling a deadline for the handshake's last ACK.
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e).context("accept"),
        }
    }
    Ok(servers)
}

fn finish(clients: Vec<Socket>, servers: Vec<Socket>, end: End, live: &mut Live) -> Result<()> {
    match end {
        End::Open => {
            live.sockets.extend(clients);
            live.sockets.extend(servers);
        }
        End::TimeWait | End::Leak => {
            drop(clients);
            for s in &servers {
                wait_eof(s)?;
            }
            if end == End::Leak {
                live.leaks += servers.len() as u32;
                live.sockets.extend(servers);
            } else if !servers.is_empty() {
                drop(servers);
                let now = Instant::now();
                live.first_tw.get_or_insert(now);
                live.last_tw = Some(now);
            }
        }
    }
    Ok(())
}

/// Waits until the client's FIN reached this server socket (a read returns 0), so the client
/// closed first and ends in TIME_WAIT, not a simultaneous close.
fn wait_eof(s: &Socket) -> Result<()> {
    s.set_nonblocking(true)?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    loop {
        match s.recv(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("waiting for the client's FIN"),
        }
        if Instant::now() >= deadline {
            bail!("the client's FIN did not arrive within {STEP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
