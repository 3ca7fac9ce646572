//! Who an event's thread is, at the moment of the event: its process name and its network
//! namespace (tracepoints fire for every namespace; porthog keeps the events of the one it
//! watches). Learnt from the kernel's own side-band records, in time order with the events
//! (fork, exec, setns/unshare, exit), so a client that connects, fails and exits at once is
//! still named and placed; /proc is read only for tasks that existed before the trace began.
//! Memory: one entry per live task, dropped at its exit record.

use std::collections::HashMap;
use std::sync::Arc;

use crate::collect::linux::process;

/// A side-band record of the kernel (PERF_RECORD_FORK, _EXIT, _COMM, _NAMESPACES).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskRecord {
    /// A new thread (`pid == ptid`'s pid) or process (`pid == tid`), copied from its parent.
    Fork {
        pid: u32,
        tid: u32,
        ppid: u32,
        ptid: u32,
    },
    Exit {
        pid: u32,
        tid: u32,
    },
    /// exec(), or a thread renamed with prctl(PR_SET_NAME).
    Comm {
        pid: u32,
        tid: u32,
        comm: String,
    },
    /// The thread's network namespace (inode) after fork, setns() or unshare().
    Netns {
        pid: u32,
        tid: u32,
        ino: u64,
    },
}

/// What /proc tells about tasks that existed before the trace (no records for them).
pub trait ProcSource {
    /// The inode of the thread's network namespace; None if it is gone.
    fn netns(&self, pid: u32, tid: u32) -> Option<u64>;
    /// The process name; None if it is gone.
    fn comm(&self, pid: u32) -> Option<String>;
    /// The container id from its cgroup, if any.
    fn container(&self, pid: u32) -> Option<String>;
    fn alive(&self, pid: u32, tid: u32) -> bool;
    /// The port of the `struct sockaddr` at `addr` in the process's memory (what bind() was
    /// asked for); None when it cannot be read.
    fn sockaddr_port(&self, _pid: u32, _addr: u64) -> Option<u16> {
        None
    }
}

#[derive(Debug, Clone)]
struct Task {
    pid: u32,
    comm: Option<Arc<str>>,
    netns: Option<u64>,
    /// Last time an event or record showed it (seconds).
    seen: f64,
}

/// A thread of the watched namespace, as an event's pid/tid resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: Arc<str>,
    /// The inode of its network namespace.
    pub netns: u64,
}

pub struct Tasks<P: ProcSource> {
    /// The namespace kept; None: every namespace (`--all-netns`).
    netns: Option<u64>,
    tasks: HashMap<u32, Task>,
    containers: HashMap<u32, (Option<String>, f64)>,
    proc: P,
    /// Events dropped because their task exited before porthog could read it (only possible
    /// for tasks that existed before the trace).
    pub unresolved: u64,
}

impl<P: ProcSource> Tasks<P> {
    /// Keeps threads whose network namespace has inode `netns`, or every thread when None.
    pub fn new(netns: Option<u64>, proc: P) -> Tasks<P> {
        Tasks { netns, tasks: HashMap::new(), containers: HashMap::new(), proc, unresolved: 0 }
    }

    /// Applies a side-band record (in time order with the events).
    pub fn apply(&mut self, record: TaskRecord, now: f64) {
        match record {
            TaskRecord::Fork { pid, tid, ppid, ptid } => {
                let parent = self.known(ppid, ptid, now);
                let task = Task { pid, comm: parent.comm, netns: parent.netns, seen: now };
                self.tasks.insert(tid, task);
            }
            TaskRecord::Exit { tid, .. } => {
                self.tasks.remove(&tid);
            }
            TaskRecord::Comm { pid, tid, comm } => {
                let t = self.entry(pid, tid, now);
                t.comm = Some(Arc::from(comm.as_str()));
            }
            TaskRecord::Netns { pid, tid, ino } => {
                self.entry(pid, tid, now).netns = Some(ino);
            }
        }
    }

    fn entry(&mut self, pid: u32, tid: u32, now: f64) -> &mut Task {
        let t = self.tasks.entry(tid).or_insert(Task { pid, comm: None, netns: None, seen: now });
        t.pid = pid;
        t.seen = now;
        t
    }

    /// A task as far as records and /proc tell (the parent of a fork may predate the trace).
    fn known(&mut self, pid: u32, tid: u32, now: f64) -> Task {
        if let Some(t) = self.tasks.get(&tid) {
            return t.clone();
        }
        Task {
            pid,
            comm: self.proc.comm(pid).map(|c| Arc::from(c.as_str())),
            netns: self.proc.netns(pid, tid),
            seen: now,
        }
    }

    /// The thread `tid` of process `pid` if it is in the watched namespace (any, when every
    /// namespace is watched), with that namespace; None if it is not, or if it is gone and no
    /// record said where it was (counted in `unresolved`: a gap, never a guess).
    pub fn resolve(&mut self, pid: u32, tid: u32, now: f64) -> Option<Resolved> {
        let netns = match self.tasks.get(&tid).and_then(|t| t.netns) {
            Some(ns) => ns,
            None => {
                let Some(ns) = self.proc.netns(pid, tid) else {
                    self.unresolved += 1;
                    return None;
                };
                self.entry(pid, tid, now).netns = Some(ns);
                ns
            }
        };
        if self.netns.is_some_and(|watched| watched != netns) {
            return None;
        }
        // The process name is its main thread's (what /proc/PID/comm shows); a renamed
        // worker thread keeps the program's name.
        let name = self.tasks.get(&pid).and_then(|t| t.comm.clone());
        let name = match name.or_else(|| self.tasks.get(&tid).and_then(|t| t.comm.clone())) {
            Some(name) => name,
            None => {
                let name: Arc<str> =
                    Arc::from(self.proc.comm(pid).unwrap_or_else(|| "?".into()).as_str());
                self.entry(pid, pid, now).comm = Some(Arc::clone(&name));
                name
            }
        };
        if let Some(t) = self.tasks.get_mut(&tid) {
            t.seen = now;
        }
        if !self.containers.contains_key(&pid) {
            self.containers.insert(pid, (self.proc.container(pid), now));
        }
        Some(Resolved { name, netns })
    }

    /// The container of a resolved process (read once, while it was alive).
    /// The port bind() was asked for, read from the process's memory (see `ProcSource`).
    pub fn sockaddr_port(&self, pid: u32, addr: u64) -> Option<u16> {
        self.proc.sockaddr_port(pid, addr)
    }

    pub fn container(&self, pid: u32) -> Option<String> {
        self.containers.get(&pid).and_then(|(c, _)| c.clone())
    }

    /// Drops what lost exit records left behind: tasks not heard of for a minute that are gone.
    pub fn sweep(&mut self, now: f64) {
        let proc = &self.proc;
        self.tasks.retain(|tid, t| now - t.seen <= 60.0 || proc.alive(t.pid, *tid));
        self.containers.retain(|_, (_, seen)| now - *seen <= 65.0);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tasks.len()
    }
}

/// The live /proc.
pub struct LiveProc;

impl ProcSource for LiveProc {
    fn netns(&self, pid: u32, tid: u32) -> Option<u64> {
        rustix::fs::stat(format!("/proc/{pid}/task/{tid}/ns/net"))
            .or_else(|_| rustix::fs::stat(format!("/proc/{tid}/ns/net")))
            .ok()
            .map(|st| st.st_ino)
    }

    fn comm(&self, pid: u32) -> Option<String> {
        process::comm(pid)
    }

    fn container(&self, pid: u32) -> Option<String> {
        process::placement(pid)?.container
    }

    fn alive(&self, pid: u32, tid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists()
    }

    /// Reads `sa_family` and the port (both families keep it at offset 2, big-endian) with
    /// process_vm_readv, which needs root or ptrace rights over the process. Read after the
    /// call returned: the caller's buffer still holds what it passed unless it reused it.
    fn sockaddr_port(&self, pid: u32, addr: u64) -> Option<u16> {
        const AF_INET: u16 = 2;
        const AF_INET6: u16 = 10;
        let mut buf = [0u8; 4];
        let remote = [nix::sys::uio::RemoteIoVec { base: usize::try_from(addr).ok()?, len: 4 }];
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?);
        let read = nix::sys::uio::process_vm_readv(
            pid,
            &mut [std::io::IoSliceMut::new(&mut buf)],
            &remote,
        )
        .ok()?;
        let family = u16::from_ne_bytes([buf[0], buf[1]]);
        (read == 4 && matches!(family, AF_INET | AF_INET6))
            .then(|| u16::from_be_bytes([buf[2], buf[3]]))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const WATCHED: u64 = 4026532500;
    const HOST: u64 = 4026531840;

    /// A /proc that knows some tasks and counts how often it is asked.
    #[derive(Default)]
    struct FakeProc {
        tasks: HashMap<u32, (u64, &'static str)>,
        asked: RefCell<u32>,
    }

    impl ProcSource for FakeProc {
        fn netns(&self, _pid: u32, tid: u32) -> Option<u64> {
            *self.asked.borrow_mut() += 1;
            self.tasks.get(&tid).map(|t| t.0)
        }
        fn comm(&self, pid: u32) -> Option<String> {
            self.tasks.get(&pid).map(|t| t.1.to_owned())
        }
        fn container(&self, _pid: u32) -> Option<String> {
            None
        }
        fn alive(&self, _pid: u32, tid: u32) -> bool {
            self.tasks.contains_key(&tid)
        }
    }

    /// `ip netns exec NS client` as the kernel reports it: fork from a host shell, exec of ip,
    /// setns into the watched namespace, exec of the client. The client is gone from /proc by
    /// the time its events are read, and is still named and placed.
    #[test]
    fn a_process_that_is_already_gone_is_known_from_records() {
        let mut proc = FakeProc::default();
        proc.tasks.insert(100, (HOST, "bash"));
        let mut t = Tasks::new(Some(WATCHED), proc);
        t.apply(TaskRecord::Fork { pid: 200, tid: 200, ppid: 100, ptid: 100 }, 1.0);
        t.apply(TaskRecord::Netns { pid: 200, tid: 200, ino: HOST }, 1.0);
        t.apply(TaskRecord::Comm { pid: 200, tid: 200, comm: "ip".into() }, 1.1);
        assert_eq!(t.resolve(200, 200, 1.15), None, "still in the host namespace");
        t.apply(TaskRecord::Netns { pid: 200, tid: 200, ino: WATCHED }, 1.2);
        t.apply(TaskRecord::Comm { pid: 200, tid: 200, comm: "client".into() }, 1.3);
        // A worker thread, renamed: events name the process.
        t.apply(TaskRecord::Fork { pid: 200, tid: 201, ppid: 200, ptid: 200 }, 1.4);
        t.apply(TaskRecord::Comm { pid: 200, tid: 201, comm: "worker-1".into() }, 1.4);
        let asked = *t.proc.asked.borrow();
        assert_eq!(
            t.resolve(200, 201, 1.5),
            Some(Resolved { name: Arc::from("client"), netns: WATCHED })
        );
        assert_eq!(
            t.resolve(200, 200, 1.5),
            Some(Resolved { name: Arc::from("client"), netns: WATCHED })
        );
        assert_eq!(*t.proc.asked.borrow(), asked, "no /proc read for tasks the records describe");
        t.apply(TaskRecord::Exit { pid: 200, tid: 201 }, 2.0);
        t.apply(TaskRecord::Exit { pid: 200, tid: 200 }, 2.0);
        assert_eq!(t.len(), 0, "an exited task leaves nothing behind");
        assert_eq!(t.unresolved, 0);
    }

    #[test]
    fn tasks_from_before_the_trace_are_read_from_proc() {
        let mut proc = FakeProc::default();
        proc.tasks.insert(300, (WATCHED, "nginx"));
        proc.tasks.insert(301, (HOST, "sshd"));
        let mut t = Tasks::new(Some(WATCHED), proc);
        assert_eq!(t.resolve(300, 300, 1.0).map(|r| r.name), Some(Arc::from("nginx")));
        assert_eq!(t.resolve(301, 301, 1.0), None);
        assert_eq!(t.unresolved, 0, "another namespace is not a failure to resolve");
        assert_eq!(t.resolve(999, 999, 1.0), None);
        assert_eq!(t.unresolved, 1, "gone before it could be read, and no record of it");
        // Lost exit records: swept once gone from /proc and quiet for a minute.
        t.proc.tasks.remove(&300);
        t.sweep(100.0);
        assert_eq!(t.len(), 1, "sshd (301) is alive");
    }
}
