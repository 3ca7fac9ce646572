//! Live collection: one function per OS with one signature, picked with `cfg` on the module.
//! Everything OS-specific stays below this module; the rest of porthog sees a `Snapshot`.

#[cfg(target_os = "linux")]
pub(crate) mod linux;

use std::path::PathBuf;

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
#[cfg_attr(not(target_os = "linux"), allow(dead_code, reason = "live collection is Linux only"))]
pub struct CollectOptions {
    /// Inspect this namespace instead of the caller's own.
    pub netns: Option<NetnsTarget>,
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
