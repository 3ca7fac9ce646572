//! Live collection: one function per OS with one signature, picked with `cfg` on the module.
//! Everything OS-specific stays below this module; the rest of porthog sees a `Snapshot`.

#[cfg(target_os = "linux")]
pub(crate) mod linux;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use porthog_core::Snapshot;

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

/// What the collector needs to know.
#[derive(Debug, Clone, Default)]
pub struct CollectOptions {
    /// Inspect this namespace instead of the caller's own.
    pub netns: Option<NetnsTarget>,
}

static BPF_DISABLED: AtomicBool = AtomicBool::new(false);

/// `--no-bpf`: read sockets from sock_diag and owners from /proc even where the kernel's BPF
/// iterators are available (for comparison, tests and benchmarks). A process-wide switch, like
/// the `PORTHOG_NO_BPF` environment variable that also sets it.
pub fn disable_bpf() {
    BPF_DISABLED.store(true, Ordering::Relaxed);
}

/// Whether the live collector may use BPF: not disabled by `--no-bpf` or a non-empty
/// `PORTHOG_NO_BPF` other than "0".
pub fn bpf_enabled() -> bool {
    let env = std::env::var_os("PORTHOG_NO_BPF").is_some_and(|v| !v.is_empty() && v != "0");
    !BPF_DISABLED.load(Ordering::Relaxed) && !env
}

/// Takes a snapshot of the sockets, their owners and the port settings.
#[cfg(target_os = "linux")]
pub fn snapshot(opts: &CollectOptions) -> anyhow::Result<Snapshot> {
    linux::snapshot(opts)
}

#[cfg(not(target_os = "linux"))]
pub fn snapshot(_opts: &CollectOptions) -> anyhow::Result<Snapshot> {
    anyhow::bail!(
        "live collection is not supported on this OS yet; capture netstat or PowerShell output and use `porthog analyze`"
    )
}
