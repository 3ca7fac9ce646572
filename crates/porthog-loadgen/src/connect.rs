//! `connect`: connections round-robin over the targets, counting the kernel's refusals, held
//! open or closed at once (client first, so TIME_WAIT stays on this side).

use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use serde_json::{Value, json};

use crate::socket::{Failure, Hold, check_count, errno_name, tcp_socket};

/// How long `connect --close` waits for the server's FIN (`serve` closes on EOF by default).
const PEER_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// One destination and what the kernel said to it so far.
struct Target {
    addr: SocketAddr,
    opened: u64,
    failed: u64,
    exhausted: bool,
}

/// Opens `--count` connections (or until every target is refused), holding or closing them.
pub fn connect(
    to: &[SocketAddr],
    count: Option<u64>,
    close: bool,
    bind_first: bool,
    rate: Option<f64>,
    device: Option<&str>,
) -> Result<(Value, Hold), String> {
    if !close {
        check_count(count, "connections (one file descriptor each)")?;
    }
    if let Some(r) = rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(format!("--rate {r}: must be a positive number of connections per second"));
    }
    let mut targets: Vec<Target> =
        to.iter().map(|&addr| Target { addr, opened: 0, failed: 0, exhausted: false }).collect();
    let mut held: Hold = Vec::new();
    let mut last_failure: Option<Failure> = None;
    let started = Instant::now();
    let mut attempts: u64 = 0;
    let mut next = 0usize;
    loop {
        if count.is_some_and(|n| attempts >= n) {
            break;
        }
        // --until-fail: a target leaves the rotation once the kernel refuses it.
        let Some(i) = (0..targets.len())
            .map(|k| (next + k) % targets.len())
            .find(|&i| count.is_some() || !targets[i].exhausted)
        else {
            break;
        };
        next = i + 1;
        if let Some(r) = rate {
            let due = started + Duration::from_secs_f64(attempts as f64 / r);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        attempts += 1;
        let target = &mut targets[i];
        match open_one(target.addr, bind_first, device) {
            Ok(fd) => {
                target.opened += 1;
                if close {
                    close_first(fd).map_err(|e| format!("close {}: {e}", target.addr))?;
                } else {
                    held.push(fd);
                }
            }
            Err(f) if f.is_exhaustion() => {
                target.failed += 1;
                target.exhausted = true;
                last_failure = Some(f);
            }
            Err(f) => {
                let addr = target.addr;
                let opened: u64 = targets.iter().map(|t| t.opened).sum();
                return Err(format!(
                    "connection {attempts} to {addr}: {} ({opened} opened before it)",
                    f.describe()
                ));
            }
        }
    }
    let per_target: Vec<Value> = targets
        .iter()
        .map(|t| json!({"to": t.addr.to_string(), "opened": t.opened, "failed": t.failed}))
        .collect();
    Ok((
        json!({
            "command": "connect",
            "opened": targets.iter().map(|t| t.opened).sum::<u64>(),
            "failed": targets.iter().map(|t| t.failed).sum::<u64>(),
            "errno": last_failure.as_ref().map(|f| errno_name(f.errno)),
            "failed_call": last_failure.as_ref().map(|f| f.call),
            "held": held.len(),
            "closed": close,
            "elapsed_ms": started.elapsed().as_millis() as u64,
            "targets": per_target,
        }),
        held,
    ))
}

fn open_one(to: SocketAddr, bind_first: bool, device: Option<&str>) -> Result<OwnedFd, Failure> {
    let fd = tcp_socket(&to)?;
    if let Some(dev) = device {
        nix::sys::socket::setsockopt(
            &fd,
            nix::sys::socket::sockopt::BindToDevice,
            &std::ffi::OsString::from(dev),
        )
        .map_err(|e| Failure { call: "setsockopt", errno: Errno::from_raw_os_error(e as i32) })?;
    }
    if bind_first {
        let any = if to.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        };
        rustix::net::bind(&fd, &any).map_err(|errno| Failure { call: "bind", errno })?;
    }
    loop {
        match rustix::net::connect(&fd, &to) {
            Ok(()) => return Ok(fd),
            // Interrupted blocking connect continues in the background; wait for it once.
            Err(Errno::INTR) => continue,
            Err(Errno::ALREADY | Errno::ISCONN) => return Ok(fd),
            Err(errno) => return Err(Failure { call: "connect", errno }),
        }
    }
}

/// Closes our side first, then waits for the server's FIN: receiving it in FIN_WAIT2 moves
/// the socket to TIME_WAIT (tcp_fin() in net/ipv4/tcp_input.c), so when this returns the
/// TIME_WAIT entry exists and the ready line tells the truth.
pub fn close_first(fd: OwnedFd) -> io::Result<()> {
    let mut stream = TcpStream::from(fd);
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(PEER_CLOSE_TIMEOUT))?;
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(
                    e.kind(),
                    "the server did not close within 10 s of our FIN (is it `serve --never-close`?): this side would sit in FIN_WAIT2, not TIME_WAIT",
                ));
            }
            Err(e) => return Err(e),
        }
    }
}
