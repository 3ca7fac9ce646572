//! The event-driven socket table (issue 9): the TCP state changes that porthog's ring-buffer
//! program (`porthog_events.bpf.c`, a raw tracepoint on `sock:inet_sock_set_state`) records,
//! decoded and applied to the table of the last full walk. Pure: bytes and walks in, sockets out.
//!
//! What the events show, checked on Linux 6.18 with tracefs (`sock:inet_sock_set_state` and
//! `tcp:tcp_destroy_sock` on a loopback connect/close):
//! - `connect()`: CLOSE -> SYN_SENT in the connecting process, **before** the local port is
//!   chosen (the record's local port is 0), then SYN_SENT -> ESTABLISHED with it.
//! - a listener's child: a new socket whose first event is LISTEN -> SYN_RECV (the child is a
//!   clone of the listener, state included), in softirq context: no owner.
//! - the active closer: ... FIN_WAIT1 -> FIN_WAIT2 -> CLOSE. The full socket goes to CLOSE when
//!   `tcp_time_wait` replaces it with a timewait socket, which has **no** state event, neither
//!   when made nor when its 60 s timer expires. The same FIN_WAIT2 -> CLOSE is also what an RST,
//!   a failed timewait allocation or the FIN_WAIT2 timeout (a timewait socket in substate
//!   FIN_WAIT2) look like: a TIME_WAIT socket after a close is a prediction, counted in
//!   [`Doubts::predicted_time_wait`], and kept until the next full walk (its expiry is not
//!   predicted: not shown to match the kernel's timer).
//! - bind() without connect/listen, UDP: no event at all.
//!
//! So the table is exact only up to [`Doubts`]: what a full walk must settle. The sampler walks
//! again on its slower cadence, and at once when the ring buffer lost a record.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::model::linux_tcp::{CLOSE, CLOSING, FIN_WAIT1, FIN_WAIT2, LISTEN, SYN_RECV, SYN_SENT};
use crate::model::{Protocol, Socket, State};

/// The size of one ring-buffer record (`struct porthog_tcp_event` in `porthog_events.bpf.c`).
pub const TCP_EVENT_RECORD: usize = 80;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// One TCP state change of the sampled namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpEvent {
    /// The kernel address of the socket: its identity from its first event to its CLOSE.
    pub sk: u64,
    /// The socket cookie, 0 when none was made yet (a cookie is made when a walk reports it).
    pub cookie: u64,
    /// The thread group (process) the change ran in: meaningful only in process context, i.e.
    /// for `connect()` (CLOSE -> SYN_SENT) and `listen()` (CLOSE -> LISTEN). In the initial
    /// pid namespace.
    pub tgid: u32,
    /// That process's command name.
    pub comm: String,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// Linux state numbers.
    pub old: u8,
    pub new: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error(
        "a TCP event record is {0} bytes, not {TCP_EVENT_RECORD}: porthog_events.bpf.o and \
         porthog disagree (rebuild the object with bpf/build.sh)"
    )]
    Size(usize),
    #[error("a TCP event record has address family {0}, neither AF_INET nor AF_INET6")]
    Family(u16),
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(a)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn address(family: u16, bytes: &[u8]) -> IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&bytes[..16]);
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(a)).to_canonical()
    }
}

/// Decodes one record. Layout (native endian): sk u64, cookie u64, pid_tgid u64 (tgid in the
/// high half), comm [16], local address [16], remote address [16] (IPv4 in the first 4 bytes),
/// local port u16 (host order), remote port u16 (host order), family u16, old state u8, new
/// state u8: 80 bytes.
pub fn decode(b: &[u8]) -> Result<TcpEvent, EventError> {
    if b.len() != TCP_EVENT_RECORD {
        return Err(EventError::Size(b.len()));
    }
    let family = u16_at(b, 76);
    if family != AF_INET && family != AF_INET6 {
        return Err(EventError::Family(family));
    }
    let comm = &b[24..40];
    let comm_len = comm.iter().position(|&c| c == 0).unwrap_or(comm.len());
    Ok(TcpEvent {
        sk: u64_at(b, 0),
        cookie: u64_at(b, 8),
        tgid: (u64_at(b, 16) >> 32) as u32,
        comm: String::from_utf8_lossy(&comm[..comm_len]).into_owned(),
        local: (address(family, &b[40..56]), u16_at(b, 72)),
        remote: (address(family, &b[56..72]), u16_at(b, 74)),
        old: b[78],
        new: b[79],
    })
}

/// What the table cannot vouch for: each is settled only by a full walk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Doubts {
    /// TIME_WAIT sockets predicted from a close (see the module text), kept until a walk.
    pub predicted_time_wait: usize,
    /// Changes of sockets the table did not hold (made while no walk or event saw them, or
    /// whose earlier events were lost).
    pub unknown_sockets: u64,
    /// Records the table could not use (see [`EventError`]).
    pub bad_records: u64,
}

/// How often the table is replaced by a full walk at the latest: what events cannot see
/// (bind()-only and UDP sockets, TIME_WAIT expiry) is at most this old.
pub const RESYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the table must be walked again now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resync {
    /// [`RESYNC_EVERY`] has passed since the last walk.
    Cadence,
    /// The ring buffer was full: a change is missing.
    Lost,
    /// A change of a socket the table did not hold, or a record it could not use.
    Unknown,
}

/// Whether the table must be walked again: `lost` is the program's loss counter now and
/// `lost_at_walk` what it was at the last walk; `since_walk` the time since that walk.
/// Predicted TIME_WAITs alone wait for the cadence (their count is right until they expire,
/// 60 s at the earliest).
pub fn resync_due(
    doubts: Doubts,
    lost: u64,
    lost_at_walk: u64,
    since_walk: std::time::Duration,
) -> Option<Resync> {
    if lost != lost_at_walk {
        Some(Resync::Lost)
    } else if doubts.unknown_sockets > 0 || doubts.bad_records > 0 {
        Some(Resync::Unknown)
    } else if since_walk >= RESYNC_EVERY {
        Some(Resync::Cadence)
    } else {
        None
    }
}

/// Local address and port, remote address and port.
type Tuple = (IpAddr, u16, IpAddr, u16);

fn tuple(local: (IpAddr, u16), remote: (IpAddr, u16)) -> Tuple {
    (local.0, local.1, remote.0, remote.1)
}

/// How the table finds a socket again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// Reported by a walk, which makes the cookie; every later event carries it.
    Cookie(u64),
    /// Made after the walk: its kernel address until its CLOSE.
    Address(u64),
    /// A predicted timewait socket (no kernel object the events can name).
    Predicted(u64),
}

/// The TCP sockets of one namespace: a full walk's, with the events since applied.
#[derive(Debug, Default)]
pub struct EventTable {
    sockets: HashMap<Key, Socket>,
    /// The TIME_WAIT sockets of `sockets` by 4-tuple: the kernel holds one socket per 4-tuple,
    /// so a live socket of that tuple means the timewait one is gone (a connect() that re-used
    /// it under tcp_tw_reuse, or a new SYN it accepted), with no event for it.
    time_wait: HashMap<Tuple, Key>,
    /// Sockets of other protocols from the walk, kept as they were (no events for them).
    others: Vec<Socket>,
    doubts: Doubts,
    next_prediction: u64,
    /// Set by [`EventTable::resync`] until [`EventTable::settle_walk_race`]: the events being
    /// applied may predate the walk's visit of their socket (see there).
    in_walk_race: bool,
    /// The processes that made sockets since the walk (connect(), listen()), with their names
    /// as the events give them.
    owners: HashMap<u32, String>,
}

impl EventTable {
    /// A table holding exactly `walk` (every socket of a full walk), with no doubts.
    pub fn resync(&mut self, walk: Vec<Socket>) {
        self.sockets.clear();
        self.time_wait.clear();
        self.others.clear();
        self.doubts = Doubts::default();
        self.in_walk_race = true;
        self.owners.clear();
        for (i, socket) in walk.into_iter().enumerate() {
            if socket.protocol != Protocol::Tcp || socket.state == State::Bound {
                self.others.push(socket);
            } else {
                // A walk without cookies (none on this source) still keeps every socket.
                let key = if socket.cookie != 0 {
                    Key::Cookie(socket.cookie)
                } else {
                    Key::Predicted(u64::MAX - i as u64)
                };
                if socket.state == State::TimeWait {
                    let t = (
                        (socket.local_ip, socket.local_port),
                        (socket.remote_ip, socket.remote_port),
                    );
                    self.time_wait.insert(tuple(t.0, t.1), key);
                }
                self.sockets.insert(key, socket);
            }
        }
    }

    /// Ends the walk/event race, once the events written while the walk ran (the ring buffer
    /// emptied just before it) are applied. A socket changed while the walk ran, before the
    /// walk reached it, has events that find nothing in the table: not a doubt (`unknown`),
    /// and a socket they made is a copy of the walk's
    /// (same 4-tuple), which keeps the walk's newer state. A socket the walk had already passed
    /// carries its cookie in its events: found, applied. From here on an unknown socket is a
    /// doubt again.
    pub fn settle_walk_race(&mut self) {
        self.in_walk_race = false;
        let walked: HashSet<Tuple> = self
            .sockets
            .iter()
            .filter(|(k, s)| matches!(k, Key::Cookie(_)) && s.local_port != 0)
            .map(|(_, s)| tuple((s.local_ip, s.local_port), (s.remote_ip, s.remote_port)))
            .collect();
        self.sockets.retain(|k, s| {
            !matches!(k, Key::Address(_))
                || !walked
                    .contains(&tuple((s.local_ip, s.local_port), (s.remote_ip, s.remote_port)))
        });
    }

    /// A change of a socket the table does not hold: a doubt, except in the walk race, where
    /// the walk is the truth for a socket it did not show (one that changed before the walk
    /// reached it; a cookie does not tell, as a socket keeps the cookie an earlier walk or
    /// `ss` made).
    fn unknown(&mut self, _event: &TcpEvent) {
        if !self.in_walk_race {
            self.doubts.unknown_sockets += 1;
        }
    }

    /// The table now: the walk's non-TCP and bound sockets, and the TCP ones.
    pub fn sockets(&self) -> impl Iterator<Item = &Socket> {
        self.others.iter().chain(self.sockets.values())
    }

    /// Drops the walked TIME_WAIT sockets whose timer (as the walk read it) ran out in the
    /// `since_walk` since (their expiry has no event). Predicted ones have no timer: they stay
    /// until the next walk, which comes before they could expire (60 s > [`RESYNC_EVERY`]).
    pub fn expire_walked_time_wait(&mut self, since_walk: std::time::Duration) {
        let ms = u32::try_from(since_walk.as_millis()).unwrap_or(u32::MAX);
        self.sockets
            .retain(|_, s| !(s.state == State::TimeWait && s.timer_ms > 0 && s.timer_ms <= ms));
    }

    /// The processes that made sockets since the walk, and their names (`comm`).
    pub fn owners(&self) -> impl Iterator<Item = (u32, &str)> {
        self.owners.iter().map(|(pid, name)| (*pid, name.as_str()))
    }

    /// How many TCP sockets the table holds (the walk's others not counted).
    pub fn tcp_len(&self) -> usize {
        self.sockets.len()
    }

    pub fn doubts(&self) -> Doubts {
        self.doubts
    }

    /// Counts a record [`decode`] refused.
    pub fn bad_record(&mut self) {
        self.doubts.bad_records += 1;
    }

    /// The socket of `event`: by its cookie (a walked socket), else by its address. A socket
    /// found by its cookie and also held by its address is one the walk/event race made twice
    /// (its first events applied after a walk that also showed it): the copy goes.
    fn find(&mut self, event: &TcpEvent) -> Option<Key> {
        if event.cookie != 0 && self.sockets.contains_key(&Key::Cookie(event.cookie)) {
            self.sockets.remove(&Key::Address(event.sk));
            return Some(Key::Cookie(event.cookie));
        }
        Some(Key::Address(event.sk)).filter(|k| self.sockets.contains_key(k))
    }

    /// Drops the TIME_WAIT socket of this 4-tuple, if the table has one.
    fn forget_time_wait(&mut self, local: (IpAddr, u16), remote: (IpAddr, u16)) {
        if let Some(key) = self.time_wait.remove(&tuple(local, remote)) {
            self.sockets.remove(&key);
            if matches!(key, Key::Predicted(n) if n <= self.next_prediction) {
                self.doubts.predicted_time_wait = self.doubts.predicted_time_wait.saturating_sub(1);
            }
        }
    }

    /// Applies one state change.
    pub fn apply(&mut self, event: &TcpEvent) {
        let Some(new) = State::from_linux(event.new) else {
            self.doubts.bad_records += 1;
            return;
        };
        let found = self.find(event);
        // A listener's child is a new socket whose first change is LISTEN -> SYN_RECV.
        let creates = (event.old == CLOSE && event.new != CLOSE)
            || (event.old == LISTEN && event.new == SYN_RECV);
        if event.new == CLOSE {
            if found.is_none() && event.old != CLOSE {
                self.unknown(event);
            }
            let gone = found.and_then(|k| self.sockets.remove(&k));
            if matches!(event.old, FIN_WAIT1 | FIN_WAIT2 | CLOSING) {
                let mut tw = Socket::new(Protocol::Tcp, State::TimeWait, event.local, event.remote);
                tw.cookie = event.cookie;
                if let Some(gone) = gone {
                    tw.facts = gone.facts;
                }
                self.forget_time_wait(event.local, event.remote);
                self.next_prediction += 1;
                let key = Key::Predicted(self.next_prediction);
                self.sockets.insert(key, tw);
                self.time_wait.insert(tuple(event.local, event.remote), key);
                self.doubts.predicted_time_wait += 1;
            }
            return;
        }
        if event.local.1 != 0 && event.remote.1 != 0 {
            self.forget_time_wait(event.local, event.remote);
        }
        match found {
            Some(key) if !creates => {
                if let Some(socket) = self.sockets.get_mut(&key) {
                    socket.state = new;
                    socket.local_ip = event.local.0;
                    socket.local_port = event.local.1;
                    socket.remote_ip = event.remote.0;
                    socket.remote_port = event.remote.1;
                }
            }
            _ => {
                if !creates {
                    self.unknown(event);
                }
                // A new socket where the table still had one (its CLOSE was lost): replaced.
                if let Some(stale) = found {
                    self.sockets.remove(&stale);
                    if !self.in_walk_race {
                        self.doubts.unknown_sockets += 1;
                    }
                }
                // A walked bind()-only socket that connect()s or listen()s: its first event
                // carries the cookie the walk made; it leaves the walk's unchanging sockets.
                if creates && event.cookie != 0 {
                    self.others.retain(|s| s.cookie != event.cookie);
                }
                let mut socket = Socket::new(Protocol::Tcp, new, event.local, event.remote);
                socket.cookie = event.cookie;
                // Only connect() and listen() run in the owning process.
                if event.old == CLOSE && matches!(event.new, SYN_SENT | LISTEN) {
                    socket.pid = NonZeroU32::new(event.tgid);
                    if socket.pid.is_some() {
                        self.owners.entry(event.tgid).or_insert_with(|| event.comm.clone());
                    }
                }
                self.sockets.insert(Key::Address(event.sk), socket);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::linux_tcp::{CLOSE_WAIT, ESTABLISHED, LAST_ACK};

    fn lo() -> IpAddr {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    fn event(sk: u64, cookie: u64, local: u16, remote: u16, old: u8, new: u8) -> TcpEvent {
        TcpEvent {
            sk,
            cookie,
            tgid: 4242,
            comm: "client".into(),
            local: (lo(), local),
            remote: (lo(), remote),
            old,
            new,
        }
    }

    fn states(t: &EventTable) -> Vec<(u16, u16, State, Option<u32>)> {
        let mut v: Vec<_> = t
            .sockets()
            .map(|s| (s.local_port, s.remote_port, s.state, s.pid.map(NonZeroU32::get)))
            .collect();
        v.sort_by_key(|s| (s.0, s.1, s.2.as_str()));
        v
    }

    fn listener() -> Socket {
        let mut s = Socket::new(Protocol::Tcp, State::Listen, (lo(), 80), (lo(), 0));
        s.cookie = 7;
        s.pid = NonZeroU32::new(1);
        s
    }

    /// A connection's whole life as 6.18 reports it (tracefs, see the module text): the
    /// table ends with the listener, the predicted TIME_WAIT and nothing else.
    #[test]
    fn a_connection_from_connect_to_time_wait() {
        let mut t = EventTable::default();
        t.resync(vec![listener()]);
        let client = 0xffff_0001;
        let child = 0xffff_0002;
        t.apply(&event(client, 0, 0, 80, CLOSE, SYN_SENT));
        assert_eq!(states(&t)[0], (0, 80, State::SynSent, Some(4242)), "port chosen later");
        t.apply(&event(client, 0, 5000, 80, SYN_SENT, ESTABLISHED));
        t.apply(&event(child, 0, 80, 5000, LISTEN, SYN_RECV));
        t.apply(&event(child, 0, 80, 5000, SYN_RECV, ESTABLISHED));
        assert_eq!(
            states(&t),
            vec![
                (80, 0, State::Listen, Some(1)),
                (80, 5000, State::Established, None),
                (5000, 80, State::Established, Some(4242)),
            ]
        );
        t.apply(&event(client, 0, 5000, 80, ESTABLISHED, FIN_WAIT1));
        t.apply(&event(child, 0, 80, 5000, ESTABLISHED, CLOSE_WAIT));
        t.apply(&event(child, 0, 80, 5000, CLOSE_WAIT, LAST_ACK));
        t.apply(&event(client, 0, 5000, 80, FIN_WAIT1, FIN_WAIT2));
        t.apply(&event(client, 0, 5000, 80, FIN_WAIT2, CLOSE));
        t.apply(&event(child, 0, 80, 5000, LAST_ACK, CLOSE));
        assert_eq!(
            states(&t),
            vec![(80, 0, State::Listen, Some(1)), (5000, 80, State::TimeWait, None)]
        );
        assert_eq!(t.doubts(), Doubts { predicted_time_wait: 1, ..Doubts::default() });
        // The listener itself closing: LISTEN -> CLOSE, found by its cookie.
        t.apply(&event(0xffff_0003, 7, 80, 0, LISTEN, CLOSE));
        assert_eq!(states(&t), vec![(5000, 80, State::TimeWait, None)]);
        // A walk settles every doubt.
        t.resync(Vec::new());
        assert_eq!(states(&t), vec![]);
        assert_eq!(t.doubts(), Doubts::default());
    }

    /// In the walk race, a close of a socket the walk did not show is the walk's truth (it
    /// closed before the walk reached it), even when the socket carries a cookie an earlier
    /// walk made; once the race is settled the same event is a doubt.
    #[test]
    fn an_unknown_close_in_the_walk_race_is_no_doubt_even_with_a_cookie() {
        let mut t = EventTable::default();
        t.resync(vec![listener()]);
        t.apply(&event(0xffff_0010, 99, 5000, 80, ESTABLISHED, CLOSE));
        t.apply(&event(0xffff_0011, 0, 5001, 80, ESTABLISHED, CLOSE));
        assert_eq!(t.doubts(), Doubts::default());
        t.settle_walk_race();
        t.apply(&event(0xffff_0012, 98, 5002, 80, ESTABLISHED, CLOSE));
        assert_eq!(t.doubts().unknown_sockets, 1);
        assert_eq!(states(&t), vec![(80, 0, State::Listen, Some(1))]);
    }

    /// A walk's socket is found by its cookie, an event-made one by its address even once a
    /// cookie appears; a change of a socket the table never had is a doubt, not a loss.
    #[test]
    fn sockets_are_found_by_cookie_then_address() {
        let mut t = EventTable::default();
        let mut walked = Socket::new(Protocol::Tcp, State::Established, (lo(), 1), (lo(), 2));
        walked.cookie = 99;
        walked.pid = NonZeroU32::new(5);
        t.resync(vec![walked]);
        t.settle_walk_race();
        t.apply(&event(0x10, 99, 1, 2, ESTABLISHED, CLOSE_WAIT));
        assert_eq!(states(&t), vec![(1, 2, State::CloseWait, Some(5))]);
        t.apply(&event(0x20, 0, 0, 9, CLOSE, SYN_SENT));
        t.apply(&event(0x20, 1234, 3, 9, SYN_SENT, ESTABLISHED));
        assert_eq!(states(&t)[1], (3, 9, State::Established, Some(4242)));
        assert_eq!(t.doubts().unknown_sockets, 0);
        t.apply(&event(0x30, 55, 4, 9, ESTABLISHED, CLOSE_WAIT));
        assert_eq!(t.doubts().unknown_sockets, 1);
        assert_eq!(states(&t).len(), 3);
        // An RST of an unknown socket: removed nothing, one more doubt, no prediction.
        t.apply(&event(0x40, 0, 6, 9, ESTABLISHED, CLOSE));
        assert_eq!(t.doubts().unknown_sockets, 2);
        assert_eq!(t.doubts().predicted_time_wait, 0);
    }

    /// Bound and UDP sockets have no events: kept as the walk had them.
    #[test]
    fn sockets_without_events_stay_as_walked() {
        let mut t = EventTable::default();
        let udp = Socket::new(Protocol::Udp, State::Close, (lo(), 53), (lo(), 0));
        let bound = Socket::new(Protocol::Tcp, State::Bound, (lo(), 6000), (lo(), 0));
        let mut walked_bound = Socket::new(Protocol::Tcp, State::Bound, (lo(), 6001), (lo(), 0));
        walked_bound.cookie = 5;
        t.resync(vec![udp, bound, walked_bound]);
        t.settle_walk_race();
        t.apply(&event(0x10, 0, 0, 80, CLOSE, SYN_SENT));
        assert_eq!(states(&t).len(), 4);
        // The walked bound socket connects: one socket, no longer BOUND.
        t.apply(&event(0x20, 5, 6001, 80, CLOSE, SYN_SENT));
        let s = states(&t);
        assert_eq!(s.len(), 4, "{s:?}");
        assert!(s.contains(&(6001, 80, State::SynSent, Some(4242))), "{s:?}");
    }

    /// A connect() that re-uses a TIME_WAIT 4-tuple (tcp_tw_reuse) kills the timewait socket
    /// without an event: the new connection's tuple replaces it, walked or predicted.
    #[test]
    fn a_reused_time_wait_tuple_is_gone() {
        let mut t = EventTable::default();
        let mut walked = Socket::new(Protocol::Tcp, State::TimeWait, (lo(), 5000), (lo(), 80));
        walked.cookie = 3;
        t.resync(vec![walked]);
        t.apply(&event(0x10, 0, 0, 80, CLOSE, SYN_SENT));
        t.apply(&event(0x10, 0, 5000, 80, SYN_SENT, ESTABLISHED));
        assert_eq!(states(&t), vec![(5000, 80, State::Established, Some(4242))]);
        t.apply(&event(0x10, 0, 5000, 80, ESTABLISHED, FIN_WAIT1));
        t.apply(&event(0x10, 0, 5000, 80, FIN_WAIT1, FIN_WAIT2));
        t.apply(&event(0x10, 0, 5000, 80, FIN_WAIT2, CLOSE));
        t.apply(&event(0x20, 0, 0, 80, CLOSE, SYN_SENT));
        t.apply(&event(0x20, 0, 5000, 80, SYN_SENT, ESTABLISHED));
        assert_eq!(states(&t), vec![(5000, 80, State::Established, Some(4242))]);
        assert_eq!(t.doubts(), Doubts::default());
    }

    /// The walk/event race: events written while the walk ran, for sockets it had not reached
    /// yet (no cookie), are not doubts, and the copies they make of walked sockets go; after
    /// the race an unknown socket is a doubt again.
    #[test]
    fn events_from_during_the_walk_are_not_counted_twice() {
        let mut t = EventTable::default();
        let mut walked = Socket::new(Protocol::Tcp, State::Established, (lo(), 5000), (lo(), 80));
        walked.cookie = 11;
        walked.pid = NonZeroU32::new(9);
        let mut second = Socket::new(Protocol::Tcp, State::Established, (lo(), 5001), (lo(), 80));
        second.cookie = 12;
        t.resync(vec![walked, second]);
        // Made and established before the walk reached it (no cookie yet): a copy.
        t.apply(&event(0x10, 0, 0, 80, CLOSE, SYN_SENT));
        t.apply(&event(0x10, 0, 5000, 80, SYN_SENT, ESTABLISHED));
        // Existing before the walk started, closed before the walk reached it: unknown.
        t.apply(&event(0x20, 0, 5002, 80, ESTABLISHED, FIN_WAIT1));
        // Walked, then changed: found by its cookie; the copy of 0x30 made in the race goes.
        t.apply(&event(0x30, 0, 5001, 80, ESTABLISHED, CLOSE_WAIT));
        t.apply(&event(0x30, 12, 5001, 80, CLOSE_WAIT, LAST_ACK));
        assert_eq!(t.doubts(), Doubts::default());
        t.settle_walk_race();
        assert_eq!(
            states(&t),
            vec![
                (5000, 80, State::Established, Some(9)),
                (5001, 80, State::LastAck, None),
                (5002, 80, State::FinWait1, None),
            ]
        );
        t.apply(&event(0x40, 0, 5003, 80, ESTABLISHED, CLOSE_WAIT));
        assert_eq!(t.doubts().unknown_sockets, 1);
        assert_eq!(t.owners().collect::<Vec<_>>(), vec![(4242, "client")]);
    }

    #[test]
    fn a_walk_is_due_on_a_loss_an_unknown_socket_or_the_cadence() {
        use std::time::Duration;
        let calm = Doubts { predicted_time_wait: 500, ..Doubts::default() };
        assert_eq!(resync_due(calm, 3, 3, Duration::from_secs(29)), None);
        assert_eq!(resync_due(calm, 3, 3, RESYNC_EVERY), Some(Resync::Cadence));
        assert_eq!(resync_due(calm, 4, 3, Duration::ZERO), Some(Resync::Lost));
        let unknown = Doubts { unknown_sockets: 1, ..calm };
        assert_eq!(resync_due(unknown, 3, 3, Duration::ZERO), Some(Resync::Unknown));
        let bad = Doubts { bad_records: 1, ..calm };
        assert_eq!(resync_due(bad, 3, 3, Duration::ZERO), Some(Resync::Unknown));
    }

    fn record(family: u16, old: u8, new: u8) -> Vec<u8> {
        let mut b = vec![0u8; TCP_EVENT_RECORD];
        b[0..8].copy_from_slice(&0xdead_u64.to_ne_bytes());
        b[8..16].copy_from_slice(&77u64.to_ne_bytes());
        b[16..24].copy_from_slice(&((4242u64 << 32) | 4243).to_ne_bytes());
        b[24..28].copy_from_slice(b"curl");
        b[40..44].copy_from_slice(&[127, 0, 0, 1]);
        b[56..60].copy_from_slice(&[10, 0, 0, 2]);
        b[72..74].copy_from_slice(&5000u16.to_ne_bytes());
        b[74..76].copy_from_slice(&80u16.to_ne_bytes());
        b[76..78].copy_from_slice(&family.to_ne_bytes());
        b[78] = old;
        b[79] = new;
        b
    }

    #[test]
    fn records_decode_and_bad_ones_say_why() {
        let e = decode(&record(AF_INET, CLOSE, SYN_SENT)).expect("a good record");
        assert_eq!(
            e,
            TcpEvent {
                sk: 0xdead,
                cookie: 77,
                tgid: 4242,
                comm: "curl".into(),
                local: (lo(), 5000),
                remote: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 80),
                old: CLOSE,
                new: SYN_SENT,
            }
        );
        let mut v6 = record(AF_INET6, ESTABLISHED, CLOSE);
        v6[40..56].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6[56..72].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets());
        let e = decode(&v6).expect("a good record");
        assert_eq!(e.local.0, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(e.remote.0, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), "mapped: canonical");
        assert_eq!(decode(&[0; 10]), Err(EventError::Size(10)));
        assert_eq!(decode(&record(1, CLOSE, SYN_SENT)), Err(EventError::Family(1)));
        let mut t = EventTable::default();
        t.apply(&decode(&record(AF_INET, CLOSE, 200)).expect("decodes"));
        assert_eq!(t.doubts().bad_records, 1, "an unknown state");
    }
}
