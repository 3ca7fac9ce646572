//! Socket calls the oracle needs beyond `socket2`: constructors by family and the one option
//! socket2 lacks (IP_BIND_ADDRESS_NO_PORT). Errors keep the errno, since the oracle branches on
//! EADDRNOTAVAIL / EADDRINUSE / EAGAIN.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

pub fn tcp(v6: bool) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
}

pub fn udp(v6: bool) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
}

/// The wildcard address of a family.
pub fn wildcard(v6: bool) -> IpAddr {
    if v6 { Ipv6Addr::UNSPECIFIED.into() } else { Ipv4Addr::UNSPECIFIED.into() }
}

/// `addr` as an AF_INET6 socket must name it: IPv4 becomes v4-mapped.
pub fn as_v6(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(v4) => SocketAddr::new(v4.to_ipv6_mapped().into(), addr.port()),
        IpAddr::V6(_) => addr,
    }
}

/// IP_BIND_ADDRESS_NO_PORT (Linux 4.2): bind() sets the address only, connect() picks the port.
pub fn bind_address_no_port(s: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `s` is an open socket for the whole call; the option value is a c_int that lives
    // on the stack during the call and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The errno of an error, 0 when it has none.
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// "EADDRNOTAVAIL" and friends, for messages.
pub fn errno_name(errno: i32) -> String {
    match errno {
        0 => "none".to_owned(),
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL".to_owned(),
        libc::EADDRINUSE => "EADDRINUSE".to_owned(),
        libc::EAGAIN => "EAGAIN".to_owned(),
        libc::ECONNREFUSED => "ECONNREFUSED".to_owned(),
        libc::EMFILE => "EMFILE".to_owned(),
        n => format!("errno {n}"),
    }
}
