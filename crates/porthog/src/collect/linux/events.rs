//! The TCP state-change events (`bpf/porthog_events.bpf.c`, committed built as
//! `bpf/porthog_events.bpf.o`): a raw tracepoint on `sock:inet_sock_set_state` writes each TCP
//! state change of one network namespace to a ring buffer, which [`Events::drain`] reads into
//! `porthog_core::tcp_event::EventTable`. [`Live`] is what `watch` and `record` sample with
//! (issue 9): a full walk, then the events since, walked again only when `resync_due` says so.
//! Nothing is pinned: the kernel drops the program, link and maps when porthog exits, however
//! it exits.

use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use aya::Ebpf;
use aya::maps::{Array, MapData, RingBuf};
use aya::programs::RawTracePoint;
use porthog_core::tcp_event::{self, EventTable, Resync, resync_due};
use porthog_core::{Gap, GapKind, Process, Snapshot};

use super::super::{CollectOptions, timings};

/// The clang-built object (see `bpf/build.sh`; CI checks it matches `porthog_events.bpf.c`).
static OBJECT: &[u8] = include_bytes!("bpf/porthog_events.bpf.o");

/// The kernel structures the program reads (relocated against the running kernel's).
const KERNEL_TYPES: [&str; 6] =
    ["in6_addr", "ns_common", "net", "sock_common", "sock", "inet_sock"];
const PROGRAM: &str = "porthog_events_tcp";
const TRACEPOINT: &str = "inet_sock_set_state";
const RING: &str = "porthog_events";
const LOST: &str = "porthog_events_lost";
const NETNS: &str = "porthog_events_netns";

/// The attached program, its ring buffer and its counters.
pub struct Events {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
}

/// What one [`Events::drain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub events: u64,
    /// Records the program could not write since it was attached (the ring buffer was full):
    /// when it grows, the table must be walked again.
    pub lost: u64,
}

impl Events {
    /// Loads the program and attaches it for the namespace whose inode is `netns`; the error
    /// says why the events cannot be used here.
    pub fn attach(netns: u64) -> Result<Events> {
        let netns = u32::try_from(netns)
            .with_context(|| format!("namespace inode {netns} does not fit the program's u32"))?;
        let mut ebpf = super::bpf::load_object_with(OBJECT, &KERNEL_TYPES)
            .context("cannot load porthog's TCP event BPF object")?;
        {
            let mut filter: Array<&mut MapData, u32> = Array::try_from(
                ebpf.map_mut(NETNS).ok_or_else(|| anyhow!("the BPF object has no map {NETNS}"))?,
            )?;
            filter.set(0, netns, 0).context("cannot set the event program's namespace")?;
        }
        let program: &mut RawTracePoint = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| anyhow!("the BPF object has no program {PROGRAM}"))?
            .try_into()
            .with_context(|| format!("{PROGRAM} is not a raw tracepoint program"))?;
        program
            .load()
            .map_err(|e| super::verifier::from_aya(PROGRAM, e))
            .context("the kernel refused the TCP event program")?;
        program
            .attach(TRACEPOINT)
            .with_context(|| format!("cannot attach to the tracepoint sock:{TRACEPOINT}"))?;
        let ring = RingBuf::try_from(
            ebpf.take_map(RING).ok_or_else(|| anyhow!("the BPF object has no map {RING}"))?,
        )
        .context("cannot open the TCP event ring buffer")?;
        Ok(Events { ebpf, ring })
    }

    /// Drops every event written so far: called just before a full walk, whose table already
    /// holds what they changed (applied after it, a creation would be counted twice). A change
    /// made while the walk runs may be both in the walk and applied after it: `Live::walk`
    /// drains those at once and `EventTable::settle_walk_race` drops the copies.
    pub fn discard(&mut self) -> u64 {
        let mut n = 0;
        while self.ring.next().is_some() {
            n += 1;
        }
        n
    }

    /// Applies every event written so far to `table`, in the order the kernel wrote them.
    pub fn drain(&mut self, table: &mut EventTable) -> Result<Drained> {
        let mut drained = Drained::default();
        while let Some(record) = self.ring.next() {
            match tcp_event::decode(&record) {
                Ok(event) => table.apply(&event),
                Err(_) => table.bad_record(),
            }
            drained.events += 1;
        }
        drained.lost = self.lost()?;
        Ok(drained)
    }

    /// The records the program could not write since it was attached (the ring buffer full).
    pub fn lost(&self) -> Result<u64> {
        let lost: Array<&MapData, u64> = Array::try_from(
            self.ebpf.map(LOST).ok_or_else(|| anyhow!("the BPF object has no map {LOST}"))?,
        )?;
        lost.get(&0, 0).context("reading the TCP event loss counter")
    }

    /// The program's run time and run count (every TCP change of the host, the other
    /// namespaces' included), while BPF run-time statistics are enabled.
    #[cfg(test)]
    pub fn run_stats(&self) -> Result<(std::time::Duration, u64)> {
        let program: &RawTracePoint = self
            .ebpf
            .program(PROGRAM)
            .ok_or_else(|| anyhow!("the BPF object has no program {PROGRAM}"))?
            .try_into()?;
        let info = program.info()?;
        Ok((info.run_time(), info.run_count()))
    }
}

/// A namespace's sockets kept up to date by the TCP events between full walks.
pub struct Live {
    opts: CollectOptions,
    events: Events,
    table: EventTable,
    /// When the last walk started, and the loss counter then (a record lost while the walk
    /// ran is a loss too: the next sample walks again).
    walked_at: Instant,
    lost_at_walk: u64,
    /// The last walk or sample failed part-way: the table may be wrong, so the next sample
    /// walks.
    must_walk: bool,
    /// The events applied since the last walk.
    applied: u64,
    /// What the last walk found besides the sockets: its source, owners and socket gaps.
    source: String,
    processes: Vec<Process>,
    socket_gaps: Vec<Gap>,
}

impl Live {
    /// Attaches the event program to `opts`' namespace and walks it: the walk is the first
    /// sample. The error says why the events cannot be used (the caller then walks every
    /// sample, as without them).
    pub fn start(opts: &CollectOptions) -> Result<(Live, Snapshot)> {
        if !super::super::bpf_enabled() {
            return Err(anyhow!("BPF is disabled with --no-bpf or PORTHOG_NO_BPF"));
        }
        if !rustix::process::geteuid().is_root() {
            return Err(anyhow!("not root: the TCP event program needs CAP_BPF and CAP_PERFMON"));
        }
        let inode = match &opts.netns {
            Some(target) => super::netns::inode(target)?,
            None => super::netns::current_inode()?,
        };
        let events = Events::attach(inode)?;
        let mut live = Live {
            opts: opts.clone(),
            events,
            table: EventTable::default(),
            walked_at: Instant::now(),
            lost_at_walk: 0,
            must_walk: false,
            applied: 0,
            source: String::new(),
            processes: Vec::new(),
            socket_gaps: Vec::new(),
        };
        let snapshot = live.walk()?;
        Ok((live, snapshot))
    }

    /// A full walk: the table is replaced by it, and the events written while it ran are
    /// applied (`EventTable::settle_walk_race`). Records lost while it ran make the next
    /// sample walk again (the loss counter is compared with its value before the walk).
    fn walk(&mut self) -> Result<Snapshot> {
        let _entered = self.opts.netns.as_ref().map(super::netns::enter).transpose()?;
        self.events.discard();
        let lost_before = self.events.lost()?;
        let started = Instant::now();
        let label = self.opts.netns.as_ref().map(|t| t.label());
        let (snapshot, first_socket_gap, _) =
            super::snapshot_split(|| (super::unsocketed(label), ()))?;
        self.table.resync(snapshot.sockets.clone());
        let drained = self.events.drain(&mut self.table)?;
        self.walked_at = started;
        self.lost_at_walk = lost_before;
        self.applied = drained.events;
        self.table.settle_walk_race();
        // The walk's sample lists the sockets in the table's order, as every later sample does:
        // the owner book then meets them in the order it stored them (measured at ~100k sockets:
        // its step took 10.6-18.5 ms a sample when only the first sample had the walk's order,
        // 1.5-2.1 ms with this; see BENCHMARKS.md).
        let mut snapshot = snapshot;
        snapshot.sockets = self.table.sockets().cloned().collect();
        self.source.clone_from(&snapshot.source);
        self.processes.clone_from(&snapshot.processes);
        self.socket_gaps = snapshot.gaps.get(first_socket_gap..).unwrap_or_default().to_vec();
        Ok(snapshot)
    }

    /// The namespace now: the walk's table with the events since applied, or a new walk when
    /// one is due (a lost or unusable record, a change of a socket the table did not hold,
    /// [`tcp_event::RESYNC_EVERY`]).
    pub fn sample(&mut self) -> Result<Snapshot> {
        let sample = if self.must_walk { self.walk() } else { self.events_applied() };
        self.must_walk = sample.is_err();
        sample
    }

    /// [`Live::sample`] when the last one succeeded.
    fn events_applied(&mut self) -> Result<Snapshot> {
        let started = Instant::now();
        let drained = self.events.drain(&mut self.table)?;
        let since_walk = self.walked_at.elapsed();
        let due = resync_due(self.table.doubts(), drained.lost, self.lost_at_walk, since_walk);
        if let Some(due) = due {
            if timings() {
                let why = match due {
                    Resync::Cadence => "cadence",
                    Resync::Lost => "ring buffer full, events lost",
                    Resync::Unknown => "a change of a socket the table did not hold",
                };
                eprintln!("porthog: full walk ({why}), {} events drained", drained.events);
            }
            return self.walk();
        }
        self.applied += drained.events;
        let _entered = self.opts.netns.as_ref().map(super::netns::enter).transpose()?;
        let mut snapshot = super::unsocketed(self.opts.netns.as_ref().map(|t| t.label()));
        self.table.expire_walked_time_wait(since_walk);
        snapshot.source.clone_from(&self.source);
        snapshot.sockets = self.table.sockets().cloned().collect();
        porthog_core::reuse::age_time_wait(&mut snapshot.sockets, since_walk);
        snapshot.processes.clone_from(&self.processes);
        let known = snapshot.processes.len();
        for (pid, name) in self.table.owners() {
            if snapshot.processes[..known].binary_search_by_key(&pid, |p| p.pid).is_err() {
                snapshot.processes.push(Process {
                    pid,
                    name: name.to_owned(),
                    ..Process::default()
                });
            }
        }
        snapshot.processes.sort_by_key(|p| p.pid);
        snapshot.gaps.extend(self.socket_gaps.iter().cloned());
        let doubts = self.table.doubts();
        snapshot.gaps.push(Gap {
            kind: GapKind::Source,
            count: None,
            message: format!(
                "TCP sockets are the full walk of {:.0} s ago with the {} state changes since \
                 applied: sockets bound but not connected and UDP sockets are as that walk saw \
                 them, {} TIME_WAIT sockets are predicted from closes, and the processes of \
                 new connections are named by their connect() only (walked again at the latest \
                 every {} s)",
                since_walk.as_secs_f64(),
                self.applied,
                doubts.predicted_time_wait,
                tcp_event::RESYNC_EVERY.as_secs()
            ),
            advice: Some("set PORTHOG_FULL_WALK=1 to walk every socket every sample".into()),
        });
        if timings() {
            eprintln!(
                "porthog: {} events applied, table of {} sockets out in {:.1} ms ({:.1} s since \
                 the walk)",
                drained.events,
                snapshot.sockets.len(),
                started.elapsed().as_secs_f64() * 1e3,
                since_walk.as_secs_f64()
            );
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::num::NonZeroU32;

    use porthog_core::bpf_record::{SOCKET_RECORD, decode_sockets};
    use porthog_core::{Socket, State};

    use super::super::bpf::Iterators;
    use super::*;

    fn walk(it: &mut Iterators) -> Vec<Socket> {
        let mut sockets = Vec::new();
        decode_sockets(&it.tcp().unwrap().read(64 * SOCKET_RECORD).unwrap(), &mut sockets).unwrap();
        sockets
    }

    /// What differs between two sorted lists, counting repeats: "events x3 walk x1 (a, b, S)".
    fn multiset_difference(events: &[(u16, u16, State)], walked: &[(u16, u16, State)]) -> String {
        let mut counts = std::collections::BTreeMap::<_, (usize, usize)>::new();
        for s in events {
            counts.entry((s.0, s.1, s.2.as_str())).or_default().0 += 1;
        }
        for s in walked {
            counts.entry((s.0, s.1, s.2.as_str())).or_default().1 += 1;
        }
        let differ: Vec<String> = counts
            .iter()
            .filter(|(_, (e, w))| e != w)
            .map(|(s, (e, w))| format!("events x{e} walk x{w} {s:?}"))
            .collect();
        format!("{} differ: {}", differ.len(), differ.join(", "))
    }

    /// Runs `body` on a thread of its own moved into a new network namespace with loopback up
    /// (dropped with the thread): its sockets, walks and event filter see only this test's
    /// sockets, whatever the other tests of this binary do in the host namespace.
    fn in_private_namespace(body: impl FnOnce(u64) + Send + 'static) {
        let thread = std::thread::spawn(move || {
            // SAFETY: only the network namespace is unshared, not the fd table.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
                .expect("unshare(CLONE_NEWNET)");
            let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("a socket for ioctl");
            // SAFETY: ifreq is plain old data; zeroed is a valid value.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *d = *s as libc::c_char;
            }
            let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
            // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq passed, which lives
            // across both calls; the union's flags member is the one these requests use.
            unsafe {
                assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req), 0, "SIOCGIFFLAGS lo");
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req), 0, "SIOCSIFFLAGS lo");
            }
            drop(socket);
            body(super::super::netns::current_inode().expect("this thread's namespace"));
        });
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    fn mine(sockets: &[&Socket], ports: &[u16]) -> Vec<(u16, u16, State)> {
        let mut v: Vec<_> = sockets
            .iter()
            .filter(|s| ports.contains(&s.local_port) || ports.contains(&s.remote_port))
            .map(|s| (s.local_port, s.remote_port, s.state))
            .collect();
        v.sort_by_key(|s| (s.0, s.1, s.2.as_str()));
        v
    }

    /// On the real kernel, in a namespace of the test's own: a walk, then a listener, connections, a close into TIME_WAIT and an
    /// open one, applied as events, equal a fresh walk (for this test's ports); connect()'s
    /// process is this one. Needs root; skipped otherwise, except under CI=true.
    #[test]
    fn events_applied_to_a_walk_equal_a_fresh_walk() {
        if !rustix::process::geteuid().is_root() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root under CI=true");
            eprintln!("skipped: not root");
            return;
        }
        in_private_namespace(events_applied_in);
    }

    fn events_applied_in(netns: u64) {
        let mut it = Iterators::load().unwrap();
        let mut events = Events::attach(netns).unwrap();
        let mut table = EventTable::default();
        events.discard();
        let walked = walk(&mut it);
        assert!(walked.is_empty(), "a new namespace has no sockets: {walked:?}");
        table.resync(walked);
        table.settle_walk_race();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let kept = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (kept_child, _) = listener.accept().unwrap();
        let mut closed = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut closed_child, _) = listener.accept().unwrap();
        // The client closes first: its side goes to TIME_WAIT.
        closed.write_all(b"x").unwrap();
        drop(closed);
        let mut buf = [0u8; 8];
        while closed_child.read(&mut buf).unwrap() > 0 {}
        drop(closed_child);
        let client_ports =
            [kept.local_addr().unwrap().port(), kept_child.local_addr().unwrap().port()];
        // Let the kernel finish the close (the last ACK) before comparing.
        std::thread::sleep(std::time::Duration::from_millis(200));

        let drained = events.drain(&mut table).unwrap();
        assert_eq!(drained.lost, 0);
        assert!(drained.events >= 10, "{drained:?}");
        let fresh = walk(&mut it);
        let from_events: Vec<&Socket> = table.sockets().collect();
        let fresh_refs: Vec<&Socket> = fresh.iter().collect();
        let ports = [port, client_ports[0]];
        assert_eq!(mine(&from_events, &ports), mine(&fresh_refs, &ports));
        assert!(mine(&from_events, &ports).iter().any(|s| s.2 == State::TimeWait));
        let kept_port = kept.local_addr().unwrap().port();
        let client = from_events
            .iter()
            .find(|s| (s.local_port, s.remote_port) == (kept_port, port))
            .unwrap();
        assert_eq!(client.pid, NonZeroU32::new(std::process::id()), "connect()'s process");
        // The namespace is this test's alone: every change was of a socket the table knew.
        assert_eq!(table.doubts().unknown_sockets, 0, "{:?}", table.doubts());
        assert_eq!(table.doubts().bad_records, 0, "{:?}", table.doubts());
    }

    /// Churn (2,000 connect/close, the client closing first, drained every 250) applied to a
    /// walk equals a fresh walk; prints what the events cost (kernel: the program's run time
    /// under BPF statistics, every namespace's changes included; porthog: draining and
    /// applying). Needs root; skipped otherwise, except under CI=true.
    #[test]
    fn churn_applied_to_a_walk_equals_a_fresh_walk() {
        if !rustix::process::geteuid().is_root() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root under CI=true");
            eprintln!("skipped: not root");
            return;
        }
        in_private_namespace(churn_applied_in);
    }

    fn churn_applied_in(netns: u64) {
        let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).unwrap();
        let mut it = Iterators::load().unwrap();
        let mut events = Events::attach(netns).unwrap();
        let mut table = EventTable::default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        events.discard();
        let initial = walk(&mut it);
        // An earlier run's TIME_WAITs (60 s) towards a listener that had this port.
        let earlier = initial.iter().filter(|s| s.remote_port == port).count();
        table.resync(initial);
        table.settle_walk_race();
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            for _ in 0..2000 {
                let (mut s, _) = listener.accept().unwrap();
                while s.read(&mut buf).unwrap() > 0 {}
            }
            listener
        });
        let (before, _) = events.run_stats().unwrap();
        let started = std::time::Instant::now();
        let mut user = std::time::Duration::ZERO;
        let mut total = Drained::default();
        for i in 0..2000 {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.write_all(b"x").unwrap();
            drop(c);
            if i % 250 == 249 {
                let t = std::time::Instant::now();
                total.events += events.drain(&mut table).unwrap().events;
                user += t.elapsed();
            }
        }
        let _listener = server.join().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let t = std::time::Instant::now();
        let last = events.drain(&mut table).unwrap();
        user += t.elapsed();
        total.events += last.events;
        let elapsed = started.elapsed();
        let (after, _) = events.run_stats().unwrap();
        assert_eq!(last.lost, 0);
        let fresh = walk(&mut it);
        let from_events: Vec<&Socket> = table.sockets().collect();
        let fresh_refs: Vec<&Socket> = fresh.iter().collect();
        let got = mine(&from_events, &[port]);
        let want = mine(&fresh_refs, &[port]);
        assert_eq!(got, want, "{}", multiset_difference(&got, &want));
        assert_eq!(got.iter().filter(|s| s.2 == State::TimeWait).count(), 2000 + earlier);
        let kernel = after - before;
        eprintln!(
            "2000 connections in {elapsed:?}: {} events of this namespace; program {kernel:?} \
             ({:.0} ns per event of this namespace, others' included), porthog drain+apply \
             {user:?} ({:.0} ns per event)",
            total.events,
            kernel.as_nanos() as f64 / total.events as f64,
            user.as_nanos() as f64 / total.events as f64,
        );
    }
}
