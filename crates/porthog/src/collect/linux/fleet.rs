//! Collecting every network namespace (`--all-netns`): one dedicated thread per namespace,
//! one namespace at a time. setns(CLONE_NEWNET) moves only the calling thread and, unlike
//! CLONE_NEWUSER, is allowed in a multi-threaded process (and needs no unshare(CLONE_FS), which
//! only CLONE_NEWNS does), so a fresh thread enters the namespace, creates the snapshot's
//! netlink socket and dump thread there, and ends with the collection: its namespace never
//! leaks to other work. Cheaper than re-executing porthog per namespace (no exec, no JSON
//! round trip), which matters for `serve` collecting every 15 s. The fd walk's rayon threads do
//! not depend on the namespace (/proc/PID/fd is the same from every namespace).

use std::fs::File;
use std::io;

use porthog_core::{Gap, GapKind, Snapshot, cgroup};

use super::discover::Found;
use super::{netns, snapshot_here_without_bpf};
use crate::collect::Collected;

/// Reads every namespace of `found`; those that vanish before they are entered, or cannot be
/// read, become gaps.
pub fn collect(found: Vec<Found>) -> (Vec<Collected>, Vec<Gap>) {
    let mut collected = Vec::with_capacity(found.len());
    let mut vanished = 0u64;
    let mut gaps = Vec::new();
    for f in found {
        let label = f.name.clone().unwrap_or_else(|| format!("net:[{}]", f.inode));
        let thread_label = label.clone();
        let path = f.path.clone();
        let (dev, inode) = (f.dev, f.inode);
        let run = std::thread::Builder::new()
            .name("porthog-netns".into())
            .spawn(move || one(&path, (dev, inode), thread_label));
        let outcome = match run {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Outcome::Failed(format!("reading network namespace {label} panicked"))
            }),
            Err(e) => Outcome::Failed(format!("cannot start a thread for {label}: {e}")),
        };
        match outcome {
            Outcome::Read(snapshot) => collected.push(Collected {
                inode: f.inode,
                container: placement_label(&f.pids),
                name: f.name,
                pids: f.pids.into_iter().collect(),
                snapshot: *snapshot,
            }),
            Outcome::Vanished => vanished += 1,
            Outcome::Failed(message) => gaps.push(Gap {
                kind: GapKind::Source,
                count: Some(1),
                message,
                advice: Some("run as root (CAP_SYS_ADMIN enters namespaces)".into()),
            }),
        }
    }
    if vanished > 0 {
        gaps.push(Gap {
            kind: GapKind::ProcessGone,
            count: Some(vanished),
            message: format!(
                "{vanished} network namespaces vanished between being found and being read (their \
                 last process exited, or their mount or fd was closed)"
            ),
            advice: None,
        });
    }
    (collected, gaps)
}

enum Outcome {
    Read(Box<Snapshot>),
    Vanished,
    Failed(String),
}

/// On a fresh thread: opens the namespace by `path`, checks it is still the one found (a pid
/// can be reused), enters it and takes the snapshot.
fn one(path: &std::path::Path, key: (u64, u64), label: String) -> Outcome {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if gone(&e) => return Outcome::Vanished,
        Err(e) => return Outcome::Failed(format!("cannot open {}: {e}", path.display())),
    };
    match rustix::fs::fstat(&file) {
        Ok(st) if (st.st_dev, st.st_ino) == key => {}
        Ok(_) => return Outcome::Vanished,
        Err(e) => return Outcome::Failed(format!("cannot stat {}: {e}", path.display())),
    }
    let _entered = match netns::enter_file(&file, &label, path) {
        Ok(entered) => entered,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    match snapshot_here_without_bpf(Some(label.clone())) {
        Ok(snapshot) => Outcome::Read(Box::new(snapshot)),
        Err(e) => Outcome::Failed(format!("reading network namespace {label}: {e:#}")),
    }
}

/// ENOENT (the process or fd is gone) or ESRCH (the process died while being opened).
fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc_esrch())
}

fn libc_esrch() -> i32 {
    rustix::io::Errno::SRCH.raw_os_error()
}

/// Container, pod or unit of the first process in the namespace that has one.
fn placement_label(pids: &std::collections::BTreeSet<u32>) -> Option<String> {
    pids.iter().take(32).find_map(|pid| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cgroup::parse(&text).label()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::linux::discover::HeldBy;

    /// A namespace that is gone by the time it is read is a gap, not an error; so is one whose
    /// path now leads to another namespace (a reused pid).
    #[test]
    fn vanished_namespaces_are_gaps() {
        let own = rustix::fs::stat("/proc/self/ns/net").unwrap();
        let found = |path: &str, inode: u64| Found {
            dev: own.st_dev,
            inode,
            path: path.into(),
            held_by: HeldBy::Process,
            name: None,
            pids: Default::default(),
        };
        let (collected, gaps) = collect(vec![
            found("/proc/4194305/ns/net", 1),
            found("/proc/self/ns/net", own.st_ino + 1),
        ]);
        assert!(collected.is_empty());
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!((gaps[0].kind, gaps[0].count), (GapKind::ProcessGone, Some(2)));
        assert!(gaps[0].message.contains("2 network namespaces vanished"), "{gaps:?}");
    }
}
