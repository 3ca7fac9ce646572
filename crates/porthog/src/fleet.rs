//! `--all-netns`: every network namespace collected, each analyzed into today's report, and
//! the reports combined worst first (`porthog_core::fleet`). Shared by `check` and `serve`.

use anyhow::Result;
use porthog_core::{AnalyzeOptions, FleetReport, NamespaceReport};

use crate::collect;

/// Collects and judges every network namespace of the host.
pub fn report(opts: &AnalyzeOptions) -> Result<FleetReport> {
    may_enter_namespaces()?;
    let (collected, gaps) = collect::all_namespaces()?;
    let namespaces = collected
        .into_iter()
        .map(|c| NamespaceReport {
            inode: c.inode,
            name: c.name,
            container: c.container,
            pids: c.pids,
            report: porthog_core::analyze(&c.snapshot, opts),
        })
        .collect();
    Ok(FleetReport::new(namespaces, gaps))
}

/// setns() into a network namespace needs CAP_SYS_ADMIN: without it, say so once instead of
/// failing each namespace.
pub fn may_enter_namespaces() -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::thread::{CapabilitySet, capabilities};
        let caps = capabilities(None).map_or(CapabilitySet::empty(), |c| c.effective);
        if !caps.contains(CapabilitySet::SYS_ADMIN) {
            anyhow::bail!(
                "--all-netns enters every network namespace, which needs root (CAP_SYS_ADMIN); \
                 without it, `porthog check` reads its own namespace"
            );
        }
    }
    Ok(())
}
