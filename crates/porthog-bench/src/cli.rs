//! Command line: clap parses plain data, `validate` turns it into the `Options` the rest of the
//! benchmark sees (paths resolved, run counts and sizes checked).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;

use crate::tools::Tool;

/// Benchmarks porthog against ss, netstat, lsof and a C floor on the same real sockets.
///
/// For each size it creates a network namespace, fills it with established connections
/// (4/5 of the sockets) and a steady TIME_WAIT level (1/5, kept by churn clients), runs every
/// tool on it, prints a markdown table with ratios and deletes the namespace. Needs root.
/// All traffic stays on loopback inside the namespace.
///
///   cargo build --release && sudo target/release/porthog-bench --sizes 25000,50000,100000,250000
#[derive(Debug, Parser)]
#[command(name = "porthog-bench", version, verbatim_doc_comment)]
pub struct Cli {
    /// Total sockets per load, comma-separated (established : TIME_WAIT = 4 : 1).
    #[arg(long, value_delimiter = ',', default_value = "250000", value_name = "N,...")]
    sizes: Vec<u64>,
    /// Timed runs of porthog and the floor per size (the median is reported).
    #[arg(long, default_value_t = 3, value_name = "R")]
    runs: usize,
    /// Timed runs of each peer (ss, netstat, lsof) per size; slow at 250k sockets. Default: --runs.
    #[arg(long, value_name = "R")]
    peer_runs: Option<usize>,
    /// The porthog binary. Default: `porthog` next to this program (target/release/porthog).
    #[arg(long, value_name = "PATH")]
    porthog: Option<PathBuf>,
    /// The porthog-loadgen binary. Default: `porthog-loadgen` next to this program.
    #[arg(long, value_name = "PATH")]
    loadgen: Option<PathBuf>,
    /// Most connections one loadgen process holds (one fd each; the hard limit is per process).
    #[arg(long, default_value_t = 18_000, value_name = "N")]
    per_process: u64,
    /// Tools to leave out (repeatable): floor, porthog, ss, netstat, lsof.
    #[arg(long, value_name = "TOOL")]
    skip: Vec<Tool>,
    /// Kill a tool run that takes longer than this many seconds (the run is then invalid).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    tool_timeout: u64,
    /// Upper bound on how long the churn clients run per size (they are stopped when done).
    #[arg(long, default_value_t = 1800, value_name = "SECS")]
    churn_max_secs: u64,
    /// Write the results here (hand-written notes below the marker line are kept).
    #[arg(long, default_value = "BENCHMARKS.md", value_name = "PATH")]
    write: PathBuf,
    /// Print the tables only; do not write a results file.
    #[arg(long)]
    no_write: bool,
    /// Walk the host's whole /proc, with every other process on the machine. By default the
    /// benchmark runs in its own PID namespace, so /proc holds only the load and the tools.
    #[arg(long)]
    host_proc: bool,
    /// After measuring each size, run this shell command on the same live load (e.g. a
    /// profiler). It sees PORTHOG_BENCH_NETNS (the namespace name) and PORTHOG_BENCH_SIZE.
    #[arg(long, value_name = "SHELL-COMMAND")]
    after_size: Option<String>,
}

/// Validated options.
#[derive(Debug)]
pub struct Options {
    pub sizes: Vec<u64>,
    pub runs: usize,
    pub peer_runs: usize,
    pub porthog: PathBuf,
    pub loadgen: PathBuf,
    pub per_process: u64,
    pub tools: Vec<Tool>,
    pub tool_timeout: std::time::Duration,
    pub churn_max_secs: u64,
    pub write: Option<PathBuf>,
    pub host_proc: bool,
    pub after_size: Option<String>,
    /// The command line, for BENCHMARKS.md.
    pub args: Vec<String>,
}

/// Fewer sockets than this make a load too small to say anything about scaling.
const MIN_SIZE: u64 = 1_000;
/// Loadgen checks --count against the hard RLIMIT_NOFILE minus a little slack.
const MAX_PER_PROCESS: u64 = 19_000;

impl Cli {
    pub fn validate(self) -> Result<Options> {
        ensure!(!self.sizes.is_empty(), "--sizes: give at least one size");
        for &n in &self.sizes {
            ensure!(n >= MIN_SIZE, "--sizes {n}: use at least {MIN_SIZE} sockets");
        }
        ensure!(self.runs >= 1, "--runs must be at least 1");
        let peer_runs = self.peer_runs.unwrap_or(self.runs);
        ensure!(peer_runs >= 1, "--peer-runs must be at least 1 (use --skip to leave a peer out)");
        ensure!(
            (1_000..=MAX_PER_PROCESS).contains(&self.per_process),
            "--per-process {}: must be 1000..={MAX_PER_PROCESS} (one fd per connection, hard limit 20,000 fds per process)",
            self.per_process
        );
        let tools: Vec<Tool> = Tool::ALL.into_iter().filter(|t| !self.skip.contains(t)).collect();
        ensure!(!tools.is_empty(), "--skip left no tool to run");
        let here = std::env::current_exe().context("locating porthog-bench itself")?;
        let dir = here.parent().unwrap_or(Path::new("."));
        let porthog = self.porthog.unwrap_or_else(|| dir.join("porthog"));
        let loadgen = self.loadgen.unwrap_or_else(|| dir.join("porthog-loadgen"));
        if tools.contains(&Tool::Porthog) || tools.contains(&Tool::PorthogNoBpf) {
            require_file(&porthog, "--porthog", "cargo build --release")?;
        }
        require_file(&loadgen, "--loadgen", "cargo build --release")?;
        Ok(Options {
            sizes: self.sizes,
            runs: self.runs,
            peer_runs,
            porthog: absolute(&porthog)?,
            loadgen: absolute(&loadgen)?,
            per_process: self.per_process,
            tools,
            tool_timeout: std::time::Duration::from_secs(self.tool_timeout),
            churn_max_secs: self.churn_max_secs,
            write: (!self.no_write).then_some(self.write),
            host_proc: self.host_proc,
            after_size: self.after_size,
            args: std::env::args().skip(1).collect(),
        })
    }
}

fn require_file(path: &Path, flag: &str, fix: &str) -> Result<()> {
    if !path.is_file() {
        bail!("{} does not exist: run `{fix}` or pass {flag} PATH", path.display());
    }
    Ok(())
}

/// The launcher and `ip netns exec` run these paths, so make them independent of the cwd.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}
