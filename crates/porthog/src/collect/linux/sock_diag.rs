//! The NETLINK_SOCK_DIAG dump of one network namespace, as `ss` does it: TCP and UDP, IPv4 and
//! IPv6, every state including TIME_WAIT and (6.10+) BOUND_INACTIVE, decoded into `Socket`s.
//! TCP of both families comes from one dump where the kernel takes it ([`TCP_BOTH`]).
//! Speaks netlink only: choosing a fallback and recording gaps is `sockets.rs`'s job, joining
//! inodes to pids is `owners.rs`'s. Never returns a short list silently: a netlink error is an
//! error and an interrupted dump is reported to the caller.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NlasIterator, Parseable,
};
use netlink_packet_sock_diag::{
    AF_INET, AF_INET6, AF_UNSPEC, INET_DIAG_SKV6ONLY, IPPROTO_TCP, IPPROTO_UDP,
    SOCK_DIAG_BY_FAMILY, SockDiagMessage,
    inet::{ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags},
};
use netlink_sys::{Socket as NetlinkSocket, SocketAddr, protocols::NETLINK_SOCK_DIAG};
use porthog_core::{KernelFacts, Protocol, Socket, State};

use super::netlink_dump;

/// One of the kernel's four socket tables, named as under /proc/net.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub protocol: Protocol,
    family: u8,
}

impl Table {
    /// Whether the table holds IPv6 sockets only (`tcp6`, `udp6`).
    pub fn v6(&self) -> bool {
        self.family == AF_INET6
    }
}

pub const TABLES: [Table; 4] = [
    Table { name: "tcp", protocol: Protocol::Tcp, family: AF_INET },
    Table { name: "tcp6", protocol: Protocol::Tcp, family: AF_INET6 },
    Table { name: "udp", protocol: Protocol::Udp, family: AF_INET },
    Table { name: "udp6", protocol: Protocol::Udp, family: AF_INET6 },
];

/// TCP of both families in one dump: the original inet_diag request (`TCPDIAG_GETSOCK` with a
/// `struct inet_diag_req`), which the kernel still serves (`inet_diag_rcv_msg_compat`) and
/// answers for every family at once (`inet_diag_dump_compat` sets AF_UNSPEC). The TCP hash
/// tables are shared by all namespaces and every dump walks them whole, skipping other
/// namespaces' sockets one by one, so one dump instead of one per family halves the kernel's
/// work (issue 9: 76 % of `serve --all-netns`'s CPU was `tcp_diag_dump`). The answers are the
/// same `struct inet_diag_msg`s, each with its own family. A kernel without it refuses the
/// request, and the caller dumps each family with SOCK_DIAG_BY_FAMILY instead.
pub const TCP_BOTH: Table = Table { name: "tcp+tcp6", protocol: Protocol::Tcp, family: AF_UNSPEC };
/// `TCPDIAG_GETSOCK` (`linux/inet_diag.h`): the request's type, and its answers'.
const TCPDIAG_GETSOCK: u16 = 18;

/// The kernel fills one dump message of at most 32 KiB per recv (`netlink_recvmsg` caps
/// `max_recvmsg_len`); a larger buffer costs only untouched address space and keeps a future
/// kernel's bigger messages from being truncated.
const RECV_BUFFER: usize = 1 << 20;
/// NLM_F_DUMP_INTR means the kernel's tables changed under the dump (`nl_dump_check_consistent`).
pub const DUMP_TRIES: usize = 3;
/// Offset of `idiag_expires` in `struct inet_diag_msg`: after family, state, timer,
/// retransmits (1 byte each) and the 48-byte `inet_diag_sockid`.
const EXPIRES_OFFSET: usize = 52;
/// Size of `struct inet_diag_msg`; its attributes follow.
const MSG_LEN: usize = 72;
/// The loopback device's ifindex in every network namespace (`LOOPBACK_IFINDEX`): what
/// `tcp_twsk_unique` compares `tw_bound_dev_if` with under tcp_tw_reuse=2.
const LOOPBACK_IFINDEX: u32 = 1;

/// Every state bit, so also 12 (NEW_SYN_RECV) and 13 (BOUND_INACTIVE, 6.10+), which the crate's
/// flags do not name; older kernels ignore bits they do not know.
pub const ALL_STATES: u32 = u32::MAX;

/// A NETLINK_SOCK_DIAG socket. It belongs to the network namespace of the thread that opened it.
pub struct SockDiag {
    socket: NetlinkSocket,
    buf: Vec<u8>,
    seq: u32,
}

/// What one table's dump saw besides its sockets.
#[derive(Debug, Default)]
pub struct DumpOutcome {
    /// Still NLM_F_DUMP_INTR after [`DUMP_TRIES`] tries: the list may be inconsistent.
    pub interrupted: bool,
    pub unknown_states: u64,
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        let mut socket = NetlinkSocket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Best effort: the kernel clamps it to net.core.rmem_max, and a dump works with less.
        let _ = socket.set_rx_buf_sz(RECV_BUFFER);
        Ok(SockDiag { socket, buf: vec![0; RECV_BUFFER], seq: 0 })
    }

    /// Appends every socket of `table` to `out`, retrying the table while the kernel marks the
    /// dump interrupted.
    pub fn dump(
        &mut self,
        table: Table,
        states: u32,
        out: &mut Vec<Socket>,
    ) -> io::Result<DumpOutcome> {
        let start = out.len();
        for _ in 0..DUMP_TRIES {
            out.truncate(start);
            let outcome = self.dump_once(table, states, out)?;
            if !outcome.interrupted {
                return Ok(outcome);
            }
        }
        Ok(DumpOutcome { interrupted: true, ..DumpOutcome::default() })
    }

    fn dump_once(
        &mut self,
        table: Table,
        states: u32,
        out: &mut Vec<Socket>,
    ) -> io::Result<DumpOutcome> {
        self.seq = self.seq.wrapping_add(1);
        self.send_request(table, states)?;
        let mut outcome = DumpOutcome::default();
        let mut unknown_states = 0;
        outcome.interrupted =
            netlink_dump::receive(&self.socket, &mut self.buf, self.seq, |kind, payload| {
                if kind == SOCK_DIAG_BY_FAMILY || kind == TCPDIAG_GETSOCK {
                    match socket(table.protocol, payload)? {
                        Some(s) => out.push(s),
                        None => unknown_states += 1,
                    }
                }
                Ok(())
            })?;
        outcome.unknown_states = unknown_states;
        Ok(outcome)
    }

    fn send_request(&mut self, table: Table, states: u32) -> io::Result<()> {
        if table.family == AF_UNSPEC {
            self.socket.send(&compat_request(self.seq, states), 0)?;
            return Ok(());
        }
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.seq;
        let request = InetRequest {
            family: table.family,
            protocol: match table.protocol {
                Protocol::Tcp => IPPROTO_TCP,
                Protocol::Udp => IPPROTO_UDP,
            },
            extensions: ExtensionFlags::empty(),
            states: StateFlags::from_bits_retain(states),
            socket_id: match table.family {
                AF_INET => SocketId::new_v4(),
                _ => SocketId::new_v6(),
            },
        };
        let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        Ok(())
    }
}

impl SockDiag {
    /// Whether `socket`, a connected TCP socket of an earlier dump, is still open under the same
    /// inode: one exact lookup (`inet_diag_find_one_icsk`: the established hash by 4-tuple, then
    /// the cookie), not a dump. `Ok(Some(false))` when the kernel no longer has that socket
    /// (ENOENT: closed and gone, or another socket now holds the 4-tuple) or it has no file any
    /// more (inode 0: closed by its process, orphaned or TIME_WAIT): no fd table can hold it.
    /// `Ok(None)` when an exact lookup cannot decide: not a connected TCP socket (a listener's
    /// or UDP lookup may answer with another socket; a CLOSE socket, still held by its process,
    /// is in no hash the lookup searches), no cookie, an unknown family, or bound to
    /// a device (the lookup would need its ifindex, which the model does not keep).
    pub fn still_held(&mut self, socket: &Socket) -> io::Result<Option<bool>> {
        let v6 = match socket.facts.family_v6() {
            Some(v6)
                if socket.protocol == Protocol::Tcp
                    && socket.cookie != 0
                    && socket.inode != 0
                    && socket.facts.bound_dev() == Some(false)
                    && socket.is_connected()
                    && !matches!(socket.state, State::TimeWait | State::SynRecv | State::Close) =>
            {
                v6
            }
            _ => return Ok(None),
        };
        // An AF_INET6 socket's IPv4 peers are v4-mapped in the kernel; the model keeps them IPv4.
        let addr = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V4(a) if v6 => std::net::IpAddr::V6(a.to_ipv6_mapped()),
            ip => ip,
        };
        let (low, high) = (socket.cookie as u32, (socket.cookie >> 32) as u32);
        let mut cookie = [0u8; 8];
        cookie[..4].copy_from_slice(&low.to_ne_bytes());
        cookie[4..].copy_from_slice(&high.to_ne_bytes());
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST;
        self.seq = self.seq.wrapping_add(1);
        header.sequence_number = self.seq;
        let request = InetRequest {
            family: if v6 { AF_INET6 } else { AF_INET },
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::from_bits_retain(ALL_STATES),
            socket_id: SocketId {
                source_port: socket.local_port,
                destination_port: socket.remote_port,
                source_address: addr(socket.local_ip),
                destination_address: addr(socket.remote_ip),
                interface_id: 0,
                cookie,
            },
        };
        let mut packet = NetlinkMessage::new(header, SockDiagMessage::InetRequest(request).into());
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        // The kernel answers within the send (one message, or an error), and nothing else.
        loop {
            let len = match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut rest = self.buf.get(..len).unwrap_or_default();
            while !rest.is_empty() {
                let msg = netlink_packet_core::NetlinkBuffer::new_checked(rest).map_err(invalid)?;
                let msg_len = msg.length() as usize;
                if msg.sequence_number() == self.seq {
                    match msg.message_type() {
                        netlink_packet_core::NLMSG_ERROR => {
                            let error =
                                netlink_packet_core::ErrorBuffer::new_checked(msg.payload())
                                    .map_err(invalid)?;
                            return match error.code().map(|c| -c.get()) {
                                Some(code) if code == rustix::io::Errno::NOENT.raw_os_error() => {
                                    Ok(Some(false))
                                }
                                Some(code) => Err(io::Error::from_raw_os_error(code)),
                                // An acknowledgement without an answer: undecided.
                                None => Ok(None),
                            };
                        }
                        SOCK_DIAG_BY_FAMILY => {
                            let header =
                                InetResponseHeader::parse(msg.payload()).map_err(invalid)?;
                            return Ok(Some(header.inode == socket.inode));
                        }
                        _ => {}
                    }
                }
                rest = rest.get(msg_len.next_multiple_of(4)..).unwrap_or(&[]);
            }
        }
    }
}

/// A `TCPDIAG_GETSOCK` dump request for `states`: a netlink header and a `struct inet_diag_req`
/// (family, source and destination prefix lengths, extensions: one byte each; the 48-byte
/// `inet_diag_sockid`; states; dbs), all zero but the states. The crate builds only the newer
/// `inet_diag_req_v2`.
fn compat_request(seq: u32, states: u32) -> Vec<u8> {
    const HEADER: usize = 16;
    const REQ: usize = 4 + 48 + 4 + 4;
    let mut m = Vec::with_capacity(HEADER + REQ);
    m.extend(((HEADER + REQ) as u32).to_ne_bytes());
    m.extend(TCPDIAG_GETSOCK.to_ne_bytes());
    m.extend((NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend(seq.to_ne_bytes());
    m.extend(0u32.to_ne_bytes()); // port id: the kernel's
    m.extend([0u8; 4 + 48]);
    m.extend(states.to_ne_bytes());
    m.extend(0u32.to_ne_bytes());
    m
}

/// One `struct inet_diag_msg` as a socket; `None` for a state porthog does not know.
fn socket(protocol: Protocol, payload: &[u8]) -> io::Result<Option<Socket>> {
    // The crate's header parser allocates nothing; the attributes after it are not needed.
    let header = InetResponseHeader::parse(payload).map_err(invalid)?;
    let state = match (protocol, State::from_linux(header.state)) {
        // Sockets dumped for TCPF_BOUND_INACTIVE keep their real state, TCP_CLOSE (measured on
        // 6.18). A TCP socket in CLOSE is in no table but the bind hash, so it is bound, holds
        // its port and is neither listening nor connected: exactly porthog's `Bound`.
        (Protocol::Tcp, Some(State::Close)) => State::Bound,
        (_, Some(state)) => state,
        (_, None) => return Ok(None),
    };
    let id = &header.socket_id;
    let mut socket = Socket::new(
        protocol,
        state,
        (id.source_address, id.source_port),
        (id.destination_address, id.destination_port),
    );
    // `sock_diag_save_cookie` stores the 64-bit cookie as two native-endian u32, low word first.
    let [c0, c1, c2, c3, c4, c5, c6, c7] = id.cookie;
    socket.cookie = u64::from(u32::from_ne_bytes([c0, c1, c2, c3]))
        | u64::from(u32::from_ne_bytes([c4, c5, c6, c7])) << 32;
    socket.inode = header.inode;
    // The one kernel fact sock_diag does carry for every socket.
    socket.facts = KernelFacts::default().with_family_v6(header.family == AF_INET6);
    // TIME_WAIT and request sockets have no owner: the kernel writes uid 0 and inode 0 for them
    // (`inet_twsk_diag_fill`, `inet_req_diag_fill`); 0 is not their user.
    if header.inode != 0 {
        socket.uid = header.uid;
    }
    // The crate keeps no expiry for TIME_WAIT timers, which is the one porthog needs most.
    if header.timer.is_some()
        && let Some(&[a, b, c, d]) = payload.get(EXPIRES_OFFSET..EXPIRES_OFFSET + 4)
    {
        socket.timer_ms = u32::from_ne_bytes([a, b, c, d]);
    }
    socket.facts = facts(header.family, id.interface_id, payload.get(MSG_LEN..).unwrap_or(&[]));
    Ok(Some(socket))
}

/// What sock_diag says beyond the addresses (issue 7): the family (v4-mapped addresses are
/// IPv4 in the model but the socket is AF_INET6), whether the socket (TIME_WAIT included:
/// `inet_diag_msg_common_fill` copies `sk_bound_dev_if`) is bound to a device and to lo, and for full IPv6
/// sockets the v6only flag (`INET_DIAG_SKV6ONLY`, sent unasked but only for sockets in LISTEN
/// or CLOSE, `inet_diag_msg_attrs_fill`: connected and TIME_WAIT sockets stay unknown).
fn facts(family: u8, interface: u32, attributes: &[u8]) -> KernelFacts {
    let mut facts = KernelFacts::default()
        .with_family_v6(family == AF_INET6)
        .with_loopback_dev(interface == LOOPBACK_IFINDEX)
        .with_bound_dev(interface != 0);
    for nla in NlasIterator::new(attributes).map_while(Result::ok) {
        if nla.kind() == INET_DIAG_SKV6ONLY
            && let Some(&flag) = nla.value().first()
        {
            facts = facts.with_v6only(flag != 0);
        }
    }
    facts
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed sock_diag message: {e}"))
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    /// A `struct inet_diag_msg` as the kernel writes it, without attributes.
    fn message(family: u8, state: u8, timer: u8, src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
        let mut m = vec![family, state, timer, 0];
        m.extend(40000u16.to_be_bytes());
        m.extend(8080u16.to_be_bytes());
        m.extend(src);
        m.extend(dst);
        m.extend(0u32.to_ne_bytes()); // interface
        m.extend(0x0000_1234u32.to_ne_bytes()); // cookie, low word
        m.extend(0x0000_0001u32.to_ne_bytes()); // cookie, high word
        m.extend(56_688u32.to_ne_bytes()); // expires
        m.extend([0; 8]); // queues
        m.extend(1000u32.to_ne_bytes()); // uid
        m.extend(4242u32.to_ne_bytes()); // inode
        m
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    #[test]
    fn decodes_an_established_socket() {
        let m = message(AF_INET, 1, 0, v4([127, 0, 0, 1]), v4([10, 0, 0, 5]));
        let s = socket(Protocol::Tcp, &m).unwrap().unwrap();
        assert_eq!(s.local_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(s.remote_ip, IpAddr::from([10, 0, 0, 5]));
        assert_eq!((s.local_port, s.remote_port), (40000, 8080));
        assert_eq!((s.state, s.uid, s.inode, s.timer_ms), (State::Established, 1000, 4242, 0));
        assert_eq!(s.cookie, 0x1_0000_1234);
    }

    #[test]
    fn time_wait_keeps_its_timer_and_no_uid() {
        let mapped: [u8; 16] = "::ffff:127.0.0.1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let mut m = message(AF_INET6, 6, 3, mapped, mapped);
        m[68..72].copy_from_slice(&0u32.to_ne_bytes()); // TIME_WAIT: inode 0, uid 0
        m[64..68].copy_from_slice(&0u32.to_ne_bytes());
        let s = socket(Protocol::Tcp, &m).unwrap().unwrap();
        assert_eq!(s.local_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!((s.state, s.timer_ms, s.inode), (State::TimeWait, 56_688, 0));
        assert_eq!(s.uid, Socket::UID_UNKNOWN);
    }

    #[test]
    fn facts_from_the_header_and_attributes() {
        let mut m = message(AF_INET6, 1, 0, [0; 16], [0; 16]);
        m[40..44].copy_from_slice(&1u32.to_ne_bytes()); // bound to lo
        // INET_DIAG_SKV6ONLY = 1, padded to 4 bytes; then a truncated attribute is ignored.
        m.extend(5u16.to_ne_bytes());
        m.extend(INET_DIAG_SKV6ONLY.to_ne_bytes());
        m.extend([1, 0, 0, 0]);
        m.extend([9, 0]);
        let f = socket(Protocol::Tcp, &m).unwrap().unwrap().facts;
        assert_eq!(
            (f.family_v6(), f.loopback_dev(), f.bound_dev(), f.v6only()),
            (Some(true), Some(true), Some(true), Some(true))
        );
        let f =
            socket(Protocol::Tcp, &message(AF_INET, 6, 3, v4([127, 0, 0, 1]), v4([127, 0, 0, 1])))
                .unwrap()
                .unwrap()
                .facts;
        assert_eq!(
            (f.family_v6(), f.loopback_dev(), f.bound_dev(), f.v6only()),
            (Some(false), Some(false), Some(false), None)
        );
        // What only a BPF iterator can read stays unknown.
        assert_eq!((f.bucket(), f.tw_timestamps()), (None, None));
    }

    /// The `struct inet_diag_req` request: 16 + 60 bytes, type TCPDIAG_GETSOCK, a dump, the
    /// states at offset 16 + 52, everything else zero (AF_UNSPEC, no filter).
    #[test]
    fn the_request_for_both_tcp_families() {
        let m = compat_request(7, 0x0000_0fff);
        assert_eq!(m.len(), 76);
        assert_eq!(m[..4], 76u32.to_ne_bytes());
        assert_eq!(m[4..6], TCPDIAG_GETSOCK.to_ne_bytes());
        assert_eq!(m[6..8], (NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        assert_eq!(m[8..12], 7u32.to_ne_bytes());
        assert!(m[12..68].iter().all(|&b| b == 0));
        assert_eq!(m[68..72], 0x0000_0fffu32.to_ne_bytes());
        assert!(m[72..].iter().all(|&b| b == 0));
    }

    /// The exact lookup tells an open connection from one its process closed since the dump
    /// (the fd walk's race, issue 9), and declines what a lookup cannot decide.
    #[test]
    fn an_exact_lookup_tells_open_from_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let port = client.local_addr().unwrap().port();
        let mut diag = SockDiag::open().unwrap();
        let mut out = Vec::new();
        diag.dump(TCP_BOTH, ALL_STATES, &mut out).unwrap();
        let find = |state: State, port: u16| {
            out.iter().find(|s| s.state == state && s.local_port == port).copied().unwrap()
        };
        let dumped = find(State::Established, port);
        assert_eq!(diag.still_held(&dumped).unwrap(), Some(true));
        let listening = find(State::Listen, listener.local_addr().unwrap().port());
        assert_eq!(diag.still_held(&listening).unwrap(), None, "a listener is not looked up");
        let device_bound = Socket { facts: dumped.facts.with_bound_dev(true), ..dumped };
        assert_eq!(diag.still_held(&device_bound).unwrap(), None);
        // Another socket's cookie on the same 4-tuple: not the socket that was dumped.
        let other = Socket { cookie: dumped.cookie ^ 1, ..dumped };
        assert_eq!(diag.still_held(&other).unwrap(), Some(false));
        drop(client);
        // Closed by its process: FIN_WAIT or TIME_WAIT without a file, or gone.
        assert_eq!(diag.still_held(&dumped).unwrap(), Some(false));
        drop(server);
    }

    #[test]
    fn states_by_protocol() {
        let tcp_close = message(AF_INET, 7, 0, v4([0; 4]), v4([0; 4]));
        assert_eq!(socket(Protocol::Tcp, &tcp_close).unwrap().unwrap().state, State::Bound);
        assert_eq!(socket(Protocol::Udp, &tcp_close).unwrap().unwrap().state, State::Close);
        let request = message(AF_INET, 12, 1, v4([0; 4]), v4([0; 4]));
        assert_eq!(socket(Protocol::Tcp, &request).unwrap().unwrap().state, State::SynRecv);
        let unknown = message(AF_INET, 42, 0, v4([0; 4]), v4([0; 4]));
        assert_eq!(socket(Protocol::Tcp, &unknown).unwrap(), None);
        assert!(socket(Protocol::Tcp, &tcp_close[..40]).is_err());
    }
}
