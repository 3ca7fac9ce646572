//! The owner book: who opened each connection, remembered for as long as its TIME_WAIT can last,
//! so that a TIME_WAIT socket, which no process owns, is still attributed. Pure bookkeeping:
//! `watch`/`record` feed it every sample (issue 9: ~100k connections a second), so a connection
//! seen again is found by its cookie in a small map and refreshed in place; nothing here reads
//! the system.

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use crate::model::{Protocol, Snapshot, Socket, State};
use crate::timeline::{FourTuple, OwnerCount};

/// Who opened a connection, remembered after the process exits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opener {
    pub pid: u32,
    pub name: String,
    /// Seconds (monotonic, the caller's clock) when it was last seen alive or opened.
    pub seen: f64,
}

/// Remembers the opener of every connection seen, for as long as its TIME_WAIT can last, so a
/// TIME_WAIT socket can be attributed after its process closed it or exited. Memory is bounded:
/// entries expire `ttl` seconds after they were last seen (TIME_WAIT is 60 s on Linux; a
/// connection still open is refreshed by every sample or event that shows it).
#[derive(Debug, Clone)]
pub struct OwnerBook {
    ttl: f64,
    /// The connections, each in one slot; an expired one leaves its slot to the next new one.
    slots: Vec<Slot>,
    free: Vec<u32>,
    by_tuple: HashMap<FourTuple, u32>,
    /// Cookie to slot: a cookie points at the connection it was last remembered with.
    by_cookie: HashMap<u64, u32>,
}

/// A connection of the book: its opener, and the cookie last remembered with it while
/// `by_cookie` still points that cookie here (0: none), so that a connection seen again, sample
/// after sample, costs one lookup in the cookie map (8-byte keys) and no write to a map.
#[derive(Debug, Clone)]
struct Slot {
    cookie: u64,
    opener: Opener,
    tuple: FourTuple,
    /// Expired: in `free`, in neither map.
    free: bool,
}

impl OwnerBook {
    /// `ttl`: how long to keep an entry after it was last seen, in seconds.
    pub fn new(ttl: f64) -> OwnerBook {
        OwnerBook {
            ttl,
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: HashMap::default(),
            by_cookie: HashMap::default(),
        }
    }

    /// Records that `pid` (`name`) holds the connection `tuple` at time `now`.
    pub fn remember(&mut self, tuple: FourTuple, cookie: u64, pid: u32, name: &str, now: f64) {
        self.remember_with(tuple, cookie, pid, || name, now);
    }

    /// `remember`, asking for the name only when the book has none for this opener.
    fn remember_with<'a>(
        &mut self,
        tuple: FourTuple,
        cookie: u64,
        pid: u32,
        name: impl FnOnce() -> &'a str,
        now: f64,
    ) {
        let i = match self.by_tuple.get(&tuple) {
            Some(&i) => i,
            None => {
                let opener = Opener { pid, name: name().to_owned(), seen: now };
                let i = self.take_slot(Slot { cookie: 0, opener, tuple, free: false });
                self.by_tuple.insert(tuple, i);
                return self.point_cookie(i, cookie);
            }
        };
        let e = &mut self.slots[i as usize];
        if e.opener.pid != pid {
            e.opener = Opener { pid, name: name().to_owned(), seen: now };
        }
        e.opener.seen = now;
        self.point_cookie(i, cookie);
    }

    fn take_slot(&mut self, slot: Slot) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    /// Points `cookie` at slot `i`, which holds it from now on.
    fn point_cookie(&mut self, i: u32, cookie: u64) {
        // Already `by_cookie[cookie] == i`: nothing to write.
        if cookie == 0 || self.slots[i as usize].cookie == cookie {
            return;
        }
        self.slots[i as usize].cookie = cookie;
        let previous = self.by_cookie.insert(cookie, i);
        // The cookie moved from another connection: that one no longer holds it.
        if let Some(old) = previous.filter(|&old| old != i)
            && self.slots[old as usize].cookie == cookie
        {
            self.slots[old as usize].cookie = 0;
        }
    }

    /// The slot of a connection that holds `s`'s cookie and has its 4-tuple: a connection seen
    /// again. None sends the caller to the 4-tuple, the general case.
    fn holding_cookie(&self, s: &Socket) -> Option<u32> {
        if s.cookie == 0 {
            return None;
        }
        let &i = self.by_cookie.get(&s.cookie)?;
        let e = &self.slots[i as usize];
        (e.cookie == s.cookie && e.tuple == FourTuple::of(s)).then_some(i)
    }

    /// Learns from a sample: every owned, connected TCP socket refreshes its opener.
    pub fn learn(&mut self, snapshot: &Snapshot, now: f64) {
        for s in snapshot.sockets.iter().filter(|s| s.protocol == Protocol::Tcp && s.is_connected())
        {
            if let Some(pid) = s.pid {
                let name = || snapshot.process(pid.get()).map_or("?", |p| p.name.as_str());
                match self.holding_cookie(s) {
                    // Seen before with this cookie: only the opener can have changed.
                    Some(i) => {
                        let e = &mut self.slots[i as usize];
                        if e.opener.pid != pid.get() {
                            e.opener.pid = pid.get();
                            e.opener.name = name().to_owned();
                        }
                        e.opener.seen = now;
                    }
                    None => self.remember_with(FourTuple::of(s), s.cookie, pid.get(), name, now),
                }
            } else if s.state == State::TimeWait {
                // Still in TIME_WAIT: keep the opener alive until the socket is gone.
                let i = self
                    .holding_cookie(s)
                    .or_else(|| self.by_tuple.get(&FourTuple::of(s)).copied());
                if let Some(i) = i {
                    self.slots[i as usize].opener.seen = now;
                }
            }
        }
    }

    /// The opener of a connection, by cookie first (exact), else by 4-tuple.
    pub fn opener(&self, tuple: &FourTuple, cookie: u64) -> Option<&Opener> {
        let by_cookie = if cookie != 0 { self.by_cookie.get(&cookie) } else { None };
        let i = by_cookie.or_else(|| self.by_tuple.get(tuple))?;
        Some(&self.slots[*i as usize].opener)
    }

    /// Drops entries not seen for `ttl` seconds. Call once per sample or every few seconds.
    pub fn expire(&mut self, now: f64) {
        let mut dropped = false;
        for (i, e) in self.slots.iter_mut().enumerate() {
            if !e.free && now - e.opener.seen > self.ttl {
                e.free = true;
                e.cookie = 0;
                e.opener.name = String::new();
                self.by_tuple.remove(&e.tuple);
                self.free.push(u32::try_from(i).unwrap_or(u32::MAX));
                dropped = true;
            }
        }
        // The cookies to drop are those pointing at the connections dropped now.
        if dropped {
            let slots = &self.slots;
            self.by_cookie.retain(|_, i| !slots[*i as usize].free);
        }
    }

    pub fn len(&self) -> usize {
        self.by_tuple.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_tuple.is_empty()
    }

    /// Attributes the snapshot's ownerless TIME_WAIT sockets: sets their `pid` and adds the
    /// openers that exited to `processes`. Returns TIME_WAIT counts per opener, most first.
    pub fn attribute_time_wait(&self, snapshot: &mut Snapshot) -> Vec<OwnerCount> {
        let mut counts: HashMap<(u32, &str), u64> = HashMap::default();
        for s in
            snapshot.sockets.iter_mut().filter(|s| s.state == State::TimeWait && s.pid.is_none())
        {
            if let Some(o) = self.opener(&FourTuple::of(s), s.cookie) {
                s.pid = std::num::NonZeroU32::new(o.pid);
                *counts.entry((o.pid, o.name.as_str())).or_default() += 1;
            }
        }
        for (pid, name) in counts.keys() {
            if snapshot.process(*pid).is_none() {
                let at = snapshot.processes.partition_point(|p| p.pid < *pid);
                snapshot.processes.insert(
                    at,
                    crate::model::Process {
                        pid: *pid,
                        name: (*name).to_owned(),
                        cmdline: "(exited)".to_owned(),
                        ..Default::default()
                    },
                );
            }
        }
        let mut out: Vec<OwnerCount> = counts
            .into_iter()
            .map(|((pid, name), count)| OwnerCount { pid, name: name.to_owned(), count })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
        out
    }

    #[cfg(test)]
    fn cookie_tuple(&self, cookie: u64) -> Option<&FourTuple> {
        self.by_cookie.get(&cookie).map(|&i| &self.slots[i as usize].tuple)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::num::NonZeroU32;

    use proptest::prelude::*;
    use rustc_hash::FxHashSet as HashSet;

    use super::*;
    use crate::model::{Os, Process};

    fn sock(state: State, lport: u16, pid: u32) -> Socket {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        Socket {
            pid: NonZeroU32::new(pid),
            cookie: u64::from(lport),
            ..Socket::new(Protocol::Tcp, state, (ip, lport), (ip, 7070))
        }
    }

    #[test]
    fn time_wait_keeps_the_owner_it_had_while_established() {
        let mut book = OwnerBook::new(65.0);
        let mut t0 = Snapshot::new(Os::Linux, "t0");
        t0.sockets = (40000..40010).map(|p| sock(State::Established, p, 42)).collect();
        t0.processes = vec![Process { pid: 42, name: "client".into(), ..Default::default() }];
        book.learn(&t0, 0.0);

        // Later the client has closed and exited: its sockets are TIME_WAIT with no owner.
        let mut t1 = Snapshot::new(Os::Linux, "t1");
        t1.sockets = (40000..40010).map(|p| sock(State::TimeWait, p, 0)).collect();
        t1.sockets.push(sock(State::TimeWait, 40099, 0)); // never seen open: stays unknown
        book.learn(&t1, 30.0);
        let owners = book.attribute_time_wait(&mut t1);
        assert_eq!(owners, vec![OwnerCount { pid: 42, name: "client".into(), count: 10 }]);
        assert_eq!(t1.sockets.iter().filter(|s| s.pid.is_some()).count(), 10);
        assert_eq!(t1.process(42).map(|p| p.cmdline.as_str()), Some("(exited)"));
    }

    #[test]
    fn memory_is_bounded_by_expiry() {
        let mut book = OwnerBook::new(65.0);
        let tuple = |p: u16| FourTuple {
            protocol: Protocol::Tcp,
            local: SocketAddr::new("10.0.0.1".parse().unwrap(), p),
            remote: "10.0.0.2:80".parse().unwrap(),
        };
        for i in 0..1000u16 {
            book.remember(tuple(i), u64::from(i) + 1, 7, "x", f64::from(i));
        }
        book.expire(1000.0);
        // Only entries seen in the last 65 s survive: 935..=999.
        assert_eq!(book.len(), 65);
        assert!(book.opener(&tuple(10), 11).is_none());
        assert_eq!(book.opener(&tuple(999), 1000).map(|o| o.pid), Some(7));
        // The cookies of the dropped tuples went with them, and only those.
        assert_eq!(book.by_cookie.len(), 65);
        // A cookie that moved to another tuple points at the new one; when the old tuple
        // expires, the moved cookie stays.
        book.remember(tuple(2000), 1000, 8, "y", 1000.0);
        book.expire(1064.5);
        assert_eq!(book.cookie_tuple(1000), Some(&tuple(2000)));
        assert_eq!(book.opener(&tuple(2000), 1000).map(|o| o.pid), Some(8));
        assert_eq!((book.len(), book.by_cookie.len()), (1, 1));

        // A cookie moved to another tuple and back points at the first again.
        book.remember(tuple(3000), 1000, 9, "z", 1065.0);
        assert_eq!(book.cookie_tuple(1000), Some(&tuple(3000)));
        book.remember(tuple(2000), 1000, 8, "y", 1066.0);
        assert_eq!(book.cookie_tuple(1000), Some(&tuple(2000)));
        assert_eq!(book.opener(&tuple(3000), 1000).map(|o| o.pid), Some(8));
        book.remember(tuple(3000), 1000, 9, "z", 1067.0);
        assert_eq!(book.opener(&tuple(2000), 1000).map(|o| o.pid), Some(9));
    }

    /// The book as it was before its slots (porthog 0.x, main bdb5111): two maps keyed by
    /// tuple and cookie. The slots must answer exactly as it does.
    struct Reference {
        ttl: f64,
        by_tuple: HashMap<FourTuple, Known>,
        by_cookie: HashMap<u64, FourTuple>,
    }

    /// A connection of the book: its opener, and the cookie last remembered with it while
    /// `by_cookie` still points that cookie at this tuple (0: none), so that a connection seen
    /// again, sample after sample, costs one lookup rather than two.
    #[derive(Debug, Clone)]
    struct Known {
        opener: Opener,
        cookie: u64,
    }

    impl Reference {
        /// `ttl`: how long to keep an entry after it was last seen, in seconds.
        fn new(ttl: f64) -> Reference {
            Reference { ttl, by_tuple: HashMap::default(), by_cookie: HashMap::default() }
        }

        /// Records that `pid` (`name`) holds the connection `tuple` at time `now`.
        fn remember(&mut self, tuple: FourTuple, cookie: u64, pid: u32, name: &str, now: f64) {
            let e = self.by_tuple.entry(tuple).or_insert_with(|| Known {
                opener: Opener { pid, name: name.to_owned(), seen: now },
                cookie: 0,
            });
            if e.opener.pid != pid {
                e.opener = Opener { pid, name: name.to_owned(), seen: now };
            }
            e.opener.seen = now;
            // Already `by_cookie[cookie] == tuple`: nothing to write.
            if cookie == 0 || e.cookie == cookie {
                return;
            }
            e.cookie = cookie;
            let previous = self.by_cookie.insert(cookie, tuple);
            // The cookie moved from another tuple: that one no longer holds it.
            if let Some(old) = previous.filter(|old| *old != tuple)
                && let Some(k) = self.by_tuple.get_mut(&old).filter(|k| k.cookie == cookie)
            {
                k.cookie = 0;
            }
        }

        /// Learns from a sample: every owned, connected TCP socket refreshes its opener.
        fn learn(&mut self, snapshot: &Snapshot, now: f64) {
            for s in
                snapshot.sockets.iter().filter(|s| s.protocol == Protocol::Tcp && s.is_connected())
            {
                if let Some(pid) = s.pid {
                    let name = snapshot.process(pid.get()).map_or("?", |p| p.name.as_str());
                    self.remember(FourTuple::of(s), s.cookie, pid.get(), name, now);
                } else if s.state == State::TimeWait {
                    // Still in TIME_WAIT: keep the opener alive until the socket is gone.
                    if let Some(e) = self.by_tuple.get_mut(&FourTuple::of(s)) {
                        e.opener.seen = now;
                    }
                }
            }
        }

        /// The opener of a connection, by cookie first (exact), else by 4-tuple.
        fn opener(&self, tuple: &FourTuple, cookie: u64) -> Option<&Opener> {
            let t = if cookie != 0 { self.by_cookie.get(&cookie).unwrap_or(tuple) } else { tuple };
            self.by_tuple.get(t).or_else(|| self.by_tuple.get(tuple)).map(|k| &k.opener)
        }

        /// Drops entries not seen for `ttl` seconds. Call once per sample or every few seconds.
        fn expire(&mut self, now: f64) {
            let ttl = self.ttl;
            // Every cookie points at a tuple of `by_tuple` (they are added together), so the
            // cookies to drop are those of the tuples dropped now: looked up in that small set
            // rather than in the whole book.
            let mut dropped: HashSet<FourTuple> = HashSet::default();
            self.by_tuple.retain(|t, e| {
                let keep = now - e.opener.seen <= ttl;
                if !keep {
                    dropped.insert(*t);
                }
                keep
            });
            if !dropped.is_empty() {
                self.by_cookie.retain(|_, t| !dropped.contains(t));
            }
        }

        /// Attributes the snapshot's ownerless TIME_WAIT sockets: sets their `pid` and adds the
        /// openers that exited to `processes`. Returns TIME_WAIT counts per opener, most first.
        fn attribute_time_wait(&self, snapshot: &mut Snapshot) -> Vec<OwnerCount> {
            let mut counts: HashMap<(u32, String), u64> = HashMap::default();
            for s in snapshot
                .sockets
                .iter_mut()
                .filter(|s| s.state == State::TimeWait && s.pid.is_none())
            {
                if let Some(o) = self.opener(&FourTuple::of(s), s.cookie) {
                    s.pid = std::num::NonZeroU32::new(o.pid);
                    *counts.entry((o.pid, o.name.clone())).or_default() += 1;
                }
            }
            for (pid, name) in counts.keys() {
                if snapshot.process(*pid).is_none() {
                    let at = snapshot.processes.partition_point(|p| p.pid < *pid);
                    snapshot.processes.insert(
                        at,
                        Process {
                            pid: *pid,
                            name: name.clone(),
                            cmdline: "(exited)".to_owned(),
                            ..Default::default()
                        },
                    );
                }
            }
            let mut out: Vec<OwnerCount> = counts
                .into_iter()
                .map(|((pid, name), count)| OwnerCount { pid, name, count })
                .collect();
            out.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
            out
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Remember {
            port: u16,
            cookie: u64,
            pid: u32,
        },
        /// A sample: (port, cookie, pid 0 = none, TIME_WAIT).
        Learn(Vec<(u16, u64, u32, bool)>),
        Expire,
        Tick,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u16..6, 0u64..5, 1u32..4).prop_map(|(port, cookie, pid)| Op::Remember {
                port,
                cookie,
                pid
            }),
            proptest::collection::vec((0u16..6, 0u64..5, 0u32..4, any::<bool>()), 0..8)
                .prop_map(Op::Learn),
            Just(Op::Expire),
            Just(Op::Tick),
        ]
    }

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            protocol: Protocol::Tcp,
            local: SocketAddr::new("10.0.0.1".parse().unwrap(), 40000 + port),
            remote: "10.0.0.2:80".parse().unwrap(),
        }
    }

    proptest! {
        /// Any sequence of samples, remembers and expiries: the book keeps the same openers,
        /// the same size, and attributes TIME_WAIT the same as the two-map book did.
        #[test]
        fn slots_answer_as_the_two_maps_did(ops in proptest::collection::vec(op(), 0..40)) {
            let (mut book, mut reference) = (OwnerBook::new(3.0), Reference::new(3.0));
            let mut now = 0.0;
            let names = |pid: u32| format!("p{pid}");
            for op in ops {
                match op {
                    Op::Remember { port, cookie, pid } => {
                        book.remember(tuple(port), cookie, pid, &names(pid), now);
                        reference.remember(tuple(port), cookie, pid, &names(pid), now);
                    }
                    Op::Learn(rows) => {
                        let mut snap = Snapshot::new(Os::Linux, "t");
                        snap.sockets = rows
                            .iter()
                            .map(|&(port, cookie, pid, tw)| {
                                let state = if tw { State::TimeWait } else { State::Established };
                                let t = tuple(port);
                                Socket {
                                    pid: NonZeroU32::new(pid),
                                    cookie,
                                    ..Socket::new(
                                        Protocol::Tcp,
                                        state,
                                        (t.local.ip(), t.local.port()),
                                        (t.remote.ip(), t.remote.port()),
                                    )
                                }
                            })
                            .collect();
                        // pid 3 has exited: "?" until a TIME_WAIT attribution adds it back.
                        snap.processes = (1..3)
                            .map(|pid| Process { pid, name: names(pid), ..Default::default() })
                            .collect();
                        book.learn(&snap, now);
                        reference.learn(&snap, now);
                        let mut other = snap.clone();
                        prop_assert_eq!(
                            book.attribute_time_wait(&mut snap),
                            reference.attribute_time_wait(&mut other)
                        );
                        prop_assert_eq!(&snap.sockets, &other.sockets);
                        prop_assert_eq!(&snap.processes, &other.processes);
                    }
                    Op::Expire => {
                        book.expire(now);
                        reference.expire(now);
                    }
                    Op::Tick => now += 1.0,
                }
                prop_assert_eq!(book.len(), reference.by_tuple.len());
                prop_assert_eq!(book.by_cookie.len(), reference.by_cookie.len());
                for port in 0..6 {
                    for cookie in 0..5 {
                        prop_assert_eq!(
                            book.opener(&tuple(port), cookie),
                            reference.opener(&tuple(port), cookie)
                        );
                    }
                }
            }
        }
    }
}
