//! Presenters: each turns a `&Report` (or a trace line) into bytes. Adding a format touches one
//! file.

pub mod fleet;
pub mod json;
pub mod metrics;
pub mod text;
pub mod trace;
