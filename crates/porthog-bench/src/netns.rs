//! The benchmark's network namespace: created with `ip netns add`, configured for a large
//! loopback load, and deleted when dropped (on success, error and Ctrl-C alike).
//! The load's processes start inside it through `ip netns exec` (which setns()es and execs in
//! place); measured tools go through the `timed` launcher instead (see measure.rs).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

/// Prefix of every namespace this program creates; the suffix is its pid.
pub const PREFIX: &str = "porthog-bench-";

pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `porthog-bench-<id>` (id: the pid of the outer porthog-bench) with lo up.
    pub fn create(id: u32) -> Result<Self> {
        let name = format!("{PREFIX}{id}");
        ip(&["netns", "add", &name])
            .with_context(|| format!("creating network namespace {name} (are you root?)"))?;
        let ns = Netns { name };
        ns.exec("ip", &["link", "set", "lo", "up"]).map(drop).context("bringing lo up")?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file (what setns() opens).
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A command that runs `program args` inside the namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs a short command inside the namespace and returns its stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running ip netns exec {} {program}", self.name))?;
        if !out.status.success() {
            bail!(
                "`{program} {}` in {} failed ({}): {}",
                args.join(" "),
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Reads a sysctl of this namespace.
    pub fn sysctl(&self, key: &str) -> Result<String> {
        Ok(self.exec("sysctl", &["-n", key])?.trim().replace('\t', " "))
    }

    /// Sets a sysctl of this namespace and checks that it took.
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])?;
        let now = self.sysctl(key)?;
        ensure!(now == value, "sysctl {key} is {now:?} after setting it to {value:?}");
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        match ip(&["netns", "del", &self.name]) {
            Ok(()) => eprintln!("porthog-bench: deleted namespace {}", self.name),
            Err(e) => eprintln!(
                "porthog-bench: could not delete namespace {}: {e:#}; run `ip netns del {}`",
                self.name, self.name
            ),
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Deletes namespaces left by earlier runs of this program that were SIGKILLed (their pid is
/// gone or is no longer porthog-bench), so they do not pile up.
pub fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "porthog-bench" {
            continue; // a live run
        }
        match ip(&["netns", "del", &name]) {
            Ok(()) => eprintln!("porthog-bench: deleted stale namespace {name} of a dead run"),
            Err(e) => eprintln!("porthog-bench: stale namespace {name}: {e:#}"),
        }
    }
}
