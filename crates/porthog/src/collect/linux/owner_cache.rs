//! Socket owners kept across samples (`watch`, `record`, `serve`, and the namespaces of one
//! `--all-netns` collection): each process's socket inodes as its fd table last showed them,
//! read again only when the table changed. A table changed when its fd directory's inode
//! (a new process behind a reused pid) or size (its number of open fds) differs. What that
//! misses is caught by checks: a live socket no cached table holds makes every table be read
//! again, and a table reused 16 times in a row is read again whatever its key shows.
//! Reads nothing itself: `owners.rs` lists and reads the tables.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::{Mutex, PoisonError};

use super::owners::{self, FdKey, Listed, Owners};

/// A table reused this many times in a row is read again whatever its key shows, so a change
/// the key cannot see (a socket passed to another process and closed, fds replaced one for one)
/// is corrected within this many samples (a table is listed at least once per sample). A new
/// table starts part-way, by pid, so the checks of tables read together spread over samples.
const CHECK_EVERY: u32 = 16;

/// Tables of pids no collection has listed in this many refreshes are dropped (exited
/// processes; a pid of another namespace is listed again at least once per sample).
const FORGET_AFTER: u64 = 1024;

/// Socket inodes left without an owner by a full walk that are remembered as "nobody holds
/// this" (kernel sockets, sockets held only by a BPF map or io_uring); past this, forgotten.
const UNOWNED_KEPT: usize = 65_536;

/// One process's fd table as last read.
struct Table {
    key: (u64, u64),
    sockets: Box<[u32]>,
    /// `net:[...]` (or nsfs path) fds, for `--all-netns` discovery; None when the table was
    /// read without looking for them (an absolute path costs a stat to tell).
    namespace_fds: Option<Box<[u32]>>,
    /// Times reused since read; read again at CHECK_EVERY.
    reused: u32,
    /// The refresh that last listed this pid.
    listed_at: u64,
}

#[derive(Default)]
pub struct OwnerCache {
    tables: HashMap<u32, Table>,
    /// Inodes a full walk found no process holding.
    unowned: HashSet<u32>,
    /// Refreshes so far.
    refreshes: u64,
    /// Whether the last refresh read every table it was given (a full walk needs no repeat).
    pub read_all: bool,
    /// Tables read and reused since the cache was made, for tests and PORTHOG_TIMINGS.
    pub read: u64,
    pub reused: u64,
}

/// The process-wide cache: socket inodes are unique across namespaces, so one cache serves
/// every namespace and every sample.
static CACHE: Mutex<Option<OwnerCache>> = Mutex::new(None);

/// Runs `f` with the process-wide cache.
pub fn with<T>(f: impl FnOnce(&mut OwnerCache) -> T) -> T {
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    f(cache.get_or_insert_with(OwnerCache::default))
}

impl OwnerCache {
    /// The owners of the sockets that `listed` hold, reading only the tables that changed
    /// (all of them with `full`).
    pub fn owners(&mut self, proc: &OwnedFd, listed: &[Listed], full: bool) -> Owners {
        let counts = self.refresh(proc, listed, full, false);
        let mut pairs = Vec::new();
        for l in listed {
            if let Some(t) = self.tables.get(&l.pid) {
                pairs.extend(t.sockets.iter().map(|&inode| (inode, l.pid)));
            }
        }
        Owners::from_pairs(pairs, counts)
    }

    /// (pid, fd) of every fd of `listed` (every process, sorted by pid) that may hold a network
    /// namespace.
    pub fn namespace_fds(&mut self, proc: &OwnedFd, listed: &[Listed]) -> Vec<(u32, u32)> {
        self.refresh(proc, listed, false, true);
        listed
            .iter()
            .filter_map(|l| Some((l.pid, self.tables.get(&l.pid)?.namespace_fds.as_ref()?)))
            .flat_map(|(pid, fds)| fds.iter().map(move |&fd| (pid, fd)))
            .collect()
    }

    /// Whether `inode` was left without an owner by the last full walk that looked for it.
    pub fn known_unowned(&self, inode: u32) -> bool {
        self.unowned.contains(&inode)
    }

    /// After a full walk: these inodes have no owner; the next samples need not walk again for
    /// them.
    pub fn remember_unowned(&mut self, inodes: impl IntoIterator<Item = u32>) {
        if self.unowned.len() > UNOWNED_KEPT {
            self.unowned.clear();
        }
        self.unowned.extend(inodes);
    }

    /// Reads the tables of `listed` that are new, changed, due for a check, lack the namespace
    /// fds asked for, or (with `full`) all; returns the counts of those that could not be read.
    fn refresh(
        &mut self,
        proc: &OwnedFd,
        listed: &[Listed],
        full: bool,
        namespaces: bool,
    ) -> Owners {
        self.refreshes += 1;
        let now = self.refreshes;
        let mut stale = Vec::new();
        for l in listed {
            match self.tables.get_mut(&l.pid) {
                Some(t)
                    if !full
                        && l.key == Some(t.key)
                        && t.reused + 1 < CHECK_EVERY
                        && (!namespaces || t.namespace_fds.is_some()) =>
                {
                    t.reused += 1;
                    t.listed_at = now;
                }
                _ => stale.push(l.pid),
            }
        }
        if now.is_multiple_of(64) {
            self.tables.retain(|_, t| now - t.listed_at < FORGET_AFTER);
        }
        self.read_all = stale.len() == listed.len();
        self.reused += (listed.len() - stale.len()) as u64;
        self.read += stale.len() as u64;
        if stale.is_empty() {
            return Owners::default();
        }
        let scanned = owners::scan(proc, &stale, namespaces);
        // Unreadable (gone, refused): nothing cached, so the next sample tries again. A table
        // read before starts its count afresh; a new one part-way, by pid.
        let mut reread = HashSet::new();
        for pid in &stale {
            if self.tables.remove(pid).is_some() {
                reread.insert(*pid);
            }
        }
        let keys: HashMap<u32, FdKey> = listed.iter().map(|l| (l.pid, l.key)).collect();
        let mut sockets: HashMap<u32, Vec<u32>> =
            scanned.read.iter().map(|&pid| (pid, Vec::new())).collect();
        for (inode, pid) in scanned.sockets {
            sockets.entry(pid).or_default().push(inode);
        }
        let mut namespace_fds: HashMap<u32, Vec<u32>> = HashMap::new();
        for (pid, fd) in scanned.namespace_fds {
            namespace_fds.entry(pid).or_default().push(fd);
        }
        for (pid, inodes) in sockets {
            // Without a key (its fd directory could not be stat'ed), read again next time.
            if let Some(Some(key)) = keys.get(&pid) {
                let fds = namespaces.then(|| namespace_fds.remove(&pid).unwrap_or_default().into());
                let reused = if reread.contains(&pid) { 0 } else { pid % CHECK_EVERY };
                self.tables.insert(
                    pid,
                    Table {
                        key: *key,
                        sockets: inodes.into(),
                        namespace_fds: fds,
                        reused,
                        listed_at: now,
                    },
                );
            }
        }
        scanned.counts
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::collect::linux::owners::ProcessList;

    fn inode_of(fd: &impl AsRawFd) -> u32 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        let text = link.to_str().unwrap();
        text.trim_start_matches("socket:[").trim_end_matches(']').parse().unwrap()
    }

    /// A socket opened between two samples is found in the second; one replaced one for one
    /// is found by a full walk; a steady table (a child holding one socket) is not read again.
    #[test]
    fn follows_a_changing_fd_table_and_reuses_a_steady_one() {
        let me = std::process::id();
        let mut cache = OwnerCache::default();
        let proc = owners::open_proc().unwrap();
        let only = |pid: u32| {
            let all = ProcessList::read(None).unwrap();
            all.inside.into_iter().filter(|l| l.pid == pid).collect::<Vec<_>>()
        };
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let owners = cache.owners(&proc, &only(me), false);
        assert_eq!(owners.pid(inode_of(&first)), Some(me));

        let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let owners = cache.owners(&proc, &only(me), false);
        assert_eq!(owners.pid(inode_of(&second)), Some(me), "a new socket changes the count");

        // Replaced one for one: the same count, so only a full walk (or the turn) sees it.
        let gone = inode_of(&first);
        drop(first);
        let third = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let owners = cache.owners(&proc, &only(me), true);
        assert_eq!(owners.pid(inode_of(&third)), Some(me));
        assert_eq!(owners.pid(gone), None);

        // A child whose only socket is its stdin: its table does not change.
        let held = inode_of(&second);
        let fd = std::os::fd::OwnedFd::from(second);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::from(fd))
            .spawn()
            .unwrap();
        let owners = cache.owners(&proc, &only(child.id()), false);
        assert_eq!(owners.pid(held), Some(child.id()));
        let read = cache.read;
        for _ in 0..3 {
            let owners = cache.owners(&proc, &only(child.id()), false);
            assert_eq!(owners.pid(held), Some(child.id()));
        }
        let steady = cache.read;
        assert!(steady <= read + 1, "a steady table is reused: read {read}, then {steady}");
        // Whatever the key shows, a table is read again within CHECK_EVERY listings (a
        // socket passed on and closed leaves the count alone), and no more often than that.
        for _ in 0..CHECK_EVERY {
            cache.owners(&proc, &only(child.id()), false);
        }
        assert_eq!(cache.read - steady, 1, "one check in {CHECK_EVERY} listings");
        child.kill().unwrap();
        child.wait().unwrap();
        drop(third);
    }
}
