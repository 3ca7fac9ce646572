//! Decodes the records porthog's BPF iterators write (crates/porthog/src/collect/linux/bpf/
//! porthog.bpf.c, which defines the layouts): 64-byte socket records ending in a clock record,
//! and 16-byte owner records. Pure: bytes in, sockets out; reading the iterators is the
//! collector's job. Native endian, like everything the kernel writes for its own machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{BucketOrigin, KernelFacts, Protocol, Socket, State, linux_tcp};

/// Size of one `struct sock_rec` (and of the final `struct clock_rec`).
pub const SOCKET_RECORD: usize = 64;
/// Size of one `struct owner_rec`.
pub const OWNER_RECORD: usize = 16;

const REC_TCP: u8 = 1;
const REC_UDP: u8 = 2;
const REC_CLOCK: u8 = 3;
/// `struct owner_rec` kinds: an owner, or the head of a bound-but-inactive TCP socket's record.
const OWN_OWNER: u32 = 1;
const OWN_BOUND_SOCKET: u32 = 2;
const KIND_OFFSET: usize = 56;
/// `bound_dev_if`: the device the socket is bound to, 0 for none.
const BOUND_DEV_OFFSET: usize = 60;

const F_BUCKET_KNOWN: u8 = 0x01;
const F_BUCKET_BIND: u8 = 0x02;
const F_TW_TS_KNOWN: u8 = 0x04;
const F_TW_TS: u8 = 0x08;
const F_V6ONLY: u8 = 0x10;
const F_LOOPBACK_DEV: u8 = 0x20;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The kernel's tick rates (`CONFIG_HZ` choices in kernel/Kconfig.hz).
const HZ_CHOICES: [u64; 4] = [100, 250, 300, 1000];

/// A record stream that is not what porthog's programs write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("BPF iterator output of {len} bytes is not a whole number of {size}-byte records")]
    Truncated { len: usize, size: usize },
    #[error("BPF iterator record {index} has unknown kind {kind}")]
    UnknownKind { index: usize, kind: u8 },
    #[error("BPF task_file iterator record {index} has unknown kind {kind}")]
    UnknownOwnerKind { index: usize, kind: u32 },
    #[error("BPF task_file iterator record {index} is no bound-but-inactive TCP socket")]
    NotBoundInactive { index: usize },
    #[error("BPF iterator record {index} has unknown address family {family}")]
    UnknownFamily { index: usize, family: u8 },
}

/// What a socket walk saw besides its sockets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SocketWalk {
    /// Sockets appended to the output.
    pub sockets: usize,
    /// Sockets in a state porthog does not know, left out.
    pub unknown_states: u64,
    /// The kernel's tick rate, derived from the walk's clock record; `None` when there was none
    /// or it fit no `CONFIG_HZ` choice, in which case TIME_WAIT timers are left at 0 (unknown).
    pub hz: Option<u64>,
}

/// Appends the sockets of one iterator's output to `out`.
pub fn decode_sockets(bytes: &[u8], out: &mut Vec<Socket>) -> Result<SocketWalk, RecordError> {
    let mut decoder = SocketDecoder::new(out);
    decoder.feed(bytes, out)?;
    decoder.finish(out)
}

/// Decodes one socket iterator's output as it is read, in chunks of any size (at 250,000
/// sockets the output is 16 MB, which need not be held at once).
#[derive(Debug)]
pub struct SocketDecoder {
    walk: SocketWalk,
    /// `out.len()` before the first socket.
    start: usize,
    /// Bytes fed, and the index of the next record.
    len: usize,
    index: usize,
    /// The start of a record the last chunk cut off.
    partial: Vec<u8>,
    /// TIME_WAIT timers arrive in jiffies; the clock record that converts them comes last.
    jiffies_left: Vec<(usize, u32)>,
}

impl SocketDecoder {
    /// A decoder appending to `out`.
    pub fn new(out: &[Socket]) -> SocketDecoder {
        SocketDecoder {
            walk: SocketWalk::default(),
            start: out.len(),
            len: 0,
            index: 0,
            partial: Vec::new(),
            jiffies_left: Vec::new(),
        }
    }

    /// Decodes the whole records of `bytes` (with the part of a record the last chunk ended in).
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Socket>) -> Result<(), RecordError> {
        self.len += bytes.len();
        if !self.partial.is_empty() {
            let take = (SOCKET_RECORD - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() < SOCKET_RECORD {
                return Ok(());
            }
            let rec = std::mem::take(&mut self.partial);
            self.record(&rec, out)?;
        }
        let whole = bytes.len() - bytes.len() % SOCKET_RECORD;
        for rec in bytes[..whole].chunks_exact(SOCKET_RECORD) {
            self.record(rec, out)?;
        }
        self.partial.extend_from_slice(&bytes[whole..]);
        Ok(())
    }

    fn record(&mut self, rec: &[u8], out: &mut Vec<Socket>) -> Result<(), RecordError> {
        let index = self.index;
        self.index += 1;
        if rec[KIND_OFFSET] == REC_CLOCK {
            self.walk.hz = hz_from_clocks(u64_at(rec, 0), u64_at(rec, 8));
            return Ok(());
        }
        let Some(s) = socket(index, rec)? else {
            self.walk.unknown_states += 1;
            return Ok(());
        };
        // TIME_WAIT, and an orphaned FIN_WAIT2 (a timewait socket too), carry their timer.
        if s.state == State::TimeWait || u32_at(rec, 48) != 0 {
            self.jiffies_left.push((out.len(), u32_at(rec, 48)));
        }
        out.push(s);
        Ok(())
    }

    /// Ends the stream: converts the timers with the clock record's tick rate.
    pub fn finish(self, out: &mut [Socket]) -> Result<SocketWalk, RecordError> {
        if !self.partial.is_empty() {
            return Err(RecordError::Truncated { len: self.len, size: SOCKET_RECORD });
        }
        let mut walk = self.walk;
        if let Some(hz) = walk.hz {
            for (i, jiffies) in self.jiffies_left {
                let ms = u64::from(jiffies) * 1000 / hz;
                // A TIME_WAIT that is due this very tick: 1 ms left, not 0, which means "unknown".
                out[i].timer_ms = u32::try_from(ms.max(1)).unwrap_or(u32::MAX);
            }
        }
        walk.sockets = out.len() - self.start;
        Ok(walk)
    }
}

/// One `struct sock_rec` (not a clock record); `None` for a state porthog does not know.
fn socket(index: usize, rec: &[u8]) -> Result<Option<Socket>, RecordError> {
    let protocol = match rec[KIND_OFFSET] {
        REC_TCP => Protocol::Tcp,
        REC_UDP => Protocol::Udp,
        kind => return Err(RecordError::UnknownKind { index, kind }),
    };
    let family = rec[57];
    let (local, remote) = match family {
        AF_INET => (IpAddr::from(v4_at(rec, 8)), IpAddr::from(v4_at(rec, 24))),
        AF_INET6 => (IpAddr::from(v6_at(rec, 8)), IpAddr::from(v6_at(rec, 24))),
        family => return Err(RecordError::UnknownFamily { index, family }),
    };
    let Some(state) = State::from_linux(rec[58]) else { return Ok(None) };
    let flags = rec[59];
    let mut s = Socket::new(protocol, state, (local, u16_at(rec, 52)), (remote, u16_at(rec, 54)));
    s.cookie = u64_at(rec, 0);
    s.inode = u32_at(rec, 40);
    // TIME_WAIT and request sockets have no owner and no user (as in sock_diag).
    if s.inode != 0 {
        s.uid = u32_at(rec, 44);
    }
    let mut facts = KernelFacts::default()
        .with_family_v6(family == AF_INET6)
        .with_v6only(flags & F_V6ONLY != 0)
        .with_loopback_dev(flags & F_LOOPBACK_DEV != 0)
        .with_bound_dev(u32_at(rec, BOUND_DEV_OFFSET) != 0);
    if flags & F_BUCKET_KNOWN != 0 {
        let origin =
            if flags & F_BUCKET_BIND != 0 { BucketOrigin::Bind } else { BucketOrigin::Connect };
        facts = facts.with_bucket(origin);
    }
    if flags & F_TW_TS_KNOWN != 0 {
        facts = facts.with_tw_timestamps(flags & F_TW_TS != 0);
    }
    s.facts = facts;
    Ok(Some(s))
}

/// One owner record: the socket inode, the owning pid, and whether that process lives in the
/// inspected network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnerRecord {
    pub inode: u32,
    pub pid: u32,
    pub inside: bool,
}

/// What the task_file iterator saw: the owners, and the bound-but-inactive TCP sockets, which
/// are in no table the socket iterators walk and are reported from the fds that hold them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OwnerWalk {
    pub owners: Vec<OwnerRecord>,
    /// One per socket (a socket held by several fds is reported once per fd: kept once).
    pub bound: Vec<Socket>,
}

impl OwnerWalk {
    /// The bound sockets that the socket iterators did not list in `walked`. The walks run at
    /// the same time, so a socket bound when its fd was seen may have called connect() or
    /// listen() before `iter/tcp` reached it (bind-before-connect loops do it all the time):
    /// it is then in both, and must count once, as `iter/tcp` saw it last.
    pub fn bound_not_in(&mut self, walked: &[Socket]) -> Vec<Socket> {
        if self.bound.is_empty() {
            return Vec::new();
        }
        // `bound` is sorted by cookie: one binary search per walked socket.
        let mut seen = vec![false; self.bound.len()];
        for s in walked {
            if let Ok(i) = self.bound.binary_search_by_key(&s.cookie, |b| b.cookie) {
                seen[i] = true;
            }
        }
        let mut seen = seen.into_iter();
        let mut bound = std::mem::take(&mut self.bound);
        bound.retain(|_| !seen.next().unwrap_or(false));
        bound
    }
}

/// Decodes the task_file iterator's output: 16-byte `struct owner_rec`s, each an owner or the
/// head of the `struct sock_rec` of a bound-but-inactive TCP socket that follows it.
pub fn decode_owners(bytes: &[u8]) -> Result<OwnerWalk, RecordError> {
    let mut walk = OwnerWalk::default();
    let mut rest = bytes;
    let mut index = 0;
    while !rest.is_empty() {
        let Some((head, after)) = rest.split_at_checked(OWNER_RECORD) else {
            return Err(RecordError::Truncated { len: bytes.len(), size: OWNER_RECORD });
        };
        rest = after;
        match u32_at(head, 12) {
            OWN_OWNER => walk.owners.push(OwnerRecord {
                inode: u32_at(head, 0),
                pid: u32_at(head, 4),
                inside: u32_at(head, 8) != 0,
            }),
            OWN_BOUND_SOCKET => {
                let Some((rec, after)) = rest.split_at_checked(SOCKET_RECORD) else {
                    return Err(RecordError::Truncated { len: bytes.len(), size: SOCKET_RECORD });
                };
                rest = after;
                if rec[KIND_OFFSET] != REC_TCP || rec[58] != linux_tcp::BOUND_INACTIVE {
                    return Err(RecordError::NotBoundInactive { index });
                }
                walk.bound.extend(socket(index, rec)?);
            }
            kind => return Err(RecordError::UnknownOwnerKind { index, kind }),
        }
        index += 1;
    }
    walk.bound.sort_unstable_by_key(|s| s.cookie);
    walk.bound.dedup_by_key(|s| s.cookie);
    Ok(walk)
}

/// The tick rate from one reading of `jiffies_64` and CLOCK_MONOTONIC. Jiffies start at
/// `INITIAL_JIFFIES` = (u32)(-300 * HZ) (include/linux/jiffies.h) and advance HZ per second of
/// monotonic time, so exactly one `CONFIG_HZ` choice fits, except within seconds of the
/// 300th second of uptime, where all nearly do: then `None`.
pub fn hz_from_clocks(jiffies64: u64, monotonic_ns: u64) -> Option<u64> {
    let uptime_ms = monotonic_ns / 1_000_000;
    let fits: Vec<u64> = HZ_CHOICES
        .into_iter()
        .filter(|&hz| {
            let initial = (1u64 << 32) - 300 * hz;
            let Some(ticks) = jiffies64.checked_sub(initial) else { return false };
            // Garbage clocks (a corrupt record) must not overflow: no fit then.
            let Some(predicted_ms) = ticks.checked_mul(1000).map(|t| t / hz) else {
                return false;
            };
            // Jiffies and the monotonic clock start a little apart at boot: allow 500 ms.
            predicted_ms.abs_diff(uptime_ms) < 500
        })
        .collect();
    match fits[..] {
        [hz] => Some(hz),
        _ => None,
    }
}

fn u16_at(rec: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([rec[at], rec[at + 1]])
}

fn u32_at(rec: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]])
}

fn u64_at(rec: &[u8], at: usize) -> u64 {
    u64::from(u32_at(rec, at)) | u64::from(u32_at(rec, at + 4)) << 32
}

fn v4_at(rec: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(rec[at], rec[at + 1], rec[at + 2], rec[at + 3])
}

fn v6_at(rec: &[u8], at: usize) -> Ipv6Addr {
    let mut b = [0u8; 16];
    b.copy_from_slice(&rec[at..at + 16]);
    Ipv6Addr::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `struct sock_rec` as porthog.bpf.c writes it.
    #[allow(clippy::too_many_arguments)]
    fn rec(kind: u8, family: u8, state: u8, flags: u8, src: [u8; 16], dst: [u8; 16]) -> Vec<u8> {
        let mut r = Vec::with_capacity(SOCKET_RECORD);
        r.extend(0x1_0000_1234u64.to_ne_bytes()); // cookie
        r.extend(src);
        r.extend(dst);
        r.extend(4242u32.to_ne_bytes()); // inode
        r.extend(1000u32.to_ne_bytes()); // uid
        r.extend(250u32.to_ne_bytes()); // TIME_WAIT jiffies left
        r.extend(40000u16.to_ne_bytes());
        r.extend(8080u16.to_ne_bytes());
        r.extend([kind, family, state, flags]);
        r.extend(1u32.to_ne_bytes()); // bound_dev_if
        assert_eq!(r.len(), SOCKET_RECORD);
        r
    }

    fn clock(hz: u64, uptime_s: u64) -> Vec<u8> {
        let mut r = vec![0; SOCKET_RECORD];
        let jiffies = (1u64 << 32) - 300 * hz + uptime_s * hz;
        r[..8].copy_from_slice(&jiffies.to_ne_bytes());
        r[8..16].copy_from_slice(&(uptime_s * 1_000_000_000).to_ne_bytes());
        r[KIND_OFFSET] = REC_CLOCK;
        r
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    #[test]
    fn garbage_clocks_fit_no_tick_rate() {
        assert_eq!(hz_from_clocks(u64::MAX, 0), None);
        assert_eq!(hz_from_clocks(u64::MAX / 3, u64::MAX), None);
    }

    #[test]
    fn decodes_facts_of_a_bound_then_connected_socket() {
        let flags = F_BUCKET_KNOWN | F_BUCKET_BIND;
        let bytes = rec(REC_TCP, AF_INET, 1, flags, v4([127, 0, 0, 1]), v4([10, 0, 0, 5]));
        let mut out = Vec::new();
        let walk = decode_sockets(&bytes, &mut out).unwrap();
        assert_eq!((walk.sockets, walk.unknown_states, walk.hz), (1, 0, None));
        let s = out[0];
        assert_eq!((s.local_port, s.remote_port, s.state), (40000, 8080, State::Established));
        assert_eq!(s.local_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!((s.cookie, s.inode, s.uid, s.timer_ms), (0x1_0000_1234, 4242, 1000, 0));
        assert_eq!(s.facts.bucket(), Some(BucketOrigin::Bind));
        assert_eq!(s.facts.family_v6(), Some(false));
        assert_eq!(s.facts.v6only(), Some(false));
        assert_eq!(s.facts.loopback_dev(), Some(false));
        assert_eq!(s.facts.bound_dev(), Some(true), "bound_dev_if 1 is a device");
        assert_eq!(s.facts.tw_timestamps(), None);
    }

    #[test]
    fn time_wait_timer_converts_with_the_clock_record() {
        let mapped = "::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap().octets();
        let flags = F_BUCKET_KNOWN | F_TW_TS_KNOWN | F_LOOPBACK_DEV;
        let mut bytes = rec(REC_TCP, AF_INET6, 6, flags, mapped, mapped);
        bytes[40..48].fill(0); // TIME_WAIT: no inode, no uid
        bytes.extend(clock(250, 3600));
        let mut out = Vec::new();
        let walk = decode_sockets(&bytes, &mut out).unwrap();
        assert_eq!((walk.sockets, walk.hz), (1, Some(250)));
        let s = out[0];
        assert_eq!(s.local_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!((s.state, s.timer_ms, s.uid), (State::TimeWait, 1000, Socket::UID_UNKNOWN));
        assert_eq!(s.facts.bucket(), Some(BucketOrigin::Connect));
        assert_eq!(s.facts.tw_timestamps(), Some(false));
        assert_eq!(s.facts.loopback_dev(), Some(true));
        assert_eq!(s.facts.family_v6(), Some(true));
    }

    #[test]
    fn udp_v6only_and_unknown_states() {
        let ip6 = "::1".parse::<Ipv6Addr>().unwrap().octets();
        let mut bytes = rec(REC_UDP, AF_INET6, 7, F_V6ONLY, ip6, [0; 16]);
        bytes[BOUND_DEV_OFFSET..SOCKET_RECORD].fill(0);
        bytes.extend(rec(REC_TCP, AF_INET, 42, 0, [0; 16], [0; 16]));
        let mut out = Vec::new();
        let walk = decode_sockets(&bytes, &mut out).unwrap();
        assert_eq!((walk.sockets, walk.unknown_states), (1, 1));
        assert_eq!((out[0].protocol, out[0].state), (Protocol::Udp, State::Close));
        assert_eq!(out[0].facts.v6only(), Some(true));
        assert_eq!(out[0].facts.bound_dev(), Some(false));
        assert_eq!(out[0].facts.bucket(), None);
    }

    #[test]
    fn malformed_streams_are_errors() {
        let mut out = Vec::new();
        let r = decode_sockets(&[0; 63], &mut out);
        assert_eq!(r, Err(RecordError::Truncated { len: 63, size: 64 }));
        let r = decode_sockets(&rec(9, AF_INET, 1, 0, [0; 16], [0; 16]), &mut out);
        assert_eq!(r, Err(RecordError::UnknownKind { index: 0, kind: 9 }));
        let r = decode_sockets(&rec(REC_TCP, 7, 1, 0, [0; 16], [0; 16]), &mut out);
        assert_eq!(r, Err(RecordError::UnknownFamily { index: 0, family: 7 }));
        let mut bytes = head(OWN_OWNER);
        bytes.push(0);
        assert_eq!(decode_owners(&bytes), Err(RecordError::Truncated { len: 17, size: 16 }));
        let r = decode_owners(&head(9));
        assert_eq!(r, Err(RecordError::UnknownOwnerKind { index: 0, kind: 9 }));
        // A bound-socket head without its record, and one whose record is not such a socket.
        let r = decode_owners(&head(OWN_BOUND_SOCKET));
        assert_eq!(r, Err(RecordError::Truncated { len: 16, size: 64 }));
        let mut bytes = head(OWN_BOUND_SOCKET);
        bytes.extend(rec(REC_TCP, AF_INET, 1, 0, [0; 16], [0; 16]));
        assert_eq!(decode_owners(&bytes), Err(RecordError::NotBoundInactive { index: 0 }));
    }

    fn head(kind: u32) -> Vec<u8> {
        let mut r = vec![0; OWNER_RECORD];
        r[12..].copy_from_slice(&kind.to_ne_bytes());
        r
    }

    #[test]
    fn owners_and_bound_sockets() {
        let mut bytes = Vec::new();
        for v in [77u32, 1234, 1, OWN_OWNER, 78, 99, 0, OWN_OWNER] {
            bytes.extend(v.to_ne_bytes());
        }
        // One bound-but-inactive socket held by two fds: reported twice, kept once.
        let bound =
            rec(REC_TCP, AF_INET, 13, F_BUCKET_KNOWN | F_BUCKET_BIND, v4([10, 0, 0, 1]), [0; 16]);
        for _ in 0..2 {
            bytes.extend(head(OWN_BOUND_SOCKET));
            bytes.extend(&bound);
        }
        let walk = decode_owners(&bytes).unwrap();
        assert_eq!(walk.owners[0], OwnerRecord { inode: 77, pid: 1234, inside: true });
        assert_eq!(walk.owners[1], OwnerRecord { inode: 78, pid: 99, inside: false });
        assert_eq!(walk.owners.len(), 2);
        assert_eq!(walk.bound.len(), 1);
        let s = walk.bound[0];
        assert_eq!(
            (s.protocol, s.state, s.local_port, s.inode),
            (Protocol::Tcp, State::Bound, 40000, 4242)
        );
        assert_eq!(s.local_ip, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(s.facts.bucket(), Some(BucketOrigin::Bind));
    }

    /// A socket seen bound by its fd and connected by `iter/tcp` (the walks overlap) counts
    /// once, as `iter/tcp` saw it; one the socket walk did not see stays.
    #[test]
    fn a_bound_socket_the_tcp_walk_also_saw_counts_once() {
        let bound =
            rec(REC_TCP, AF_INET, 13, F_BUCKET_KNOWN | F_BUCKET_BIND, v4([10, 0, 0, 1]), [0; 16]);
        let mut bytes = head(OWN_BOUND_SOCKET);
        bytes.extend(&bound);
        let mut walk = decode_owners(&bytes).unwrap();
        let mut other = walk.bound[0];
        other.cookie += 1;
        walk.bound.push(other);
        let mut connected = walk.bound[0];
        connected.state = State::Established;
        let kept = walk.bound_not_in(&[connected]);
        assert_eq!(kept.iter().map(|s| s.cookie).collect::<Vec<_>>(), [other.cookie]);
        assert!(walk.bound.is_empty());
        let mut none = OwnerWalk::default();
        assert!(none.bound_not_in(&[connected]).is_empty());
    }

    /// Fed in chunks that cut records anywhere, the stream decodes as when fed whole.
    #[test]
    fn chunks_decode_as_the_whole() {
        let mapped = "::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap().octets();
        let mut bytes = rec(REC_TCP, AF_INET6, 6, F_TW_TS_KNOWN, mapped, mapped);
        bytes.extend(rec(REC_TCP, AF_INET, 1, 0, v4([10, 0, 0, 1]), v4([10, 0, 0, 2])));
        bytes.extend(clock(1000, 3600));
        let mut whole = Vec::new();
        let expected = decode_sockets(&bytes, &mut whole).unwrap();
        for size in [1, 7, 63, 64, 65, 100, 1000] {
            let mut out = Vec::new();
            let mut d = SocketDecoder::new(&out);
            for chunk in bytes.chunks(size) {
                d.feed(chunk, &mut out).unwrap();
            }
            assert_eq!(d.finish(&mut out).unwrap(), expected, "{size}");
            assert_eq!(out, whole, "{size}");
        }
        let mut out = Vec::new();
        let mut d = SocketDecoder::new(&out);
        d.feed(&bytes[..100], &mut out).unwrap();
        assert_eq!(d.finish(&mut out), Err(RecordError::Truncated { len: 100, size: 64 }));
    }

    #[test]
    fn tick_rates() {
        for hz in HZ_CHOICES {
            for uptime in [5, 60, 299 - 30, 1000, 86_400 * 400] {
                let j = (1u64 << 32) - 300 * hz + uptime * hz;
                assert_eq!(hz_from_clocks(j, uptime * 1_000_000_000), Some(hz), "{hz} {uptime}");
            }
        }
        // At 300 s of uptime every choice fits: undecidable, not a guess.
        let j = 1u64 << 32;
        assert_eq!(hz_from_clocks(j, 300_000_000_000), None);
        assert_eq!(hz_from_clocks(0, 1), None);
    }
}
