//! porthog: is this machine running out of ephemeral ports, and who is eating them?
//! The top of the pipeline: options -> collector -> analysis -> presenter -> exit status.

mod cli;
mod collect;
mod present;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{CheckOptions, Cli, Command, Format};

/// Nagios "UNKNOWN": porthog could not decide.
const EXIT_ERROR: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check(args)) => args.validate().and_then(|o| check(&o)),
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
    let snapshot = collect::snapshot(&collect::CollectOptions { netns: opts.netns.clone() })?;
    let report = porthog_core::analyze(&snapshot, &opts.analyze);
    let text = match opts.format {
        Format::Json => present::json::render(&report).context("encoding the JSON report")?,
        Format::Text { color } => {
            let width = textwrap::termwidth();
            present::text::render(&report, opts.top, color, width)
        }
    };
    write_stdout(text.as_bytes())?;
    Ok(report.verdict.exit_code() as u8)
}

/// Writes the report; a closed pipe (`porthog | head`) is a normal end, not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the report to standard output"),
    }
}
