//! Command-line options in two stages (ripgrep's split): clap structs are plain data; `Options`
//! is the validated form the rest of the program sees.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use porthog_core::import::ImportOptions;
use porthog_core::{AnalyzeOptions, Thresholds};

use crate::collect::NetnsTarget;

#[derive(Debug, Parser)]
#[command(
    name = "porthog",
    version,
    about = "Is this machine running out of ephemeral ports, and who is eating them?",
    long_about = "Is this machine running out of ephemeral ports, and who is eating them?\n\n\
        Models the kernel's port pools (per destination for connect(), global for bind() and UDP), \
        names the processes and destinations that hold the ports, and says the cause and the fix.\n\n\
        Exit status (Nagios plugin convention): 0 ok, 1 warn, 2 critical or exhausted, 3 could not decide.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub check: CheckArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge this machine (or one network namespace) now: the default command.
    Check(CheckArgs),
    /// Judge a machine from text captured on it: Windows netstat, PowerShell, netsh, event
    /// logs; Linux ss, /proc/net, sysctl; or a saved porthog --json report.
    Analyze(AnalyzeArgs),
    /// Catch port-allocation failures as the kernel returns them (connect() EADDRNOTAVAIL,
    /// bind() EADDRINUSE, UDP EAGAIN), with process, container and destination, and name the
    /// opener of every TIME_WAIT socket; on exit, a summary and the final verdict. Needs root
    /// (kernel tracepoints through perf_event_open). --json writes JSON Lines
    /// (docs/trace.schema.json).
    Trace(TraceArgs),
    /// Watch the pools live: the verdict, the tightest pools with their trend and the time
    /// left before exhaustion, the rate of new ports per process and destination, TIME_WAIT
    /// owners from history. Keys: s sort, / filter, space pause, ? help, q quit.
    Watch(WatchArgs),
    /// Record samples to a JSON Lines file (docs/record.md) until --duration is over or
    /// Ctrl-C: read it back with `porthog analyze FILE` or `porthog watch --replay FILE`.
    Record(RecordArgs),
    /// Print every socket of a live snapshot as JSON Lines, with its owner and the kernel
    /// facts read (for tests and debugging; not a stable contract).
    #[command(hide = true)]
    Sockets(CheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Seconds between samples.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,
    #[command(flatten)]
    pub netns: NetnsArg,
    /// Print one plain text frame and exit with the check's exit status.
    #[arg(long)]
    pub once: bool,
    /// Play a `porthog record` file back instead of sampling.
    #[arg(long, value_name = "FILE", conflicts_with = "netns")]
    pub replay: Option<PathBuf>,
    /// Replay this many times faster than recorded.
    #[arg(long, value_name = "X", default_value_t = 1.0, requires = "replay")]
    pub speed: f64,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// The file to write (JSON Lines; replaced if it exists).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Seconds between samples.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,
    /// Stop after this many seconds (default: at Ctrl-C, SIGTERM or SIGHUP).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub netns: NetnsArg,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub netns: NetnsArg,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Stop after this many seconds (default: at Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub netns: NetnsArg,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Files captured on one machine (`-` reads standard input). Several files, or one file
    /// with several captures pasted together, describe the same machine.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Read every file as this format instead of detecting it.
    #[arg(long, value_name = "NAME")]
    pub format: Option<String>,
    /// Decode every file with this encoding instead of detecting it (utf-8, utf-16le, cp437,
    /// cp850, cp932).
    #[arg(long, value_name = "NAME")]
    pub encoding: Option<String>,
    /// Skip malformed rows (and say how many) instead of stopping at the first.
    #[arg(long)]
    pub lenient: bool,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// How a report is judged and shown: shared by every command that prints one.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Print the report as JSON (schema: docs/report.schema.json).
    #[arg(long)]
    pub json: bool,
    /// Warn when a pool is at least this full (percent).
    #[arg(long, value_name = "PCT", default_value_t = 70.0)]
    pub warn: f64,
    /// Critical when a pool is at least this full (percent).
    #[arg(long, value_name = "PCT", default_value_t = 90.0)]
    pub crit: f64,
    /// How many pools and processes to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Colour the text report.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text { color: bool },
    Json,
}

/// Validated report options.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub analyze: AnalyzeOptions,
    pub top: usize,
    pub format: Format,
}

/// Validated options of `check`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub netns: Option<NetnsTarget>,
    pub report: ReportOptions,
}

/// Validated options of `trace`.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    pub duration: Option<Duration>,
    pub netns: Option<NetnsTarget>,
    pub report: ReportOptions,
}

/// Validated options of `analyze`.
#[derive(Debug, Clone)]
pub struct OfflineOptions {
    pub files: Vec<PathBuf>,
    pub import: ImportOptions,
    pub report: ReportOptions,
}

/// Validated options of `watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub interval_s: f64,
    pub netns: Option<NetnsTarget>,
    pub once: bool,
    pub replay: Option<PathBuf>,
    pub speed: f64,
    pub report: ReportOptions,
}

/// Validated options of `record`.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub output: PathBuf,
    pub interval_s: f64,
    pub duration: Option<std::time::Duration>,
    pub netns: Option<NetnsTarget>,
    pub analyze: AnalyzeOptions,
}

/// Shortest interval: a sample of a busy namespace takes tens of milliseconds.
const MIN_INTERVAL_S: f64 = 0.1;

fn interval(secs: f64) -> Result<f64> {
    if !(MIN_INTERVAL_S..=86_400.0).contains(&secs) {
        bail!("--interval {secs}: seconds from {MIN_INTERVAL_S} to 86400 are expected");
    }
    Ok(secs)
}

impl WatchArgs {
    pub fn validate(self) -> Result<WatchOptions> {
        if self.report.json {
            bail!(
                "watch shows a live view, not JSON: use `porthog check --json` or `porthog record`"
            );
        }
        if !(self.speed.is_finite() && self.speed > 0.0) {
            bail!("--speed {}: a positive factor is expected (2 plays twice as fast)", self.speed);
        }
        Ok(WatchOptions {
            interval_s: interval(self.interval)?,
            netns: self.netns.target(),
            once: self.once,
            replay: self.replay,
            speed: self.speed,
            report: self.report.validate()?,
        })
    }
}

impl RecordArgs {
    pub fn validate(self) -> Result<RecordOptions> {
        let duration = match self.duration {
            Some(d) if d.is_finite() && d >= 0.0 => Some(std::time::Duration::from_secs_f64(d)),
            Some(d) => bail!("--duration {d}: a number of seconds is expected"),
            None => None,
        };
        Ok(RecordOptions {
            output: self.output,
            interval_s: interval(self.interval)?,
            duration,
            netns: self.netns.target(),
            analyze: self.report.validate()?.analyze,
        })
    }
}

impl ReportArgs {
    pub fn validate(self) -> Result<ReportOptions> {
        for (name, v) in [("--warn", self.warn), ("--crit", self.crit)] {
            if !(0.0..=100.0).contains(&v) {
                bail!("{name} {v}: a percentage from 0 to 100 is expected");
            }
        }
        if self.warn > self.crit {
            bail!(
                "--warn {} is above --crit {}: the warning threshold must not exceed the critical one",
                self.warn,
                self.crit
            );
        }
        let color = match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Ok(ReportOptions {
            analyze: AnalyzeOptions {
                thresholds: Thresholds { warn_pct: self.warn, crit_pct: self.crit },
                ok_pools: self.top,
            },
            top: self.top,
            format: if self.json { Format::Json } else { Format::Text { color } },
        })
    }
}

impl CheckArgs {
    pub fn validate(self) -> Result<CheckOptions> {
        Ok(CheckOptions { netns: self.netns.target(), report: self.report.validate()? })
    }
}

impl TraceArgs {
    pub fn validate(self) -> Result<TraceOptions> {
        let duration = match self.duration {
            Some(d) if d.is_finite() && d > 0.0 && d < 1e9 => Some(Duration::from_secs_f64(d)),
            Some(d) => bail!("--duration {d}: a positive number of seconds is expected"),
            None => None,
        };
        Ok(TraceOptions { duration, netns: self.netns.target(), report: self.report.validate()? })
    }
}

impl AnalyzeArgs {
    pub fn validate(self) -> Result<OfflineOptions> {
        let format = self
            .format
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| anyhow!("--format: {e}"))?;
        let encoding = self
            .encoding
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| anyhow!("--encoding: {e}"))?;
        Ok(OfflineOptions {
            files: self.files,
            import: ImportOptions { format, encoding, lenient: self.lenient },
            report: self.report.validate()?,
        })
    }
}

/// Which network namespace to inspect: one argument shared by every live command.
#[derive(Debug, Clone, Args)]
pub struct NetnsArg {
    /// Another network namespace: a name under /run/netns, a path to a namespace file, or the
    /// PID of a process inside it (a container's or a pod's). Needs root.
    #[arg(long, value_name = "NAME|PATH|PID")]
    netns: Option<String>,
    /// Read sockets from sock_diag and owners from /proc/*/fd even where porthog could read the
    /// kernel's own state through BPF iterators (as root). Also PORTHOG_NO_BPF=1.
    #[arg(long)]
    pub no_bpf: bool,
}

impl NetnsArg {
    pub fn target(&self) -> Option<NetnsTarget> {
        self.netns.as_deref().map(netns_target)
    }
}

/// A bare number is a PID, anything with a slash a path, the rest a name under /run/netns.
fn netns_target(s: &str) -> NetnsTarget {
    if let Ok(pid) = s.parse::<u32>() {
        NetnsTarget::Pid(pid)
    } else if s.contains('/') {
        NetnsTarget::Path(PathBuf::from(s))
    } else {
        NetnsTarget::Name(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli> {
        Ok(Cli::try_parse_from(std::iter::once("porthog").chain(args.iter().copied()))?)
    }

    fn parse(args: &[&str]) -> Result<CheckOptions> {
        match cli(args)? {
            Cli { command: Some(Command::Check(c)), .. } => c.validate(),
            Cli { command: None, check } => check.validate(),
            _ => bail!("not check"),
        }
    }

    #[test]
    fn check_is_the_default_command() {
        let o = parse(&["--json", "--top", "3"]).unwrap();
        assert_eq!(o.report.format, Format::Json);
        assert_eq!(o.report.top, 3);
        let o = parse(&["check", "--netns", "1234", "--color", "never"]).unwrap();
        assert_eq!(o.netns, Some(NetnsTarget::Pid(1234)));
        assert_eq!(o.report.format, Format::Text { color: false });
    }

    #[test]
    fn netns_forms() {
        assert_eq!(netns_target("blue"), NetnsTarget::Name("blue".into()));
        assert_eq!(netns_target("/proc/1/ns/net"), NetnsTarget::Path("/proc/1/ns/net".into()));
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(
            parse(&["--warn", "95", "--crit", "90"])
                .unwrap_err()
                .to_string()
                .contains("above --crit")
        );
        assert!(parse(&["--crit", "120"]).is_err());
        let o = parse(&["--warn", "60", "--crit", "80"]).unwrap();
        assert_eq!(o.report.analyze.thresholds, Thresholds { warn_pct: 60.0, crit_pct: 80.0 });
    }

    #[test]
    fn trace_takes_a_duration_and_a_namespace() {
        let Cli { command: Some(Command::Trace(t)), .. } =
            cli(&["trace", "--duration", "2.5", "--netns", "blue", "--json"]).unwrap()
        else {
            panic!("trace expected")
        };
        let o = t.validate().unwrap();
        assert_eq!(o.duration, Some(Duration::from_millis(2500)));
        assert_eq!(o.netns, Some(NetnsTarget::Name("blue".into())));
        assert_eq!(o.report.format, Format::Json);
        let Cli { command: Some(Command::Trace(t)), .. } =
            cli(&["trace", "--duration", "0"]).unwrap()
        else {
            panic!("trace expected")
        };
        assert!(t.validate().unwrap_err().to_string().contains("positive number of seconds"));
    }

    #[test]
    fn watch_and_record_options() {
        let Cli { command: Some(Command::Watch(w)), .. } =
            cli(&["watch", "--interval", "0.5", "--netns", "blue", "--once"]).unwrap()
        else {
            panic!("watch expected")
        };
        let o = w.validate().unwrap();
        assert_eq!((o.interval_s, o.once), (0.5, true));
        assert_eq!(o.netns, Some(NetnsTarget::Name("blue".into())));
        assert!(cli(&["watch", "--speed", "2"]).is_err(), "--speed needs --replay");
        assert!(cli(&["watch", "--replay", "r.jsonl", "--netns", "x"]).is_err());
        let Cli { command: Some(Command::Watch(w)), .. } =
            cli(&["watch", "--interval", "0"]).unwrap()
        else {
            panic!("watch expected")
        };
        assert!(w.validate().unwrap_err().to_string().starts_with("--interval 0"));

        let Cli { command: Some(Command::Record(r)), .. } =
            cli(&["record", "-o", "r.jsonl", "--duration", "3"]).unwrap()
        else {
            panic!("record expected")
        };
        let o = r.validate().unwrap();
        assert_eq!(o.output, PathBuf::from("r.jsonl"));
        assert_eq!(o.duration, Some(std::time::Duration::from_secs(3)));
        assert_eq!(o.interval_s, 1.0);
        assert!(cli(&["record"]).is_err(), "-o is required");
    }

    #[test]
    fn analyze_takes_files_and_checks_names() {
        let Cli { command: Some(Command::Analyze(a)), .. } =
            cli(&["analyze", "a.txt", "-", "--lenient", "--json"]).unwrap()
        else {
            panic!("analyze expected")
        };
        let o = a.validate().unwrap();
        assert_eq!(o.files, vec![PathBuf::from("a.txt"), PathBuf::from("-")]);
        assert!(o.import.lenient);
        assert_eq!(o.report.format, Format::Json);
        let Cli { command: Some(Command::Analyze(a)), .. } =
            cli(&["analyze", "a.txt", "--encoding", "ebcdic"]).unwrap()
        else {
            panic!("analyze expected")
        };
        assert!(a.validate().unwrap_err().to_string().starts_with("--encoding: unknown encoding"));
        assert!(cli(&["analyze"]).is_err(), "a file is required");
    }
}
