//! `bind` and `listen-at`: sockets that hold ports without connecting (BOUND sockets, and a
//! listener at a fixed port), which every connect() in the namespace must skip.

use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};

use crate::socket::{Failure, Hold, check_count, errno_name, listener, tcp_socket};

/// Binds `--count` sockets to `ip`:0 (or until the kernel refuses) and holds them unconnected.
pub fn bind(ip: IpAddr, count: Option<u64>) -> Result<(Value, Hold), String> {
    check_count(count, "bound sockets (one file descriptor each)")?;
    let addr = SocketAddr::new(ip, 0);
    let mut held: Hold = Vec::new();
    let mut failed = 0u64;
    let mut last_failure: Option<Failure> = None;
    let mut attempts = 0u64;
    while count.is_none_or(|n| attempts < n) {
        attempts += 1;
        let fd = tcp_socket(&addr).map_err(|f| f.describe())?;
        match rustix::net::bind(&fd, &addr) {
            Ok(()) => held.push(fd),
            Err(errno) => {
                let f = Failure { call: "bind", errno };
                if !f.is_exhaustion() {
                    return Err(format!("bind {addr}: {}", f.describe()));
                }
                failed += 1;
                last_failure = Some(f);
                if count.is_none() {
                    break;
                }
            }
        }
    }
    Ok((
        json!({
            "command": "bind",
            "opened": held.len(),
            "failed": failed,
            "errno": last_failure.as_ref().map(|f| errno_name(f.errno)),
            "failed_call": last_failure.as_ref().map(|f| f.call),
            "held": held.len(),
        }),
        held,
    ))
}

/// One listener at `addr`, accepting nothing.
pub fn listen_at(addr: SocketAddr) -> Result<(Value, Hold), String> {
    let fd = listener(addr).map_err(|f| format!("listen on {addr}: {}", f.describe()))?;
    Ok((json!({"command": "listen-at", "listening": [addr.to_string()]}), vec![fd]))
}
