//! Running the porthog binary under test: inside a test namespace via `--netns NAME`, or
//! directly. Every run has a timeout, and a run's failure message shows its full output.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::child::{self, Finished};
use crate::netns::Netns;
use crate::report::Report;

/// A snapshot of a tiny namespace takes milliseconds; anything near this is a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit codes of the CLI contract.
pub const EXIT_OK: i32 = 0;
pub const EXIT_WARN: i32 = 1;
pub const EXIT_CRITICAL: i32 = 2;
pub const EXIT_ERROR: i32 = 3;

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_porthog")
}

/// Runs `cmd` to completion (stdin closed) and returns how it ended.
pub fn run(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null());
    Run(child::spawn(&mut cmd).wait(RUN_TIMEOUT))
}

/// `porthog --netns NS --json ARGS`.
pub fn json_in(ns: &Netns, args: &[&str]) -> Run {
    let mut cmd = Command::new(binary());
    cmd.args(["--netns", ns.name(), "--json"]).args(args);
    run(cmd)
}

/// `porthog --netns NS ARGS` (the text form).
pub fn text_in(ns: &Netns, args: &[&str]) -> Run {
    let mut cmd = Command::new(binary());
    cmd.args(["--netns", ns.name()]).args(args);
    run(cmd)
}

pub struct Run(pub Finished);

impl Run {
    /// The exit code; a death by signal fails the test.
    pub fn code(&self) -> i32 {
        self.0.code.unwrap_or_else(|| panic!("porthog died from a signal\n{}", self.context()))
    }

    pub fn stdout(&self) -> &str {
        &self.0.stdout
    }

    pub fn stderr(&self) -> &str {
        &self.0.stderr
    }

    pub fn context(&self) -> String {
        self.0.context()
    }

    /// Asserts the exit code, showing the whole run when it differs.
    pub fn assert_code(&self, expected: i32) {
        assert_eq!(self.code(), expected, "unexpected exit code\n{}", self.context());
    }

    /// Parses stdout as the JSON report of the contract, or fails saying what was printed.
    pub fn report(&self) -> Report {
        let report: Report = serde_json::from_str(self.stdout()).unwrap_or_else(|e| {
            panic!(
                "porthog --json did not print a JSON report as the contract says: {e}\n{}",
                self.context()
            )
        });
        assert_eq!(report.schema_version, 2, "unexpected schema_version\n{}", self.context());
        report
    }

    /// The first line of the text output (where the verdict word goes).
    pub fn first_line(&self) -> &str {
        self.stdout().lines().next().unwrap_or("")
    }
}

/// A copy of the porthog binary that any user can execute (the build directory may sit under
/// a 0700 home), deleted on Drop.
pub struct WorldExecutable {
    dir: std::path::PathBuf,
    pub path: std::path::PathBuf,
}

impl WorldExecutable {
    pub fn new(tag: &str) -> WorldExecutable {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("porthog-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let guard = WorldExecutable { path: dir.join("porthog"), dir };
        let mode = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(&guard.dir, mode.clone())
            .unwrap_or_else(|e| panic!("chmod {}: {e}", guard.dir.display()));
        // Copied by `install`, not by this process: a file this process holds open for writing
        // is inherited by every child another test thread forks meanwhile, and exec() of the
        // copy fails with ETXTBSY ("Text file busy") until that child has exec'd (seen in CI).
        let installed = std::process::Command::new("install")
            .args(["-m", "755", binary()])
            .arg(&guard.path)
            .status()
            .unwrap_or_else(|e| panic!("install: {e}"));
        assert!(installed.success(), "install {} {}: {installed}", binary(), guard.path.display());
        guard
    }
}

impl Drop for WorldExecutable {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
