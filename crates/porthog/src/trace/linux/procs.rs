//! Who an event's pid is: its network namespace (tracepoints fire for every namespace; porthog
//! keeps the events of processes in the one it watches), name and container, read from /proc
//! once per pid and re-read after a few seconds (a pid can be reused, a process can exec).
//! A process that exited before it could be read is counted, never guessed.

use std::collections::HashMap;
use std::sync::Arc;

use porthog_core::Placement;

use crate::collect::linux::process;

/// How long a pid's answers are trusted before /proc is read again.
const REFRESH_S: f64 = 5.0;

/// A process of the watched namespace.
#[derive(Debug, Clone)]
pub struct Info {
    pub name: Arc<str>,
    pub placement: Placement,
}

enum Entry {
    Inside(Info),
    Outside,
}

pub struct Procs {
    netns: u64,
    cache: HashMap<u32, (Entry, f64)>,
    /// Events dropped because their process exited before porthog could read it.
    pub unresolved: u64,
}

impl Procs {
    /// Keeps processes whose /proc/PID/ns/net has inode `netns`.
    pub fn new(netns: u64) -> Procs {
        Procs { netns, cache: HashMap::new(), unresolved: 0 }
    }

    /// The process `pid` if it is in the watched namespace; None if it is not, or is gone.
    pub fn resolve(&mut self, pid: u32, now: f64) -> Option<&Info> {
        let fresh = self.cache.get(&pid).is_some_and(|(_, read)| now - read <= REFRESH_S);
        if !fresh {
            match self.read(pid) {
                Some(entry) => {
                    self.cache.insert(pid, (entry, now));
                }
                None => {
                    self.unresolved += 1;
                    self.cache.remove(&pid);
                    return None;
                }
            }
        }
        match self.cache.get(&pid) {
            Some((Entry::Inside(info), _)) => Some(info),
            _ => None,
        }
    }

    /// What was last read about `pid` (without reading again).
    pub fn get(&self, pid: u32) -> Option<&Info> {
        match self.cache.get(&pid) {
            Some((Entry::Inside(info), _)) => Some(info),
            _ => None,
        }
    }

    fn read(&self, pid: u32) -> Option<Entry> {
        let ns = rustix::fs::stat(format!("/proc/{pid}/ns/net")).ok()?.st_ino;
        if ns != self.netns {
            return Some(Entry::Outside);
        }
        let (p, gone) = process::read_one(pid);
        if gone && p.name == "?" {
            return None;
        }
        Some(Entry::Inside(Info { name: Arc::from(p.name.as_str()), placement: p.placement }))
    }

    /// Forgets pids not read for a while, so the cache stays as small as the set of live
    /// processes that make events.
    pub fn sweep(&mut self, now: f64) {
        self.cache.retain(|_, (_, read)| now - *read <= 4.0 * REFRESH_S);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_its_own_namespace_and_counts_the_gone() {
        let own = crate::collect::linux::netns::current_inode().unwrap();
        let me = std::process::id();
        let mut procs = Procs::new(own);
        let info = procs.resolve(me, 0.0).expect("this process is in its own namespace");
        assert!(!info.name.is_empty());
        assert!(procs.get(me).is_some());
        let mut other = Procs::new(own + 1);
        assert!(other.resolve(me, 0.0).is_none());
        assert_eq!(other.unresolved, 0, "another namespace is not a lookup failure");
        assert!(procs.resolve(u32::MAX - 1, 0.0).is_none());
        assert_eq!(procs.unresolved, 1);
        procs.sweep(100.0);
        assert!(procs.get(me).is_none());
    }
}
