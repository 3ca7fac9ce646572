//! porthog's JSON report as the CLI contract (schema_version 2) defines it, deserialized with
//! serde so that a missing or mistyped field fails with its name. Unknown fields are allowed:
//! the contract may grow. Lookup helpers panic with the whole report when something is missing.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// ok | warn | critical | exhausted
    pub verdict: String,
    pub ranges: Vec<Range>,
    /// Tightest first.
    pub pools: Vec<Pool>,
    /// Most ephemeral ports first.
    pub processes: Vec<Process>,
    pub totals: Totals,
    pub findings: Vec<Finding>,
    pub gaps: Vec<Gap>,
}

#[derive(Debug, Deserialize)]
pub struct Range {
    pub protocol: String,
    pub start: u16,
    pub end: u16,
    pub usable: u64,
}

#[derive(Debug, Deserialize)]
pub struct Pool {
    /// connect | bind | udp | global
    pub kind: String,
    pub protocol: String,
    pub local: Option<String>,
    pub remote: Option<String>,
    pub used: u64,
    pub capacity: u64,
    pub time_wait: u64,
    pub time_wait_reusable: u64,
    pub level: String,
}

#[derive(Debug, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub name: String,
    pub user: Option<String>,
    // Deserialized so that its presence and type are checked; its value depends on where the
    // tests run (inside a container or not), so no test asserts it.
    #[allow(dead_code)]
    pub container: Option<String>,
    pub sockets: u64,
    pub ephemeral_ports: u64,
    pub states: BTreeMap<String, u64>,
    pub top_remotes: Vec<RemoteCount>,
}

#[derive(Debug, Deserialize)]
pub struct RemoteCount {
    pub remote: String,
    pub count: u64,
}

#[derive(Debug, Deserialize)]
pub struct Totals {
    pub sockets: u64,
    pub by_state: BTreeMap<String, u64>,
    pub unattributed: u64,
    /// TIME_WAIT and orphaned sockets: no process owns them.
    pub ownerless: u64,
}

#[derive(Debug, Deserialize)]
pub struct Finding {
    pub kind: String,
    pub level: String,
    pub pid: Option<u32>,
    pub message: String,
    pub advice: String,
}

#[derive(Debug, Deserialize)]
pub struct Gap {
    pub kind: String,
    pub count: Option<u64>,
    pub message: String,
    pub advice: Option<String>,
}

impl Report {
    /// The TCP connect pool to `remote` (e.g. "127.0.0.1:7070").
    pub fn connect_pool(&self, remote: &str) -> &Pool {
        self.pools
            .iter()
            .find(|p| {
                p.kind == "connect" && p.protocol == "tcp" && p.remote.as_deref() == Some(remote)
            })
            .unwrap_or_else(|| panic!("no tcp connect pool to {remote}\n{}", self.summary()))
    }

    /// Every TCP connect pool.
    pub fn connect_pools(&self) -> Vec<&Pool> {
        self.pools.iter().filter(|p| p.kind == "connect" && p.protocol == "tcp").collect()
    }

    pub fn process(&self, pid: u32) -> &Process {
        self.processes
            .iter()
            .find(|p| p.pid == pid)
            .unwrap_or_else(|| panic!("no process with pid {pid}\n{}", self.summary()))
    }

    pub fn tcp_range(&self) -> &Range {
        self.ranges
            .iter()
            .find(|r| r.protocol == "tcp")
            .unwrap_or_else(|| panic!("no tcp range\n{}", self.summary()))
    }

    pub fn findings_of(&self, kind: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.kind == kind).collect()
    }

    pub fn gaps_of(&self, kind: &str) -> Vec<&Gap> {
        self.gaps.iter().filter(|g| g.kind == kind).collect()
    }

    /// A compact view of the report for failure messages.
    pub fn summary(&self) -> String {
        let mut s = format!("verdict: {}\nranges: {:?}\npools:\n", self.verdict, self.ranges);
        for p in &self.pools {
            let _ = writeln!(
                s,
                "  {} {} {:?} -> {:?}: used {}/{} (time_wait {}, reusable {}) {}",
                p.kind,
                p.protocol,
                p.local,
                p.remote,
                p.used,
                p.capacity,
                p.time_wait,
                p.time_wait_reusable,
                p.level
            );
        }
        s.push_str("processes:\n");
        for p in &self.processes {
            let _ = writeln!(
                s,
                "  pid {} {} user {:?}: {} sockets, {} ephemeral ports, {:?}",
                p.pid, p.name, p.user, p.sockets, p.ephemeral_ports, p.states
            );
        }
        let _ = writeln!(s, "totals: {:?}", self.totals);
        for f in &self.findings {
            let _ = writeln!(s, "finding {} {} pid {:?}: {}", f.kind, f.level, f.pid, f.message);
        }
        for g in &self.gaps {
            let _ = writeln!(s, "gap {} count {:?}: {}", g.kind, g.count, g.message);
        }
        s
    }
}
