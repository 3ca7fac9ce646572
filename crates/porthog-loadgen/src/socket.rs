//! Socket helpers shared by the subcommands: creating TCP sockets and listeners, naming errnos,
//! and the open-file limit (raised to the hard limit, and checked against --count).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use rustix::process::{Resource, Rlimit};

/// Backlog of every listener: large enough that a burst of connects never waits on accept().
const BACKLOG: i32 = 4096;
/// File descriptors kept back for stdio, epoll and the like when checking --count.
const FD_SLACK: u64 = 16;

/// Whatever must stay alive while the state is held.
pub type Hold = Vec<OwnedFd>;

/// Why a setup step failed: which call and which errno.
#[derive(Debug)]
pub struct Failure {
    pub call: &'static str,
    pub errno: Errno,
}

impl Failure {
    /// The kernel said the port pool is exhausted (not some other problem).
    pub fn is_exhaustion(&self) -> bool {
        matches!(
            (self.call, self.errno),
            ("connect", Errno::ADDRNOTAVAIL) | ("bind", Errno::ADDRINUSE)
        )
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{}() failed: {}", self.call, errno_name(self.errno));
        if matches!(self.errno, Errno::MFILE | Errno::NFILE) {
            let hard = hard_nofile();
            s.push_str(&format!(
                " (out of file descriptors, not ports; hard RLIMIT_NOFILE is {hard}: split the load over several processes)"
            ));
        }
        s
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, so --count can go as far as allowed.
pub fn raise_nofile() -> Result<(), String> {
    let lim = rustix::process::getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        rustix::process::setrlimit(
            Resource::Nofile,
            Rlimit { current: lim.maximum, maximum: lim.maximum },
        )
        .map_err(|e| format!("cannot raise RLIMIT_NOFILE to the hard limit: {e}"))?;
    }
    Ok(())
}

/// The hard RLIMIT_NOFILE (unlimited as u64::MAX).
pub fn hard_nofile() -> u64 {
    rustix::process::getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX)
}

/// Fails clearly when `count` sockets cannot fit under the open-file limit.
pub fn check_count(count: Option<u64>, what: &str) -> Result<(), String> {
    let hard = hard_nofile();
    match count {
        Some(n) if n.saturating_add(FD_SLACK) > hard => Err(format!(
            "--count {n} needs {n} {what} but the hard RLIMIT_NOFILE is {hard} (minus {FD_SLACK} kept back): split the load over several processes"
        )),
        _ => Ok(()),
    }
}

pub fn errno_name(e: Errno) -> String {
    let name = match e {
        Errno::ADDRNOTAVAIL => "EADDRNOTAVAIL",
        Errno::ADDRINUSE => "EADDRINUSE",
        Errno::AGAIN => "EAGAIN",
        Errno::MFILE => "EMFILE",
        Errno::NFILE => "ENFILE",
        Errno::CONNREFUSED => "ECONNREFUSED",
        Errno::TIMEDOUT => "ETIMEDOUT",
        Errno::NOBUFS => "ENOBUFS",
        Errno::ACCESS => "EACCES",
        Errno::PERM => "EPERM",
        _ => return format!("errno {}", e.raw_os_error()),
    };
    name.to_string()
}

pub fn family(addr: &SocketAddr) -> AddressFamily {
    if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 }
}

pub fn tcp_socket(addr: &SocketAddr) -> Result<OwnedFd, Failure> {
    rustix::net::socket_with(family(addr), SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .map_err(|errno| Failure { call: "socket", errno })
}

pub fn listener(addr: SocketAddr) -> Result<OwnedFd, Failure> {
    let fd = tcp_socket(&addr)?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)
        .map_err(|errno| Failure { call: "setsockopt", errno })?;
    rustix::net::bind(&fd, &addr).map_err(|errno| Failure { call: "bind", errno })?;
    rustix::net::listen(&fd, BACKLOG).map_err(|errno| Failure { call: "listen", errno })?;
    Ok(fd)
}
