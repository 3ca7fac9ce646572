//! One timed run of a tool: wall time around spawn..reap, and the child's own CPU time and
//! peak RSS from wait4()'s rusage. A pidfd waits for the exit with a timeout (and wakes on
//! Ctrl-C) without reaping, so a run that is killed is killed while its pid is still ours.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::interrupt;

/// What one run cost.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub user: Duration,
    pub sys: Duration,
    /// ru_maxrss: the child's peak resident set, in KiB.
    pub max_rss_kib: u64,
    /// Exit code, or None when a signal ended it.
    pub exit_code: Option<i32>,
    /// The run was killed for taking longer than the timeout.
    pub timed_out: bool,
}

impl Sample {
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

/// Runs `cmd` (its stdio already set by the caller) to completion and measures it.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Sample> {
    // Its own process group: a Ctrl-C at the terminal reaches only us; we stop the tool.
    cmd.process_group(0);
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawning {:?}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let pidfd = pidfd_open(pid)?;
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        match wait_exit(&pidfd, left) {
            Ok(true) => break,
            Ok(false) => {
                timed_out = true;
                kill(pid);
                break;
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
    let (status, usage) = reap(pid)?;
    let wall = start.elapsed();
    drop(child); // already reaped by wait4; dropping a Child neither waits nor kills
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Sample {
        wall,
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss as u64,
        exit_code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        timed_out,
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
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = left.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    match n {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// SIGKILL to a child we have not reaped yet (so the pid cannot belong to anyone else).
pub fn kill(pid: libc::pid_t) {
    // SAFETY: plain kill(2) on our own unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn reap(pid: libc::pid_t) -> Result<(libc::c_int, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to our locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            bail!("wait4({pid}): {e}");
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

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median([3, 1, 2]), Some(2));
        assert_eq!(median([4, 1, 3, 2]), Some(2));
        assert_eq!(median(Vec::<u32>::new()), None);
    }

    #[test]
    fn measures_a_real_child() {
        let s = run(Command::new("sh").args(["-c", "exit 3"]), Duration::from_secs(10)).unwrap();
        assert_eq!(s.exit_code, Some(3));
        assert!(!s.timed_out);
        assert!(s.max_rss_kib > 0);
    }

    #[test]
    fn kills_a_run_past_its_timeout() {
        let s = run(Command::new("sleep").arg("10"), Duration::from_millis(100)).unwrap();
        assert!(s.timed_out);
        assert_eq!(s.exit_code, None);
        assert!(s.wall < Duration::from_secs(5));
    }
}
