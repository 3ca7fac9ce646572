//! The TCP connection lifecycle as the kernel's tracepoints show it, joined into what
//! `porthog trace` reports: the destination of each failed connect(), who opened each connection
//! (so its TIME_WAIT can be attributed after the process closed it or exited), new connections
//! per process and destination, and TIME_WAIT produced per process. Pure bookkeeping: the tracer
//! decodes the events and feeds them here in time order; nothing here reads the system.

use std::net::SocketAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use crate::model::{Protocol, Snapshot};
use crate::timeline::{Errno, FailureClass, FourTuple, OwnerBook, OwnerCount};

/// TCP states as `inet_sock_set_state` numbers them: the kernel's, as the model has them.
pub use crate::model::linux_tcp as tcp_state;

/// How long an opener is remembered after it was last seen: TIME_WAIT lasts 60 s on Linux.
pub const OWNER_TTL_S: f64 = 65.0;
/// How long a failing thread's last CLOSE->SYN_SENT stays joinable to its connect() error; the
/// two are microseconds apart in the same thread.
const JOIN_WINDOW_S: f64 = 5.0;
/// Above this many live entries, open connections not heard of for `OWNER_TTL_S` are dropped
/// (their close event was lost); below it they are kept however long they live.
const MAX_CONNECTIONS: usize = 1 << 20;

/// A process as the tracer resolved it from an event's pid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Who {
    /// Thread-group id (the process).
    pub pid: u32,
    /// The thread that ran the event: joins a syscall's exit to its socket's transitions.
    pub tid: u32,
    pub name: Arc<str>,
    /// The inode of the thread's network namespace when the event ran (None: not known).
    pub netns: Option<u64>,
}

/// The system call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    Connect,
    Bind,
}

impl Call {
    pub fn as_str(self) -> &'static str {
        match self {
            Call::Connect => "connect",
            Call::Bind => "bind",
        }
    }
}

/// One decoded kernel event, with the time it happened (monotonic seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: f64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `sock:inet_sock_set_state` CLOSE -> SYN_SENT. `tcp_v4_connect` sets it in the connecting
    /// thread, before `inet_hash_connect` picks the source port: the destination is known, the
    /// source port is still 0.
    Connecting { skaddr: u64, who: Who, remote: SocketAddr },
    /// `sock:inet_sock_set_state` into CLOSE, with the 4-tuple at that moment. From FIN_WAIT1,
    /// FIN_WAIT2 or CLOSING it is the full socket handing over to its TIME_WAIT socket
    /// (`tcp_time_wait` then `tcp_done`); it often runs in softirq, where the pid means nothing.
    Closed { skaddr: u64, from: u8, tuple: FourTuple },
    /// `tcp:tcp_destroy_sock`: the full socket is freed; carries the socket cookie.
    Destroyed { skaddr: u64, cookie: u64 },
    /// `syscalls:sys_exit_connect` or `sys_exit_bind` returning `ret` (< 0), in the failing
    /// thread; for bind(), the port it asked for when the tracer could read it.
    CallFailed { who: Who, call: Call, ret: i64, bind_port: Option<u16> },
}

/// A failed allocation, joined to its destination where the kernel showed one.
#[derive(Debug, Clone, PartialEq)]
pub struct Caught {
    pub time: f64,
    pub who: Who,
    pub call: Call,
    pub errno: Errno,
    pub protocol: Protocol,
    pub remote: Option<SocketAddr>,
    pub class: FailureClass,
}

/// A connection seen opening, until its socket is freed.
#[derive(Debug, Clone)]
struct Connection {
    who: Who,
    /// Last time an event showed it.
    seen: f64,
    /// Set when it went into TIME_WAIT: kept until `tcp_destroy_sock` brings the cookie.
    time_wait: Option<FourTuple>,
}

/// The last CLOSE->SYN_SENT of a thread.
#[derive(Debug, Clone)]
struct LastConnect {
    remote: SocketAddr,
    time: f64,
}

/// Failures per (pid, name, destination, call, errno).
type FailureKey = (u32, Arc<str>, Option<SocketAddr>, Call, Errno, FailureClass);

/// The join of lifecycle events. Memory is bounded: a connection's entry goes at CLOSE (or at
/// destroy, for one that entered TIME_WAIT), a thread's last connect after `JOIN_WINDOW_S`, and
/// the owner book forgets openers `OWNER_TTL_S` after they were last seen.
#[derive(Debug)]
pub struct Lifecycle {
    connections: HashMap<u64, Connection>,
    /// Connections already open when the trace began (from a snapshot): the socket address is
    /// unknown, so they are matched by 4-tuple when they enter TIME_WAIT.
    preexisting: HashMap<FourTuple, Who>,
    last_connect: HashMap<u32, LastConnect>,
    book: OwnerBook,
    failures: HashMap<FailureKey, u64>,
    opened: HashMap<(u32, Arc<str>, SocketAddr), u64>,
    time_wait: HashMap<(u32, Arc<str>), u64>,
    /// Live-connection entries dropped because the table was full (their close was lost).
    pub forgotten: u64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle::new(OwnerBook::new(OWNER_TTL_S))
    }
}

impl Lifecycle {
    /// Starts from `book` (which may already know openers, e.g. from a snapshot).
    pub fn new(book: OwnerBook) -> Lifecycle {
        Lifecycle {
            connections: HashMap::default(),
            preexisting: HashMap::default(),
            last_connect: HashMap::default(),
            book,
            failures: HashMap::default(),
            opened: HashMap::default(),
            time_wait: HashMap::default(),
            forgotten: 0,
        }
    }

    /// Learns the connections open in `snapshot` (taken as the trace begins) and who holds them,
    /// so that those closing during the trace are attributed too, however long after.
    pub fn learn_open(&mut self, snapshot: &Snapshot) {
        for s in snapshot.sockets.iter().filter(|s| s.protocol == Protocol::Tcp && s.is_connected())
        {
            if let Some(pid) = s.pid {
                let name = snapshot.process(pid.get()).map_or("?", |p| p.name.as_str());
                let who =
                    Who { pid: pid.get(), tid: pid.get(), name: Arc::from(name), netns: None };
                self.preexisting.insert(FourTuple::of(s), who);
            }
        }
    }

    /// Applies one event (events must come in time order). Returns the failure it completes.
    pub fn apply(&mut self, event: Event) -> Option<Caught> {
        let now = event.time;
        match event.kind {
            EventKind::Connecting { skaddr, who, remote } => {
                *self.opened.entry((who.pid, who.name.clone(), remote)).or_default() += 1;
                self.last_connect.insert(who.tid, LastConnect { remote, time: now });
                // A reused address means the old socket was freed and its destroy event lost.
                self.connections.insert(skaddr, Connection { who, seen: now, time_wait: None });
                None
            }
            EventKind::Closed { skaddr, from, tuple } => {
                let entering_time_wait = matches!(
                    from,
                    tcp_state::FIN_WAIT1 | tcp_state::FIN_WAIT2 | tcp_state::CLOSING
                );
                if entering_time_wait && let Some(c) = self.connections.get_mut(&skaddr) {
                    c.seen = now;
                    c.time_wait = Some(tuple);
                    let who = &c.who;
                    self.book.remember(tuple, 0, who.pid, &who.name, now);
                    *self.time_wait.entry((who.pid, who.name.clone())).or_default() += 1;
                } else if entering_time_wait && let Some(who) = self.preexisting.remove(&tuple) {
                    self.book.remember(tuple, 0, who.pid, &who.name, now);
                    *self.time_wait.entry((who.pid, who.name)).or_default() += 1;
                } else {
                    // Reset, refused, or closed after the peer closed first: no TIME_WAIT here.
                    self.connections.remove(&skaddr);
                }
                None
            }
            EventKind::Destroyed { skaddr, cookie } => {
                if let Some(Connection { who, time_wait: Some(tuple), .. }) =
                    self.connections.remove(&skaddr)
                {
                    // The TIME_WAIT socket copies the cookie only if one was generated before
                    // (`inet_twsk_alloc`); the 4-tuple stays the key that always works.
                    self.book.remember(tuple, cookie, who.pid, &who.name, now);
                }
                None
            }
            EventKind::CallFailed { who, call, ret, bind_port } => {
                let errno = Errno::from_ret(ret)?;
                let class = FailureClass::of(call.as_str(), errno, bind_port);
                let (protocol, remote) = match (call, errno) {
                    // connect() sets SYN_SENT before inet_hash_connect fails: the thread's last
                    // CLOSE->SYN_SENT carries the destination that had no port left.
                    (Call::Connect, Errno::AddrNotAvail) => {
                        let joined = self
                            .last_connect
                            .remove(&who.tid)
                            .filter(|c| now - c.time <= JOIN_WINDOW_S)
                            .map(|c| c.remote);
                        if let Some(remote) = joined
                            && let Some(n) =
                                self.opened.get_mut(&(who.pid, who.name.clone(), remote))
                        {
                            // It never got a port: not a new connection.
                            *n = n.saturating_sub(1);
                        }
                        (Protocol::Tcp, joined)
                    }
                    // inet_dgram_connect returns EAGAIN when UDP autobind finds no port.
                    (Call::Connect, Errno::Again) => (Protocol::Udp, None),
                    // The event does not say the socket's protocol; bind() failures are TCP's
                    // in the cases porthog models (bind-before-connect).
                    _ => (Protocol::Tcp, None),
                };
                *self
                    .failures
                    .entry((who.pid, who.name.clone(), remote, call, errno, class))
                    .or_default() += 1;
                Some(Caught { time: now, who, call, errno, protocol, remote, class })
            }
        }
    }

    /// Forgets what can no longer matter. Call every second or so with the current time.
    pub fn sweep(&mut self, now: f64) {
        self.last_connect.retain(|_, c| now - c.time <= JOIN_WINDOW_S);
        // A TIME_WAIT entry whose destroy event was lost.
        self.connections.retain(|_, c| c.time_wait.is_none() || now - c.seen <= OWNER_TTL_S);
        if self.connections.len() > MAX_CONNECTIONS {
            let before = self.connections.len();
            self.connections.retain(|_, c| now - c.seen <= OWNER_TTL_S);
            self.forgotten += (before - self.connections.len()) as u64;
        }
        self.book.expire(now);
    }

    /// Who opened which connection, for attributing TIME_WAIT in a snapshot.
    pub fn book(&self) -> &OwnerBook {
        &self.book
    }

    /// Connections being followed now (for tests and memory checks).
    pub fn tracked(&self) -> usize {
        self.connections.len() + self.last_connect.len()
    }

    /// Failures per process, destination and errno, most first.
    pub fn failures(&self) -> Vec<FailureCount> {
        let mut out: Vec<FailureCount> = self
            .failures
            .iter()
            .map(|((pid, name, remote, call, errno, class), &count)| FailureCount {
                pid: *pid,
                name: name.to_string(),
                remote: *remote,
                call: call.as_str().to_owned(),
                errno: *errno,
                class: *class,
                count,
            })
            .collect();
        out.sort_by(|a, b| {
            b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)).then(a.remote.cmp(&b.remote))
        });
        out
    }

    /// New connections (connect() calls that got a source port) per process and destination
    /// over `duration_s`, most first.
    pub fn new_connections(&self, duration_s: f64) -> Vec<ConnectionRate> {
        let mut out: Vec<ConnectionRate> = self
            .opened
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|((pid, name, remote), &count)| ConnectionRate {
                pid: *pid,
                name: name.to_string(),
                remote: *remote,
                count,
                per_second: if duration_s > 0.0 { count as f64 / duration_s } else { 0.0 },
            })
            .collect();
        out.sort_by(|a, b| {
            b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)).then(a.remote.cmp(&b.remote))
        });
        out
    }

    /// TIME_WAIT sockets produced per process (connections it closed first), most first.
    pub fn time_wait_produced(&self) -> Vec<OwnerCount> {
        let mut out: Vec<OwnerCount> = self
            .time_wait
            .iter()
            .map(|((pid, name), &count)| OwnerCount { pid: *pid, name: name.to_string(), count })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.pid.cmp(&b.pid)));
        out
    }
}

/// Failures of one process to one destination with one errno.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FailureCount {
    pub pid: u32,
    pub name: String,
    /// The destination, when the kernel showed one (connect() over TCP).
    pub remote: Option<SocketAddr>,
    /// "connect" or "bind".
    pub call: String,
    pub errno: Errno,
    pub class: FailureClass,
    pub count: u64,
}

/// New connections of one process to one destination.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnectionRate {
    pub pid: u32,
    pub name: String,
    pub remote: SocketAddr,
    pub count: u64,
    pub per_second: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Os, Snapshot, Socket, State};
    use tcp_state::*;

    const SERVER: &str = "127.0.0.1:7070";

    fn who(pid: u32, tid: u32) -> Who {
        Who { pid, tid, name: Arc::from("client"), netns: None }
    }

    fn ev(time: f64, kind: EventKind) -> Event {
        Event { time, kind }
    }

    fn tuple(lport: u16) -> FourTuple {
        FourTuple {
            protocol: Protocol::Tcp,
            local: SocketAddr::new("127.0.0.1".parse().unwrap(), lport),
            remote: SERVER.parse().unwrap(),
        }
    }

    fn connecting(time: f64, skaddr: u64, pid: u32, tid: u32) -> Event {
        ev(
            time,
            EventKind::Connecting { skaddr, who: who(pid, tid), remote: SERVER.parse().unwrap() },
        )
    }

    /// Success: open, close first (TIME_WAIT), destroy. The opener is remembered by tuple and
    /// by cookie, and the entry is gone.
    #[test]
    fn a_connection_closed_first_is_time_wait_of_its_opener() {
        let mut l = Lifecycle::default();
        assert_eq!(l.apply(connecting(1.0, 0xa0, 42, 43)), None);
        // softirq: the pid of the event is someone else's, and must not matter.
        l.apply(ev(1.5, EventKind::Closed { skaddr: 0xa0, from: FIN_WAIT2, tuple: tuple(40001) }));
        l.apply(ev(1.6, EventKind::Destroyed { skaddr: 0xa0, cookie: 777 }));
        assert_eq!(l.connections.len(), 0, "the entry goes at destroy");
        let o = l.book().opener(&tuple(40001), 777).unwrap();
        assert_eq!((o.pid, o.name.as_str()), (42, "client"));
        assert_eq!(
            l.time_wait_produced(),
            vec![OwnerCount { pid: 42, name: "client".into(), count: 1 }]
        );
        let rates = l.new_connections(2.0);
        assert_eq!((rates[0].pid, rates[0].count, rates[0].per_second), (42, 1, 0.5));
        assert!(l.failures().is_empty());

        // The snapshot after the process exited: its TIME_WAIT socket is attributed to it.
        let mut snap = Snapshot::new(Os::Linux, "test");
        let ip = "127.0.0.1".parse().unwrap();
        snap.sockets.push(Socket::new(Protocol::Tcp, State::TimeWait, (ip, 40001), (ip, 7070)));
        let owners = l.book().attribute_time_wait(&mut snap);
        assert_eq!(owners, vec![OwnerCount { pid: 42, name: "client".into(), count: 1 }]);
    }

    /// Failure: tcp_v4_connect emits CLOSE->SYN_SENT with the destination, then SYN_SENT->CLOSE
    /// with source port 0, then connect() returns -99 in the same thread.
    #[test]
    fn eaddrnotavail_is_joined_to_the_threads_destination() {
        let mut l = Lifecycle::default();
        // Another thread of another process connects in between: it must not be taken.
        l.apply(connecting(1.0, 0xb0, 42, 43));
        l.apply(ev(
            1.1,
            EventKind::Connecting {
                skaddr: 0xc0,
                who: who(50, 50),
                remote: "10.0.0.9:443".parse().unwrap(),
            },
        ));
        l.apply(ev(1.2, EventKind::Closed { skaddr: 0xb0, from: SYN_SENT, tuple: tuple(0) }));
        let caught = l.apply(ev(
            1.3,
            EventKind::CallFailed {
                who: who(42, 43),
                call: Call::Connect,
                ret: -99,
                bind_port: None,
            },
        ));
        let caught = caught.expect("a failure");
        assert_eq!(caught.remote, Some(SERVER.parse().unwrap()));
        assert_eq!(
            (caught.who.pid, caught.errno, caught.protocol),
            (42, Errno::AddrNotAvail, Protocol::Tcp)
        );
        // The refused attempt is no new connection; the other process's connect is.
        let rates = l.new_connections(1.0);
        assert_eq!(rates.len(), 1);
        assert_eq!((rates[0].pid, rates[0].count), (50, 1));
        assert_eq!(l.failures()[0].count, 1);
        assert_eq!(l.time_wait_produced(), vec![]);
        assert!(!l.connections.contains_key(&0xb0), "the failed socket is forgotten");

        // A second failure of the same thread without a new SYN_SENT has no known destination.
        let again = l.apply(ev(
            1.4,
            EventKind::CallFailed {
                who: who(42, 43),
                call: Call::Connect,
                ret: -99,
                bind_port: None,
            },
        ));
        assert_eq!(again.unwrap().remote, None);
    }

    #[test]
    fn udp_autobind_and_bind_failures() {
        let mut l = Lifecycle::default();
        let udp = l.apply(ev(
            1.0,
            EventKind::CallFailed {
                who: who(7, 7),
                call: Call::Connect,
                ret: -11,
                bind_port: None,
            },
        ));
        assert_eq!(udp.map(|c| (c.protocol, c.errno)), Some((Protocol::Udp, Errno::Again)));
        let bind = l.apply(ev(
            1.0,
            EventKind::CallFailed {
                who: who(7, 7),
                call: Call::Bind,
                ret: -98,
                bind_port: Some(0),
            },
        ));
        assert_eq!(
            bind.map(|c| (c.call, c.errno, c.class)),
            Some((Call::Bind, Errno::AddrInUse, FailureClass::Exhaustion))
        );
        // bind() to a fixed port that is taken, and to an address that is not local.
        let taken = l.apply(ev(
            1.1,
            EventKind::CallFailed {
                who: who(7, 7),
                call: Call::Bind,
                ret: -98,
                bind_port: Some(8080),
            },
        ));
        assert_eq!(taken.map(|c| c.class), Some(FailureClass::PortTaken));
        let nonlocal = l.apply(ev(
            1.2,
            EventKind::CallFailed {
                who: who(7, 7),
                call: Call::Bind,
                ret: -99,
                bind_port: Some(0),
            },
        ));
        assert_eq!(
            nonlocal.map(|c| (c.errno, c.class)),
            Some((Errno::AddrNotAvail, FailureClass::NotLocalAddress))
        );
        // Other errors are not port exhaustion (the kernel filter lets only these through, but
        // a kernel without filters sends everything).
        assert_eq!(
            l.apply(ev(
                1.0,
                EventKind::CallFailed {
                    who: who(7, 7),
                    call: Call::Connect,
                    ret: -111,
                    bind_port: None
                }
            )),
            None
        );
        assert_eq!(l.failures().len(), 4);
    }

    /// A connection reset (or closed after the peer closed) leaves no TIME_WAIT and no entry.
    #[test]
    fn other_closes_leave_nothing() {
        let mut l = Lifecycle::default();
        l.apply(connecting(1.0, 0xd0, 42, 42));
        l.apply(ev(
            2.0,
            EventKind::Closed { skaddr: 0xd0, from: ESTABLISHED, tuple: tuple(40002) },
        ));
        assert_eq!(l.tracked(), 1, "only the thread's last connect, until the join window ends");
        l.sweep(10.0);
        assert_eq!(l.tracked(), 0);
        assert!(l.book().is_empty());
        // Events about sockets never seen opening (another namespace, or before the trace).
        l.apply(ev(11.0, EventKind::Closed { skaddr: 0xe0, from: FIN_WAIT1, tuple: tuple(40003) }));
        l.apply(ev(11.0, EventKind::Destroyed { skaddr: 0xe0, cookie: 1 }));
        assert_eq!(l.tracked(), 0);
        assert!(l.time_wait_produced().is_empty());
    }

    /// A connection open before the trace began, closed first an hour later: still attributed.
    #[test]
    fn connections_open_before_the_trace_are_matched_by_tuple() {
        let mut snap = Snapshot::new(Os::Linux, "start");
        let ip = "127.0.0.1".parse().unwrap();
        snap.sockets.push(Socket {
            pid: std::num::NonZeroU32::new(42),
            ..Socket::new(Protocol::Tcp, State::Established, (ip, 40005), (ip, 7070))
        });
        snap.processes.push(crate::model::Process {
            pid: 42,
            name: "db-client".into(),
            ..Default::default()
        });
        let mut l = Lifecycle::default();
        l.learn_open(&snap);
        l.sweep(3600.0);
        l.apply(ev(
            3600.0,
            EventKind::Closed { skaddr: 0xf0, from: FIN_WAIT1, tuple: tuple(40005) },
        ));
        let o = l.book().opener(&tuple(40005), 0).unwrap();
        assert_eq!((o.pid, o.name.as_str()), (42, "db-client"));
        assert_eq!(l.time_wait_produced()[0].count, 1);
        assert!(l.preexisting.is_empty(), "matched once, then forgotten");
    }

    /// Memory stays bounded over a long run: openers expire 65 s after their TIME_WAIT began.
    #[test]
    fn memory_is_bounded_over_time() {
        let mut l = Lifecycle::default();
        for i in 0..10_000u64 {
            let t = i as f64 * 0.01;
            l.apply(connecting(t, i, 42, 42));
            l.apply(ev(
                t,
                EventKind::Closed { skaddr: i, from: FIN_WAIT2, tuple: tuple(i as u16) },
            ));
            l.apply(ev(t, EventKind::Destroyed { skaddr: i, cookie: i + 1 }));
            if i % 100 == 0 {
                l.sweep(t);
            }
        }
        l.sweep(100.0);
        assert_eq!(l.connections.len(), 0);
        assert!(l.book().len() <= 6501, "{}", l.book().len());
        l.sweep(200.0);
        assert!(l.book().is_empty());
        assert_eq!(l.time_wait_produced()[0].count, 10_000);
    }
}
