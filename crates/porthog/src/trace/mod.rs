//! `porthog trace`: allocation failures as the kernel returns them, and the openers of every
//! connection, from kernel tracepoints. Linux only; other OSes get a clear error.

#[cfg(target_os = "linux")]
mod linux;

use crate::cli::TraceOptions;

#[cfg(target_os = "linux")]
pub fn run(opts: &TraceOptions) -> anyhow::Result<u8> {
    linux::run(opts)
}

#[cfg(not(target_os = "linux"))]
pub fn run(_opts: &TraceOptions) -> anyhow::Result<u8> {
    anyhow::bail!(
        "porthog trace needs Linux kernel tracepoints; on Windows, read the Tcpip events 4231/4227/4266 with `porthog analyze`"
    )
}

#[cfg(target_os = "linux")]
pub use linux::{FeedHandle, spawn_feed};

/// Which threads' failures the tracer keeps.
#[derive(Debug, Clone)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code, reason = "the tracer is Linux only"))]
pub enum Scope {
    /// One network namespace: the given one, or porthog's own.
    One(Option<crate::collect::NetnsTarget>),
    /// Every network namespace (`--all-netns`), each failure with its namespace's inode.
    All,
}

impl Scope {
    pub fn of(all_netns: bool, netns: Option<crate::collect::NetnsTarget>) -> Scope {
        if all_netns { Scope::All } else { Scope::One(netns) }
    }
}

/// Only Linux has the tracepoints: elsewhere the feed never starts, so no handle exists.
#[cfg(not(target_os = "linux"))]
pub enum FeedHandle {}

#[cfg(not(target_os = "linux"))]
impl FeedHandle {
    pub fn stop(self) {
        match self {}
    }
}

#[cfg(not(target_os = "linux"))]
pub fn spawn_feed(
    _scope: Scope,
    _on_failure: impl Fn(porthog_core::timeline::Failure) + Send + 'static,
    _on_lost: impl Fn(u64) + Send + 'static,
) -> anyhow::Result<FeedHandle> {
    anyhow::bail!("kernel tracepoints are Linux only")
}
