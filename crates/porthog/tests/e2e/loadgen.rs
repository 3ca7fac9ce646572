//! The `Loadgen` guard: a porthog-loadgen process inside a test namespace. Starting it waits for
//! its JSON ready line (with a timeout, no sleeps), so the kernel state exists when `start`
//! returns; Drop kills and reaps it. Its stdin pipe stays open while the guard lives, and
//! loadgen exits on stdin EOF, so even a killed test process leaves no loadgen behind.

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::child::{self, Spawned};
use crate::netns::Netns;

/// Generous: setting up 100 connections takes milliseconds, but CI machines stall.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The ready line (fields of the subcommands that do not have them are None).
#[derive(Debug, Deserialize)]
pub struct Ready {
    pub ready: bool,
    pub pid: u32,
    pub error: Option<String>,
    pub opened: Option<u64>,
    pub failed: Option<u64>,
    pub errno: Option<String>,
}

pub struct Loadgen {
    spawned: Spawned,
    /// Kept open: loadgen holds its sockets until this closes.
    _stdin: ChildStdin,
    pub ready: Ready,
}

/// `porthog-loadgen`, a binary of its own workspace crate (so `cargo install` of porthog does
/// not install it): next to this test binary's `deps/` directory, where `cargo test
/// --workspace` (or `cargo build -p porthog-loadgen`) puts it.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/e2e-*");
    let path = profile_dir.join(format!("porthog-loadgen{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, or `cargo build -p porthog-loadgen` first",
        path.display()
    );
    path
}

impl Loadgen {
    /// Starts `porthog-loadgen ARGS` inside `ns` and waits until it reports its state is set up.
    pub fn start(ns: &Netns, args: &[&str]) -> Loadgen {
        let binary = binary();
        let mut cmd = ns.exec(binary.to_str().expect("a UTF-8 path to porthog-loadgen"));
        cmd.args(args).stdin(Stdio::piped());
        let mut spawned = child::spawn(&mut cmd);
        let pid = spawned.child.id();
        ns.record(pid);
        let stdin = spawned.child.stdin.take().expect("stdin is piped");
        let what = spawned.what.clone();
        let line = match spawned.first_line(READY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                kill(&mut spawned);
                panic!("loadgen `{what}` never said it was ready: {e}");
            }
        };
        let ready: Ready = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                kill(&mut spawned);
                panic!("loadgen `{what}` printed {line:?}, not a ready line: {e}");
            }
        };
        let mut guard = Loadgen { spawned, _stdin: stdin, ready };
        let ready = &guard.ready;
        if !ready.ready {
            let error = ready.error.clone().unwrap_or_default();
            kill(&mut guard.spawned);
            panic!("loadgen `{what}` could not set up: {error}");
        }
        // Cleanup is by PID: it must be loadgen's own, i.e. `ip netns exec` exec'd, not forked.
        assert_eq!(
            ready.pid, pid,
            "`ip netns exec` forked: loadgen's pid {} is not the spawned pid {pid}",
            ready.pid
        );
        guard
    }

    pub fn pid(&self) -> u32 {
        self.ready.pid
    }

    /// Connections (or bound sockets) opened; panics for subcommands that open none.
    pub fn opened(&self) -> u64 {
        self.ready.opened.expect("this loadgen subcommand reports no `opened`")
    }

    pub fn failed(&self) -> u64 {
        self.ready.failed.expect("this loadgen subcommand reports no `failed`")
    }

    pub fn errno(&self) -> Option<&str> {
        self.ready.errno.as_deref()
    }
}

fn kill(spawned: &mut Spawned) {
    let _ = spawned.child.kill();
    let _ = spawned.child.wait();
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        kill(&mut self.spawned);
    }
}
