//! `udp`: connected UDP sockets, each autobinding a port at connect() (`udp_lib_get_port`),
//! held open; EAGAIN from connect() is the UDP pool running out.

use std::net::SocketAddr;

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use serde_json::{Value, json};

use crate::socket::{Failure, Hold, check_count, errno_name};

/// Opens `--count` UDP sockets connected to `to` (v6only first, if asked) and holds them.
pub fn udp(to: SocketAddr, count: Option<u64>, v6only: bool) -> Result<(Value, Hold), String> {
    check_count(count, "UDP sockets (one file descriptor each)")?;
    if v6only && to.is_ipv4() {
        return Err(format!("--v6only needs an IPv6 destination, not {to}"));
    }
    let family = if to.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let mut held: Hold = Vec::new();
    let (mut failed, mut attempts) = (0u64, 0u64);
    let mut last_failure: Option<Failure> = None;
    while count.is_none_or(|n| attempts < n) {
        attempts += 1;
        let fd = rustix::net::socket_with(family, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
            .map_err(|errno| Failure { call: "socket", errno }.describe())?;
        if v6only {
            rustix::net::sockopt::set_ipv6_v6only(&fd, true)
                .map_err(|errno| Failure { call: "setsockopt", errno }.describe())?;
        }
        match rustix::net::connect(&fd, &to) {
            Ok(()) => held.push(fd),
            Err(errno) if errno == rustix::io::Errno::AGAIN => {
                failed += 1;
                last_failure = Some(Failure { call: "connect", errno });
                if count.is_none() {
                    break;
                }
            }
            Err(errno) => {
                return Err(format!(
                    "udp connect {to}: {}",
                    Failure { call: "connect", errno }.describe()
                ));
            }
        }
    }
    Ok((
        json!({
            "command": "udp",
            "opened": held.len(),
            "failed": failed,
            "errno": last_failure.as_ref().map(|f| errno_name(f.errno)),
            "failed_call": last_failure.as_ref().map(|f| f.call),
            "held": held.len(),
        }),
        held,
    ))
}
