//! The tracer's logic, without the kernel: records read from the rings are kept until their
//! order is certain, then applied in time order to the task table and the lifecycle join.
//! It owns no ring, clock or file, so the tests drive it with records they make.

use porthog_core::Protocol;
use porthog_core::lifecycle::{Call, Caught, Event, EventKind, Lifecycle, Who, tcp_state};
use porthog_core::timeline::{Errno, FourTuple};
use porthog_core::tracepoint::{Decoded, Decoder};

use super::ring::Record;
use super::tasks::{ProcSource, TaskRecord, Tasks};

/// Threads whose last bind() port is remembered at most (see `Pending::BindPort`).
const MAX_BIND_PORTS: usize = 1 << 16;

/// A record read from a ring, kept until its order is certain.
pub enum Pending {
    Sample {
        pid: u32,
        tid: u32,
        decoded: Decoded,
    },
    Task(TaskRecord),
    /// A thread entered bind() asking for this port (None: unreadable).
    BindPort {
        tid: u32,
        port: Option<u16>,
    },
}

/// Keeps decoded records until their order is certain, then applies them.
pub struct Tracer<P: ProcSource> {
    pub decoder: Decoder,
    pub tasks: Tasks<P>,
    pub lifecycle: Lifecycle,
    /// Records read but not yet applied, with their time in ns.
    pending: Vec<(u64, Pending)>,
    /// Events the kernel dropped (its lost records), and how many of them were handed over.
    pub lost: u64,
    lost_shown: u64,
    /// The newest time of the previous round of reads, and of this one (ns).
    watermark: u64,
    round_max: u64,
    /// The port each thread's last bind() asked for, until its exit is applied.
    bind_ports: std::collections::HashMap<u32, Option<u16>>,
}

impl<P: ProcSource> Tracer<P> {
    pub fn new(decoder: Decoder, tasks: Tasks<P>, lifecycle: Lifecycle) -> Tracer<P> {
        Tracer {
            decoder,
            tasks,
            lifecycle,
            pending: Vec::new(),
            lost: 0,
            lost_shown: 0,
            watermark: 0,
            round_max: 0,
            bind_ports: Default::default(),
        }
    }

    /// Takes one record read from a ring in this round.
    pub fn take(&mut self, record: Record<'_>) {
        match record {
            Record::Sample { pid, tid, time, raw } => {
                self.round_max = self.round_max.max(time);
                match self.decoder.decode(raw) {
                    // Read at once: the sooner, the likelier the caller's buffer is unchanged.
                    Some(Decoded::EnterBind { umyaddr }) => {
                        let port = self.tasks.sockaddr_port(pid, umyaddr);
                        self.push(time, Pending::BindPort { tid, port });
                    }
                    Some(decoded) => self.push(time, Pending::Sample { pid, tid, decoded }),
                    None => {}
                }
            }
            Record::Task { time, record } => self.push(time, Pending::Task(record)),
            Record::Lost(n) => self.lost += n,
            // Records porthog did not ask for, or malformed: nothing to learn from them.
            Record::Other(_) => {}
        }
    }

    /// Keeps a decoded record of time `time` (ns) until its order is certain.
    pub fn push(&mut self, time: u64, pending: Pending) {
        self.round_max = self.round_max.max(time);
        self.pending.push((time, pending));
    }

    /// Ends a round of reads (every ring read once) and returns the failures whose order is
    /// now certain. Records of one CPU are in order; across CPUs, one written after the
    /// previous round started cannot be older than what that round saw. So everything up to
    /// the previous round's newest time is complete (perf's "finished round"). When
    /// `last`, the rings are disabled and drained: everything is complete.
    pub fn end_round(&mut self, last: bool) -> Vec<Caught> {
        let upto = if last { u64::MAX } else { self.watermark };
        let caught = self.flush(upto);
        self.watermark = self.watermark.max(self.round_max);
        caught
    }

    /// Events lost since the last call, if any.
    pub fn new_lost(&mut self) -> Option<u64> {
        let new = self.lost - self.lost_shown;
        self.lost_shown = self.lost;
        (new > 0).then_some(new)
    }

    /// Applies the pending records up to `upto` (ns) in time order; returns the failures.
    fn flush(&mut self, upto: u64) -> Vec<Caught> {
        // Stable: records of one thread with equal times keep their order.
        self.pending.sort_by_key(|(t, _)| *t);
        let n = self.pending.partition_point(|(t, _)| *t <= upto);
        let mut caught = Vec::new();
        for (time, pending) in self.pending.drain(..n) {
            let secs = time as f64 / 1e9;
            match pending {
                Pending::Task(record) => self.tasks.apply(record, secs),
                Pending::BindPort { tid, port } => {
                    // Only failed binds bring an exit (the kernel filter): bound the memory
                    // that successful ones leave, by forgetting all once there are many.
                    if self.bind_ports.len() >= MAX_BIND_PORTS {
                        self.bind_ports.clear();
                    }
                    self.bind_ports.insert(tid, port);
                }
                Pending::Sample { pid, tid, decoded } => {
                    let bind_port = match decoded {
                        Decoded::Exit { call: Call::Bind, .. } => {
                            self.bind_ports.remove(&tid).flatten()
                        }
                        _ => None,
                    };
                    if let Some(kind) =
                        event_kind(decoded, pid, tid, secs, bind_port, &mut self.tasks)
                    {
                        caught.extend(self.lifecycle.apply(Event { time: secs, kind }));
                    }
                }
            }
        }
        caught
    }

    /// Drops what lost records left behind (tasks and connections not heard of for long).
    pub fn sweep(&mut self, now: f64) {
        self.lifecycle.sweep(now);
        self.tasks.sweep(now);
    }
}

/// Turns a decoded record into a lifecycle event; None for what porthog does not follow, and
/// for events of threads outside the watched namespace. Transitions other than CLOSE->SYN_SENT
/// are kept whatever their pid: they run in softirq, and are joined by socket address to an
/// opener that passed this filter.
fn event_kind<P: ProcSource>(
    decoded: Decoded,
    pid: u32,
    tid: u32,
    now: f64,
    bind_port: Option<u16>,
    tasks: &mut Tasks<P>,
) -> Option<EventKind> {
    let who = |tasks: &mut Tasks<P>| {
        tasks.resolve(pid, tid, now).map(|r| Who { pid, tid, name: r.name, netns: Some(r.netns) })
    };
    match decoded {
        Decoded::Exit { call, ret } => {
            // The kernel filter may be missing: check again.
            Errno::from_ret(ret)?;
            Some(EventKind::CallFailed { who: who(tasks)?, call, ret, bind_port })
        }
        Decoded::SetState {
            skaddr,
            old: tcp_state::CLOSE,
            new: tcp_state::SYN_SENT,
            remote,
            ..
        } => Some(EventKind::Connecting { skaddr, who: who(tasks)?, remote }),
        Decoded::SetState { skaddr, old, new: tcp_state::CLOSE, local, remote } => {
            Some(EventKind::Closed {
                skaddr,
                from: old,
                tuple: FourTuple { protocol: Protocol::Tcp, local, remote },
            })
        }
        Decoded::SetState { .. } => None,
        Decoded::Destroy { skaddr, cookie } => Some(EventKind::Destroyed { skaddr, cookie }),
        Decoded::EnterBind { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use porthog_core::lifecycle::Call;
    use porthog_core::timeline::FailureClass;
    use porthog_core::tracepoint::parse;

    use super::*;

    const WATCHED: u64 = 4026532500;
    const HOST: u64 = 4026531840;
    const EXIT_CONNECT: &str =
        include_str!("../../../../porthog-core/tests/fixtures/tracefs/sys_exit_connect.format");
    const SET_STATE: &str =
        include_str!("../../../../porthog-core/tests/fixtures/tracefs/inet_sock_set_state.format");
    const DESTROY: &str =
        include_str!("../../../../porthog-core/tests/fixtures/tracefs/tcp_destroy_sock.format");
    const ENTER_BIND: &str =
        include_str!("../../../../porthog-core/tests/fixtures/tracefs/sys_enter_bind.format");

    /// Tasks that existed before the trace: pid -> (netns, name).
    struct FakeProc(HashMap<u32, (u64, &'static str)>);

    impl ProcSource for FakeProc {
        fn netns(&self, pid: u32, _tid: u32) -> Option<u64> {
            self.0.get(&pid).map(|t| t.0)
        }
        fn comm(&self, pid: u32) -> Option<String> {
            self.0.get(&pid).map(|t| t.1.to_owned())
        }
        fn container(&self, _pid: u32) -> Option<String> {
            None
        }
        fn alive(&self, pid: u32, _tid: u32) -> bool {
            self.0.contains_key(&pid)
        }
        /// The "memory" of pid 10: address N holds a sockaddr with port N (else unreadable).
        fn sockaddr_port(&self, pid: u32, addr: u64) -> Option<u16> {
            (pid == 10).then_some(addr as u16)
        }
    }

    fn tracer() -> Tracer<FakeProc> {
        tracer_of(Some(WATCHED))
    }

    /// A tracer keeping the namespace `watched` (None: every namespace).
    fn tracer_of(watched: Option<u64>) -> Tracer<FakeProc> {
        let bind =
            EXIT_CONNECT.replace("sys_exit_connect", "sys_exit_bind").replace("2229", "2237");
        let decoder = Decoder::new(
            &parse(EXIT_CONNECT).unwrap(),
            &parse(&bind).unwrap(),
            &parse(SET_STATE).unwrap(),
            &parse(DESTROY).unwrap(),
        )
        .and_then(|d| d.with_enter_bind(&parse(ENTER_BIND)?))
        .unwrap();
        let proc = FakeProc(HashMap::from([(10, (WATCHED, "client")), (20, (HOST, "other"))]));
        Tracer::new(decoder, Tasks::new(watched, proc), Lifecycle::default())
    }

    /// A raw `sys_exit_connect` record as the kernel lays it out (offsets of the fixture).
    fn exit_connect(ret: i64) -> Vec<u8> {
        let mut r = vec![0u8; 24];
        r[0..2].copy_from_slice(&2229u16.to_ne_bytes());
        r[16..24].copy_from_slice(&ret.to_ne_bytes());
        r
    }

    fn connecting(skaddr: u64, remote: &str) -> Pending {
        Pending::Sample {
            pid: 10,
            tid: 10,
            decoded: Decoded::SetState {
                skaddr,
                old: tcp_state::CLOSE,
                new: tcp_state::SYN_SENT,
                local: "0.0.0.0:0".parse().unwrap(),
                remote: remote.parse().unwrap(),
            },
        }
    }

    const T: u64 = 2_000_000_000;

    /// The connect() failure of one CPU is read before the CLOSE->SYN_SENT of another CPU
    /// that came first: neither is applied until a later round proves the order, and then the
    /// failure is joined to its destination.
    #[test]
    fn records_of_two_cpus_are_applied_in_time_order_once_complete() {
        let mut t = tracer();
        let failed = exit_connect(-99);
        t.take(Record::Sample { pid: 10, tid: 10, time: T + 1_000, raw: &failed });
        t.push(T, connecting(0xffff_0001, "10.0.0.5:443"));
        assert!(t.end_round(false).is_empty(), "the first round proves nothing complete");
        let caught = t.end_round(false);
        assert_eq!(caught.len(), 1);
        let c = &caught[0];
        assert_eq!((c.who.pid, &*c.who.name, c.call), (10, "client", Call::Connect));
        assert_eq!(c.errno, Errno::AddrNotAvail);
        assert_eq!(c.remote, Some("10.0.0.5:443".parse::<SocketAddr>().unwrap()));
        assert_eq!(c.time, 2.000001);
    }

    /// Issue 7: a failed bind() is classified by the port its `sys_enter_bind` asked for,
    /// read from the process as the record is taken; unreadable is "unknown".
    #[test]
    fn bind_failures_are_classified_by_the_port_asked_for() {
        let mut t = tracer();
        let enter = |addr: u64| {
            let mut r = vec![0u8; 40];
            r[0..2].copy_from_slice(&2238u16.to_ne_bytes());
            r[24..32].copy_from_slice(&addr.to_ne_bytes());
            r
        };
        let mut exit_bind = exit_connect(-98);
        exit_bind[0..2].copy_from_slice(&2237u16.to_ne_bytes());
        let (any, fixed) = (enter(0), enter(8080));
        t.take(Record::Sample { pid: 10, tid: 10, time: T, raw: &any });
        t.take(Record::Sample { pid: 10, tid: 10, time: T + 1, raw: &exit_bind });
        t.take(Record::Sample { pid: 10, tid: 10, time: T + 2, raw: &fixed });
        t.take(Record::Sample { pid: 10, tid: 10, time: T + 3, raw: &exit_bind });
        // No enter seen for this one: the port is unknown.
        t.take(Record::Sample { pid: 10, tid: 10, time: T + 4, raw: &exit_bind });
        let classes: Vec<FailureClass> = t.end_round(true).iter().map(|c| c.class).collect();
        assert_eq!(
            classes,
            [FailureClass::Exhaustion, FailureClass::PortTaken, FailureClass::Unknown]
        );
    }

    #[test]
    fn the_last_round_applies_everything() {
        let mut t = tracer();
        let failed = exit_connect(-99);
        t.take(Record::Sample { pid: 10, tid: 10, time: T, raw: &failed });
        assert_eq!(t.end_round(true).len(), 1);
        assert!(t.end_round(true).is_empty(), "each record is applied once");
    }

    #[test]
    fn other_namespaces_and_other_errnos_are_not_failures() {
        let mut t = tracer();
        let failed = exit_connect(-99);
        let refused = exit_connect(-111);
        t.take(Record::Sample { pid: 20, tid: 20, time: T, raw: &failed });
        t.take(Record::Sample { pid: 10, tid: 10, time: T + 1, raw: &refused });
        t.take(Record::Sample { pid: 10, tid: 10, time: T + 2, raw: &[1, 2, 3] });
        assert!(t.end_round(true).is_empty());
        assert_eq!(t.tasks.unresolved, 0, "pid 20 was placed, in another namespace");
    }

    /// `--all-netns`: every namespace's failures are kept, each with the inode of the failing
    /// thread's namespace; a task gone before it could be placed is counted, not guessed.
    #[test]
    fn every_namespace_keeps_each_failure_with_its_namespace() {
        let mut t = tracer_of(None);
        let failed = exit_connect(-99);
        t.take(Record::Sample { pid: 10, tid: 10, time: T, raw: &failed });
        t.take(Record::Sample { pid: 20, tid: 20, time: T + 1, raw: &failed });
        t.take(Record::Sample { pid: 30, tid: 30, time: T + 2, raw: &failed });
        let caught: Vec<(u32, Option<u64>)> =
            t.end_round(true).iter().map(|c| (c.who.pid, c.who.netns)).collect();
        assert_eq!(caught, [(10, Some(WATCHED)), (20, Some(HOST))]);
        assert_eq!(t.tasks.unresolved, 1, "pid 30 exited unseen: a gap");
    }

    #[test]
    fn lost_counts_are_handed_over_once() {
        let mut t = tracer();
        assert_eq!(t.new_lost(), None);
        t.take(Record::Lost(5));
        t.take(Record::Lost(2));
        assert_eq!(t.new_lost(), Some(7));
        assert_eq!(t.new_lost(), None);
        t.take(Record::Lost(1));
        assert_eq!((t.new_lost(), t.lost), (Some(1), 8));
    }

    /// A client forked during the trace is named from the records, in order with its events.
    #[test]
    fn task_records_name_the_threads_of_later_events() {
        let mut t = tracer();
        let failed = exit_connect(-98);
        t.take(Record::Task {
            time: T,
            record: TaskRecord::Fork { pid: 30, tid: 30, ppid: 10, ptid: 10 },
        });
        t.take(Record::Task {
            time: T + 1,
            record: TaskRecord::Comm { pid: 30, tid: 30, comm: "curl".into() },
        });
        t.take(Record::Sample { pid: 30, tid: 30, time: T + 2, raw: &failed });
        let caught = t.end_round(true);
        assert_eq!(caught.len(), 1);
        assert_eq!((&*caught[0].who.name, caught[0].errno), ("curl", Errno::AddrInUse));
    }
}
