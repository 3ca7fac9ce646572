//! SIGINT, SIGTERM and SIGHUP as messages: blocked in every thread (call `block` before any
//! thread starts, so they all inherit the mask) and received by one thread with sigwait, which
//! calls back. No handler runs in signal context, so stopping can flush files and restore the
//! terminal like any other exit. Elsewhere than Linux the default handling stays.

/// The signals that ask porthog to stop.
pub struct Stop(#[cfg(target_os = "linux")] nix::sys::signal::SigSet);

/// Blocks the stop signals in the calling thread and the threads it starts from now on.
#[cfg(target_os = "linux")]
pub fn block() -> anyhow::Result<Stop> {
    use anyhow::Context;
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("cannot block SIGINT/SIGTERM")?;
    Ok(Stop(set))
}

#[cfg(not(target_os = "linux"))]
pub fn block() -> anyhow::Result<Stop> {
    Ok(Stop())
}

impl Stop {
    /// Calls `on_signal` from a background thread each time a stop signal arrives.
    #[cfg(target_os = "linux")]
    pub fn forward(self, mut on_signal: impl FnMut() + Send + 'static) {
        std::thread::spawn(move || {
            while self.0.wait().is_ok() {
                on_signal();
            }
        });
    }

    #[cfg(not(target_os = "linux"))]
    pub fn forward(self, _on_signal: impl FnMut() + Send + 'static) {}
}
