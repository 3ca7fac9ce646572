//! One timed run of a tool, through the `timed` launcher (timed.c): it enters the namespace,
//! forks the tool from its own tiny image and reports the tool's wall time and wait4() rusage
//! (CPU user+sys, peak RSS). Measuring a child of this process directly would not do: its
//! ru_maxrss would start at this program's peak (see timed.c). A pidfd waits for the launcher
//! with a timeout and wakes on Ctrl-C, so a run is killed while its pid is still ours.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::interrupt;

/// What one run cost.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
    /// ru_maxrss: the tool's peak resident set, in KiB.
    pub max_rss_kib: u64,
    /// Exit code, or None when a signal ended it.
    pub exit_code: Option<i32>,
    /// The run was killed for taking longer than the timeout (the other fields are empty).
    pub timed_out: bool,
}

impl Sample {
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

/// What to run: the tool's argv, the namespace to enter first (None: the tool enters it
/// itself, like porthog --netns), and where its output goes.
pub struct Job {
    pub netns: Option<PathBuf>,
    pub argv: Vec<OsString>,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

const SOURCE: &str = include_str!("../timed.c");

pub struct Launcher {
    bin: PathBuf,
    report: PathBuf,
}

impl Launcher {
    /// Compiles timed.c into `dir`, static if the C library allows (smaller image).
    pub fn build(dir: &Path) -> Result<Launcher> {
        let bin = crate::cc::compile(dir, "timed", SOURCE, &["-static"])
            .or_else(|_| crate::cc::compile(dir, "timed", SOURCE, &[]))?;
        Ok(Launcher { bin, report: dir.join("timed.report") })
    }

    /// Runs `job` to completion (or `timeout`) and measures it.
    pub fn run(&self, job: Job, timeout: Duration) -> Result<Sample> {
        let _ = std::fs::remove_file(&self.report);
        let mut cmd = Command::new(&self.bin);
        cmd.arg(&self.report)
            .arg(job.netns.as_deref().unwrap_or(Path::new("-")))
            .args(&job.argv)
            .stdin(Stdio::null())
            .stdout(job.stdout)
            .stderr(job.stderr)
            // Its own process group: a terminal Ctrl-C reaches only us; we stop the tool.
            .process_group(0);
        let start = Instant::now();
        let child = cmd.spawn().with_context(|| format!("spawning {}", self.bin.display()))?;
        let pid = child.id() as libc::pid_t;
        let pidfd = pidfd_open(pid)?;
        loop {
            match wait_exit(&pidfd, timeout.saturating_sub(start.elapsed())) {
                Ok(true) => break,
                Ok(false) => {
                    kill(pid); // the tool follows through PR_SET_PDEATHSIG
                    reap(pid)?;
                    return Ok(Sample {
                        wall: start.elapsed(),
                        user: Duration::ZERO,
                        sys: Duration::ZERO,
                        max_rss_kib: 0,
                        exit_code: None,
                        timed_out: true,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    if interrupt::requested() {
                        kill(pid);
                        reap(pid)?;
                        interrupt::check()?;
                    }
                }
                Err(e) => {
                    kill(pid);
                    reap(pid)?;
                    return Err(e).context("waiting for the tool");
                }
            }
        }
        let status = reap(pid)?;
        drop(child); // already reaped; dropping a Child neither waits nor kills
        let report = std::fs::read_to_string(&self.report).unwrap_or_default();
        parse_report(&report).with_context(|| {
            format!("the launcher exited with wait status {status} and no report: {report:?}")
        })
    }
}

/// Parses `wall_ns=N user_us=N sys_us=N maxrss_kib=N status=N`.
fn parse_report(text: &str) -> Option<Sample> {
    let field = |key: &str| -> Option<i64> {
        text.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    };
    let status = field("status")? as i32;
    Some(Sample {
        wall: Duration::from_nanos(field("wall_ns")? as u64),
        user: Duration::from_micros(field("user_us")? as u64),
        sys: Duration::from_micros(field("sys_us")? as u64),
        max_rss_kib: field("maxrss_kib")? as u64,
        exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        timed_out: false,
    })
}

fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        bail!("pidfd_open({pid}): {} (needs Linux 5.3+)", std::io::Error::last_os_error());
    }
    // SAFETY: the syscall just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process exits (true) or `left` runs out (false). EINTR is returned.
fn wait_exit(pidfd: &OwnedFd, left: Duration) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = left.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut pfd, 1, ms) } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// SIGKILL to a child we have not reaped yet (so the pid cannot belong to anyone else).
fn kill(pid: libc::pid_t) {
    // SAFETY: plain kill(2) on our own unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Reaps the launcher; returns its raw wait status.
fn reap(pid: libc::pid_t) -> Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            bail!("waitpid({pid}): {e}");
        }
    }
}

/// Median of the values (the lower middle one for an even count).
pub fn median<T: Copy + Ord>(values: impl IntoIterator<Item = T>) -> Option<T> {
    let mut v: Vec<T> = values.into_iter().collect();
    v.sort();
    v.get(v.len().saturating_sub(1) / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A launcher built in its own directory, removed when the test ends.
    struct TestLauncher(Launcher, PathBuf);

    impl Drop for TestLauncher {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }

    fn launcher(name: &str) -> TestLauncher {
        let dir =
            std::env::temp_dir().join(format!("porthog-bench-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TestLauncher(Launcher::build(&dir).unwrap(), dir)
    }

    fn job(argv: &[&str]) -> Job {
        Job {
            netns: None,
            argv: argv.iter().map(OsString::from).collect(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
        }
    }

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median([3, 1, 2]), Some(2));
        assert_eq!(median([4, 1, 3, 2]), Some(2));
        assert_eq!(median(Vec::<u32>::new()), None);
    }

    #[test]
    fn parses_the_report() {
        let s = parse_report("wall_ns=1500000000 user_us=20 sys_us=30 maxrss_kib=900 status=768\n")
            .unwrap();
        assert_eq!(s.wall, Duration::from_millis(1500));
        assert_eq!(s.cpu(), Duration::from_micros(50));
        assert_eq!(s.max_rss_kib, 900);
        assert_eq!(s.exit_code, Some(3));
        assert!(parse_report("wall_ns=1").is_none());
    }

    #[test]
    fn measures_the_tool_not_this_process() {
        // Touch 64 MiB here first: a direct child's ru_maxrss would start at least that high.
        let ballast = vec![1u8; 64 << 20];
        let l = launcher("rss");
        let s = l.0.run(job(&["sh", "-c", "exit 3"]), Duration::from_secs(10)).unwrap();
        assert_eq!(s.exit_code, Some(3));
        assert!(!s.timed_out);
        assert!(s.max_rss_kib > 0 && s.max_rss_kib < 16 << 10, "{} KiB", s.max_rss_kib);
        assert_eq!(ballast.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
    }

    #[test]
    fn kills_a_run_past_its_timeout() {
        let l = launcher("timeout");
        let s = l.0.run(job(&["sleep", "10"]), Duration::from_millis(200)).unwrap();
        assert!(s.timed_out);
        assert_eq!(s.exit_code, None);
        assert!(s.wall < Duration::from_secs(5));
    }
}
