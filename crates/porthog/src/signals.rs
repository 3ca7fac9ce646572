//! SIGINT, SIGTERM and SIGHUP: the signals that ask porthog to stop, listed once and handled
//! one way (signal-hook) by every command. The handler only sets a flag or wakes a pipe; the
//! stopping itself (flushing a recording, restoring the terminal, printing a summary) runs on
//! an ordinary thread like any other exit. Elsewhere than Linux the default handling stays.

#[cfg(target_os = "linux")]
pub use linux::{flag, forward};

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use anyhow::{Context, Result};
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

    /// The signals that ask porthog to stop: Ctrl-C, `kill`, and a closed terminal or SSH
    /// session.
    const STOP: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];
    /// The exit status of a second stop signal: 128 + SIGINT, as a shell reports Ctrl-C.
    const EXIT_INTERRUPTED: i32 = 130;

    /// Calls `on_signal` from a background thread each time a stop signal arrives.
    pub fn forward(mut on_signal: impl FnMut() + Send + 'static) -> Result<()> {
        let mut signals = signal_hook::iterator::Signals::new(STOP)
            .context("installing the SIGINT/SIGTERM/SIGHUP handler")?;
        std::thread::Builder::new()
            .name("porthog-signals".into())
            .spawn(move || {
                for _ in signals.forever() {
                    on_signal();
                }
            })
            .context("starting the signal thread")?;
        Ok(())
    }

    /// A flag set by the first stop signal, for a loop that polls it; a second stop signal
    /// while the loop winds down (a summary may take seconds) ends porthog at once.
    pub fn flag() -> Result<Arc<AtomicBool>> {
        let stop = Arc::new(AtomicBool::new(false));
        for signal in STOP {
            // Registered first, so it sees the flag before this signal's own handler sets it.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                EXIT_INTERRUPTED,
                Arc::clone(&stop),
            )
            .context("installing the SIGINT/SIGTERM/SIGHUP handler")?;
            signal_hook::flag::register(signal, Arc::clone(&stop))
                .context("installing the SIGINT/SIGTERM/SIGHUP handler")?;
        }
        Ok(stop)
    }
}

/// Without the Linux handlers, the default handling (ending the process) stays.
#[cfg(not(target_os = "linux"))]
pub fn forward(_on_signal: impl FnMut() + Send + 'static) -> anyhow::Result<()> {
    Ok(())
}
