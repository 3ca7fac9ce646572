//! Every network namespace of the host, as the kernel has them (no listns() before Linux 6.19,
//! DOMAIN.md 4): the union of /proc/*/ns/net, /proc/*/task/*/ns/net, /proc/*/fd links to
//! `net:[...]` and nsfs mounts in /proc/*/mountinfo (`ip netns` names included), deduplicated
//! by (device, inode). Each comes with a path to open it by, its name and its pids. Reads /proc
//! only; a process that exits mid-walk is skipped, never fatal. The text parsers are the core's.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;

use anyhow::Context;
use porthog_core::nsfs;

use super::owner_cache;
use super::owners::{ProcessList, open_proc};

/// One network namespace found.
#[derive(Debug, Clone)]
pub struct Found {
    pub dev: u64,
    pub inode: u64,
    /// A file that opens it: /proc/PID/ns/net, a mount point, /proc/PID/fd/N (best first).
    pub path: PathBuf,
    /// What `path` is.
    pub held_by: HeldBy,
    pub name: Option<String>,
    /// Processes (thread-group leaders) whose namespace it is, or one of whose threads'.
    pub pids: BTreeSet<u32>,
}

/// What holds a namespace, best path first: a process's own link is the steadiest, an fd the
/// least (it closes whenever its holder wants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HeldBy {
    Process,
    Mount,
    Thread,
    Fd,
}

#[derive(Default)]
struct Walk {
    found: BTreeMap<(u64, u64), Found>,
}

impl Walk {
    /// Records `path` if it is a network namespace (stat follows the link to the nsfs inode).
    fn add(&mut self, path: PathBuf, held_by: HeldBy, pid: Option<u32>) -> Option<(u64, u64)> {
        let st = rustix::fs::stat(&path).ok()?;
        let key = (st.st_dev, st.st_ino);
        let entry = self.found.entry(key).or_insert_with(|| Found {
            dev: st.st_dev,
            inode: st.st_ino,
            path: path.clone(),
            held_by,
            name: None,
            pids: BTreeSet::new(),
        });
        if held_by < entry.held_by {
            entry.path = path;
            entry.held_by = held_by;
        }
        if let Some(pid) = pid.filter(|_| matches!(held_by, HeldBy::Process | HeldBy::Thread)) {
            entry.pids.insert(pid);
        }
        Some(key)
    }
}

/// Walks /proc. Needs root to see other users' fds and mount tables; without it, what can be
/// read is still returned.
pub fn all() -> anyhow::Result<Vec<Found>> {
    let mut walk = Walk::default();
    let pids = pids().context("cannot list /proc")?;
    let mut mount_namespaces: HashSet<(u64, u64)> = HashSet::new();
    let nsfs_dev = rustix::fs::stat("/proc/self/ns/net").ok().map(|st| st.st_dev);
    let own_mnt = rustix::fs::stat("/proc/self/ns/mnt").ok().map(|st| (st.st_dev, st.st_ino));
    // The fds that may hold a namespace, from the fd tables the owner cache keeps (read again
    // only where they changed): the fd walk is the costly part of finding namespaces.
    let proc = open_proc()?;
    let mut listed = ProcessList::read(None)?.inside;
    listed.sort_unstable_by_key(|l| l.pid);
    let mut held: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (pid, fd) in owner_cache::with(|c| c.namespace_fds(&proc, &listed)) {
        held.entry(pid).or_default().push(fd);
    }
    for pid in pids {
        let base = PathBuf::from(format!("/proc/{pid}"));
        let own = walk.add(base.join("ns/net"), HeldBy::Process, Some(pid));
        if own.is_none() && !base.exists() {
            continue; // exited
        }
        // Threads can sit in another namespace than their leader (setns on one thread).
        if let Ok(tasks) = std::fs::read_dir(base.join("task")) {
            for task in tasks.flatten() {
                let tid = task.file_name();
                if tid.to_str() != Some(&pid.to_string()) {
                    walk.add(task.path().join("ns/net"), HeldBy::Thread, Some(pid));
                }
            }
        }
        for fd in held.get(&pid).into_iter().flatten() {
            let path = base.join(format!("fd/{fd}"));
            let Ok(target) = std::fs::read_link(&path) else { continue };
            let target = target.as_os_str().as_encoded_bytes();
            // An fd opened through a bind mount (`/run/netns/NAME`) links to that path, not
            // to `net:[...]`: a path on the nsfs device is checked by asking its type.
            let held = nsfs::net_link_inode(target).is_some()
                || (target.starts_with(b"/") && nsfs_dev.is_some_and(|dev| is_netns(&path, dev)));
            if held {
                walk.add(path, HeldBy::Fd, None);
            }
        }
        // Each mount namespace's table once: processes sharing one see the same mounts.
        let Ok(mnt) = rustix::fs::stat(base.join("ns/mnt")) else { continue };
        if !mount_namespaces.insert((mnt.st_dev, mnt.st_ino)) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(base.join("mountinfo")) else { continue };
        let ours = own_mnt == Some((mnt.st_dev, mnt.st_ino));
        for mount in nsfs::netns_mounts(&text) {
            // `ip netns exec` gives every process it starts a mount namespace of its own, each
            // with a copy of every /run/netns mount: statting each copy made discovery cost
            // processes x namespaces (50 namespaces: ~5,000 stats). A copy of a namespace
            // already found (the mount gives its inode) can add only a name, so it is skipped
            // when it has none to add. This process's own mount namespace is read first.
            let known = nsfs_dev.and_then(|dev| walk.found.get(&(dev, mount.inode)));
            if !ours && known.is_some_and(|f| f.name.is_some() || mount.ip_netns_name().is_none()) {
                continue;
            }
            // Another mount namespace's mount point is reachable through its root.
            let path = if ours {
                PathBuf::from(&mount.mount_point)
            } else {
                base.join("root").join(mount.mount_point.trim_start_matches('/'))
            };
            if let Some(key) = walk.add(path, HeldBy::Mount, None)
                && let (Some(name), Some(found)) = (mount.ip_netns_name(), walk.found.get_mut(&key))
                && (found.name.is_none() || ours)
            {
                found.name = Some(name.to_owned());
            }
        }
    }
    Ok(walk.found.into_values().collect())
}

// NS_GET_NSTYPE (linux/nsfs.h): _IO(0xb7, 0x3), answers the CLONE_NEW* type of a namespace fd.
nix::ioctl_none!(ns_get_nstype, 0xb7, 0x3);

/// Whether `path` (an fd link) is a network namespace: on the nsfs device, and of that type.
fn is_netns(path: &std::path::Path, nsfs_dev: u64) -> bool {
    if rustix::fs::stat(path).map_or(true, |st| st.st_dev != nsfs_dev) {
        return false;
    }
    let Ok(file) = std::fs::File::open(path) else { return false };
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd, which `file` keeps open.
    let kind = unsafe { ns_get_nstype(std::os::fd::AsRawFd::as_raw_fd(&file)) };
    kind == Ok(nix::sched::CloneFlags::CLONE_NEWNET.bits())
}

/// The pids listed in /proc, ascending, with the walker's own first so that its mount
/// namespace's table names the `ip netns` mounts.
fn pids() -> std::io::Result<Vec<u32>> {
    let me = std::process::id();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != me)
        .collect();
    pids.sort_unstable();
    pids.insert(0, me);
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walker's own namespace is found, with the walker among its pids.
    #[test]
    fn finds_its_own_namespace() {
        let own = rustix::fs::stat("/proc/self/ns/net").unwrap();
        let found = all().unwrap();
        let mine = found.iter().find(|f| (f.dev, f.inode) == (own.st_dev, own.st_ino)).unwrap();
        assert!(mine.pids.contains(&std::process::id()));
        let mut keys: Vec<(u64, u64)> = found.iter().map(|f| (f.dev, f.inode)).collect();
        keys.dedup();
        assert_eq!(keys.len(), found.len(), "deduplicated by (device, inode)");
    }
}
