//! Presenters: each turns a `&Report` into bytes. Adding a format touches one file.

pub mod json;
pub mod text;
