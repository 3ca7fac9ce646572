//! `porthog trace`: allocation failures as the kernel returns them, and the openers of every
//! connection, from kernel tracepoints. Linux only; other OSes get a clear error.

#[cfg(target_os = "linux")]
mod linux;

use crate::cli::TraceOptions;

#[cfg(target_os = "linux")]
pub fn run(opts: &TraceOptions) -> anyhow::Result<u8> {
    linux::run(opts)
}

#[cfg(not(target_os = "linux"))]
pub fn run(_opts: &TraceOptions) -> anyhow::Result<u8> {
    anyhow::bail!(
        "porthog trace needs Linux kernel tracepoints; on Windows, read the Tcpip events 4231/4227/4266 with `porthog analyze`"
    )
}
