//! Presenters: each turns a `&Report` (or a trace line) into bytes. Adding a format touches one
//! file.

pub mod json;
pub mod sockets;
pub mod text;
pub mod trace;
