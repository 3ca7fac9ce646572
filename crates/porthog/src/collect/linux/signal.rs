//! The per-namespace change signal (`bpf/porthog_signal.bpf.c`, committed built as
//! `bpf/porthog_signal.bpf.o`): a raw tracepoint on `sock:inet_sock_set_state` counting each
//! network namespace's TCP state changes, so `--all-netns` collections in `serve` walk again
//! only the namespaces whose sockets changed (`porthog_core::reuse` decides). Loaded once, read
//! before each collection. Nothing is pinned: the kernel drops the program, link and maps when
//! porthog exits, however it exits.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow};
use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData};
use aya::programs::RawTracePoint;

/// The clang-built object (see `bpf/build.sh`; CI checks it matches `porthog_signal.bpf.c`).
static OBJECT: &[u8] = include_bytes!("bpf/porthog_signal.bpf.o");

/// The kernel structures the program reads (relocated against the running kernel's).
const KERNEL_TYPES: [&str; 4] = ["ns_common", "net", "sock_common", "sock"];
pub const PROGRAM: &str = "porthog_signal";
const TRACEPOINT: &str = "inet_sock_set_state";
const CHANGES: &str = "porthog_changes";
const LOST: &str = "porthog_lost";

/// The attached program and its maps.
pub struct Signal {
    ebpf: Ebpf,
}

/// One reading of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Namespace inode -> TCP state changes since the program was attached.
    pub changes: BTreeMap<u64, u64>,
    /// Changes the program could not count (its map was full) since it was attached.
    pub lost: u64,
}

impl Signal {
    /// Loads and attaches the program; the error says why the signal cannot be used here.
    pub fn attach() -> Result<Signal> {
        let mut ebpf = super::bpf::load_object_with(OBJECT, &KERNEL_TYPES)
            .context("cannot load porthog's change-signal BPF object")?;
        let program: &mut RawTracePoint = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| anyhow!("the BPF object has no program {PROGRAM}"))?
            .try_into()
            .with_context(|| format!("{PROGRAM} is not a raw tracepoint program"))?;
        program
            .load()
            .map_err(|e| super::verifier::from_aya(PROGRAM, e))
            .context("the kernel refused the change-signal program")?;
        program
            .attach(TRACEPOINT)
            .with_context(|| format!("cannot attach to the tracepoint sock:{TRACEPOINT}"))?;
        Ok(Signal { ebpf })
    }

    /// The counters now.
    pub fn read(&self) -> Result<Counts> {
        let changes: HashMap<&MapData, u32, u64> = HashMap::try_from(
            self.ebpf.map(CHANGES).ok_or_else(|| anyhow!("the BPF object has no map {CHANGES}"))?,
        )?;
        let mut counts = Counts::default();
        for entry in changes.iter() {
            let (inode, n) = entry.context("reading the change-signal map")?;
            counts.changes.insert(u64::from(inode), n);
        }
        let lost: Array<&MapData, u64> = Array::try_from(
            self.ebpf.map(LOST).ok_or_else(|| anyhow!("the BPF object has no map {LOST}"))?,
        )?;
        counts.lost = lost.get(&0, 0).context("reading the change-signal map")?;
        Ok(counts)
    }

    /// Deletes the counters of namespaces not in `alive` (gone ones: their inode numbers can be
    /// reused, and the map must not fill up).
    pub fn forget_all_but(&mut self, alive: &BTreeSet<u64>, counts: &Counts) -> Result<()> {
        let mut changes: HashMap<&mut MapData, u32, u64> = HashMap::try_from(
            self.ebpf
                .map_mut(CHANGES)
                .ok_or_else(|| anyhow!("the BPF object has no map {CHANGES}"))?,
        )?;
        for inode in counts.changes.keys().filter(|i| !alive.contains(i)) {
            if let Ok(key) = u32::try_from(*inode) {
                // Already gone is fine.
                let _ = changes.remove(&key);
            }
        }
        Ok(())
    }
}
