//! `--all-netns`: every network namespace collected, each analyzed into today's report, and
//! the reports combined worst first (`porthog_core::fleet`). Shared by `check` and `serve`.

use anyhow::Result;
use porthog_core::{AnalyzeOptions, FleetReport, NamespaceReport};

use crate::collect;

/// Collects and judges every network namespace of the host.
pub fn report(opts: &AnalyzeOptions) -> Result<FleetReport> {
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
