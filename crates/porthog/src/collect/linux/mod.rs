//! Linux collector (placeholder until the sock_diag collector lands).

use porthog_core::{Os, Snapshot};

use super::CollectOptions;

pub fn snapshot(_opts: &CollectOptions) -> anyhow::Result<Snapshot> {
    Ok(Snapshot::new(Os::Linux, "none"))
}
