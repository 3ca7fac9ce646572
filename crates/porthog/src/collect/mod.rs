//! Live collection: one function per OS with one signature, picked with `cfg` on the module.
//! Everything OS-specific stays below this module; the rest of porthog sees a `Snapshot`.

#[cfg(target_os = "linux")]
pub(crate) mod linux;
#[cfg(windows)]
mod windows;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use porthog_core::{Gap, Snapshot};

/// Which network namespace to inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsTarget {
    /// A name under /run/netns (as `ip netns add NAME` creates).
    Name(String),
    /// A path to a namespace file, e.g. /proc/1234/ns/net or /run/netns/x.
    Path(PathBuf),
    /// The namespace of a running process.
    Pid(u32),
}

impl NetnsTarget {
    /// How the user named it, for messages and `Snapshot::netns` (on any OS: `record` and
    /// `watch` use it in their headers).
    pub fn label(&self) -> String {
        match self {
            NetnsTarget::Name(name) => name.clone(),
            NetnsTarget::Path(path) => path.display().to_string(),
            NetnsTarget::Pid(pid) => format!("pid {pid}"),
        }
    }
}

/// What the collector needs to know.
#[derive(Debug, Clone, Default)]
#[cfg_attr(
    not(any(target_os = "linux", windows)),
    allow(dead_code, reason = "live collection is Linux and Windows only")
)]
pub struct CollectOptions {
    /// Inspect this namespace instead of the caller's own.
    pub netns: Option<NetnsTarget>,
}

static BPF_DISABLED: AtomicBool = AtomicBool::new(false);

/// For a run that collects once (`check`): from here on, glibc serves every allocation of
/// [`MMAP_THRESHOLD`] or more with a mapping of its own, so a growing vector is moved by
/// remapping its pages instead of being copied and held twice (the socket list at 250k sockets:
/// peak RSS 42 -> 31 MiB), and a freed
/// one goes back to the kernel at once. glibc's default starts so but raises the threshold each
/// time such a block is freed. Not for `watch`, `record` and `serve`: a sampler would then map
/// and fault in its large vectors anew every sample (measured: `watch`/`record` at 100k
/// sockets 1.5-4 points of a core more). Other C libraries and systems: nothing.
pub fn one_shot_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator; it returns 0 (left as it
    // was) if the value is refused, which is harmless.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// With `PORTHOG_TIMINGS` set: prints `what` with the milliseconds since the first call (the
/// start of `check`) and the calling thread, so the phases of one collection, and which of them
/// overlap, show as a timeline on stderr.
pub fn timeline(what: &str) {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    if timings() {
        let thread = std::thread::current();
        eprintln!(
            "porthog: +{:7.1} ms [{}] {what}",
            start.elapsed().as_secs_f64() * 1e3,
            thread.name().unwrap_or("-")
        );
    }
}

/// Whether `PORTHOG_TIMINGS` is set: the phases of each collection and sample are then printed
/// on stderr. Read once per process (the environment is not read again on the hot path).
pub fn timings() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PORTHOG_TIMINGS").is_some())
}

/// glibc's own initial value (128 KiB), kept fixed by [`one_shot_allocator`].
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
const MMAP_THRESHOLD: usize = 128 * 1024;

/// `--no-bpf`: read sockets from sock_diag and owners from /proc even where the kernel's BPF
/// iterators are available (for comparison, tests and benchmarks). A process-wide switch, like
/// the `PORTHOG_NO_BPF` environment variable that also sets it.
pub fn disable_bpf() {
    BPF_DISABLED.store(true, Ordering::Relaxed);
}

/// Whether the live collector may use BPF: not disabled by `--no-bpf` or a non-empty
/// `PORTHOG_NO_BPF` other than "0". Only the Linux collector has a BPF path.
#[cfg_attr(not(target_os = "linux"), allow(dead_code, reason = "BPF is Linux only"))]
pub fn bpf_enabled() -> bool {
    let env = std::env::var_os("PORTHOG_NO_BPF").is_some_and(|v| !v.is_empty() && v != "0");
    !BPF_DISABLED.load(Ordering::Relaxed) && !env
}

/// Takes a snapshot of the sockets, their owners and the port settings.
#[cfg(target_os = "linux")]
pub fn snapshot(opts: &CollectOptions) -> anyhow::Result<Snapshot> {
    linux::snapshot(opts)
}

#[cfg(windows)]
pub fn snapshot(opts: &CollectOptions) -> anyhow::Result<Snapshot> {
    windows::snapshot(opts)
}

/// A namespace's sockets kept up to date by kernel events between full walks (`watch`,
/// `record`; issue 9). Linux only: elsewhere [`EventSource::start`] says so and the sampler
/// walks every sample.
#[cfg(target_os = "linux")]
pub use linux::events::Live as EventSource;

#[cfg(not(target_os = "linux"))]
pub struct EventSource;

#[cfg(not(target_os = "linux"))]
impl EventSource {
    pub fn start(_opts: &CollectOptions) -> anyhow::Result<(EventSource, Snapshot)> {
        anyhow::bail!("TCP state events are read on Linux only")
    }

    pub fn sample(&mut self) -> anyhow::Result<Snapshot> {
        anyhow::bail!("TCP state events are read on Linux only")
    }
}

/// Whether `EventSource` can be tried at all: Linux, root, BPF not disabled (elsewhere the
/// sampler walks every sample without saying so).
#[cfg(target_os = "linux")]
pub fn may_use_events() -> bool {
    bpf_enabled() && rustix::process::geteuid().is_root()
}

#[cfg(not(target_os = "linux"))]
pub fn may_use_events() -> bool {
    false
}

/// Past failures the OS logged during the last `since` (Windows: Tcpip events 4227, 4231, 4266
/// of the System log), with gaps for what could not be read. Linux logs none (`trace` watches
/// failures as they happen).
#[cfg(windows)]
pub fn evidence(since: std::time::Duration) -> (Vec<porthog_core::import::Evidence>, Vec<Gap>) {
    windows::evidence(since)
}

#[cfg(not(windows))]
pub fn evidence(_since: std::time::Duration) -> (Vec<porthog_core::import::Evidence>, Vec<Gap>) {
    (Vec::new(), Vec::new())
}

/// The failures the OS logged since `cursor`'s last poll (the last `first` on the first poll),
/// for `watch` and `record`: each event is returned by one poll only. Windows polls the System
/// log; Linux logs none.
#[cfg(windows)]
pub fn new_events(
    cursor: &mut porthog_core::event_log::EventCursor,
    first: std::time::Duration,
) -> (Vec<porthog_core::import::Evidence>, Vec<Gap>) {
    windows::new_events(cursor, first)
}

#[cfg(not(windows))]
pub fn new_events(
    _cursor: &mut porthog_core::event_log::EventCursor,
    _first: std::time::Duration,
) -> (Vec<porthog_core::import::Evidence>, Vec<Gap>) {
    (Vec::new(), Vec::new())
}

#[cfg(not(any(target_os = "linux", windows)))]
pub fn snapshot(_opts: &CollectOptions) -> anyhow::Result<Snapshot> {
    anyhow::bail!(
        "live collection is not supported on this OS yet; capture netstat or PowerShell output and use `porthog analyze`"
    )
}

/// One network namespace of an `--all-netns` collection, with what a user knows it by.
pub struct Collected {
    pub inode: u64,
    /// Its `ip netns` name, if it has one.
    pub name: Option<String>,
    /// Container, pod or unit of a process in it.
    pub container: Option<String>,
    pub pids: Vec<u32>,
    pub snapshot: Snapshot,
    /// The same input as this namespace's previous collection (`serve --all-netns`: sockets
    /// re-used without a known TIME_WAIT timer to age, settings and conntrack kept): its
    /// previous analysis stands.
    pub unchanged: bool,
}

/// Every network namespace of the host, each snapshotted; the ones that vanished mid-scan or
/// could not be read are gaps.
#[cfg(target_os = "linux")]
pub fn all_namespaces() -> anyhow::Result<(Vec<Collected>, Vec<Gap>)> {
    let found = linux::discover::all()?;
    Ok(linux::fleet::collect(found))
}

#[cfg(not(target_os = "linux"))]
pub fn all_namespaces() -> anyhow::Result<(Vec<Collected>, Vec<Gap>)> {
    anyhow::bail!("--all-netns reads Linux network namespaces; this OS has none")
}

/// What repeated `--all-netns` collections keep (`serve`): the per-namespace change signal and
/// each namespace's last walk (`linux/fleet.rs`).
#[cfg(target_os = "linux")]
pub use linux::fleet::Cache as FleetCache;

#[cfg(not(target_os = "linux"))]
pub struct FleetCache {
    pub walked: usize,
    pub reused: usize,
}

#[cfg(not(target_os = "linux"))]
impl FleetCache {
    pub fn new() -> (FleetCache, Option<anyhow::Error>) {
        (FleetCache { walked: 0, reused: 0 }, Some(anyhow::anyhow!("Linux only")))
    }

    pub fn signal_on(&self) -> bool {
        false
    }
}

/// [`all_namespaces`], re-using what `cache` kept of namespaces that did not change.
#[cfg(target_os = "linux")]
pub fn all_namespaces_reusing(
    cache: &mut FleetCache,
) -> anyhow::Result<(Vec<Collected>, Vec<Gap>)> {
    let found = linux::discover::all()?;
    Ok(linux::fleet::collect_reusing(found, cache))
}

#[cfg(not(target_os = "linux"))]
pub fn all_namespaces_reusing(
    _cache: &mut FleetCache,
) -> anyhow::Result<(Vec<Collected>, Vec<Gap>)> {
    all_namespaces()
}

/// The inode of `target`'s network namespace.
#[cfg(target_os = "linux")]
pub fn netns_inode(target: &NetnsTarget) -> anyhow::Result<u64> {
    linux::netns::inode(target)
}

#[cfg(not(target_os = "linux"))]
pub fn netns_inode(_target: &NetnsTarget) -> anyhow::Result<u64> {
    anyhow::bail!("network namespaces are Linux only")
}

/// Whether porthog may read other processes' /proc/PID/fd to name socket owners: root, or a
/// service given CAP_SYS_PTRACE.
#[cfg(target_os = "linux")]
pub fn may_read_owners() -> bool {
    use rustix::thread::{CapabilitySet, capabilities};
    capabilities(None).is_ok_and(|c| c.effective.contains(CapabilitySet::SYS_PTRACE))
}

#[cfg(not(target_os = "linux"))]
pub fn may_read_owners() -> bool {
    false
}
