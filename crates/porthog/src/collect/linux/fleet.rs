//! Collecting every network namespace (`--all-netns`): one dedicated thread per namespace,
//! one namespace at a time. setns(CLONE_NEWNET) moves only the calling thread and, unlike
//! CLONE_NEWUSER, is allowed in a multi-threaded process (and needs no unshare(CLONE_FS), which
//! only CLONE_NEWNS does), so a fresh thread enters the namespace, creates the snapshot's
//! netlink socket and dump thread there, and ends with the collection: its namespace never
//! leaks to other work. Cheaper than re-executing porthog per namespace (no exec, no JSON
//! round trip), which matters for `serve` collecting every 15 s. The fd walk's rayon threads do
//! not depend on the namespace (/proc/PID/fd is the same from every namespace).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io;
use std::time::Instant;

use porthog_core::reuse::{self, Decision, Fingerprint, Walked};
use porthog_core::{Gap, GapKind, Snapshot, cgroup};

use super::discover::Found;
use super::signal::Signal;
use super::{SocketPart, Unsocketed, netns, snapshot_here_kept, snapshot_here_reusing, sockets};
use crate::collect::Collected;

/// What `serve --all-netns` keeps between collections: the change signal, when it could be
/// attached, and each namespace's last walk. Without the signal every namespace is walked
/// every time, as before.
pub struct Cache {
    signal: Option<Signal>,
    kept: HashMap<(u64, u64), Kept>,
    /// Namespaces walked and re-used by the last collection.
    pub walked: usize,
    pub reused: usize,
}

/// A namespace's last walk.
struct Kept {
    /// The namespace's cookie (SO_NETNS_COOKIE): a walk is kept under the namespace's inode
    /// number, which a namespace made after it died can get again; a different cookie under
    /// the same inode is a new namespace and is walked as one.
    cookie: Option<u64>,
    fingerprint: Fingerprint,
    at: Instant,
    shortest_time_wait_ms: Option<u32>,
    part: SocketPart,
    /// Its settings and conntrack, re-used on their own terms (`Unsocketed`).
    unsocketed: Unsocketed,
}

impl Cache {
    /// Attaches the change signal; the error (why it could not be) leaves a cache that walks
    /// every namespace every time.
    pub fn new() -> (Cache, Option<anyhow::Error>) {
        let (signal, refused) = match Signal::attach() {
            Ok(signal) => (Some(signal), None),
            Err(e) => (None, Some(e)),
        };
        (Cache { signal, kept: HashMap::new(), walked: 0, reused: 0 }, refused)
    }

    /// Whether unchanged namespaces are re-used (the signal is attached).
    pub fn signal_on(&self) -> bool {
        self.signal.is_some()
    }
}

/// Reads every namespace of `found`; those that vanish before they are entered, or cannot be
/// read, become gaps.
pub fn collect(found: Vec<Found>) -> (Vec<Collected>, Vec<Gap>) {
    collect_with(found, None)
}

/// [`collect`], re-using the last walk of each namespace whose change signal and sockstat
/// counters show no change (`porthog_core::reuse::decide`).
pub fn collect_reusing(found: Vec<Found>, cache: &mut Cache) -> (Vec<Collected>, Vec<Gap>) {
    collect_with(found, Some(cache))
}

fn collect_with(found: Vec<Found>, mut cache: Option<&mut Cache>) -> (Vec<Collected>, Vec<Gap>) {
    // The counters are read before any namespace is: a change during a walk shows next time.
    let counts = cache.as_deref_mut().and_then(|c| match c.signal.as_ref().map(Signal::read) {
        Some(Ok(counts)) => Some(counts),
        Some(Err(e)) => {
            eprintln!("porthog: note: change signal unreadable, every namespace walked: {e:#}");
            None
        }
        None => None,
    });
    if let Some(c) = cache.as_deref_mut() {
        c.walked = 0;
        c.reused = 0;
        let alive: BTreeSet<(u64, u64)> = found.iter().map(|f| (f.dev, f.inode)).collect();
        c.kept.retain(|key, _| alive.contains(key));
        if let (Some(signal), Some(counts)) = (c.signal.as_mut(), counts.as_ref()) {
            let inodes = alive.iter().map(|&(_, inode)| inode).collect();
            if let Err(e) = signal.forget_all_but(&inodes, counts) {
                eprintln!("porthog: note: cannot prune the change signal's map: {e:#}");
            }
        }
    }
    let mut collected = Vec::with_capacity(found.len());
    let mut vanished = 0u64;
    let (started, namespaces) = (Instant::now(), found.len());
    let mut in_threads = std::time::Duration::ZERO;
    let mut gaps = Vec::new();
    for f in found {
        let label = f.name.clone().unwrap_or_else(|| format!("net:[{}]", f.inode));
        let thread_label = label.clone();
        let path = f.path.clone();
        let (dev, inode) = (f.dev, f.inode);
        // With the signal: this namespace's count, and its last walk (taken out, put back).
        let reusing = counts.as_ref().map(|counts| {
            let changes = counts.changes.get(&inode).copied().unwrap_or(0);
            let kept = cache.as_deref_mut().and_then(|c| c.kept.remove(&(dev, inode)));
            (changes, counts.lost, kept)
        });
        let spawned = Instant::now();
        let run = std::thread::Builder::new()
            .name("porthog-netns".into())
            .spawn(move || one(&path, (dev, inode), thread_label, reusing));
        let outcome = match run {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Outcome::Failed(format!("reading network namespace {label} panicked"))
            }),
            Err(e) => Outcome::Failed(format!("cannot start a thread for {label}: {e}")),
        };
        in_threads += spawned.elapsed();
        let mut unchanged = false;
        let outcome = match outcome {
            Outcome::Kept(snapshot, kept, was_reused, same) => {
                unchanged = same;
                if let Some(c) = cache.as_deref_mut() {
                    if was_reused {
                        c.reused += 1;
                    } else {
                        c.walked += 1;
                    }
                    c.kept.insert((dev, inode), *kept);
                }
                Outcome::Read(snapshot)
            }
            Outcome::Read(snapshot) => {
                // Read without the signal (unreadable this time): walked all the same.
                if let Some(c) = cache.as_deref_mut() {
                    c.walked += 1;
                }
                Outcome::Read(snapshot)
            }
            other => other,
        };
        match outcome {
            Outcome::Kept(..) => {}
            Outcome::Read(snapshot) => collected.push(Collected {
                inode: f.inode,
                container: placement_label(&f.pids),
                name: f.name,
                pids: f.pids.into_iter().collect(),
                snapshot: *snapshot,
                unchanged,
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
    if crate::collect::timings() {
        eprintln!(
            "porthog: {namespaces} namespaces read in {:.1} ms ({:.1} ms from each thread's \
             start to its end)",
            started.elapsed().as_secs_f64() * 1e3,
            in_threads.as_secs_f64() * 1e3
        );
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
    /// Read with the change signal: the walk to keep, and whether it was re-used.
    /// And whether its input is the same as last time (`Collected::unchanged`).
    Kept(Box<Snapshot>, Box<Kept>, bool, bool),
    Vanished,
    Failed(String),
}

/// With the change signal: the namespace's change count, the signal's lost count, and its
/// last walk if any.
type Reusing = Option<(u64, u64, Option<Kept>)>;

/// On a fresh thread: opens the namespace by `path`, checks it is still the one found (a pid
/// can be reused), enters it and takes the snapshot (or re-uses the last walk's sockets).
fn one(path: &std::path::Path, key: (u64, u64), label: String, reusing: Reusing) -> Outcome {
    let started = Instant::now();
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
    let Some((changes, lost, kept)) = reusing else {
        return match super::snapshot_here_without_bpf(Some(label.clone())) {
            Ok(snapshot) => Outcome::Read(Box::new(snapshot)),
            Err(e) => Outcome::Failed(format!("reading network namespace {label}: {e:#}")),
        };
    };
    let entered = started.elapsed();
    // Read here, before the walk, as the reuse rule compares them (and before the cookie's
    // socket, which sockstat's `sockets: used` would count).
    let fingerprint = Fingerprint { changes, lost, sockstat: sockets::sockstat() };
    let cookie = netns::current_cookie();
    let fingerprinted = started.elapsed();
    // Without a cookie (kernels before 5.14) the inode alone keys the walk, as documented.
    let kept = kept.filter(|k| k.cookie == cookie);
    let previous = kept.as_ref().map(|k| Walked {
        fingerprint: k.fingerprint,
        age: k.at.elapsed(),
        shortest_time_wait_ms: k.shortest_time_wait_ms,
    });
    let decision = reuse::decide(previous.as_ref(), &fingerprint);
    let timed_label = crate::collect::timings().then(|| label.clone());
    let outcome = decided(decision, kept, label, cookie, fingerprint);
    if let Some(label) = timed_label {
        // Where a namespace's fixed cost goes (issue 9's "50 namespaces add at most 0.1 s").
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        eprintln!(
            "porthog: {label}: {decision:?} (opened and entered {:.2} ms, sockstat and cookie \
             {:.2} ms, snapshot {:.2} ms)",
            ms(entered),
            ms(fingerprinted - entered),
            ms(started.elapsed() - fingerprinted)
        );
    }
    outcome
}

/// The rest of [`one`] once the reuse rule has decided.
fn decided(
    decision: Decision,
    kept: Option<Kept>,
    label: String,
    cookie: Option<u64>,
    fingerprint: Fingerprint,
) -> Outcome {
    match (decision, kept) {
        (Decision::Reuse, Some(mut kept)) => {
            let mut part = kept.part.clone();
            reuse::age_time_wait(&mut part.sockets, kept.at.elapsed());
            let previous = kept.unsocketed;
            let (snapshot, unsocketed, same) =
                snapshot_here_reusing(Some(label), part, Some(previous));
            kept.unsocketed = unsocketed;
            let unchanged = same && kept.shortest_time_wait_ms.is_none();
            Outcome::Kept(Box::new(snapshot), Box::new(kept), true, unchanged)
        }
        // A walk keeps the settings and conntrack only where the cookie proves the namespace is
        // the same one: without it, a namespace made under a dead one's inode would show the dead
        // one's port range for up to SETTINGS_MAX_AGE even though its sockets were walked anew.
        (_, kept) => match (
            Instant::now(),
            snapshot_here_kept(
                Some(label.clone()),
                kept.filter(|_| cookie.is_some()).map(|k| k.unsocketed),
            ),
        ) {
            // Timed from the walk's start: the TIME_WAIT timers were read then, so a re-use
            // ages them by no less than really passed.
            (started, Ok((snapshot, part, unsocketed))) => {
                let kept = Kept {
                    cookie,
                    fingerprint,
                    at: started,
                    shortest_time_wait_ms: reuse::shortest_time_wait_ms(&part.sockets),
                    part,
                    unsocketed,
                };
                Outcome::Kept(Box::new(snapshot), Box::new(kept), false, false)
            }
            (_, Err(e)) => Outcome::Failed(format!("reading network namespace {label}: {e:#}")),
        },
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
