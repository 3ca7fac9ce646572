//! The report: everything a presenter shows, and the versioned JSON contract
//! (`docs/report.schema.json`). Built only by `analyze`; read back by `porthog analyze` from a
//! saved `--json` file, so it deserializes too.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::level::Level;
use crate::model::{Gap, GapKind, Os, TwReuse};
use crate::pool::{Pool, RangeReport};

/// Version of the JSON contract; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// Level of the tightest pool.
    pub verdict: Level,
    /// The verdict line without its level word, e.g.
    /// "tcp 10.0.0.7 -> 10.0.0.5:5432  28,232 of 28,232 ports in use (23,900 TIME_WAIT): ...".
    pub summary: String,
    pub os: Os,
    /// Where the sockets came from ("sock_diag", "/proc/net", a file's format, ...).
    pub source: String,
    pub netns: Option<String>,
    pub ranges: Vec<RangeReport>,
    pub settings: SettingsReport,
    /// Tightest first: every pool above `ok`, then the fullest of the rest.
    pub pools: Vec<Pool>,
    /// Most ephemeral ports first.
    pub processes: Vec<ProcessReport>,
    /// Processes grouped by name where one program runs as several PIDs (e.g. netstat -b's
    /// executables), most ephemeral ports first; empty when every name is one PID.
    #[serde(default)]
    pub programs: Vec<ProgramReport>,
    pub totals: Totals,
    pub findings: Vec<Finding>,
    pub gaps: Vec<Gap>,
    /// What the model had to assume because it cannot be seen from outside the kernel.
    pub assumptions: Vec<String>,
    /// Offline input: which format was read from which file (empty for a live check).
    #[serde(default)]
    pub sources: Vec<SourceInfo>,
    /// Offline input: past failures the inputs prove, e.g. Windows Tcpip event 4231.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// Live Linux: what the namespace's conntrack table showed, when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<ConntrackReport>,
}

/// The conntrack table of the namespace: the SNAT pools' source and its failure counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackReport {
    pub entries: u64,
    /// Entries whose source the kernel translated (`IPS_SRC_NAT`).
    pub snat_entries: u64,
    /// Counters since conntrack started in the namespace, summed over CPUs; `None` when the
    /// statistics could not be read.
    pub insert_failed: Option<u64>,
    pub drop: Option<u64>,
    /// Which listing gave the NAT rules ("nft -j list ruleset", "iptables-save"); `None` when
    /// none could be read.
    pub rules_from: Option<String>,
}

impl Report {
    /// The reason an `ok` verdict cannot be trusted: the socket list itself may be short (a dump
    /// that kept changing, rows skipped with --lenient). `None` when the verdict stands.
    pub fn undecided(&self) -> Option<&Gap> {
        (self.verdict == Level::Ok)
            .then(|| self.gaps.iter().find(|g| g.kind == GapKind::Incomplete))
            .flatten()
    }

    /// Raises the verdict to at least `level` because of `why` (a failure seen or logged, not
    /// visible in the snapshot): the verdict line then says why first.
    pub fn raise(&mut self, level: Level, why: &str) {
        if self.verdict < level {
            self.verdict = level;
            self.summary = format!("{why}; the snapshot itself: {}", self.summary);
        }
    }

    /// Exit status for monitoring systems: the verdict's (0 ok, 1 warn, 2 critical or exhausted),
    /// or 3 (UNKNOWN) when an `ok` rests on an incomplete socket list.
    pub fn exit_code(&self) -> u8 {
        if self.undecided().is_some() { 3 } else { self.verdict.exit_code() as u8 }
    }
}

/// Which format was found in which file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub file: String,
    pub format: String,
    pub encoding: String,
    /// Records (rows, settings, events) read from it.
    pub records: u64,
    /// How it was read where that is not plain (a variant, what it lacks, what was assumed),
    /// e.g. "netstat -an: no PID column, owners unknown".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A past failure the inputs prove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// "event" (a Windows event log entry) or "conntrack" (a Linux conntrack counter).
    pub kind: String,
    /// Event id, e.g. 4231; 0 for a counter.
    pub id: u32,
    /// The counter of kind "conntrack": "insert_failed" or "drop".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
    pub count: u64,
    /// Times of the first and last occurrence, as ISO 8601 where the input's format allowed.
    pub first: Option<String>,
    pub last: Option<String>,
    /// What the event means.
    pub meaning: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsReport {
    pub tw_reuse: Option<TwReuse>,
    pub timestamps: Option<bool>,
    /// Reserved (Linux) or excluded (Windows) TCP ports, e.g. "8080,9000-9100".
    pub reserved: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    pub user: Option<String>,
    pub container: Option<String>,
    pub unit: Option<String>,
    pub pod: Option<String>,
    /// Every socket the process owns, TCP and UDP.
    pub sockets: u32,
    /// Distinct ports of the ephemeral pools (range minus reserved) that it holds.
    pub ephemeral_ports: u32,
    pub states: BTreeMap<String, u32>,
    pub top_remotes: Vec<RemoteCount>,
}

/// One program (process name) over all its PIDs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramReport {
    pub name: String,
    pub pids: Vec<u32>,
    pub sockets: u32,
    /// Sum of its processes' ephemeral ports.
    pub ephemeral_ports: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCount {
    pub remote: SocketAddr,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub sockets: u64,
    pub by_state: BTreeMap<String, u64>,
    /// Sockets a process could own (they have an inode) whose owner was not found.
    pub unattributed: u64,
    /// TIME_WAIT and orphaned sockets: no process owns them any more.
    pub ownerless: u64,
    /// All pools, before the report kept the tightest.
    pub pools: u64,
    /// All processes owning sockets, before `--top`.
    pub processes: u64,
}

/// What kind of situation a finding describes (docs/DOMAIN.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Ports tied up in TIME_WAIT: connections opened and closed too fast.
    Churn,
    /// CLOSE_WAIT piling up under one process: it never closes what the peer closed.
    LeakCloseWait,
    /// Bound, never-connected sockets piling up under one process.
    LeakBound,
    /// Many live connections to one destination.
    FanOut,
    /// A listener inside the ephemeral range.
    Squatting,
    /// A narrowed range, or reserved/excluded ports eating it.
    ShrunkRange,
    /// Linux connect() pools past half their range: each connect() scans thousands of ports.
    HalfRange,
    /// TIME_WAIT sockets whose owner the kernel no longer knows.
    OwnerlessTimeWait,
    /// Outgoing connections that took their ports with bind(): they do not share ports.
    BindBeforeConnect,
    /// The bind() pool is nearly full (usually of TIME_WAIT) though connect() still works:
    /// whatever calls bind(port 0) would fail.
    LatentBindPool,
    /// The inputs prove the pool ran out before (Windows Tcpip events 4231, 4266).
    PastExhaustion,
    /// The inputs prove TIME_WAIT collisions (Windows Tcpip event 4227).
    TimeWaitCollision,
    /// conntrack counted failed inserts or drops on a box that source-NATs: connections
    /// through it were dropped, and their clients timed out.
    SnatFailures,
    /// A SNAT pool (from conntrack) at warn or above.
    SnatPool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub level: Level,
    /// The process it is about, when one is.
    pub pid: Option<u32>,
    pub message: String,
    pub advice: String,
}

/// `n` with thousands separators, as the text report and messages print counts: 28,232.
pub fn grouped(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `n` and the noun, singular for one: "1 socket", "28,232 ports", "2 processes",
/// "3 entries". `noun` is the singular; English plural rules for the nouns porthog counts.
pub fn plural(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        return format!("1 {noun}");
    }
    let consonant_y = noun.len() > 1
        && noun.ends_with('y')
        && !noun[..noun.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    let many = if consonant_y {
        format!("{}ies", &noun[..noun.len() - 1])
    } else if noun.ends_with(['s', 'x', 'z']) || noun.ends_with("ch") || noun.ends_with("sh") {
        format!("{noun}es")
    } else {
        format!("{noun}s")
    };
    format!("{} {many}", grouped(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_agree_with_their_count() {
        assert_eq!(plural(1u64, "socket"), "1 socket");
        assert_eq!(plural(0u64, "socket"), "0 sockets");
        assert_eq!(plural(28_232u64, "port"), "28,232 ports");
        assert_eq!(plural(1u64, "process"), "1 process");
        assert_eq!(plural(2u64, "process"), "2 processes");
        assert_eq!(plural(3u64, "entry"), "3 entries");
        assert_eq!(plural(2u64, "day"), "2 days");
        assert_eq!(plural(5u64, "record"), "5 records");
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(0u32), "0");
        assert_eq!(grouped(999u32), "999");
        assert_eq!(grouped(1000u32), "1,000");
        assert_eq!(grouped(28232u32), "28,232");
        assert_eq!(grouped(1234567u64), "1,234,567");
    }
}
