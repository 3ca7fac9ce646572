//! One benchmark run: for each size, namespace -> load -> steady TIME_WAIT -> every tool in
//! rounds -> table; then the scaling table and BENCHMARKS.md. Cleanup is by drop order: the
//! load stops before its namespace is deleted, on success, error and Ctrl-C alike.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::Options;
use crate::floor::FloorCounts;
use crate::load::{Load, Plan};
use crate::measure::Launcher;
use crate::netns::Netns;
use crate::report::{self, SizeResult, ToolRuns};
use crate::tools::{Setup, Tool};
use crate::{cpuload, floor, interrupt, machine};

/// Benchmarks every size; `id` names the network namespaces (porthog-bench-<id>).
pub fn run(opts: &Options, id: u32) -> Result<()> {
    interrupt::install()?;
    let scratch = Scratch::create()?;
    let floor = floor::build(&scratch.0)?;
    let launcher = Launcher::build(&scratch.0)?;
    let machine = machine::describe();
    eprintln!(
        "porthog-bench: {} ({} cores), Linux {}, load average {}",
        machine.cpu, machine.cores, machine.kernel, machine.load_average
    );
    let fast: Vec<Tool> = [Tool::Floor, Tool::Porthog, Tool::PorthogNoBpf]
        .into_iter()
        .filter(|t| opts.tools.contains(t))
        .collect();
    let empty = measure_empty(opts, id, &fast, &floor, &launcher, &scratch.0)
        .context("benchmarking an empty namespace")?;
    println!("{}", report::empty_section(&empty));
    let mut results = Vec::new();
    for &size in &opts.sizes {
        interrupt::check()?;
        let result = measure_size(opts, id, size, &floor, &launcher, &scratch.0)
            .with_context(|| format!("benchmarking {size} sockets"))?;
        println!("{}", report::size_section(&result));
        results.push(result);
    }
    println!("### Scaling (porthog)\n\n{}", report::scaling_table(&empty, &results));
    if let Some(path) = &opts.write {
        let command = format!(
            "cargo build --release && sudo target/release/porthog-bench {}",
            opts.args.join(" ")
        );
        write_benchmarks(
            path,
            &report::benchmarks_md(&machine, command.trim_end(), opts.host_proc, &empty, &results),
        )?;
        eprintln!("porthog-bench: wrote {}", path.display());
    }
    Ok(())
}

fn measure_size(
    opts: &Options,
    id: u32,
    size: u64,
    floor: &Path,
    launcher: &Launcher,
    scratch: &Path,
) -> Result<SizeResult> {
    let plan = Plan::new(size, opts.per_process)?;
    eprintln!(
        "porthog-bench: == {size} sockets: {} established over {} client + {} server processes, {} TIME_WAIT from {:.0} connections/s of churn",
        plan.established(),
        plan.clients.len(),
        plan.clients.len(),
        plan.time_wait,
        plan.churn_rate
    );
    let ns = Netns::create(id)?;
    ns.set_sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
    // Loopback TIME_WAIT is reusable by default (tcp_tw_reuse=2): the level would not hold.
    ns.set_sysctl("net.ipv4.tcp_tw_reuse", "0")?;
    let tw_max: u64 = ns.sysctl("net.ipv4.tcp_max_tw_buckets")?.parse().unwrap_or(0);
    let tw_need = plan.time_wait * 2 + 10_000;
    if tw_max < tw_need {
        ns.set_sysctl("net.ipv4.tcp_max_tw_buckets", &tw_need.to_string())?;
    }

    let mut load = Load::start(&ns, &opts.loadgen, &plan, opts.churn_max_secs)?;
    load.wait_steady()?;
    let at_start = load.count()?;
    let ss_summary = ns.exec("ss", &["-s"])?;
    let ss_established = lines(&ns.exec("ss", &["-Htan", "state", "established"])?);
    let ss_time_wait = lines(&ns.exec("ss", &["-Htan", "state", "time-wait"])?);
    eprintln!(
        "porthog-bench: before measuring: `ss -s`: {}; `ss -tan state established`: {ss_established}; `ss -tan state time-wait`: {ss_time_wait} (target {})",
        ss_summary.lines().find(|l| l.starts_with("TCP:")).unwrap_or("?").trim(),
        plan.time_wait
    );

    let setup = Setup { ns: &ns, porthog: &opts.porthog, floor, scratch };
    let (runs, host) =
        measure_tools(opts, &setup, launcher, &opts.tools, &size.to_string(), || {
            load.check_alive()?;
            Ok(load.count()?.total())
        })?;
    if let Some(hook) = &opts.after_size {
        run_hook(hook, &ns, size)?;
        load.check_alive()?;
    }
    // Stop the load before deleting its namespace (also what drop order does on errors).
    load.stop();
    drop(ns);
    Ok(SizeResult {
        load_processes: plan.clients.len() * 2 + 1 + plan.churn_clients,
        plan,
        at_start,
        ss_established,
        ss_time_wait,
        host,
        load_average: machine::load_average(),
        tools: runs,
    })
}

/// The fixed cost: porthog and the floor on a namespace with no socket at all. What remains
/// is mostly the kernel walking the machine-wide TCP hash table (it is shared by every
/// namespace), so it is paid at every size.
fn measure_empty(
    opts: &Options,
    id: u32,
    tools: &[Tool],
    floor: &Path,
    launcher: &Launcher,
    scratch: &Path,
) -> Result<Vec<ToolRuns>> {
    if tools.is_empty() {
        return Ok(vec![]);
    }
    let ns = Netns::create(id)?;
    let setup = Setup { ns: &ns, porthog: &opts.porthog, floor, scratch };
    let (runs, _) = measure_tools(opts, &setup, launcher, tools, "empty", || Ok(0))?;
    drop(ns);
    Ok(runs)
}

/// Runs the --after-size command on the live load; its failure is reported, not fatal.
fn run_hook(hook: &str, ns: &Netns, size: u64) -> Result<()> {
    eprintln!("porthog-bench: {size}: running --after-size: {hook}");
    let status = std::process::Command::new("sh")
        .args(["-c", hook])
        .env("PORTHOG_BENCH_NETNS", ns.name())
        .env("PORTHOG_BENCH_SIZE", size.to_string())
        .status()
        .context("running the --after-size command")?;
    if !status.success() {
        eprintln!("porthog-bench: {size}: --after-size command failed: {status}");
    }
    interrupt::check()
}

/// Runs every tool in rounds (porthog and the floor warmed up once first), reading the
/// namespace's socket count with `before` right before each run.
fn measure_tools(
    opts: &Options,
    setup: &Setup,
    launcher: &Launcher,
    tools: &[Tool],
    label: &str,
    mut before: impl FnMut() -> Result<u64>,
) -> Result<(Vec<ToolRuns>, Option<FloorCounts>)> {
    let mut runs: Vec<ToolRuns> = tools
        .iter()
        .map(|&tool| ToolRuns {
            tool,
            samples: vec![],
            expected: vec![],
            others: vec![],
            invalid: vec![],
        })
        .collect();
    // Warm-up: page cache, binaries, dentries of /proc, for the two fast tools.
    for &tool in tools.iter().filter(|t| !t.is_peer()) {
        let (job, _) = setup.invocation(tool)?;
        launcher.run(job, opts.tool_timeout)?;
    }
    let mut host = None;
    let rounds = opts.runs.max(opts.peer_runs);
    for round in 0..rounds {
        for r in &mut runs {
            let wanted = if r.tool.is_peer() { opts.peer_runs } else { opts.runs };
            if round >= wanted {
                continue;
            }
            interrupt::check()?;
            let expected = before()?;
            let (job, inv) = setup.invocation(r.tool)?;
            let busy_before = cpuload::busy();
            let sample = launcher.run(job, opts.tool_timeout)?;
            let others = cpuload::others(busy_before, cpuload::busy(), sample.wall, sample.cpu());
            let invalid = inv.invalid(r.tool, &sample, expected);
            if r.tool == Tool::Floor {
                host = inv.floor_counts().or(host);
            }
            eprintln!(
                "porthog-bench: {label}: {} run {}/{wanted}: {} wall, {} CPU, {} peak RSS, {:.2} other cores busy, {expected} sockets before: {}",
                r.tool.label(),
                round + 1,
                report::secs(sample.wall),
                report::secs(sample.cpu()),
                report::mib(sample.max_rss_kib * 1024),
                others.unwrap_or(f64::NAN),
                invalid.as_deref().unwrap_or("ok")
            );
            r.samples.push(sample);
            r.expected.push(expected);
            r.others.extend(others);
            r.invalid.extend(invalid);
        }
    }
    Ok((runs, host))
}

fn lines(text: &str) -> u64 {
    text.lines().filter(|l| !l.trim().is_empty()).count() as u64
}

/// Writes the report, keeping hand-written notes below the marker of an existing file.
fn write_benchmarks(path: &Path, generated: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let notes = old.split_once(report::NOTES_MARKER).map(|(_, n)| n).unwrap_or("\n");
    let text = format!("{generated}{}{notes}", report::NOTES_MARKER);
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The run's scratch directory (floor binary, tool output), removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("porthog-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
