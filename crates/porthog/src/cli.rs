//! Command-line options in two stages (ripgrep's split): clap structs are plain data; `Options`
//! is the validated form the rest of the program sees.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
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
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Print the report as JSON (schema: docs/report.schema.json).
    #[arg(long)]
    pub json: bool,
    /// Inspect another network namespace: a name under /run/netns, a path to a namespace file,
    /// or the PID of a process inside it (a container's or a pod's). Needs root.
    #[arg(long, value_name = "NAME|PATH|PID")]
    pub netns: Option<String>,
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

/// Validated options of `check`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub netns: Option<NetnsTarget>,
    pub analyze: AnalyzeOptions,
    pub top: usize,
    pub format: Format,
}

impl CheckArgs {
    pub fn validate(self) -> Result<CheckOptions> {
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
        Ok(CheckOptions {
            netns: self.netns.as_deref().map(netns_target),
            analyze: AnalyzeOptions {
                thresholds: Thresholds { warn_pct: self.warn, crit_pct: self.crit },
                ok_pools: self.top,
            },
            top: self.top,
            format: if self.json { Format::Json } else { Format::Text { color } },
        })
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

    fn parse(args: &[&str]) -> Result<CheckOptions> {
        let cli = Cli::try_parse_from(std::iter::once("porthog").chain(args.iter().copied()))?;
        cli.command.map_or(cli.check.clone(), |Command::Check(c)| c).validate()
    }

    #[test]
    fn check_is_the_default_command() {
        let o = parse(&["--json", "--top", "3"]).unwrap();
        assert_eq!(o.format, Format::Json);
        assert_eq!(o.top, 3);
        let o = parse(&["check", "--netns", "1234", "--color", "never"]).unwrap();
        assert_eq!(o.netns, Some(NetnsTarget::Pid(1234)));
        assert_eq!(o.format, Format::Text { color: false });
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
        assert_eq!(o.analyze.thresholds, Thresholds { warn_pct: 60.0, crit_pct: 80.0 });
    }
}
