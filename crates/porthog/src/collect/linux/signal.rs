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
        program.attach(TRACEPOINT).with_context(|| {
            format!(
                "cannot attach to the tracepoint sock:{TRACEPOINT} (raw tracepoints need \
                 Linux 4.17+ and root)"
            )
        })?;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::collect::linux::events::Events;

    /// Set in the environment of [`holder`]'s process: without it, that test returns at once.
    const HOLDER: &str = "PORTHOG_TEST_BPF_HOLDER";

    /// Not a test: the process [`aya_programs_and_maps_are_gone_after_sigkill`] kills. Attaches
    /// the change signal and the TCP events (their programs, links, hash and array maps and
    /// ring buffer), says so, and holds them until its stdin closes.
    #[test]
    #[ignore = "run by aya_programs_and_maps_are_gone_after_sigkill"]
    fn holder() {
        if std::env::var_os(HOLDER).is_none() {
            return;
        }
        let signal = Signal::attach().unwrap();
        let netns = crate::collect::linux::netns::current_inode().unwrap();
        let events = Events::attach(netns).unwrap();
        println!("holding");
        // Until the parent closes stdin (or dies): SIGKILL is expected first.
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        drop((signal, events));
    }

    /// The holder process, killed and reaped when dropped (a failed test leaves none).
    struct Held(Child);

    impl Drop for Held {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The BPF ids `pid` holds open: (programs, maps), from /proc/PID/fdinfo.
    fn bpf_ids(pid: u32) -> (BTreeSet<u32>, BTreeSet<u32>) {
        let (mut progs, mut maps) = (BTreeSet::new(), BTreeSet::new());
        for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap().flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            for line in text.lines() {
                let id =
                    |prefix| line.strip_prefix(prefix).and_then(|v| v.trim().parse::<u32>().ok());
                progs.extend(id("prog_id:"));
                maps.extend(id("map_id:"));
            }
        }
        (progs, maps)
    }

    /// The names of the programs and maps of `ids` the kernel still has.
    fn alive(progs: &BTreeSet<u32>, maps: &BTreeSet<u32>) -> (Vec<String>, Vec<String>) {
        let progs = aya::programs::loaded_programs()
            .flatten()
            .filter(|p| progs.contains(&p.id()))
            .map(|p| p.name_as_str().unwrap_or("?").to_owned())
            .collect();
        let maps = aya::maps::loaded_maps()
            .flatten()
            .filter(|m| maps.contains(&m.id()))
            .map(|m| m.name_as_str().unwrap_or("?").to_owned())
            .collect();
        (progs, maps)
    }

    /// The aya-loaded programs (change signal and TCP events) and their maps, ring buffer
    /// included, live only as long as the process's file descriptors: SIGKILL leaves nothing.
    /// Needs root; skipped otherwise, except under CI=true.
    #[test]
    fn aya_programs_and_maps_are_gone_after_sigkill() {
        if !rustix::process::geteuid().is_root() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "needs root under CI=true");
            eprintln!("skipped: not root");
            return;
        }
        let name = "collect::linux::signal::tests::holder";
        let mut held = Held(
            Command::new(std::env::current_exe().unwrap())
                .args([name, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
                .env(HOLDER, "1")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        // libtest writes "test NAME ... " before the test's own "holding" line. Read on a
        // thread of its own, so that a holder that hangs fails the test instead of hanging it.
        let stdout = BufReader::new(held.0.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut said = Vec::new();
        while !said.last().is_some_and(|l: &String| l.ends_with("holding")) {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => said.push(line),
                Err(e) => panic!("the holder did not attach ({e}): {said:?}"),
            }
        }
        let (progs, maps) = bpf_ids(held.0.id());
        let (names, map_names) = alive(&progs, &maps);
        for want in [PROGRAM, "porthog_events_"] {
            assert!(
                names.iter().any(|n| n.starts_with(want)),
                "{want} not held: {names:?} {said:?}"
            );
        }
        for want in [CHANGES, LOST, "porthog_events"] {
            assert!(map_names.iter().any(|n| n == want), "{want} not held: {map_names:?}");
        }
        held.0.kill().unwrap(); // SIGKILL
        held.0.wait().unwrap();
        // The kernel frees them after an RCU grace period: wait for the state, at most 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (names, map_names) = alive(&progs, &maps);
            if names.is_empty() && map_names.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "left after SIGKILL: {names:?} {map_names:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
