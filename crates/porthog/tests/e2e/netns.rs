//! The `Netns` guard: a private network namespace per test, named `porthog-e2e-<pid>-<n>`, with
//! loopback up and the test's sysctls set. Dropping it kills the processes it started (by PID,
//! only those still inside the namespace) and deletes the namespace, also when the test panics.
//! It also decides whether a privileged test runs, is skipped, or fails (under CI=true).

use std::process::{Command, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

const PREFIX: &str = "porthog-e2e-";

/// The ephemeral range every scenario uses unless it says otherwise: 100 ports.
pub const RANGE: &str = "40000 40099";

static NEXT: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// True when running under CI (CI=true), where a privileged test must never be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Whether a privileged test can run here. Outside CI a missing privilege skips the test (with
/// a message); under CI=true it fails the test.
fn privileged_or_skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if in_ci() {
        panic!("{test}: needs root (network namespaces), and CI=true forbids skipping");
    }
    eprintln!("{test}: skipped: needs root (network namespaces)");
    false
}

pub struct Netns {
    name: String,
    /// PIDs of the processes started inside, for the Drop backstop.
    spawned: Mutex<Vec<u32>>,
    /// This test's turn: released after Drop has ended the processes and deleted the namespace
    /// (None for a peer namespace, which lives within its test's turn).
    _turn: Option<MutexGuard<'static, ()>>,
}

/// Namespace tests take turns. In parallel on two cores, a test's server could be starved past
/// its deadline, and the tracer tests see the other tests' load (both seen as rare flakes).
static TURN: Mutex<()> = Mutex::new(());

impl Netns {
    /// A fresh namespace with the default 100-port range and `sysctls` set (`key`, `value`),
    /// or None when the test must be skipped (not root, outside CI).
    pub fn for_test(test: &str, sysctls: &[(&str, &str)]) -> Option<Netns> {
        if !privileged_or_skip(test) {
            return None;
        }
        match Netns::create(sysctls) {
            Ok(ns) => Some(ns),
            Err(e) if in_ci() => panic!("{test}: cannot set up a network namespace: {e}"),
            Err(e) => {
                eprintln!("{test}: skipped: cannot set up a network namespace: {e}");
                None
            }
        }
    }

    fn create(sysctls: &[(&str, &str)]) -> Result<Netns, String> {
        // A test that panicked still released its turn; the lock's poison says nothing here.
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        SWEEP.call_once(sweep_stale);
        Netns::create_in_turn(sysctls, Some(turn))
    }

    /// A second namespace for the same test (a peer over a veth pair, see `link_veth`),
    /// deleted on Drop like the first.
    pub fn peer(&self, sysctls: &[(&str, &str)]) -> Netns {
        Netns::create_in_turn(sysctls, None).unwrap_or_else(|e| panic!("peer namespace: {e}"))
    }

    /// A veth pair between this namespace (`local_ip`/24) and `peer` (`peer_ip`/24), both up.
    pub fn link_veth(&self, peer: &Netns, local_ip: &str, peer_ip: &str) {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (format!("phA{n}"), format!("phB{n}"));
        let steps: [Vec<String>; 5] = [
            [
                "link", "add", &a, "netns", &self.name, "type", "veth", "peer", "name", &b,
                "netns", &peer.name,
            ]
            .map(str::to_owned)
            .to_vec(),
            ["-n", &self.name, "addr", "add", &format!("{local_ip}/24"), "dev", &a]
                .map(str::to_owned)
                .to_vec(),
            ["-n", &peer.name, "addr", "add", &format!("{peer_ip}/24"), "dev", &b]
                .map(str::to_owned)
                .to_vec(),
            ["-n", &self.name, "link", "set", &a, "up"].map(str::to_owned).to_vec(),
            ["-n", &peer.name, "link", "set", &b, "up"].map(str::to_owned).to_vec(),
        ];
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            run_ip(&args).unwrap_or_else(|e| panic!("veth: {e}"));
        }
    }

    /// A second namespace for the same test (the first one holds the turn): drop it before
    /// the first.
    pub fn sibling(&self, sysctls: &[(&str, &str)]) -> Netns {
        Netns::create_in_turn(sysctls, None)
            .unwrap_or_else(|e| panic!("cannot set up a second network namespace: {e}"))
    }

    fn create_in_turn(
        sysctls: &[(&str, &str)],
        turn: Option<MutexGuard<'static, ()>>,
    ) -> Result<Netns, String> {
        let name =
            format!("{PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run_ip(&["netns", "add", &name])?;
        // From here on Drop deletes the namespace, also when a later step fails.
        let ns = Netns { name, spawned: Mutex::new(Vec::new()), _turn: turn };
        run_ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        ns.sysctl("net.ipv4.ip_local_port_range", RANGE)?;
        // A late RST would end a TIME_WAIT early (RFC 1337 "assassination", the default 0), so
        // a churn's TIME_WAIT count came up one short (or a full pool one port freer) in about
        // one run of fifteen; with 1 the kernel keeps every TIME_WAIT for its whole 60 s.
        ns.sysctl("net.ipv4.tcp_rfc1337", "1")?;
        for (key, value) in sysctls {
            ns.sysctl(key, value)?;
        }
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This test's turn among the namespace tests, for a test that makes its own namespaces
    /// (the kernel oracle), or None when it must be skipped (not root, outside CI).
    pub fn turn(test: &str) -> Option<MutexGuard<'static, ()>> {
        if !privileged_or_skip(test) {
            return None;
        }
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        SWEEP.call_once(sweep_stale);
        Some(turn)
    }

    /// Sets a per-namespace sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        let out = self
            .exec("sysctl")
            .args(["-qw", &format!("{key}={value}")])
            .output()
            .map_err(|e| format!("cannot run sysctl (procps): {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "sysctl -w {key}={value:?} in {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `ip netns exec NAME program`: `ip` execs the program (no fork), so the child's PID is
    /// the program's own; `Loadgen` checks that.
    pub fn exec(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Remembers a PID started inside, so Drop can kill it if its own guard did not.
    pub fn record(&self, pid: u32) {
        self.spawned.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
    }

    /// Counts TCP sockets in `state` (an `ss` state name) matching the `ss` filter `filter`.
    /// Waits (polling the kernel, at most 10 s) until `ss` counts `n` sockets in `state`: a
    /// close reaches TIME_WAIT after the FIN exchange, not when close() returns.
    pub fn wait_for_state(&self, state: &str, n: usize) {
        self.wait_for_count(state, "", n);
    }

    /// [`Netns::wait_for_state`] for the sockets an `ss` filter (e.g. `dst ADDR`) selects.
    pub fn wait_for_count(&self, state: &str, filter: &str, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.ss_count(state, filter) != n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} sockets in {state} {filter} in {} after 10 s, not {n}; all TCP sockets:\n{}",
                self.ss_count(state, filter),
                self.name,
                self.ss_states()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `ss -Htan` of the namespace, for a failure message.
    fn ss_states(&self) -> String {
        match self.exec("ss").arg("-Htan").output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("(cannot run ss: {e})"),
        }
    }

    pub fn ss_count(&self, state: &str, filter: &str) -> usize {
        let mut cmd = self.exec("ss");
        cmd.args(["-Htan", "state", state]);
        if !filter.is_empty() {
            cmd.arg(filter);
        }
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run ss (iproute2): {e}"));
        assert!(
            out.status.success(),
            "ss in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
    }

    /// PIDs of the processes living in the namespace now.
    fn pids_inside(&self) -> Vec<u32> {
        let out = Command::new("ip").args(["netns", "pids", &self.name]).output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Backstop: the Loadgen guards normally killed and reaped their processes already. Only
        // PIDs that we started AND that still live in our namespace are killed, so a recycled
        // PID can never hit someone else's process.
        let spawned = self.spawned.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for pid in self.pids_inside() {
            if spawned.contains(&pid)
                && let Some(pid) = rustix::process::Pid::from_raw(pid as i32)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        // Never panic in Drop (it may run while unwinding): report and go on.
        // A test may have deleted it itself (to leave it held by an fd only): no warning then.
        let exists = std::path::Path::new("/run/netns").join(&self.name).exists();
        if let Err(e) = run_ip(&["netns", "del", &self.name]).or_else(|e| match exists {
            true => Err(e),
            false => Ok(()),
        }) {
            eprintln!("warning: could not delete network namespace {}: {e}", self.name);
        }
    }
}

fn run_ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Deletes namespaces that an earlier run of these tests left behind when it was killed before
/// its guards ran: ours by name, and their creating test process is gone.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some((pid, n)) = rest.split_once('-') else { continue };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u32>()) else { continue };
        // This runs once, before this process creates any namespace: one with our own PID in
        // its name is a leftover of an earlier process that had the same PID.
        if pid == std::process::id() || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run_ip(&["netns", "del", name]);
        }
    }
}
