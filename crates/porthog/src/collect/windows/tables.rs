//! The socket tables of iphlpapi: `GetExtendedTcpTable(TCP_TABLE_OWNER_PID_ALL)` and
//! `GetExtendedUdpTable(UDP_TABLE_OWNER_PID)`, IPv4 and IPv6, read into plain rows for
//! `porthog_core::win_table`. The only unsafe code is the call and the walk of its buffer.

use std::ffi::c_void;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};
use porthog_core::Protocol;
use porthog_core::win_table::{Row, port};
use windows_sys::Win32::Foundation::{ERROR_INSUFFICIENT_BUFFER, NO_ERROR};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, GetExtendedUdpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID,
    MIB_UDP6ROW_OWNER_PID, MIB_UDPROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL, UDP_TABLE_OWNER_PID,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};

/// The table grows between the size query and the read on a busy server: retry this often.
const ATTEMPTS: usize = 8;

/// Every TCP and UDP row, IPv4 then IPv6.
pub fn rows() -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let tcp4 = read(Protocol::Tcp, AF_INET)?;
    rows.extend(walk::<MIB_TCPROW_OWNER_PID>(&tcp4).map(|r| Row {
        protocol: Protocol::Tcp,
        state: r.dwState,
        local: (v4(r.dwLocalAddr), port(r.dwLocalPort)),
        remote: (v4(r.dwRemoteAddr), port(r.dwRemotePort)),
        pid: r.dwOwningPid,
    }));
    let tcp6 = read(Protocol::Tcp, AF_INET6)?;
    rows.extend(walk::<MIB_TCP6ROW_OWNER_PID>(&tcp6).map(|r| Row {
        protocol: Protocol::Tcp,
        state: r.dwState,
        local: (v6(r.ucLocalAddr), port(r.dwLocalPort)),
        remote: (v6(r.ucRemoteAddr), port(r.dwRemotePort)),
        pid: r.dwOwningPid,
    }));
    let unspecified = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    let udp4 = read(Protocol::Udp, AF_INET)?;
    rows.extend(walk::<MIB_UDPROW_OWNER_PID>(&udp4).map(|r| Row {
        protocol: Protocol::Udp,
        state: 0,
        local: (v4(r.dwLocalAddr), port(r.dwLocalPort)),
        remote: unspecified,
        pid: r.dwOwningPid,
    }));
    let udp6 = read(Protocol::Udp, AF_INET6)?;
    rows.extend(walk::<MIB_UDP6ROW_OWNER_PID>(&udp6).map(|r| Row {
        protocol: Protocol::Udp,
        state: 0,
        local: (v6(r.ucLocalAddr), port(r.dwLocalPort)),
        remote: unspecified,
        pid: r.dwOwningPid,
    }));
    Ok(rows)
}

/// An IPv4 address as the tables hold it: network byte order in a DWORD.
fn v4(dword: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(dword.to_ne_bytes()))
}

fn v6(bytes: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(bytes))
}

/// One table into a buffer (u32 words: every table is a DWORD count then DWORD-aligned rows),
/// grown while the call says ERROR_INSUFFICIENT_BUFFER.
fn read(protocol: Protocol, family: u16) -> Result<Vec<u32>> {
    let mut buf: Vec<u32> = vec![0; 1024];
    for _ in 0..ATTEMPTS {
        let mut size = u32::try_from(buf.len() * 4).unwrap_or(u32::MAX);
        let ptr = buf.as_mut_ptr().cast::<c_void>();
        // SAFETY: `ptr` points to `size` writable bytes that live across the call; the call
        // writes at most `size` bytes and sets `size` to what it needs when that is more.
        let rc = unsafe {
            match protocol {
                Protocol::Tcp => GetExtendedTcpTable(
                    ptr,
                    &mut size,
                    0,
                    u32::from(family),
                    TCP_TABLE_OWNER_PID_ALL,
                    0,
                ),
                Protocol::Udp => GetExtendedUdpTable(
                    ptr,
                    &mut size,
                    0,
                    u32::from(family),
                    UDP_TABLE_OWNER_PID,
                    0,
                ),
            }
        };
        match rc {
            NO_ERROR => return Ok(buf),
            // A little more than asked: connections opened since the size was taken.
            ERROR_INSUFFICIENT_BUFFER => buf.resize((size as usize).div_ceil(4) + 256, 0),
            e => bail!(
                "{} failed for {} (error {e}): the socket list cannot be read",
                if protocol == Protocol::Tcp {
                    "GetExtendedTcpTable"
                } else {
                    "GetExtendedUdpTable"
                },
                if family == AF_INET { "IPv4" } else { "IPv6" }
            ),
        }
    }
    bail!(
        "the socket table kept growing faster than porthog could read it ({ATTEMPTS} attempts); try again"
    )
}

/// The rows of a table buffer: `dwNumEntries`, then that many `T`, never past the buffer.
fn walk<T: Copy>(buf: &[u32]) -> impl Iterator<Item = T> + '_ {
    let count = buf.first().copied().unwrap_or(0) as usize;
    let fits = (buf.len().saturating_sub(1) * 4) / std::mem::size_of::<T>();
    (0..count.min(fits)).map(move |i| {
        // SAFETY: row i lies within the buffer (checked against `fits` above), starts after
        // the 4-byte count, and T is a plain-data row struct of u32s and byte arrays, valid
        // for any bits; read_unaligned needs no alignment.
        unsafe {
            buf.as_ptr()
                .add(1)
                .cast::<u8>()
                .add(i * std::mem::size_of::<T>())
                .cast::<T>()
                .read_unaligned()
        }
    })
}
