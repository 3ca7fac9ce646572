//! The tools measured on each load: porthog, the C floor, and the peers a person would reach for
//! (`ss -tanp`, `netstat -tanp`, `lsof -nP -iTCP`). Each one is asked the same question —
//! every TCP socket of the namespace and its owning process — and its answer is checked, so a
//! tool that failed or saw the wrong sockets cannot post a fast time.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde_json::Value;

use crate::floor;
use crate::measure::{Job, Sample};
use crate::netns::Netns;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tool {
    Floor,
    Porthog,
    /// porthog on its fallback path: sock_diag and /proc/*/fd instead of BPF iterators.
    PorthogNoBpf,
    Ss,
    Netstat,
    Lsof,
}

/// A sock_diag dump and porthog's count may differ from sockstat by churn in flight.
pub const TOLERANCE: f64 = 0.02;

impl Tool {
    /// In the order they run in each round.
    pub const ALL: [Tool; 6] =
        [Tool::Floor, Tool::Porthog, Tool::PorthogNoBpf, Tool::Ss, Tool::Netstat, Tool::Lsof];

    /// The command line as shown in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Floor => "C floor (sock_diag + /proc/*/fd)",
            Tool::Porthog => "porthog --json --netns NS",
            Tool::PorthogNoBpf => "porthog --json --no-bpf --netns NS",
            Tool::Ss => "ss -tanp",
            Tool::Netstat => "netstat -tanp",
            Tool::Lsof => "lsof -nP -iTCP",
        }
    }

    /// The peers are slow at large sizes and run --peer-runs times.
    pub fn is_peer(self) -> bool {
        matches!(self, Tool::Ss | Tool::Netstat | Tool::Lsof)
    }
}

/// Where the binaries and the run's scratch files are.
pub struct Setup<'a> {
    pub ns: &'a Netns,
    pub porthog: &'a Path,
    pub floor: &'a Path,
    pub scratch: &'a Path,
}

/// Where one run's output went, to check its answer afterwards.
pub struct Invocation {
    stdout: Option<PathBuf>,
    stderr: PathBuf,
}

impl Setup<'_> {
    /// The job for `tool`, with stdout to /dev/null (peers) or a scratch file (porthog and the
    /// floor, whose answers are checked) and stderr to a scratch file.
    pub fn invocation(&self, tool: Tool) -> Result<(Job, Invocation)> {
        let ns = self.ns.path();
        // porthog and the floor setns() into the namespace themselves, as a person runs
        // porthog; the peers are put into it first (all they need of `ip netns exec`).
        let (netns, argv): (Option<PathBuf>, Vec<OsString>) = match tool {
            Tool::Porthog => (
                None,
                vec![self.porthog.into(), "--json".into(), "--netns".into(), self.ns.name().into()],
            ),
            Tool::PorthogNoBpf => (
                None,
                vec![
                    self.porthog.into(),
                    "--json".into(),
                    "--no-bpf".into(),
                    "--netns".into(),
                    self.ns.name().into(),
                ],
            ),
            Tool::Floor => (None, vec![self.floor.into(), ns.into()]),
            Tool::Ss => (Some(ns), vec!["ss".into(), "-tanp".into()]),
            Tool::Netstat => (Some(ns), vec!["netstat".into(), "-tanp".into()]),
            Tool::Lsof => (Some(ns), vec!["lsof".into(), "-nP".into(), "-iTCP".into()]),
        };
        let name = format!("{tool:?}").to_lowercase();
        let stdout = matches!(tool, Tool::Porthog | Tool::PorthogNoBpf | Tool::Floor)
            .then(|| self.scratch.join(format!("{name}.out")));
        let stderr = self.scratch.join(format!("{name}.err"));
        let job = Job {
            netns,
            argv,
            stdout: match &stdout {
                Some(path) => Stdio::from(create(path)?),
                None => Stdio::null(),
            },
            stderr: Stdio::from(create(&stderr)?),
        };
        Ok((job, Invocation { stdout, stderr }))
    }
}

fn create(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("creating {}", path.display()))
}

impl Invocation {
    /// Why this run does not count, or None when its answer is right: the exit code must be a
    /// success (porthog: its Nagios codes 0-2) and the socket count porthog and the floor
    /// report must be within TOLERANCE of `expected` (sockstat just before the run).
    pub fn invalid(&self, tool: Tool, sample: &Sample, expected: u64) -> Option<String> {
        if sample.timed_out {
            return Some(format!("killed after {:.0} s", sample.wall.as_secs_f64()));
        }
        let ok_codes: &[i32] =
            if matches!(tool, Tool::Porthog | Tool::PorthogNoBpf) { &[0, 1, 2] } else { &[0] };
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        match sample.exit_code {
            Some(code) if ok_codes.contains(&code) => {}
            other => {
                let first = stderr.lines().next().unwrap_or("").trim();
                return Some(format!("exit {other:?}: {first}"));
            }
        }
        let out = self.stdout.as_ref().map(std::fs::read_to_string)?.unwrap_or_default();
        let seen = match tool {
            Tool::Porthog | Tool::PorthogNoBpf => match porthog_sockets(&out) {
                Some(n) => n,
                None => return Some("no totals.sockets in porthog's JSON".into()),
            },
            Tool::Floor => match floor::parse(&out) {
                Some(c) => c.sockets,
                None => return Some(format!("unexpected floor output {out:?}")),
            },
            _ => return None,
        };
        let off = (seen as f64 - expected as f64).abs() / (expected.max(1) as f64);
        (off > TOLERANCE).then(|| {
            format!("saw {seen} sockets, expected {expected} (±{:.0} %)", TOLERANCE * 100.0)
        })
    }

    /// The floor's full answer (processes and fds walked), for the machine notes.
    pub fn floor_counts(&self) -> Option<floor::FloorCounts> {
        let out = std::fs::read_to_string(self.stdout.as_ref()?).ok()?;
        floor::parse(&out)
    }
}

fn porthog_sockets(json: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(json).ok()?;
    v["totals"]["sockets"].as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_totals_sockets() {
        assert_eq!(porthog_sockets(r#"{"totals":{"sockets":250012}}"#), Some(250012));
        assert_eq!(porthog_sockets(r#"{"totals":{}}"#), None);
        assert_eq!(porthog_sockets("not json"), None);
    }
}
