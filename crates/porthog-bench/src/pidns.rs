//! Runs the benchmark as pid 1 of a private PID namespace with its own /proc, so every
//! /proc/*/fd walk (porthog's, the floor's, ss's, netstat's, lsof's) sees the load and nothing
//! else on the machine: numbers do not move with whatever other users happen to run. It also
//! makes cleanup certain: when pid 1 exits, the kernel kills every process left in the namespace,
//! and the private mount namespace takes the netns bind mount with it.
//!
//! The process that forks stays outside, waits, forwards SIGTERM/SIGHUP and returns the exit
//! code; terminal Ctrl-C reaches the inner process directly (same process group).

use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Result, bail};

static INNER: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = INNER.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; the pid is our unreaped child.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Where this process ended up.
pub enum Side {
    /// Inside the new namespaces: go on and benchmark.
    Inner,
    /// The outer process after the inner one exited, with its exit code.
    Outer(u8),
}

/// Forks into a new PID + mount namespace with a fresh /proc. Must be called while the process
/// is single-threaded (fork only copies the calling thread).
pub fn enter() -> Result<Side> {
    // SAFETY: unshare(2) with CLONE_NEWPID only affects children created after it.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        bail!("unshare(CLONE_NEWPID): {} (run as root)", std::io::Error::last_os_error());
    }
    // SAFETY: the process is single-threaded here (called first thing in main), so the child
    // gets a consistent copy of the whole process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        become_inner()?;
        return Ok(Side::Inner);
    }
    INNER.store(pid, Ordering::SeqCst);
    // SAFETY: installing plain handlers: SIG_IGN, and `forward`, which only calls kill(2).
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN); // the inner process gets Ctrl-C itself
        libc::signal(libc::SIGTERM, forward as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, forward as *const () as libc::sighandler_t);
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            bail!("waitpid: {e}");
        }
    }
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 1 };
    Ok(Side::Outer(code as u8))
}

fn become_inner() -> Result<()> {
    // SAFETY: prctl/unshare/mount with constant, NUL-terminated arguments.
    unsafe {
        // If the outer process is killed, stop in order (the handler deletes the netns).
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            bail!("unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error());
        }
        // Private: our /proc mount must not propagate back to the host's mount namespace.
        let root = c"/".as_ptr();
        if libc::mount(
            std::ptr::null(),
            root,
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            bail!("making / private: {}", std::io::Error::last_os_error());
        }
        let proc_ = c"proc".as_ptr();
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(proc_, c"/proc".as_ptr(), proc_, flags, std::ptr::null()) != 0 {
            bail!("mounting /proc for the PID namespace: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}
