//! Presenters: each turns a `&Report` (or a trace line) into bytes. Adding a format touches one
//! file.

pub mod fleet;
pub mod json;
pub mod metrics;
pub mod perfdata;
pub mod sockets;
pub mod text;
// Only the Linux tracer prints traces; the presenter still builds (and is tested) everywhere.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub mod trace;
