//! Socket inode -> owning pid, from one pass over the `socket:[INODE]` links in /proc/*/fd,
//! parallel over processes and, for processes with many fds, inside each process. Counts the
//! processes it was not allowed to read and those that exited meanwhile; neither is fatal.
//! Knows nothing about sockets beyond their inode, and reads nothing but fd tables (and, for
//! `--all-netns`, which fds hold a namespace). Which tables to read again is `owner_cache.rs`'s.

use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::Context;
use porthog_core::bpf_record::OwnerRecord;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use rustix::fs::{AtFlags, Mode, OFlags, RawDir, openat, readlinkat_raw, statat};
use rustix::io::Errno;

/// Links read by one rayon task: large enough to amortise the task, small enough that one process
/// with 50,000 sockets is spread over both cores.
const CHUNK: usize = 2048;

/// Who owns which socket inode, and how complete that is.
#[derive(Debug, Default)]
pub struct Owners {
    /// inode -> pid, one entry per inode: a lookup per socket costs one probe, where a binary
    /// search of a sorted list cost ~18 (the join was 5 % of the BPF path's CPU at 250k sockets).
    by_inode: FxHashMap<u32, u32>,
    /// Processes whose fd table could not be read: permission denied.
    pub denied: u64,
    /// The errno of the first denial (EACCES or EPERM), and the first few pids denied.
    pub denied_errno: Option<Errno>,
    pub denied_pids: Vec<u32>,
    /// Processes that exited between being listed and having their fd table read.
    pub gone: u64,
    /// Processes whose fd table could not be opened because porthog ran out of file
    /// descriptors (EMFILE/ENFILE): not gone, not denied, just unread.
    pub unread: u64,
}

/// Marks an owner outside the namespace in [`Owners::from_kernel`]'s ranking. Pids stay below
/// the kernel's PID_MAX_LIMIT (2^22), so the bit is free, and the lower ranked value wins:
/// any owner inside before any outside, then the lowest pid.
const OUTSIDE: u32 = 1 << 31;

impl Owners {
    /// The owners a BPF `iter/task_file` walk found (`bpf.rs`), chosen as the /proc walk chooses:
    /// a process inside the namespace before one outside, then the lowest pid.
    pub fn from_kernel(records: &[OwnerRecord]) -> Owners {
        let mut ranked = FxHashMap::with_capacity_and_hasher(records.len(), Default::default());
        for o in records {
            let rank = o.pid | if o.inside { 0 } else { OUTSIDE };
            ranked.entry(o.inode).and_modify(|r: &mut u32| *r = (*r).min(rank)).or_insert(rank);
        }
        for rank in ranked.values_mut() {
            *rank &= !OUTSIDE;
        }
        Owners { by_inode: ranked, ..Owners::default() }
    }

    /// The owners of `pairs` (inode, pid), the lowest pid per inode, with `counts`' tallies of
    /// unreadable processes.
    pub fn from_pairs(pairs: Vec<(u32, u32)>, counts: Owners) -> Owners {
        Owners { by_inode: lowest_pid_per_inode(&pairs), ..counts }
    }

    /// How many socket inodes have an owner.
    pub fn inodes(&self) -> usize {
        self.by_inode.len()
    }

    pub fn pid(&self, inode: u32) -> Option<u32> {
        self.by_inode.get(&inode).copied()
    }
}

/// One process's open fd directory and the fd numbers listed in it.
struct FdTable {
    pid: u32,
    dir: OwnedFd,
    fds: Vec<u32>,
    /// A link could not be read for lack of permission (`proc_fd_access_allowed`): the raw
    /// errno, 0 while none was.
    denied: AtomicI32,
}

enum Skipped {
    Denied(Errno),
    Gone,
    /// EMFILE/ENFILE: porthog's own fd limit, not the process.
    NoFds,
}

/// Pids of processes whose fd table was refused, kept to name them in the gap.
const DENIED_EXAMPLES: usize = 3;

/// Fd tables held open at once: bounded so that porthog never needs more than this many file
/// descriptors, whatever the number of processes (the soft RLIMIT_NOFILE is often 1024).
const TABLES_AT_ONCE: usize = 512;

/// What a process's fd table looked like from outside: the fd directory's inode (a new one
/// for a new process with a reused pid) and its size, which is the number of open fds
/// (`proc_fd_getattr`, Linux 6.2+; older kernels report 0, so nothing looks changed there and
/// the cache's checks alone catch changes). `None` when it could not be stat'ed.
pub type FdKey = Option<(u64, u64)>;

/// A process listed in /proc, with its [`FdKey`].
#[derive(Debug, Clone, Copy)]
pub struct Listed {
    pub pid: u32,
    pub key: FdKey,
}

/// The processes of the host, split by whether they live in the inspected network namespace.
pub struct ProcessList {
    pub proc: OwnedFd,
    /// In the namespace, or unknown (its ns link could not be read): read first.
    pub inside: Vec<Listed>,
    /// In another namespace: read only when sockets are left without an owner, since a process
    /// can hold sockets of a namespace it has left (setns after socket(), fds passed over unix
    /// sockets), but rarely does. On a host full of containers this skips most fd tables.
    pub outside: Vec<Listed>,
}

impl ProcessList {
    /// Lists /proc; `netns` is the inode of the inspected namespace (`netns::current_inode`),
    /// `None` to take every process as inside.
    pub fn read(netns: Option<u64>) -> anyhow::Result<ProcessList> {
        let proc = open_proc()?;
        let pids = list_numeric(&proc).context("cannot list /proc")?;
        let listed: Vec<(Listed, bool)> = pids
            .par_iter()
            .map(|&pid| {
                let elsewhere = netns.is_some_and(|netns| {
                    statat(&proc, format!("{pid}/ns/net"), AtFlags::empty())
                        .is_ok_and(|st| st.st_ino != netns)
                });
                (Listed { pid, key: fd_key(&proc, pid) }, elsewhere)
            })
            .collect();
        let (mut inside, mut outside) = (Vec::new(), Vec::new());
        for (listed, elsewhere) in listed {
            if elsewhere { outside.push(listed) } else { inside.push(listed) }
        }
        Ok(ProcessList { proc, inside, outside })
    }
}

pub fn open_proc() -> anyhow::Result<OwnedFd> {
    openat(rustix::fs::CWD, "/proc", dir_flags(), Mode::empty()).context("cannot open /proc")
}

fn fd_key(proc: &OwnedFd, pid: u32) -> FdKey {
    let mut name = [0u8; 12];
    let mut path = decimal(pid, &mut name).to_bytes().to_vec();
    path.extend_from_slice(b"/fd");
    let st = statat(proc, path.as_slice(), AtFlags::empty()).ok()?;
    Some((st.st_ino, u64::try_from(st.st_size).unwrap_or(0)))
}

impl Owners {
    /// Keeps the first denial's errno and the first few pids denied, lowest first.
    fn note_denied(&mut self, pid: u32, errno: Option<Errno>) {
        if self.denied_errno.is_none() {
            self.denied_errno = errno;
        }
        if !self.denied_pids.contains(&pid) {
            self.denied_pids.push(pid);
            self.denied_pids.sort_unstable();
            self.denied_pids.truncate(DENIED_EXAMPLES);
        }
    }

    /// Adds another scan's counts of unreadable processes (its owners are used separately).
    pub fn merge_counts(&mut self, other: &Owners) {
        self.denied += other.denied;
        if self.denied_errno.is_none() {
            self.denied_errno = other.denied_errno;
        }
        for &pid in &other.denied_pids {
            self.note_denied(pid, None);
        }
        self.gone += other.gone;
        self.unread += other.unread;
    }
}

/// What reading some fd tables found.
#[derive(Debug, Default)]
pub struct Scanned {
    /// (socket inode, pid), unsorted.
    pub sockets: Vec<(u32, u32)>,
    /// (pid, fd) of fds that may hold a namespace: `net:[...]` links, and absolute paths on
    /// the nsfs device (a bind mount such as /run/netns/NAME opened by path). `discover.rs`
    /// decides.
    pub namespace_fds: Vec<(u32, u32)>,
    /// The pids whose table was read (the others are counted in `counts`).
    pub read: Vec<u32>,
    /// Unreadable processes; its `by_inode` is empty.
    pub counts: Owners,
}

/// Reads the fd tables of `pids`.
///
/// This loop runs once per fd (250,000 times on a busy host), so it uses rustix's getdents and
/// readlinkat relative to the fd directory rather than the procfs crate, whose `Process::fd()`
/// also stats every link and allocates a path per fd.
/// With `namespaces`, also the fds that may hold a network namespace (a stat of every absolute
/// path: only `--all-netns` discovery asks).
pub fn scan(proc: &OwnedFd, pids: &[u32], namespaces: bool) -> Scanned {
    let mut scanned = Scanned::default();
    let nsfs = if namespaces {
        rustix::fs::stat("/proc/self/ns/net").ok().map(|st| st.st_dev)
    } else {
        None
    };
    for batch in pids.chunks(TABLES_AT_ONCE) {
        scan_batch(proc, batch, nsfs, &mut scanned);
    }
    scanned
}

/// Opens the fd tables of `pids`, reads them in parallel chunks, and closes them again.
fn scan_batch(proc: &OwnedFd, pids: &[u32], nsfs: Option<u64>, scanned: &mut Scanned) {
    let owners = &mut scanned.counts;
    let opened: Vec<Result<FdTable, Skipped>> =
        pids.par_iter().map(|&pid| FdTable::open(proc, pid)).collect();
    let mut tables = Vec::with_capacity(opened.len());
    for (&pid, result) in pids.iter().zip(opened) {
        match result {
            Ok(table) => {
                scanned.read.push(pid);
                tables.push(table)
            }
            Err(Skipped::Denied(e)) => {
                owners.denied += 1;
                owners.note_denied(pid, Some(e));
            }
            Err(Skipped::Gone) => owners.gone += 1,
            Err(Skipped::NoFds) => owners.unread += 1,
        }
    }

    let chunks: Vec<(&FdTable, &[u32])> =
        tables.iter().flat_map(|t| t.fds.chunks(CHUNK).map(move |c| (t, c))).collect();
    let (sockets, namespace_fds) = chunks
        .par_iter()
        .fold(Links::default, |mut acc, &(table, fds)| {
            table.links(fds, nsfs, &mut acc);
            acc
        })
        .reduce(Links::default, |mut a, mut b| {
            if a.0.len() < b.0.len() {
                std::mem::swap(&mut a, &mut b);
            }
            a.0.append(&mut b.0);
            a.1.append(&mut b.1);
            a
        });
    scanned.sockets.extend(sockets);
    scanned.namespace_fds.extend(namespace_fds);
    for t in &tables {
        let raw = t.denied.load(Ordering::Relaxed);
        if raw != 0 {
            // A table with a refused link is not complete: not cached as read.
            scanned.read.retain(|&p| p != t.pid);
            scanned.counts.denied += 1;
            scanned.counts.note_denied(t.pid, Some(Errno::from_raw_os_error(raw)));
        }
    }
}

/// (socket inode, pid) and (pid, fd) of possible namespace fds, as one rayon fold collects them.
type Links = (Vec<(u32, u32)>, Vec<(u32, u32)>);

/// A socket shared by several processes (a pre-fork server's listener, a socket passed over a
/// unix socket, fds inherited across fork) goes to the lowest pid: usually the parent that
/// created it, and the same answer on every run, so snapshots can be compared.
fn lowest_pid_per_inode(pairs: &[(u32, u32)]) -> FxHashMap<u32, u32> {
    let mut lowest = FxHashMap::with_capacity_and_hasher(pairs.len(), Default::default());
    for &(inode, pid) in pairs {
        lowest.entry(inode).and_modify(|p: &mut u32| *p = (*p).min(pid)).or_insert(pid);
    }
    lowest
}

impl FdTable {
    fn open(proc: &OwnedFd, pid: u32) -> Result<FdTable, Skipped> {
        let skipped = |e: Errno| match e {
            Errno::ACCESS | Errno::PERM => Skipped::Denied(e),
            Errno::MFILE | Errno::NFILE => Skipped::NoFds,
            _ => Skipped::Gone,
        };
        let dir = openat(proc, format!("{pid}/fd"), dir_flags(), Mode::empty()).map_err(skipped)?;
        let fds = list_numeric(&dir).map_err(skipped)?;
        Ok(FdTable { pid, dir, fds, denied: AtomicI32::new(0) })
    }

    /// Pushes (inode, pid) for every fd of `fds` that is a socket, and (pid, fd) for every fd
    /// that may hold a network namespace (`nsfs` is the nsfs device).
    fn links(&self, fds: &[u32], nsfs: Option<u64>, out: &mut Links) {
        let mut name = [0u8; 12];
        let mut target = [0u8; 64];
        for &fd in fds {
            // A longer link is truncated to 64 bytes: enough to tell a socket, `net:[...]` or
            // an absolute path.
            match readlinkat_raw(&self.dir, decimal(fd, &mut name), &mut target[..]) {
                Ok(len) => {
                    let link = target.get(..len).unwrap_or_default();
                    if let Some(inode) = socket_inode(link) {
                        out.0.push((inode, self.pid));
                    } else if nsfs.is_some()
                        && (link.starts_with(b"net:[")
                            || (link.starts_with(b"/") && self.on_device(fd, nsfs)))
                    {
                        out.1.push((self.pid, fd));
                    }
                }
                Err(e @ (Errno::ACCESS | Errno::PERM)) => {
                    self.denied.store(e.raw_os_error(), Ordering::Relaxed);
                }
                // The fd was closed, or the process exited, since the listing.
                Err(_) => {}
            }
        }
    }
}

impl FdTable {
    /// Whether what `fd` opened lives on the nsfs device.
    fn on_device(&self, fd: u32, nsfs: Option<u64>) -> bool {
        let mut name = [0u8; 12];
        nsfs.is_some_and(|dev| {
            statat(&self.dir, decimal(fd, &mut name), AtFlags::empty())
                .is_ok_and(|st| st.st_dev == dev)
        })
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// The entries of a directory whose names are numbers (pids in /proc, fds in /proc/PID/fd).
fn list_numeric(dir: &OwnedFd) -> Result<Vec<u32>, Errno> {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    let mut entries = RawDir::new(dir, &mut buf);
    let mut numbers = Vec::new();
    while let Some(entry) = entries.next() {
        if let Some(n) = parse_decimal(entry?.file_name().to_bytes()) {
            numbers.push(n);
        }
    }
    Ok(numbers)
}

/// `socket:[12345]` -> 12345; anything else (files, pipes, anon inodes) -> None.
fn socket_inode(link: &[u8]) -> Option<u32> {
    parse_decimal(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
}

fn parse_decimal(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    digits.iter().try_fold(0u32, |n, &d| {
        let d = char::from(d).to_digit(10)?;
        n.checked_mul(10)?.checked_add(d)
    })
}

/// `n` as a path name without a heap allocation: rustix would copy a `&str` to add the NUL.
fn decimal(mut n: u32, buf: &mut [u8; 12]) -> &std::ffi::CStr {
    let mut i = buf.len() - 1;
    buf[i] = 0;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Digits then one NUL: always a valid C string.
    std::ffi::CStr::from_bytes_with_nul(&buf[i..]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        assert_eq!(socket_inode(b"socket:[123456]"), Some(123456));
        assert_eq!(socket_inode(b"socket:[4294967295]"), Some(u32::MAX));
        assert_eq!(socket_inode(b"socket:[4294967296]"), None);
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"pipe:[123]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"anon_inode:[eventpoll]"), None);
    }

    #[test]
    fn names() {
        let mut buf = [0; 12];
        assert_eq!(decimal(0, &mut buf).to_bytes(), b"0");
        assert_eq!(decimal(1234, &mut buf).to_bytes(), b"1234");
        assert_eq!(decimal(u32::MAX, &mut buf).to_bytes(), b"4294967295");
    }

    #[test]
    fn finds_its_own_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let me = std::process::id();
        let here = rustix::fs::stat("/proc/thread-self/ns/net").unwrap().st_ino;
        let list = ProcessList::read(Some(here)).unwrap();
        let me_listed = list.inside.iter().find(|l| l.pid == me).unwrap();
        assert!(!list.outside.iter().any(|l| l.pid == me));
        let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        // The listing's own fd came and went: within a few of the count read here.
        assert!(me_listed.key.unwrap().1.abs_diff(fds) <= 4, "{me_listed:?} vs {fds}");
        let pids: Vec<u32> = list.inside.iter().map(|l| l.pid).collect();
        // A namespace fd is looked for only when asked (discovery): a stat per absolute path.
        let ns = std::fs::File::open("/proc/self/ns/net").unwrap();
        let ns_fd = std::os::fd::AsRawFd::as_raw_fd(&ns) as u32;
        let with = scan(&list.proc, &[me], true);
        assert!(with.namespace_fds.contains(&(me, ns_fd)), "{:?}", with.namespace_fds);
        let scanned = scan(&list.proc, &pids, false);
        assert!(scanned.namespace_fds.is_empty(), "{:?}", scanned.namespace_fds);
        assert!(scanned.read.contains(&me));
        let owners = Owners::from_pairs(scanned.sockets, scanned.counts);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        let inode = socket_inode(link.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(owners.pid(inode), Some(me));
    }
}
