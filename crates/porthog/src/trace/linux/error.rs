//! A system call that failed while opening the tracer: what porthog was doing and the errno,
//! and how that is told to the user (a permission error says what porthog needs).

use std::io;

use anyhow::anyhow;

/// What porthog was doing (`opening ... on CPU 3`, `reading .../format`) and the system error.
#[derive(Debug)]
pub struct SysError {
    pub what: String,
    pub error: io::Error,
}

impl SysError {
    /// A permission error becomes the message that says what porthog needs; others stay as
    /// they are.
    pub fn into_anyhow(self) -> anyhow::Error {
        needs_root(&self.error, &self.what)
    }
}

/// A permission error becomes the message that says what porthog needs; others stay as they are.
fn needs_root(error: &io::Error, what: &str) -> anyhow::Error {
    let name = match rustix::io::Errno::from_io_error(error) {
        Some(rustix::io::Errno::ACCESS) => Some("EACCES"),
        Some(rustix::io::Errno::PERM) => Some("EPERM"),
        _ => None,
    };
    match name {
        Some(name) => anyhow!(
            "porthog trace needs root (or CAP_PERFMON and CAP_SYS_ADMIN) to open kernel tracepoints: {name} ({error}) {what}"
        ),
        None => anyhow!("{what}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permission_error_says_what_porthog_needs() {
        let e = needs_root(&io::Error::from_raw_os_error(13), "opening perf events");
        let text = e.to_string();
        assert!(text.starts_with("porthog trace needs root (or CAP_PERFMON"), "{text}");
        assert!(text.contains("EACCES") && text.ends_with("opening perf events"), "{text}");
        let e = needs_root(&io::Error::from_raw_os_error(2), "reading the format");
        assert_eq!(
            e.to_string(),
            format!("reading the format: {}", io::Error::from_raw_os_error(2))
        );
    }
}
