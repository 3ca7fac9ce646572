//! The live Linux collector: enters the namespace, reads the sockets and their owners, joins
//! the two, reads the owners and the port settings, and records every gap. As root, from the
//! kernel through BPF iterators (`bpf.rs`), with the kernel facts sock_diag lacks; otherwise, or
//! when that fails, from sock_diag and /proc/*/fd, and a gap says so. It orchestrates only:
//! each step lives in its own file.

mod bpf;
mod conntrack;
pub(crate) mod discover;
pub(crate) mod events;
pub(crate) mod fleet;
mod netlink_dump;
pub(crate) mod netns;
mod owner_cache;
mod owners;
pub(crate) mod process;
mod settings;
pub(crate) mod signal;
mod sock_diag;
pub(crate) mod sockets;
mod verifier;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use anyhow::anyhow;
use porthog_core::bpf_record::{SocketDecoder, decode_owners};
use porthog_core::report::plural;
use porthog_core::sockstat::Sockstat;
use porthog_core::{Gap, GapKind, Os, Snapshot, Socket};

use super::{CollectOptions, timeline};
use bpf::Iterators;
use owners::{Owners, ProcessList};
use sock_diag::SockDiag;

pub fn snapshot(opts: &CollectOptions) -> anyhow::Result<Snapshot> {
    // First, before any thread or socket exists: both inherit this thread's namespace.
    let _entered = opts.netns.as_ref().map(netns::enter).transpose()?;
    snapshot_here(opts.netns.as_ref().map(|t| t.label()))
}

/// A snapshot of the calling thread's network namespace, called `label` in the report.
pub fn snapshot_here(label: Option<String>) -> anyhow::Result<Snapshot> {
    snapshot_split(|| (unsocketed(label), ())).map(|(snapshot, ..)| snapshot)
}

/// The settings and conntrack of the calling thread's namespace, read anew: what the sockets
/// are joined to.
fn unsocketed(label: Option<String>) -> Snapshot {
    let mut snapshot = Snapshot::new(Os::Linux, "sock_diag");
    snapshot.netns = label;
    snapshot.settings = settings::read(&mut snapshot.gaps);
    snapshot.conntrack = conntrack::read(&mut snapshot.gaps).map(std::sync::Arc::new);
    snapshot
}

/// What `--all-netns` keeps of a namespace besides its sockets between collections: its
/// settings (read again every `SETTINGS_MAX_AGE`) and its conntrack (dumped again when its
/// statistics change, `porthog_core::reuse`).
#[derive(Debug)]
pub struct Unsocketed {
    settings: settings::Kept,
    conntrack: conntrack::Kept,
}

/// [`unsocketed`], re-using what `previous` kept where nothing says it changed; returns what
/// to keep for the next collection, and whether both were re-used.
fn unsocketed_reusing(
    label: Option<String>,
    previous: Option<Unsocketed>,
) -> (Snapshot, Unsocketed, bool) {
    let (settings, conntrack) = match previous {
        Some(p) => (Some(p.settings), Some(p.conntrack)),
        None => (None, None),
    };
    let before = (settings.as_ref().map(|s| s.at), conntrack.as_ref().map(|c| c.at));
    let kept = Unsocketed {
        settings: settings::read_reusing(settings),
        conntrack: conntrack::read_reusing(conntrack),
    };
    let same = before == (Some(kept.settings.at), Some(kept.conntrack.at));
    let mut snapshot = Snapshot::new(Os::Linux, "sock_diag");
    snapshot.netns = label;
    snapshot.settings = kept.settings.settings.clone();
    snapshot.gaps.extend(kept.settings.gaps.iter().cloned());
    snapshot.conntrack = kept.conntrack.conntrack.clone();
    snapshot.gaps.extend(kept.conntrack.gaps.iter().cloned());
    (snapshot, kept, same)
}

/// The sockets, owners and their gaps of a snapshot: what `--all-netns` re-uses for a namespace
/// whose change signal and counters say nothing changed (`fleet.rs`, `porthog_core::reuse`).
#[derive(Debug, Clone)]
pub struct SocketPart {
    pub source: String,
    pub sockets: Vec<Socket>,
    pub processes: Vec<porthog_core::Process>,
    pub gaps: Vec<Gap>,
}

/// [`snapshot_here_without_bpf`], its socket part to re-use later, and its settings and
/// conntrack (`previous` re-used where unchanged).
pub fn snapshot_here_kept(
    label: Option<String>,
    previous: Option<Unsocketed>,
) -> anyhow::Result<(Snapshot, SocketPart, Unsocketed)> {
    SOCK_DIAG_ONLY.set(true);
    let (snapshot, first_socket_gap, kept) = snapshot_split(|| {
        let (snapshot, kept, _) = unsocketed_reusing(label, previous);
        (snapshot, kept)
    })?;
    let part = SocketPart {
        source: snapshot.source.clone(),
        sockets: snapshot.sockets.clone(),
        processes: snapshot.processes.clone(),
        gaps: snapshot.gaps.get(first_socket_gap..).unwrap_or_default().to_vec(),
    };
    Ok((snapshot, part, kept))
}

/// A snapshot of the calling thread's namespace with the sockets of an earlier one (`part`,
/// its TIME_WAIT timers already aged), and its settings and conntrack (`previous` re-used where
/// unchanged), and whether those were both re-used.
pub fn snapshot_here_reusing(
    label: Option<String>,
    part: SocketPart,
    previous: Option<Unsocketed>,
) -> (Snapshot, Unsocketed, bool) {
    let (mut snapshot, kept, same) = unsocketed_reusing(label, previous);
    snapshot.source = part.source;
    snapshot.sockets = part.sockets;
    snapshot.processes = part.processes;
    snapshot.gaps.extend(part.gaps);
    (snapshot, kept, same)
}

/// [`snapshot_here`], and the index of the first gap about sockets (those before it are about
/// settings and conntrack). `unsocketed` reads the settings and conntrack into a new snapshot
/// and returns, besides it, what the caller keeps of them: `--all-netns` keeps an
/// [`Unsocketed`] ([`snapshot_here_kept`]), a one-off snapshot nothing (`()`).
fn snapshot_split<K>(
    unsocketed: impl FnOnce() -> (Snapshot, K),
) -> anyhow::Result<(Snapshot, usize, K)> {
    // First, before porthog opens a socket here itself (conntrack's netlink socket would count).
    let sockstat = sockets::sockstat();
    raise_nofile_limit();
    let (mut snapshot, kept) = unsocketed();
    timeline("settings and conntrack read");
    let first_socket_gap = snapshot.gaps.len();

    let unavailable = match bpf_refusal() {
        Some(reason) => reason,
        None => match with_iterators(|it| from_kernel(it, &mut snapshot)) {
            // iter/task_file reports bound-but-inactive sockets on every kernel: no gap.
            Ok(()) => return Ok((snapshot, first_socket_gap, kept)),
            // The chain of causes on one line; a refused program's verifier lines on stderr.
            Err(e) => {
                verifier::print_once(&e);
                format!("{e:#}").lines().next().unwrap_or_default().to_owned()
            }
        },
    };
    snapshot.sockets.clear();
    from_sock_diag(&mut snapshot, sockstat)?;
    snapshot.gaps.push(Gap {
        kind: GapKind::Source,
        count: None,
        message: format!(
            "the kernel's own socket state was not read ({unavailable}): sockets came from \
             {} and owners from /proc/*/fd, so which call made each port's bind bucket \
             (bind() or connect()), whether TIME_WAIT sockets recorded timestamps, the device \
             they are bound to and v6only are unknown, and the analysis assumes them",
            snapshot.source
        ),
        advice: Some(
            "run as root on a kernel with BPF iterators and BTF (Linux 5.15+, \
             /sys/kernel/btf/vmlinux), without --no-bpf"
                .into(),
        ),
    });
    bound_inactive_gap(&mut snapshot);
    Ok((snapshot, first_socket_gap, kept))
}

thread_local! {
    /// Set on the threads of `--all-netns`, which read one namespace each and end.
    static SOCK_DIAG_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`snapshot_here`] from sock_diag and /proc only, on this thread: for short-lived threads
/// that would load the BPF programs for a single snapshot.
pub fn snapshot_here_without_bpf(label: Option<String>) -> anyhow::Result<Snapshot> {
    SOCK_DIAG_ONLY.set(true);
    snapshot_here(label)
}

thread_local! {
    /// The programs stay loaded for the sampler's next snapshot (`watch`, `record`); the kernel
    /// frees them when the process exits, however it exits (nothing is pinned).
    static LOADED: std::cell::RefCell<Option<Iterators>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the loaded programs, loading them on the thread's first snapshot.
fn with_iterators(f: impl FnOnce(&mut Iterators) -> anyhow::Result<()>) -> anyhow::Result<()> {
    LOADED.with_borrow_mut(|loaded| {
        let it = match loaded {
            Some(it) => it,
            None => {
                // The two other programs are loaded by `from_kernel` while the TCP walk runs.
                let it = Iterators::load_tcp_first()?;
                timeline("iter/tcp loaded");
                loaded.insert(it)
            }
        };
        f(it)
    })
}

/// Why the BPF path is not even tried, if it is not.
fn bpf_refusal() -> Option<String> {
    if !super::bpf_enabled() {
        return Some("disabled with --no-bpf or PORTHOG_NO_BPF".into());
    }
    if SOCK_DIAG_ONLY.get() {
        return Some(
            "--all-netns reads each namespace on a thread of its own, and loading the BPF \
             programs there for every namespace and every sample would cost ~0.09 s each"
                .into(),
        );
    }
    if !rustix::process::geteuid().is_root() {
        return Some("not root: BPF iterators need CAP_BPF and CAP_PERFMON".into());
    }
    None
}

/// The BPF path: sockets with their kernel facts from `iter/tcp` and `iter/udp`, owners from
/// `iter/task_file`, which also reports the bound-but-inactive TCP sockets (in no table the
/// socket iterators walk) from the fds that hold them. The iterators are created on the thread
/// that entered the namespace or a thread it started (which inherits it), and read on two
/// threads at once. On the first snapshot only the TCP program is loaded yet: its walk starts
/// at once, and this thread loads the owner and UDP programs meanwhile, handing the UDP walk
/// over to be read after the TCP one.
fn from_kernel(it: &mut Iterators, snapshot: &mut Snapshot) -> anyhow::Result<()> {
    if let Some(why) = it.refused() {
        return Err(anyhow!("{why}"));
    }
    let started = std::time::Instant::now();
    let tcp = it.tcp()?;
    timeline("iter/tcp created");
    let idle = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Handed>();
    let (udp_tx, udp_rx) = mpsc::channel::<bpf::Walk>();
    let (walked, owned) = std::thread::scope(|scope| {
        let idle = &idle;
        let walked = scope.spawn(move || -> anyhow::Result<_> {
            timeline("socket walk starts");
            let mut sockets = Vec::new();
            let mut decoder = Some(SocketDecoder::new(&sockets));
            let gone = || anyhow!("the BPF owner walk stopped");
            tcp.read_chunks(|bytes| {
                // Once the owner thread is idle, it decodes the rest (and joins it to the owners).
                if idle.load(Ordering::Relaxed)
                    && let Some(d) = decoder.take()
                {
                    tx.send(Handed::Decoder(d, std::mem::take(&mut sockets)))
                        .map_err(|_| gone())?;
                    timeline("iter/tcp decoding handed over");
                }
                match decoder.as_mut() {
                    Some(d) => Ok(d.feed(bytes, &mut sockets)?),
                    None => tx.send(Handed::Chunk(bytes.to_vec())).map_err(|_| gone()),
                }
            })?;
            drop(tx);
            let tcp = decoder.map(|d| d.finish(&mut sockets)).transpose()?;
            timeline("iter/tcp read");
            // Not sent only when the UDP or owner program failed to load: that error is the one
            // reported.
            let udp = udp_rx.recv().map_err(|_| anyhow!("the BPF UDP walk was not created"))?;
            let mut udp_sockets = Vec::new();
            let udp = udp.read_sockets(&mut udp_sockets)?;
            timeline("iter/udp read and decoded");
            Ok((sockets, tcp, udp_sockets, udp))
        });
        // The owners are indexed by inode here, while the socket walk may still run.
        let owned = it.owners().and_then(|owners| {
            udp_tx.send(it.udp()?).map_err(|_| anyhow!("the BPF socket walk stopped"))?;
            drop(udp_tx);
            timeline("owner walk starts");
            owners.read(1 << 16)
        });
        let owned = owned.and_then(|b| {
            timeline("iter/task_file read");
            let mut walk = decode_owners(&b)?;
            drop(b);
            let owners = Owners::from_kernel(&walk.owners);
            walk.owners = Vec::new();
            timeline("iter/task_file decoded and indexed");
            idle.store(true, Ordering::Relaxed);
            let handed = take_over(rx, &owners)?;
            Ok((walk, owners, handed))
        });
        (walked.join(), owned)
    });
    // The owner thread's error first: when it stops, the socket walk's next hand-over fails too.
    let (mut walk, owners, handed) = owned?;
    let (sockets, tcp, udp_sockets, udp) =
        walked.map_err(|_| anyhow!("the BPF socket walk thread panicked"))??;
    let (mut sockets, tcp, mut pids, attributed) = match (tcp, handed) {
        (Some(tcp), _) => (sockets, tcp, Vec::new(), 0),
        (None, Some(mut h)) => {
            let tcp = h.decoder.finish(&mut h.sockets)?;
            (h.sockets, tcp, h.pids, h.attributed)
        }
        (None, None) => return Err(anyhow!("the BPF TCP walk was handed over but never arrived")),
    };
    sockets.extend(udp_sockets);
    let bound = walk.bound_not_in(&sockets);
    sockets.extend(bound);
    snapshot.source = "bpf".into();
    snapshot.sockets = sockets;
    let unknown = tcp.unknown_states + udp.unknown_states;
    if unknown > 0 {
        snapshot.gaps.push(Gap {
            kind: GapKind::Source,
            count: Some(unknown),
            message: format!("{unknown} sockets in a state porthog does not know were left out"),
            advice: None,
        });
    }
    if tcp.hz.is_none() {
        snapshot.gaps.push(Gap {
            kind: GapKind::Source,
            count: None,
            message: "the kernel's tick rate could not be derived from its clocks, so the age \
                      of TIME_WAIT sockets is unknown"
                .into(),
            advice: Some("run again; this happens only around the 300th second of uptime".into()),
        });
    }
    let walked = started.elapsed();
    pids.extend(attribute(snapshot.sockets.get_mut(attributed..).unwrap_or_default(), &owners));
    pids.sort_unstable();
    pids.dedup();
    timeline("sockets attributed");
    let (processes, exited) = process::read(&pids);
    timeline("processes read");
    snapshot.processes = processes;
    attribution_gaps(&snapshot.sockets, &owners, exited, &mut snapshot.gaps);
    if crate::collect::timings() {
        eprintln!(
            "porthog: BPF walks of {} sockets and {} owners in {:.1} ms, joined and processes \
             read by {:.1} ms (peak RSS {} KiB)",
            snapshot.sockets.len(),
            owners.inodes(),
            walked.as_secs_f64() * 1e3,
            started.elapsed().as_secs_f64() * 1e3,
            bpf::peak_rss_kib()
        );
    }
    Ok(())
}

/// What the socket-walk thread hands the owner thread once that one has nothing left to do:
/// the TCP walk's decoder with the sockets so far, then the walk's raw output, read by read.
/// The socket walk is the longer of the two by ~100-300 ms at 250,000 sockets (and decoding is
/// ~4 % of porthog's CPU), so its decoding and the join to the owners move to the idle core.
enum Handed {
    Decoder(SocketDecoder, Vec<Socket>),
    Chunk(Vec<u8>),
}

/// The TCP walk as the owner thread took it over: decoded and joined to the owners up to
/// `attributed`, with the pids used so far.
struct TakenOver {
    decoder: SocketDecoder,
    sockets: Vec<Socket>,
    attributed: usize,
    pids: Vec<u32>,
}

/// Decodes and attributes what the socket walk hands over until it ends (`None` if it ended
/// before the owners were indexed, having decoded everything itself).
fn take_over(rx: mpsc::Receiver<Handed>, owners: &Owners) -> anyhow::Result<Option<TakenOver>> {
    let mut taken: Option<TakenOver> = None;
    for handed in rx {
        match (handed, taken.as_mut()) {
            (Handed::Decoder(decoder, sockets), _) => {
                taken = Some(TakenOver { decoder, sockets, attributed: 0, pids: Vec::new() });
            }
            (Handed::Chunk(bytes), Some(t)) => t.decoder.feed(&bytes, &mut t.sockets)?,
            (Handed::Chunk(_), None) => {
                return Err(anyhow!("the BPF TCP walk's output arrived before its decoder"));
            }
        }
        if let Some(t) = taken.as_mut() {
            let fresh = t.sockets.get_mut(t.attributed..).unwrap_or_default();
            t.pids.extend(attribute(fresh, owners));
            t.attributed = t.sockets.len();
        }
    }
    Ok(taken)
}

/// The sock_diag path: the dump, and the /proc/*/fd walk at the same time. The walk reads
/// again only the fd tables that changed since the last snapshot (`owner_cache.rs`). A
/// namespace whose counters show no TCP or UDP socket at all (`Sockstat::no_sockets`) is
/// neither dumped nor walked: each dump would walk the whole host's sockets to find none.
fn from_sock_diag(snapshot: &mut Snapshot, sockstat: Option<Sockstat>) -> anyhow::Result<()> {
    if sockstat.is_some_and(|s| s.no_sockets()) {
        if crate::collect::timings() {
            eprintln!("porthog: sockstat shows no TCP or UDP socket: no dump, no fd walk");
        }
        snapshot.source = "sock_diag".into();
        return Ok(());
    }
    let diag = SockDiag::open();
    let netns_inode = netns::current_inode()?;
    // The dump runs on a thread started from here, so a /proc/thread-self/net fallback reads
    // the inspected namespace. The fd walk meanwhile uses rayon's pool; /proc/PID/fd does not
    // depend on the network namespace, whichever namespace the pool's threads were born in.
    let (dump, owners) = std::thread::scope(|scope| {
        let dump = scope.spawn(move || {
            let mut sockets = Vec::new();
            let mut gaps = Vec::new();
            sockets::sockets(diag, sockstat, &mut sockets, &mut gaps)
                .map(|source| (source, sockets, gaps))
        });
        let owners = ProcessList::read(Some(netns_inode)).map(|list| {
            let owners = owner_cache::with(|c| {
                let owners = c.owners(&list.proc, &list.inside, false);
                (owners, c.read_all)
            });
            (list, owners)
        });
        (dump.join(), owners)
    });
    let (source, sockets, gaps) = dump.map_err(|_| anyhow!("the sock_diag thread panicked"))??;
    let (list, (mut owners, read_all)) = owners?;
    snapshot.source = source.to_string();
    snapshot.sockets = sockets;
    snapshot.gaps.extend(gaps);

    let mut pids = attribute(&mut snapshot.sockets, &owners);
    let unowned = |sockets: &[Socket]| -> Vec<u32> {
        sockets.iter().filter(|s| s.inode != 0 && s.pid.is_none()).map(|s| s.inode).collect()
    };
    let known = |inodes: &[u32]| owner_cache::with(|c| inodes.iter().all(|&i| c.known_unowned(i)));
    let left = unowned(&snapshot.sockets);
    // Sockets closed between the dump and the walk are in no table: neither pass below runs
    // for them.
    let closed = !known(&left) && closed_since_dump(&snapshot.sockets);
    if !known(&left) && !closed {
        // Pass 2 only for sockets no process inside the namespace holds (a socket created
        // before its process moved, or passed over a unix socket): first the cached tables of
        // the processes outside, which hold them sample after sample without a walk.
        let outside = owner_cache::with(|c| c.owners(&list.proc, &list.outside, false));
        pids.extend(attribute(&mut snapshot.sockets, &outside));
        owners.merge_counts(&outside);
    }
    // A live socket no cached table holds: a table changed in a way its key does not show
    // (an fd replaced by a socket), so every table is read again (inside first: an owner
    // inside always wins), unless the last such walk already found nobody holding these
    // sockets (kernel sockets), or the first pass read every table anyway (a first sample).
    let left = unowned(&snapshot.sockets);
    if !known(&left) && !closed {
        if !read_all {
            owners = owner_cache::with(|c| c.owners(&list.proc, &list.inside, true));
            pids.extend(attribute(&mut snapshot.sockets, &owners));
        }
        if !unowned(&snapshot.sockets).is_empty() {
            let outside = owner_cache::with(|c| c.owners(&list.proc, &list.outside, true));
            pids.extend(attribute(&mut snapshot.sockets, &outside));
            owners.merge_counts(&outside);
        }
        let still = unowned(&snapshot.sockets);
        if crate::collect::timings() {
            eprintln!(
                "porthog: {} sockets without a cached owner: every fd table read again; {} left \
                 without one",
                left.len(),
                still.len()
            );
        }
        owner_cache::with(|c| c.remember_unowned(still));
    }
    pids.sort_unstable();
    pids.dedup();
    if crate::collect::timings() {
        let (read, reused) = owner_cache::with(|c| (c.read, c.reused));
        eprintln!("porthog: fd tables read {read}, reused {reused} since start");
    }
    let (processes, exited) = process::read(&pids);
    snapshot.processes = processes;
    attribution_gaps(&snapshot.sockets, &owners, exited, &mut snapshot.gaps);
    Ok(())
}

/// At most this many sockets are looked up one by one before a full fd walk: beyond it, the walk.
const LOOKUPS_BEFORE_WALK: usize = 64;

/// Whether every live socket without an owner (and not already known to have none) has been
/// closed since the dump, so that reading every fd table again cannot find its owner: the
/// dump and the fd walk run at the same time, and a connection that a churning client opens
/// and closes between the two is in the dump but in no table (issue 9: at 400 connections/s
/// this made a full walk of ~76,000 fds every few samples). Each is checked with one exact
/// sock_diag lookup; any socket the lookups cannot decide, or still open, means the walk.
/// The closed sockets stay unattributed, as the walk would have left them, and are not
/// remembered as ownerless (they will not be seen again).
fn closed_since_dump(sockets: &[Socket]) -> bool {
    let left: Vec<&Socket> = sockets
        .iter()
        .filter(|s| s.inode != 0 && s.pid.is_none())
        .filter(|s| !owner_cache::with(|c| c.known_unowned(s.inode)))
        .collect();
    if left.is_empty() || left.len() > LOOKUPS_BEFORE_WALK {
        return false;
    }
    let Ok(mut diag) = SockDiag::open() else { return false };
    let closed = left.iter().all(|s| matches!(diag.still_held(s), Ok(Some(false))));
    if closed && crate::collect::timings() {
        eprintln!(
            "porthog: {} without a cached owner closed since the dump: no fd walk",
            plural(left.len() as u64, "socket")
        );
    }
    closed
}

fn bound_inactive_gap(snapshot: &mut Snapshot) {
    if snapshot.source != "/proc/net" && !kernel_shows_bound_inactive() {
        snapshot.gaps.push(Gap {
            kind: GapKind::Invisible,
            count: None,
            message: "bound-but-unconnected TCP sockets are not visible: sock_diag dumps them \
                      (BOUND_INACTIVE) only from Linux 6.10"
                .into(),
            advice: Some(
                "run on Linux 6.10 or later, or as root for the BPF iterators, to see bind() leaks"
                    .into(),
            ),
        });
    }
}

/// The fd walk holds up to `TABLES_AT_ONCE` fd directories open; a soft limit of 1024 would be
/// tight beside the netlink socket and rayon's threads. Best effort: the hard limit is the cap.
fn raise_nofile_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: lim.maximum, maximum: lim.maximum });
    }
}

/// Sets `Socket::pid` of sockets that have none from the fd walk; returns the pids it used,
/// sorted and distinct.
fn attribute(sockets: &mut [Socket], owners: &Owners) -> Vec<u32> {
    use rayon::prelude::*;
    use rustc_hash::FxHashSet;
    // Each lookup is a cache miss or two in a table of 250,000 entries: spread over the cores.
    // Few processes own many sockets: a set of pids, not one pid per socket to sort.
    let pids = sockets
        .par_chunks_mut(ATTRIBUTE_CHUNK)
        .map(|chunk| {
            let mut pids = FxHashSet::default();
            for s in chunk.iter_mut().filter(|s| s.inode != 0 && s.pid.is_none()) {
                s.pid = owners.pid(s.inode).and_then(NonZeroU32::new);
                pids.extend(s.pid.map(NonZeroU32::get));
            }
            pids
        })
        .reduce(FxHashSet::default, |mut a, b| {
            a.extend(b);
            a
        });
    let mut pids: Vec<u32> = pids.into_iter().collect();
    pids.sort_unstable();
    pids
}

/// Sockets one rayon task of [`attribute`] joins: a few tasks per core at 250,000 sockets, one
/// for a small namespace.
const ATTRIBUTE_CHUNK: usize = 32 * 1024;

/// Who porthog runs as, for what to say when the kernel refuses an fd table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privilege {
    /// Not root and without CAP_SYS_PTRACE: other users' processes are refused.
    Unprivileged,
    /// uid 0 without CAP_SYS_PTRACE (a container that dropped it).
    RootWithoutPtrace,
    /// CAP_SYS_PTRACE in effect: only something beyond it refuses.
    Ptrace,
}

impl Privilege {
    fn own() -> Privilege {
        let ptrace = rustix::thread::capabilities(None)
            .is_ok_and(|c| c.effective.contains(rustix::thread::CapabilitySet::SYS_PTRACE));
        match (ptrace, rustix::process::geteuid().is_root()) {
            (true, _) => Privilege::Ptrace,
            (false, true) => Privilege::RootWithoutPtrace,
            (false, false) => Privilege::Unprivileged,
        }
    }
}

/// What the kernel refused: the errno, how many processes, the first few of them.
struct Refusal {
    errno: &'static str,
    processes: u64,
    examples: Vec<String>,
}

fn errno_name(e: rustix::io::Errno) -> &'static str {
    if e == rustix::io::Errno::PERM { "EPERM" } else { "EACCES" }
}

/// The gap for `n` sockets left unattributed because fd tables were refused: what refused,
/// and what to do, which depends on who porthog already is.
fn denied_gap(n: u64, r: &Refusal, who: Privilege) -> Gap {
    let e_g = if r.examples.is_empty() {
        String::new()
    } else {
        format!(", e.g. {}", r.examples.join(", "))
    };
    let head = format!(
        "{} unattributed: reading /proc/PID/fd of {} was refused ({}{e_g})",
        plural(n, "socket"),
        plural(r.processes, "process"),
        r.errno
    );
    let (why, advice) = match who {
        Privilege::Unprivileged => {
            (String::new(), "run as root (or with CAP_SYS_PTRACE)".to_owned())
        }
        Privilege::RootWithoutPtrace => (
            ": porthog runs as root but without CAP_SYS_PTRACE, which reading another \
             process's fd table needs"
                .to_owned(),
            "give porthog CAP_SYS_PTRACE (for a container: --cap-add SYS_PTRACE)".to_owned(),
        ),
        Privilege::Ptrace => (
            ": porthog already runs with CAP_SYS_PTRACE, so the kernel's ptrace access check \
             refused for another reason: a security module (AppArmor, SELinux, Yama) confining \
             porthog, a process holding capabilities porthog lacks, or one of a user namespace \
             porthog has no rights in"
                .to_owned(),
            "run porthog outside that confinement (in the host's namespaces, with every \
             capability; the audit log or dmesg names the rule that refused)"
                .to_owned(),
        ),
    };
    Gap {
        kind: GapKind::Unattributed,
        count: Some(n),
        message: format!("{head}{why}"),
        advice: Some(advice),
    }
}

fn attribution_gaps(sockets: &[Socket], owners: &Owners, exited: u64, gaps: &mut Vec<Gap>) {
    // TIME_WAIT and request sockets have inode 0: no process owns them, which is no gap.
    let n = sockets.iter().filter(|s| s.inode != 0 && s.pid.is_none()).count() as u64;
    if n > 0 && owners.denied > 0 {
        let examples: Vec<String> = owners
            .denied_pids
            .iter()
            .map(|&pid| format!("pid {pid} {}", process::comm(pid).unwrap_or_else(|| "?".into())))
            .collect();
        let refusal = Refusal {
            errno: owners.denied_errno.map_or("EACCES", errno_name),
            processes: owners.denied,
            examples,
        };
        gaps.push(denied_gap(n, &refusal, Privilege::own()));
    } else if n > 0 {
        gaps.push(Gap {
            kind: GapKind::Unattributed,
            count: Some(n),
            message: format!(
                "{} in no process's fd table: kernel sockets, or sockets of \
                 processes that closed them or exited during the scan",
                plural(n, "socket")
            ),
            advice: None,
        });
    }
    if owners.unread > 0 {
        gaps.push(Gap {
            kind: GapKind::Unattributed,
            count: Some(owners.unread),
            message: format!(
                "fd tables of {} not read: porthog ran out of file descriptors (EMFILE/ENFILE)",
                plural(owners.unread, "process")
            ),
            advice: Some(
                "raise porthog's open-file limit (ulimit -n) or the system's (fs.file-max)".into(),
            ),
        });
    }
    if owners.gone > 0 {
        gaps.push(Gap {
            kind: GapKind::ProcessGone,
            count: Some(owners.gone),
            message: format!(
                "{} before {} fd table could be read; the sockets, if \
                 still open, are unattributed",
                plural(owners.gone, "process"),
                if owners.gone == 1 { "exited, its" } else { "exited, their" }
            ),
            advice: None,
        });
    }
    if exited > 0 {
        gaps.push(Gap {
            kind: GapKind::ProcessGone,
            count: Some(exited),
            message: format!(
                "{exited} socket owners exited while being read: their name, command line, user \
                 or cgroup may be missing"
            ),
            advice: None,
        });
    }
}

/// sock_diag dumps TCP_BOUND_INACTIVE sockets from Linux 6.10 (`inet_diag_dump_icsk`).
fn kernel_shows_bound_inactive() -> bool {
    let uname = rustix::system::uname();
    kernel_at_least(&uname.release().to_string_lossy(), (6, 10))
}

/// Compares the `major.minor` prefix of a release string like "6.18.44-fc-v782".
fn kernel_at_least(release: &str, wanted: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= wanted,
        // An unreadable release: assume the old behaviour, which at worst adds a needless gap.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refused_fd_table_says_what_refused_and_what_to_do() {
        use super::{Privilege, Refusal, denied_gap};
        let r = Refusal { errno: "EACCES", processes: 1, examples: vec!["pid 1 init".into()] };
        let gap = denied_gap(1, &r, Privilege::Unprivileged);
        assert_eq!(
            gap.message,
            "1 socket unattributed: reading /proc/PID/fd of 1 process was refused (EACCES, e.g. pid 1 init)"
        );
        assert_eq!(gap.advice.as_deref(), Some("run as root (or with CAP_SYS_PTRACE)"));
        let root = denied_gap(3, &r, Privilege::Ptrace);
        assert!(root.message.starts_with("3 sockets unattributed"), "{}", root.message);
        assert!(root.message.contains("already runs with CAP_SYS_PTRACE"), "{}", root.message);
        assert!(!root.advice.unwrap().contains("run as root"), "root is not told to be root");
        let no_ptrace = denied_gap(2, &r, Privilege::RootWithoutPtrace);
        assert!(no_ptrace.advice.unwrap().contains("CAP_SYS_PTRACE"));
    }

    use super::*;

    /// The owner thread's take-over decodes and joins exactly what the socket thread would
    /// have done alone, wherever the hand-over falls (inside a record too) and however the rest
    /// arrives; nothing handed over is no take-over. Needs root for real iterator output;
    /// skipped otherwise, except under CI=true.
    #[test]
    fn a_taken_over_tcp_walk_decodes_and_joins_as_the_whole_walk() {
        use porthog_core::bpf_record::decode_sockets;
        if !rustix::process::geteuid().is_root() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root under CI=true");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut it = Iterators::load().unwrap();
        let bytes = it.tcp().unwrap().read(1 << 16).unwrap();
        let owned = decode_owners(&it.owners().unwrap().read(1 << 16).unwrap()).unwrap();
        let owners = Owners::from_kernel(&owned.owners);
        let mut whole = Vec::new();
        let whole_walk = decode_sockets(&bytes, &mut whole).unwrap();
        let whole_pids = attribute(&mut whole, &owners);
        assert!(whole.len() >= 3 && !whole_pids.is_empty(), "{whole:?}");
        assert!(whole.iter().any(|s| s.pid == NonZeroU32::new(std::process::id())));

        for (cut, piece) in [(0, 64), (1, 100), (64 * 2 + 5, 7), (bytes.len() - 3, 64)] {
            let mut sockets = Vec::new();
            let mut decoder = SocketDecoder::new(&sockets);
            decoder.feed(&bytes[..cut], &mut sockets).unwrap();
            let (tx, rx) = mpsc::channel();
            tx.send(Handed::Decoder(decoder, sockets)).unwrap();
            for chunk in bytes[cut..].chunks(piece) {
                tx.send(Handed::Chunk(chunk.to_vec())).unwrap();
            }
            drop(tx);
            let mut t = take_over(rx, &owners).unwrap().unwrap();
            assert_eq!(t.attributed, t.sockets.len(), "cut at {cut}");
            let walk = t.decoder.finish(&mut t.sockets).unwrap();
            assert_eq!((&t.sockets, &walk), (&whole, &whole_walk), "cut at {cut}");
            t.pids.sort_unstable();
            t.pids.dedup();
            assert_eq!(t.pids, whole_pids, "cut at {cut}");
        }
        let (tx, rx) = mpsc::channel::<Handed>();
        drop(tx);
        assert!(take_over(rx, &owners).unwrap().is_none());
    }

    #[test]
    fn attributes_its_own_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let snapshot = snapshot(&CollectOptions::default()).unwrap();
        let expected = if rustix::process::geteuid().is_root() { "bpf" } else { "sock_diag" };
        assert_eq!(snapshot.source, expected, "{:?}", snapshot.gaps);
        assert_eq!(snapshot.netns, None);
        let mine = snapshot.sockets.iter().find(|s| s.local_port == port).unwrap();
        let me = std::process::id();
        assert_eq!(mine.pid.map(NonZeroU32::get), Some(me));
        assert_eq!(snapshot.process(me).map(|p| p.pid), Some(me));
        assert!(snapshot.settings.tcp_range.is_some());
        assert!(snapshot.processes.windows(2).all(|w| w[0].pid < w[1].pid));
    }

    /// The sock_diag path keeps owners across snapshots: a socket opened after the first is
    /// attributed in the second, and so is one that replaced another one for one (the fd count
    /// unchanged: found by the walk a socket without a cached owner triggers).
    #[test]
    fn sock_diag_path_follows_new_sockets_across_snapshots() {
        let me = std::process::id();
        let owner = |port: u16| {
            let snapshot = snapshot_here_without_bpf(None).unwrap();
            assert_eq!(snapshot.source, "sock_diag", "{:?}", snapshot.gaps);
            snapshot.sockets.iter().find(|s| s.local_port == port).and_then(|s| s.pid)
        };
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
        assert_eq!(owner(port(&first)).map(NonZeroU32::get), Some(me));
        let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(owner(port(&second)).map(NonZeroU32::get), Some(me));
        drop(first);
        let third = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(owner(port(&third)).map(NonZeroU32::get), Some(me));
    }

    /// A socket in the dump but closed before the fd walk reached it spares the full walk; one
    /// still open, or more than the lookups allow, does not.
    #[test]
    fn only_sockets_closed_since_the_dump_spare_the_walk() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let port = client.local_addr().unwrap().port();
        let mut dumped = Vec::new();
        SockDiag::open()
            .unwrap()
            .dump(sock_diag::TCP_BOTH, sock_diag::ALL_STATES, &mut dumped)
            .unwrap();
        let mine = *dumped
            .iter()
            .find(|s| s.local_port == port && s.state == porthog_core::State::Established)
            .unwrap();
        assert!(mine.pid.is_none() && mine.inode != 0);
        assert!(!closed_since_dump(&[mine]), "still open: the walk must run");
        drop(client);
        assert!(closed_since_dump(&[mine]), "closed: no table can hold it");
        let many = vec![mine; LOOKUPS_BEFORE_WALK + 1];
        assert!(!closed_since_dump(&many), "past the lookup budget, the walk");
        let owned = Socket { pid: NonZeroU32::new(1), ..mine };
        assert!(!closed_since_dump(&[owned]), "nothing left without an owner: nothing to spare");
        drop(server);
    }

    #[test]
    fn kernel_versions() {
        assert!(kernel_at_least("6.18.44-fc-v782", (6, 10)));
        assert!(kernel_at_least("6.10.0", (6, 10)));
        assert!(!kernel_at_least("6.9.12-arch1-1", (6, 10)));
        assert!(!kernel_at_least("5.15.0-105-generic", (6, 10)));
        assert!(kernel_at_least("7.0", (6, 10)));
        assert!(!kernel_at_least("garbage", (6, 10)));
    }
}
