//! Ctrl-C, SIGTERM and SIGHUP become a flag the benchmark checks between steps, so it still
//! stops its processes and deletes its namespace. Handlers are installed without SA_RESTART:
//! a blocking poll() or wait returns EINTR and the caller looks at the flag at once.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP.
pub fn install() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic, and
        // sigemptyset/sigaction get valid pointers to our own struct.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = 0;
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!(
                "installing the handler for signal {signal}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// True once a stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Fails with "interrupted" once a stop was asked for, so `?` unwinds to the cleanup.
pub fn check() -> Result<()> {
    if requested() {
        bail!("interrupted: stopping the load and deleting the namespace");
    }
    Ok(())
}
