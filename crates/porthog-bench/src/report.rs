//! The results of a run and their markdown: one table per size (wall, CPU, peak RSS, ratios,
//! the targets), a scaling table for porthog, and BENCHMARKS.md around them. Rendering only:
//! every number here was measured by `run`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::floor::FloorCounts;
use crate::load::Plan;
use crate::machine::Machine;
use crate::measure::{Sample, median};
use crate::sockstat::TcpCount;
use crate::tools::Tool;

/// porthog's memory budget: a fixed part plus a per-socket part.
pub const RSS_BASE: u64 = 10 * 1024 * 1024;
pub const RSS_PER_SOCKET: u64 = 160;
/// porthog must be at least this many times faster than `ss -tanp`.
pub const SS_FACTOR: f64 = 20.0;
/// porthog's wall time may be at most this multiple of the C floor's (the fallback path).
pub const FLOOR_FACTOR: f64 = 1.0;
/// Issue 7: on the BPF path (kernel iterators instead of sock_diag and /proc/*/fd).
pub const BPF_FLOOR_FACTOR: f64 = 0.3;

/// Every run of one tool on one load.
#[derive(Debug, Clone)]
pub struct ToolRuns {
    pub tool: Tool,
    pub samples: Vec<Sample>,
    /// sockstat's count right before each run.
    pub expected: Vec<u64>,
    /// Cores busy with other work during each run (see cpuload.rs).
    pub others: Vec<f64>,
    /// Why runs did not count (empty when all did).
    pub invalid: Vec<String>,
}

impl ToolRuns {
    pub fn valid(&self) -> bool {
        self.invalid.is_empty() && !self.samples.is_empty()
    }
    pub fn wall(&self) -> Duration {
        median(self.samples.iter().map(|s| s.wall)).unwrap_or_default()
    }
    pub fn cpu(&self) -> Duration {
        median(self.samples.iter().map(Sample::cpu)).unwrap_or_default()
    }
    /// Fastest and slowest run.
    pub fn wall_range(&self) -> String {
        let min = self.samples.iter().map(|s| s.wall).min().unwrap_or_default();
        let max = self.samples.iter().map(|s| s.wall).max().unwrap_or_default();
        format!("{}-{}", secs(min), secs(max)).replace(" s-", "-")
    }
    /// Median cores busy elsewhere while this tool ran.
    pub fn others(&self) -> String {
        let mut v = self.others.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len().saturating_sub(1) / 2).map(|o| format!("{o:.2}")).unwrap_or("–".into())
    }
    /// The highest peak over the runs (RSS is a budget: the worst run counts).
    pub fn rss(&self) -> u64 {
        self.samples.iter().map(|s| s.max_rss_kib * 1024).max().unwrap_or(0)
    }
}

/// One load size and what every tool did on it.
#[derive(Debug, Clone)]
pub struct SizeResult {
    pub plan: Plan,
    /// Counts when measuring began (sockstat), and what `ss` listed then.
    pub at_start: TcpCount,
    pub ss_established: u64,
    pub ss_time_wait: u64,
    pub load_processes: usize,
    pub host: Option<FloorCounts>,
    pub load_average: String,
    pub tools: Vec<ToolRuns>,
}

impl SizeResult {
    pub fn get(&self, tool: Tool) -> Option<&ToolRuns> {
        self.tools.iter().find(|t| t.tool == tool)
    }
    /// The median socket count seen right before the runs.
    pub fn sockets(&self) -> u64 {
        median(self.tools.iter().flat_map(|t| t.expected.iter().copied())).unwrap_or(0)
    }
    pub fn rss_budget(&self) -> u64 {
        RSS_BASE + RSS_PER_SOCKET * self.sockets()
    }
}

pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 { format!("{s:.3} s") } else { format!("{s:.1} s") }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// The table for one size, with its heading and the targets under it.
pub fn size_section(r: &SizeResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### {} sockets\n\nLoad: {} established ({} connections) + {} TIME_WAIT at start of measuring \
         (`ss` listed {} established, {} TIME_WAIT); {} loadgen processes; load average after measuring {}.\n",
        thousands(r.plan.total),
        thousands(r.at_start.inuse + r.at_start.inuse6),
        thousands(r.plan.connections()),
        thousands(r.at_start.time_wait),
        thousands(r.ss_established),
        thousands(r.ss_time_wait),
        r.load_processes,
        r.load_average,
    );
    s.push_str("| tool | runs | wall (median) | wall (min-max) | CPU user+sys (median) | peak RSS (max) | wall vs porthog | wall vs floor | other cores busy | check |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    let porthog = r.get(Tool::Porthog).filter(|t| t.valid());
    let floor = r.get(Tool::Floor).filter(|t| t.valid());
    for t in &r.tools {
        let vs = |base: Option<&ToolRuns>| match base {
            Some(b) if t.valid() => format!("{:.2}x", ratio(t.wall(), b.wall())),
            _ => "–".into(),
        };
        let check = if t.valid() {
            "ok".to_string()
        } else {
            format!("**invalid**: {}", t.invalid.first().map(String::as_str).unwrap_or("no run"))
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.tool.label(),
            t.samples.len(),
            secs(t.wall()),
            t.wall_range(),
            secs(t.cpu()),
            mib(t.rss()),
            vs(porthog),
            vs(floor),
            t.others(),
            check.replace('|', "/"),
        );
    }
    s.push('\n');
    for line in targets(r) {
        let _ = writeln!(s, "- {line}");
    }
    s
}

/// porthog and the floor on a namespace without sockets: the fixed cost of every run.
pub fn empty_section(runs: &[ToolRuns]) -> String {
    let mut s = String::from(
        "### Empty namespace (fixed cost)\n\n\
         | tool | runs | wall (median) | CPU user+sys (median) | peak RSS (max) | check |\n\
         |---|---:|---:|---:|---:|---|\n",
    );
    for t in runs {
        let check = match t.invalid.first() {
            None => "ok".to_string(),
            Some(why) => format!("**invalid**: {}", why.replace('|', "/")),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {check} |",
            t.tool.label(),
            t.samples.len(),
            secs(t.wall()),
            secs(t.cpu()),
            mib(t.rss())
        );
    }
    s
}

/// The three targets for one size, each "met" or "missed" with the numbers.
pub fn targets(r: &SizeResult) -> Vec<String> {
    let Some(p) = r.get(Tool::Porthog) else { return vec!["porthog was skipped".into()] };
    if !p.valid() {
        return vec![format!(
            "porthog's result is **invalid** ({}): no target can be judged at this size",
            p.invalid.first().map(String::as_str).unwrap_or("no run")
        )];
    }
    let met = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut out = Vec::new();
    match r.get(Tool::Floor).filter(|f| f.valid()) {
        Some(f) => {
            let x = ratio(p.wall(), f.wall());
            out.push(format!(
                "porthog wall <= {BPF_FLOOR_FACTOR:.1}x the C floor (BPF path, issue 7): {} ({} vs {}: {x:.2}x)",
                met(x <= BPF_FLOOR_FACTOR),
                secs(p.wall()),
                secs(f.wall())
            ));
            if let Some(n) = r.get(Tool::PorthogNoBpf).filter(|n| n.valid()) {
                let x = ratio(n.wall(), f.wall());
                out.push(format!(
                    "porthog --no-bpf wall <= {FLOOR_FACTOR:.1}x the C floor: {} ({} vs {}: {x:.2}x)",
                    met(x <= FLOOR_FACTOR),
                    secs(n.wall()),
                    secs(f.wall())
                ));
            }
        }
        None => out.push("porthog vs the C floor: no valid floor run".into()),
    }
    match r.get(Tool::Ss).filter(|t| t.valid()) {
        Some(ss) => {
            let x = ratio(ss.wall(), p.wall());
            out.push(format!(
                "porthog >= {SS_FACTOR:.0}x faster than `ss -tanp`: {} ({x:.1}x)",
                met(x >= SS_FACTOR)
            ));
        }
        None => out.push("porthog vs `ss -tanp`: no valid ss run".into()),
    }
    let budget = r.rss_budget();
    out.push(format!(
        "porthog peak RSS <= 10 MiB + 160 B x {} sockets = {}: {} ({}, {:.0} % of budget)",
        thousands(r.sockets()),
        mib(budget),
        met(p.rss() <= budget),
        mib(p.rss()),
        p.rss() as f64 * 100.0 / budget as f64
    ));
    out
}

/// porthog's cost per 1k sockets at each size, how fast it grows (1.0 = linear), and what
/// each socket adds over the empty namespace (the part the 160 B/socket budget is about).
pub fn scaling_table(empty: &[ToolRuns], results: &[SizeResult]) -> String {
    let valid =
        |runs: &[ToolRuns], tool| runs.iter().find(|t| t.tool == tool && t.valid()).cloned();
    let p0 = valid(empty, Tool::Porthog);
    let f0 = valid(empty, Tool::Floor);
    let mut s = String::from(
        "| sockets | porthog wall | per 1k sockets | above empty ns, per 1k | growth exponent | peak RSS | RSS above empty ns, per socket | RSS budget | floor wall | floor above empty ns, per 1k |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    if let Some(p) = &p0 {
        let fw = f0.as_ref().map(|f| secs(f.wall())).unwrap_or_else(|| "–".into());
        let _ = writeln!(
            s,
            "| 0 (empty) | {} | – | – | – | {} | – | {} | {fw} | – |",
            secs(p.wall()),
            mib(p.rss()),
            mib(RSS_BASE)
        );
    }
    let mut prev: Option<(u64, Duration)> = None;
    for r in results {
        let n = r.sockets().max(1);
        let k = n as f64 / 1000.0;
        let per_k = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0 / k);
        let above = |d: Duration, base: &Option<ToolRuns>| match base {
            Some(b) => per_k(d.saturating_sub(b.wall())),
            None => "–".into(),
        };
        let mut cells = vec!["invalid".to_string(); 1];
        cells.extend(["–"; 5].map(String::from));
        if let Some(p) = r.get(Tool::Porthog).filter(|p| p.valid()) {
            let growth = match prev {
                Some((n0, w0)) => {
                    format!("{:.2}", ratio(p.wall(), w0).ln() / (n as f64 / n0 as f64).ln())
                }
                None => "–".into(),
            };
            prev = Some((n, p.wall()));
            let rss_per = match &p0 {
                Some(b) => format!("{:.0} B", p.rss().saturating_sub(b.rss()) as f64 / n as f64),
                None => "–".into(),
            };
            cells = vec![
                secs(p.wall()),
                per_k(p.wall()),
                above(p.wall(), &p0),
                growth,
                mib(p.rss()),
                rss_per,
            ];
        }
        let (fw, fk) = match r.get(Tool::Floor).filter(|f| f.valid()) {
            Some(f) => (secs(f.wall()), above(f.wall(), &f0)),
            None => ("–".into(), "–".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {fw} | {fk} |",
            thousands(n),
            cells.join(" | "),
            mib(r.rss_budget())
        );
    }
    s
}

/// Hand-written notes below this line survive a rewrite of BENCHMARKS.md.
pub const NOTES_MARKER: &str = "<!-- porthog-bench keeps everything below this line -->";

/// The whole BENCHMARKS.md (without the kept notes).
pub fn benchmarks_md(
    machine: &Machine,
    command: &str,
    host_proc: bool,
    empty: &[ToolRuns],
    results: &[SizeResult],
) -> String {
    let mut s = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        s,
        "Written by `porthog-bench` on {}. Every number below was measured in that one run; \
         rerun the command to reproduce.\n",
        machine.date
    );
    s.push_str("## Command\n\n```sh\n");
    let _ = writeln!(s, "{command}\n```\n");
    s.push_str("## Machine\n\n");
    let _ = writeln!(
        s,
        "- CPU: {} ({} cores), {:.1} GiB memory, Linux {}\n- load average when the run started: {}",
        machine.cpu, machine.cores, machine.memory_gib, machine.kernel, machine.load_average
    );
    if let Some(h) = results.iter().rev().find_map(|r| r.host) {
        let _ = writeln!(
            s,
            "- what each /proc walk covered (largest size): {} processes with {} open fds, {} of them sockets",
            thousands(h.processes),
            thousands(h.fds),
            thousands(h.socket_fds)
        );
    }
    for (tool, version) in &machine.versions {
        let _ = writeln!(s, "- {tool}: {version}");
    }
    s.push_str(&method(host_proc));
    s.push_str("\n## Results\n\n");
    if !empty.is_empty() {
        s.push_str(&empty_section(empty));
        s.push('\n');
    }
    for r in results {
        s.push_str(&size_section(r));
        s.push('\n');
    }
    s.push_str("### Scaling (porthog)\n\n");
    s.push_str(&scaling_table(empty, results));
    s.push_str("\n## Reading\n\n");
    for r in results {
        let _ = writeln!(s, "{} sockets:", thousands(r.plan.total));
        for line in targets(r) {
            let _ = writeln!(s, "- {line}");
        }
        s.push('\n');
    }
    s
}

fn method(host_proc: bool) -> String {
    let proc_scope = if host_proc {
        "The run walked the host's whole /proc (`--host-proc`): every other process on the \
         machine was part of each tool's /proc walk."
    } else {
        "The whole run is pid 1 of its own PID namespace with a private /proc, so each /proc walk \
         sees the load and the tools only, not whatever else the machine runs (`--host-proc` \
         walks the host's). The network namespace is the same either way."
    };
    format!(
        "
## Method

- Each size gets a fresh network namespace `porthog-bench-<pid>` with `lo` up,
  `ip_local_port_range` 1024-65535 and `tcp_tw_reuse` 0 (so TIME_WAIT stays put). 4/5 of the
  sockets are established loopback connections held by `porthog-loadgen connect` processes
  (at most 18,000 fds each: the hard open-file limit is 20,000 per process) to as many
  `porthog-loadgen serve` processes; 1/5 are TIME_WAIT, kept steady by churn clients
  (`connect --close --rate R`, R = TIME_WAIT / 60 s) that keep running while the tools run.
  Measuring starts once churn has run 66 s, after `ss` inside the namespace confirmed the counts.
- {proc_scope}
- Tools run in rounds (floor, porthog, ss, netstat, lsof), each on the same live sockets; porthog
  and the floor get one untimed warm-up run first. Each run goes through `timed`
  (`crates/porthog-bench/timed.c`, a static launcher): it enters the namespace for the peers
  (what `ip netns exec` does that they need; porthog `--netns` and the floor setns() themselves),
  forks the tool and reports the tool's own wall time and `wait4()` rusage: CPU (user + sys) and
  peak RSS. A tool started by `ip netns exec` or spawned straight from the benchmark would
  inherit ip's or the benchmark's peak RSS in `ru_maxrss` (exec records the old image's peak);
  the launcher's image is a few hundred KiB.
- *other cores busy* is /proc/stat's machine-wide busy time during a run minus the tool's own
  CPU time, per second of wall time: other users of this machine, plus the load's own churn
  (a few hundredths). porthog uses both cores, so a run with a core busy elsewhere costs it
  more than the single-threaded floor and peers.
- Output goes to /dev/null (porthog's and the floor's to a file, to check them): a run counts
  only if the tool exited successfully and, for porthog and the floor, if the socket count it
  reports is within 2 % of the namespace's count (/proc/net/sockstat) read just before it ran.
- The C floor (`crates/porthog-bench/floor.c`, built with `cc -O2`) does only what porthog's
  collector must: a NETLINK_SOCK_DIAG dump of all TCP sockets (IPv4 and IPv6, all states), one
  walk of /proc/*/fd with readlink, and an inode -> pid join. One thread, no output formatting.
- The empty-namespace row is the fixed cost of a run; most of it is the kernel walking the
  machine-wide TCP hash table, which every namespace shares, once per address family.
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(250000), "250,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(secs(Duration::from_millis(412)), "0.412 s");
        assert_eq!(secs(Duration::from_secs(25)), "25.0 s");
        assert_eq!(mib(10 * 1024 * 1024), "10.0 MiB");
    }
}
