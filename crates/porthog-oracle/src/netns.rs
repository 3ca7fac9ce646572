//! Network namespaces for one scenario: created with `ip netns add`, entered per thread with
//! setns(2), deleted on Drop (also on panic). Mirrors the e2e `Netns` guard
//! (crates/porthog/tests/e2e/netns.rs); names come from a `Namer` so the e2e test can use its
//! `porthog-e2e-<pid>-<n>` pattern, which .ci/run checks for leftovers.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CloneFlags, setns};

/// Hands out namespace names `<prefix><pid>-<n>`.
pub struct Namer {
    prefix: String,
    next: AtomicU32,
}

impl Namer {
    /// `prefix` e.g. "porthog-oracle-" or "porthog-e2e-"; numbering starts at `first`, so a
    /// process that also names namespaces elsewhere can keep the two apart.
    pub fn new(prefix: &str, first: u32) -> Namer {
        Namer { prefix: prefix.to_owned(), next: AtomicU32::new(first) }
    }

    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}{}-{n}", self.prefix, std::process::id())
    }

    /// Deletes namespaces with this prefix whose creating process is gone (an earlier run
    /// killed before its guards ran).
    pub fn sweep_stale(&self) {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else { continue };
            let Some(rest) = name.strip_prefix(&self.prefix) else { continue };
            let Some((pid, n)) = rest.split_once('-') else { continue };
            let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u32>()) else { continue };
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
}

/// One namespace, deleted on Drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace with lo up.
    pub fn create(namer: &Namer) -> Result<Netns> {
        let name = namer.next();
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip_batch(&["link set lo up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME -batch -` with these commands, one spawn for all.
    pub fn ip_batch(&self, commands: &[&str]) -> Result<()> {
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run `ip` (iproute2)")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(commands.join("\n").as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ip -n {} -batch: {}\ncommands:\n{}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                commands.join("\n")
            );
        }
        Ok(())
    }

    /// Moves the calling thread into this namespace (sockets it creates belong here).
    pub fn enter(&self) -> Result<()> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("open {path}"))?;
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns into {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Never panic in Drop: report and go on. Sockets still open in this process keep the
        // namespace alive in the kernel until they close, but its name is gone.
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("warning: could not delete network namespace {}: {e}", self.name);
        }
    }
}

/// Writes a per-namespace sysctl of the calling thread's namespace (`/proc/sys/net` follows
/// the thread), e.g. `("ipv4/tcp_tw_reuse", "2")`.
pub fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/net/{key}");
    std::fs::write(&path, value).with_context(|| format!("write {value:?} to {path}"))
}

/// TCP states that change by themselves within milliseconds (the kernel's numbering).
const TRANSIENT: [u8; 5] = [
    2,  // SYN_SENT
    3,  // SYN_RECV
    4,  // FIN_WAIT1
    9,  // LAST_ACK
    11, // CLOSING
];
const FIN_WAIT2: u8 = 5;

/// Counts TCP sockets of the calling thread's namespace by state number.
fn tcp_states() -> Result<[u32; 16]> {
    let mut counts = [0u32; 16];
    for file in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        let text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
        for line in text.lines().skip(1) {
            let Some(st) = line.split_whitespace().nth(3) else { continue };
            if let Ok(st) = u8::from_str_radix(st, 16) {
                counts[usize::from(st & 15)] += 1;
            }
        }
    }
    Ok(counts)
}

/// Waits until no TCP socket of this thread's namespace is in a transient state and exactly
/// `fin_wait2` are in FIN_WAIT2 (the leaks), so what porthog sees is what the probe meets.
pub fn settle(fin_wait2: u32, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let c = tcp_states()?;
        let transient: u32 = TRANSIENT.iter().map(|&s| c[usize::from(s)]).sum();
        if transient == 0 && c[usize::from(FIN_WAIT2)] == fin_wait2 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "sockets did not settle within {timeout:?}: {transient} in SYN/FIN_WAIT1/LAST_ACK/CLOSING, {} in FIN_WAIT2 (expected {fin_wait2})",
                c[usize::from(FIN_WAIT2)]
            );
        }
        // Polling a deadline for the kernel's own state changes.
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
