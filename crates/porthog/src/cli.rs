//! Command-line options in two stages (ripgrep's split): clap structs are plain data; `Options`
//! is the validated form the rest of the program sees.

use std::io::IsTerminal;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use porthog_core::import::ImportOptions;
use porthog_core::{AnalyzeOptions, Thresholds};

use crate::collect::NetnsTarget;

/// `porthog --version`: the package version, the commit and the build date (from build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PORTHOG_COMMIT"),
    ", built ",
    env!("PORTHOG_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "porthog",
    version = VERSION,
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
    /// (kernel tracepoints through perf_event_open).
    Trace(TraceArgs),
    /// Watch the pools live: the verdict, the tightest pools with their trend and the time
    /// left before exhaustion, the rate of new ports per process and destination, TIME_WAIT
    /// owners from history. Keys: s sort, / filter, space pause, ? help, q quit.
    Watch(WatchArgs),
    /// Record samples to a JSON Lines file until --duration is over or Ctrl-C, SIGTERM or
    /// SIGHUP: read it back with `porthog analyze FILE` or `porthog watch --replay FILE`.
    Record(RecordArgs),
    /// Print a completion script for SHELL, e.g. `porthog completions bash >
    /// /etc/bash_completion.d/porthog`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print porthog's man page (roff), e.g. `porthog man > /usr/local/share/man/man1/porthog.1`.
    Man,
    /// Serve Prometheus metrics (text format 0.0.4) on /metrics: every pool's fill, level and
    /// TIME_WAIT, the verdict per network namespace, the top holders; collected in the
    /// background every --interval. Listens on 127.0.0.1 unless --listen says otherwise.
    Serve(ServeArgs),
    /// Print every socket of a live snapshot as JSON Lines, with its owner and the kernel
    /// facts read (for tests and debugging; not a stable contract).
    #[command(hide = true)]
    Sockets(CheckArgs),
}

/// As root, `watch` and `record` start the kernel tracer of `porthog trace` for the failures;
/// this turns it off. One argument shared by both.
#[derive(Debug, Clone, Args)]
pub struct TraceSwitch {
    /// Do not start the kernel tracer. As root, watch and record otherwise open perf events on
    /// every CPU (and mount tracefs at /sys/kernel/tracing if it is missing) to catch
    /// allocation failures; with this they only read sock_diag, /proc and sysctls.
    #[arg(long)]
    no_trace: bool,
}

/// porthog's default exporter port. Chosen outside the ports most exporters use (9100-9599 is
/// crowded); it has not been checked against the Prometheus default-port allocations wiki,
/// which this project could not reach: register or re-check it before a release.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9873";

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (loopback by default: put it behind your scraper's
    /// network, not the Internet).
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Seconds between collections (a scrape returns the latest one).
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = interval)]
    pub interval: Duration,
    /// Every network namespace of the host (needs root), each as its own `netns` label.
    #[arg(long, conflicts_with = "netns")]
    pub all_netns: bool,
    #[command(flatten)]
    pub netns: NetnsArg,
    /// Pools exported per namespace (tightest first); the rest are summed in one `other`
    /// series per kind and protocol.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top_pools: usize,
    /// Processes exported per namespace (most ephemeral ports first); the rest are summed in
    /// one `other` series.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top_processes: usize,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// Validated options of `serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: std::net::SocketAddr,
    pub interval: Duration,
    pub all_netns: bool,
    pub netns: Option<NetnsTarget>,
    pub top_pools: usize,
    pub top_processes: usize,
    pub analyze: AnalyzeOptions,
}

impl ServeArgs {
    pub fn validate(self) -> Result<ServeOptions> {
        let listen = self.listen.parse().map_err(|e| {
            anyhow::anyhow!(
                "--listen {}: an address and port like 127.0.0.1:9873 or [::1]:9873 is expected ({e})",
                self.listen
            )
        })?;
        let mut analyze = self.report.validate(false)?.analyze;
        // Every pool stays in the report: the exporter sums what it does not show.
        analyze.ok_pools = usize::MAX;
        Ok(ServeOptions {
            listen,
            interval: self.interval,
            all_netns: self.all_netns,
            netns: self.netns.target(),
            top_pools: self.top_pools,
            top_processes: self.top_processes,
            analyze,
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Seconds between samples (0.1 to 86400).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = interval)]
    pub interval: Duration,
    #[command(flatten)]
    pub netns: NetnsArg,
    /// Every network namespace of the host (needs root): the worst first, each labelled as in
    /// `check --all-netns`; the screen lists them and shows the selected one (Tab / Shift-Tab
    /// or n / p to move). Namespaces that vanish are shown as gone, new ones appear.
    #[arg(long, conflicts_with_all = ["netns", "replay"])]
    pub all_netns: bool,
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
    pub trace: TraceSwitch,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// The file to write (JSON Lines; replaced if it exists).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Seconds between samples (0.1 to 86400).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = interval)]
    pub interval: Duration,
    /// Stop after this many seconds, at most 366 days (default: at Ctrl-C, SIGTERM or SIGHUP).
    #[arg(long, value_name = "SECS", value_parser = duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub netns: NetnsArg,
    /// Every network namespace of the host (needs root): each sample line is a `fleet_sample`
    /// with every namespace's report and labels, worst first (recording format 2); failures
    /// carry their namespace.
    #[arg(long, conflicts_with = "netns")]
    pub all_netns: bool,
    #[command(flatten)]
    pub trace: TraceSwitch,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub netns: NetnsArg,
    /// Print the report as JSON (one object with a `schema_version`; its JSON Schema is
    /// report.schema.json in porthog's source).
    #[arg(long)]
    pub json: bool,
    /// Start with a monitoring plugin's status line: `PORTHOG OK - ... | pool=used;warn;crit;0;capacity`
    /// for the tightest pools (Nagios, Icinga, Naemon, Sensu), then the text report.
    #[arg(long, conflicts_with = "json")]
    pub perfdata: bool,
    /// Every network namespace of the host (needs root): found from /proc/*/ns/net, threads,
    /// open fds and nsfs mounts; the worst first, then each namespace's report.
    #[arg(long, conflicts_with = "netns")]
    pub all_netns: bool,
    /// Windows: read the Tcpip events 4227, 4231 and 4266 of the last SECS seconds from the
    /// System log (default 86400, a day); a 4231 or 4266 makes the verdict critical. Ignored on
    /// Linux.
    #[arg(long, value_name = "SECS", value_parser = duration, default_value = "86400")]
    pub since: Duration,
    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Stop after this many seconds, at most 366 days (default: at Ctrl-C, SIGTERM or SIGHUP).
    #[arg(long, value_name = "SECS", value_parser = duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub netns: NetnsArg,
    /// Print JSON Lines: one line per failure, then a summary line with the final report (its
    /// JSON Schema is trace.schema.json in porthog's source).
    #[arg(long)]
    pub json: bool,
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
    #[arg(long, value_name = "NAME", value_enum)]
    pub format: Option<porthog_core::import::Format>,
    /// Decode every file with this encoding instead of detecting it.
    #[arg(long, value_name = "NAME", value_enum, ignore_case = true)]
    pub encoding: Option<porthog_core::import::Encoding>,
    /// Skip malformed rows (and say how many) instead of stopping at the first.
    #[arg(long)]
    pub lenient: bool,
    /// Print the report as JSON (one object with a `schema_version`; its JSON Schema is
    /// report.schema.json in porthog's source).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub report: ReportArgs,
}

/// When a pool is too full: shared by every command that judges.
#[derive(Debug, Clone, Args)]
pub struct ThresholdArgs {
    /// Warn when a pool is at least this full (percent).
    #[arg(long, value_name = "PCT", default_value_t = 70.0)]
    pub warn: f64,
    /// Critical when a pool is at least this full (percent).
    #[arg(long, value_name = "PCT", default_value_t = 90.0)]
    pub crit: f64,
}

/// How a printed report is judged and shown: shared by every command that prints one.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
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
    /// The monitoring plugin's status line with performance data first.
    pub perfdata: bool,
    pub all_netns: bool,
    /// How far back the Windows event log is read.
    pub since: Duration,
    pub report: ReportOptions,
}

/// Validated options of `trace`.
#[derive(Debug, Clone)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code, reason = "trace is Linux only"))]
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
    pub all_netns: bool,
    pub once: bool,
    pub replay: Option<PathBuf>,
    pub speed: f64,
    /// Start the kernel tracer for the failures pane (as root).
    pub trace: bool,
    pub analyze: AnalyzeOptions,
}

/// Validated options of `record`.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub output: PathBuf,
    pub interval_s: f64,
    pub duration: Option<Duration>,
    pub netns: Option<NetnsTarget>,
    pub all_netns: bool,
    /// Start the kernel tracer for failure lines (as root).
    pub trace: bool,
    pub analyze: AnalyzeOptions,
}

/// Sampling intervals: a sample of a busy namespace takes tens of milliseconds, and more than
/// a day between samples says nothing about a trend.
const INTERVAL_S: RangeInclusive<f64> = 0.1..=86_400.0;
/// Run times (`--duration`): from a millisecond to a leap year.
const DURATION_S: RangeInclusive<f64> = 0.001..=366.0 * 86_400.0;

/// `--interval SECS`, checked while parsing.
fn interval(text: &str) -> Result<Duration, String> {
    seconds(text, INTERVAL_S)
}

/// `--duration SECS`, checked while parsing.
fn duration(text: &str) -> Result<Duration, String> {
    seconds(text, DURATION_S)
}

/// The one validator of every option in seconds: a decimal number inside `range`, so later
/// arithmetic on the `Duration` cannot overflow. An error here is a usage error (exit 3).
fn seconds(text: &str, range: RangeInclusive<f64>) -> Result<Duration, String> {
    let expected =
        || format!("a number of seconds from {} to {} is expected", range.start(), range.end());
    let secs: f64 = text.trim().parse().map_err(|_| expected())?;
    if !range.contains(&secs) {
        return Err(expected());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| expected())
}

impl WatchArgs {
    pub fn validate(self) -> Result<WatchOptions> {
        if !(self.speed.is_finite() && self.speed > 0.0) {
            bail!("--speed {}: a positive factor is expected (2 plays twice as fast)", self.speed);
        }
        Ok(WatchOptions {
            interval_s: self.interval.as_secs_f64(),
            netns: self.netns.target(),
            all_netns: self.all_netns,
            once: self.once,
            replay: self.replay,
            speed: self.speed,
            trace: !self.trace.no_trace,
            analyze: AnalyzeOptions {
                thresholds: self.thresholds.validate()?,
                ..Default::default()
            },
        })
    }
}

impl RecordArgs {
    pub fn validate(self) -> Result<RecordOptions> {
        Ok(RecordOptions {
            output: self.output,
            interval_s: self.interval.as_secs_f64(),
            duration: self.duration,
            netns: self.netns.target(),
            all_netns: self.all_netns,
            trace: !self.trace.no_trace,
            analyze: AnalyzeOptions {
                thresholds: self.thresholds.validate()?,
                ..Default::default()
            },
        })
    }
}

impl ThresholdArgs {
    pub fn validate(&self) -> Result<Thresholds> {
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
        Ok(Thresholds { warn_pct: self.warn, crit_pct: self.crit })
    }
}

impl ReportArgs {
    pub fn validate(self, json: bool) -> Result<ReportOptions> {
        let color = match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Ok(ReportOptions {
            analyze: AnalyzeOptions { thresholds: self.thresholds.validate()?, ok_pools: self.top },
            top: self.top,
            format: if json { Format::Json } else { Format::Text { color } },
        })
    }
}

impl CheckArgs {
    pub fn validate(self) -> Result<CheckOptions> {
        Ok(CheckOptions {
            netns: self.netns.target(),
            perfdata: self.perfdata,
            all_netns: self.all_netns,
            since: self.since,
            report: self.report.validate(self.json)?,
        })
    }
}

impl TraceArgs {
    pub fn validate(self) -> Result<TraceOptions> {
        Ok(TraceOptions {
            duration: self.duration,
            netns: self.netns.target(),
            report: self.report.validate(self.json)?,
        })
    }
}

impl AnalyzeArgs {
    pub fn validate(self) -> Result<OfflineOptions> {
        Ok(OfflineOptions {
            files: self.files,
            import: ImportOptions {
                format: self.format,
                encoding: self.encoding,
                lenient: self.lenient,
            },
            report: self.report.validate(self.json)?,
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
    use clap::CommandFactory;

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
        assert!(cli(&["trace", "--duration", "0"]).is_err());
    }

    /// Issue 8.5: `record --duration 1e20` panicked in Duration::from_secs_f64. Every option in
    /// seconds goes through one validator and is refused, as a usage error, out of its range.
    #[test]
    fn every_option_in_seconds_is_checked_while_parsing() {
        for args in [
            &["record", "-o", "x", "--duration", "1e20"][..],
            &["record", "-o", "x", "--duration=-1"],
            &["record", "-o", "x", "--duration", "NaN"],
            &["record", "-o", "x", "--duration", "inf"],
            &["record", "-o", "x", "--interval", "1e20"],
            &["record", "-o", "x", "--interval", "0.01"],
            &["trace", "--duration", "1e20"],
            &["trace", "--duration", "0"],
            &["trace", "--duration", "soon"],
            &["watch", "--interval", "0"],
            &["watch", "--interval", "1e300"],
        ] {
            let e = cli(args).expect_err(&args.join(" "));
            let e = e.downcast::<clap::Error>().expect("a usage error");
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{args:?}");
            assert!(e.to_string().contains("a number of seconds from"), "{e}");
        }
        assert_eq!(seconds("2.5", DURATION_S), Ok(Duration::from_millis(2500)));
        assert_eq!(seconds("31622400", DURATION_S), Ok(Duration::from_secs(31_622_400)));
        assert!(seconds("31622401", DURATION_S).is_err());
        assert_eq!(seconds("0.1", INTERVAL_S), Ok(Duration::from_millis(100)));
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
        assert!(o.trace, "the tracer runs unless --no-trace");
        let Cli { command: Some(Command::Watch(w)), .. } = cli(&["watch", "--no-trace"]).unwrap()
        else {
            panic!("watch expected")
        };
        assert!(!w.validate().unwrap().trace);

        let Cli { command: Some(Command::Record(r)), .. } =
            cli(&["record", "-o", "r.jsonl", "--duration", "3"]).unwrap()
        else {
            panic!("record expected")
        };
        let o = r.validate().unwrap();
        assert_eq!(o.output, PathBuf::from("r.jsonl"));
        assert_eq!(o.duration, Some(std::time::Duration::from_secs(3)));
        assert_eq!(o.interval_s, 1.0);
        assert!(o.trace);
        let Cli { command: Some(Command::Record(r)), .. } =
            cli(&["record", "-o", "r.jsonl", "--no-trace", "--warn", "50"]).unwrap()
        else {
            panic!("record expected")
        };
        let o = r.validate().unwrap();
        assert!(!o.trace);
        assert_eq!(o.analyze.thresholds.warn_pct, 50.0);
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
        let e = cli(&["analyze", "a.txt", "--encoding", "ebcdic"]).unwrap_err().to_string();
        assert!(e.contains("invalid value 'ebcdic' for '--encoding <NAME>'"), "{e}");
        let Cli { command: Some(Command::Analyze(a)), .. } =
            cli(&["analyze", "a.txt", "--encoding", "Shift_JIS", "--format", "netstat"]).unwrap()
        else {
            panic!("analyze expected")
        };
        let o = a.validate().unwrap();
        assert_eq!(o.import.encoding, Some(porthog_core::import::Encoding::Cp932));
        assert_eq!(o.import.format, Some(porthog_core::import::Format::Netstat));
        assert!(cli(&["analyze"]).is_err(), "a file is required");
    }

    /// The long help of `porthog SUB`.
    fn help(sub: &str) -> String {
        let mut cmd = Cli::command();
        cmd.build();
        let sub = cmd.find_subcommand_mut(sub).expect("a subcommand");
        sub.render_long_help().to_string()
    }

    /// Issue 8.8: the help says what each command does, no more, no less.
    #[test]
    fn help_lists_only_what_each_command_takes() {
        let watch = help("watch");
        assert!(!watch.contains("--json"), "watch refuses JSON, its help must not offer it");
        assert!(watch.contains("--no-trace"));
        assert!(cli(&["watch", "--json"]).is_err());
        let record = help("record");
        for flag in ["--json", "--color", "--top"] {
            assert!(!record.contains(flag), "record ignores {flag}");
            assert!(cli(&["record", "-o", "r", flag, "1"]).is_err(), "record {flag}");
        }
        assert!(record.contains("--no-trace") && record.contains("--warn"));
        let trace = help("trace");
        assert!(trace.contains("trace.schema.json") && !trace.contains("report.schema.json"));
        assert!(help("check").contains("report.schema.json"));
    }

    /// Issue 8.8: --format and --encoding list every name they take, from the core's one list.
    #[test]
    fn help_lists_every_format_and_encoding() {
        use porthog_core::import::{Encoding, Format as Input};
        let analyze = help("analyze");
        for f in Input::ALL {
            assert!(analyze.contains(&format!("- {}:", f.as_str())), "{f} not listed\n{analyze}");
        }
        for e in Encoding::ALL {
            assert!(analyze.contains(e.as_str()), "{e} not listed\n{analyze}");
        }
        let e = cli(&["analyze", "a", "--encoding", "ebcdic"]).unwrap_err().to_string();
        for enc in Encoding::ALL {
            assert!(e.contains(enc.as_str()), "the error lists {enc} too: {e}");
        }
    }

    /// Issue 8.8: an installed binary comes without the project's docs/ directory.
    #[test]
    fn help_points_at_no_docs_path() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut texts = vec![cmd.render_long_help().to_string()];
        texts.extend(cmd.get_subcommands_mut().map(|s| s.render_long_help().to_string()));
        for text in texts {
            assert!(!text.contains("docs/"), "{text}");
        }
    }

    #[test]
    fn version_names_the_commit_and_the_build_date() {
        let v = Cli::command().render_version().to_string();
        assert!(v.starts_with(&format!("porthog {} (", env!("CARGO_PKG_VERSION"))), "{v}");
        assert!(v.contains(", built "), "{v}");
    }
}
