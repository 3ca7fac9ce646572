//! porthog: is this machine running out of ephemeral ports, and who is eating them?
//! The top of the pipeline: options -> collector -> analysis -> presenter -> exit status.

mod capture_file;
mod cli;
mod collect;
mod fleet;
mod present;
mod record;
mod sample;
mod serve;
mod signals;
mod trace;
mod watch;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

use cli::{CheckOptions, Cli, Command, Format, OfflineOptions, ReportOptions};
use porthog_core::Report;
use porthog_core::import::{self, Imported, Input};

/// Nagios "UNKNOWN": porthog could not decide.
const EXIT_ERROR: u8 = 3;

fn main() -> ExitCode {
    // Usage errors are UNKNOWN (3) to a monitoring system, not clap's 2, which reads as CRITICAL.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { 0 });
        }
    };
    let live = match &cli.command {
        Some(Command::Check(a)) => Some(&a.netns),
        Some(Command::Trace(a)) => Some(&a.netns),
        Some(Command::Watch(a)) => Some(&a.netns),
        Some(Command::Record(a)) => Some(&a.netns),
        Some(Command::Sockets(a)) => Some(&a.netns),
        Some(Command::Serve(a)) => Some(&a.netns),
        Some(Command::Analyze(_) | Command::Completions { .. } | Command::Man) => None,
        None => Some(&cli.check.netns),
    };
    if live.is_some_and(|n| n.no_bpf) {
        collect::disable_bpf();
    }
    let result = match cli.command {
        Some(Command::Check(args)) => args.validate().and_then(|o| check(&o)),
        Some(Command::Analyze(args)) => args.validate().and_then(|o| analyze(&o)),
        Some(Command::Trace(args)) => args.validate().and_then(|o| trace::run(&o)),
        Some(Command::Watch(args)) => args.validate().and_then(|o| watch::run(&o)),
        Some(Command::Record(args)) => args.validate().and_then(|o| record::run(&o)),
        Some(Command::Completions { shell }) => completions(shell),
        Some(Command::Man) => man(),
        Some(Command::Serve(args)) => args.validate().and_then(|o| serve::run(&o)),
        Some(Command::Sockets(args)) => args.validate().and_then(|o| sockets(&o)),
        None => cli.check.validate().and_then(|o| check(&o)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("porthog: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn check(opts: &CheckOptions) -> Result<u8> {
    collect::timeline("check starts");
    collect::one_shot_allocator();
    if opts.all_netns {
        return check_all(opts);
    }
    let started = std::time::Instant::now();
    let mut snapshot = collect::snapshot(&collect::CollectOptions { netns: opts.netns.clone() })?;
    let (evidence, gaps) = collect::evidence(opts.since);
    snapshot.gaps.extend(gaps);
    let collected = started.elapsed();
    collect::timeline("collected");
    let report = if evidence.is_empty() {
        porthog_core::analyze(&snapshot, &opts.report.analyze)
    } else {
        // A logged 4231/4266 raises the verdict exactly as the offline importers' evidence does.
        porthog_core::analyze_imported(&snapshot, Vec::new(), evidence, &opts.report.analyze)
    };
    if crate::collect::timings() {
        eprintln!(
            "porthog: collected in {:.1} ms, analyzed (pools, findings) in {:.1} ms",
            collected.as_secs_f64() * 1e3,
            (started.elapsed() - collected).as_secs_f64() * 1e3
        );
    }
    collect::timeline("analyzed");
    if opts.perfdata {
        let line = present::perfdata::status_line(
            &report,
            &opts.report.analyze.thresholds,
            opts.report.top,
        );
        write_stdout(line.as_bytes())?;
    }
    present(&report, &opts.report)
}

/// `porthog completions SHELL`: the script on standard output.
fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "porthog", &mut script);
    write_stdout(&script)?;
    Ok(0)
}

/// `porthog man`: the man page (section 1, roff) on standard output.
fn man() -> Result<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page).context("rendering the man page")?;
    write_stdout(&page)?;
    Ok(0)
}

/// `check --all-netns`: every namespace, worst first.
fn check_all(opts: &CheckOptions) -> Result<u8> {
    let fleet = fleet::report(&opts.report.analyze)?;
    let text = match opts.report.format {
        Format::Json => present::fleet::render_json(&fleet).context("encoding the JSON report")?,
        Format::Text { color } => {
            present::fleet::render_text(&fleet, opts.report.top, color, textwrap::termwidth())
        }
    };
    write_stdout(text.as_bytes())?;
    Ok(fleet.exit_code())
}

fn sockets(opts: &CheckOptions) -> Result<u8> {
    let snapshot = collect::snapshot(&collect::CollectOptions { netns: opts.netns.clone() })?;
    let mut out = std::io::stdout().lock();
    match out.write_all(present::sockets::render(&snapshot).as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.context("writing to standard output")?,
    }
    Ok(0)
}

fn analyze(opts: &OfflineOptions) -> Result<u8> {
    let mut contents = Vec::with_capacity(opts.files.len());
    let mut names = Vec::with_capacity(opts.files.len());
    for path in &opts.files {
        contents.push(capture_file::open(path, capture_file::MAP_AT_LEAST)?);
        names.push(if path.as_os_str() == "-" {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        });
    }
    let inputs: Vec<Input<'_>> =
        names.iter().zip(&contents).map(|(name, bytes)| Input { name, bytes }).collect();
    let pager = capture_file::Pager::new(&contents);
    let release = |done: &[u8]| pager.release(done);
    let imported = import::import_paged(&inputs, &opts.import, import::Release(&release))?;
    let report = match imported {
        Imported::Snapshot { snapshot, sources, evidence } => {
            // An empty listing is an answer (no sockets); no listing at all is not. `ss -s`
            // has totals and no rows: its report says so and exits 3 (issue 11).
            let totals_only = sources.iter().any(|s| s.format == "ss-summary");
            if !import::has_socket_listing(&sources) && evidence.is_empty() && !totals_only {
                let read: Vec<String> =
                    sources.iter().map(|s| format!("{} ({})", s.file, s.format)).collect();
                anyhow::bail!(
                    "no socket listing in the input, so nothing to judge (read: {}); add a socket listing such as \
                     `netstat -anoq`, `Get-NetTCPConnection` or `ss -tanp` (see docs/CAPTURING.md)",
                    read.join(", ")
                );
            }
            porthog_core::analyze_imported(&snapshot, sources, evidence, &opts.report.analyze)
        }
        Imported::Report(report) => {
            if opts.report.analyze != porthog_core::AnalyzeOptions::default() {
                eprintln!(
                    "porthog: note: a saved report is shown as it was judged; --warn, --crit and --top do not apply to it"
                );
            }
            *report
        }
    };
    present(&report, &opts.report)
}

fn present(report: &Report, opts: &ReportOptions) -> Result<u8> {
    let text = match opts.format {
        Format::Json => present::json::render(report).context("encoding the JSON report")?,
        Format::Text { color } => {
            present::text::render(report, opts.top, color, textwrap::termwidth())
        }
    };
    collect::timeline("rendered");
    write_stdout(text.as_bytes())?;
    collect::timeline("written");
    // An `ok` from a socket list that may be short is no answer: UNKNOWN, and say why.
    if let Some(g) = report.undecided() {
        eprintln!("porthog: could not decide: {}", g.message);
    }
    Ok(report.exit_code())
}

/// Writes the report; a closed pipe (`porthog | head`) is a normal end, not an error.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the report to standard output"),
    }
}
