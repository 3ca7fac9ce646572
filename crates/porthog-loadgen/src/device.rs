//! `device-connect`: sockets whose kernel state sock_diag does not show (issue 7), for
//! the tests of porthog's BPF path. TCP connections bound to a device (SO_BINDTODEVICE), held or
//! closed first into TIME_WAIT.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use serde_json::{Value, json};

use crate::connect::close_first;
use crate::socket::{Failure, Hold, check_count, tcp_socket};

/// `count` TCP connections to `to`, each bound to `device` before connect().
pub fn device_connect(
    to: SocketAddr,
    device: &str,
    count: u64,
    close: bool,
) -> Result<(Value, Hold), String> {
    if !close {
        check_count(Some(count), "connections (one file descriptor each)")?;
    }
    let mut held = Hold::new();
    for n in 0..count {
        let fd = tcp_socket(&to).map_err(|f| f.describe())?;
        bind_to_device(&fd, device).map_err(|f| format!("{} ({device:?})", f.describe()))?;
        rustix::net::connect(&fd, &to).map_err(|errno| {
            format!("connection {n} to {to}: {}", Failure { call: "connect", errno }.describe())
        })?;
        if close {
            close_first(fd).map_err(|e| format!("close {to}: {e}"))?;
        } else {
            held.push(fd);
        }
    }
    Ok((json!({"command": "device-connect", "opened": count, "failed": 0, "closed": close}), held))
}

fn bind_to_device(fd: &OwnedFd, device: &str) -> Result<(), Failure> {
    // SAFETY: setsockopt(2) reads `device.len()` bytes from a live &str, on an fd we own.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            device.as_ptr().cast(),
            device.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Failure {
            call: "setsockopt",
            errno: rustix::io::Errno::from_io_error(&std::io::Error::last_os_error())
                .unwrap_or(rustix::io::Errno::INVAL),
        })
    }
}
