//! Allocation failures the kernel tracer catches while `serve` runs, counted for
//! `porthog_allocation_failures_total`. A counter must only grow, so the bound on series is
//! first come, first served: the first `MAX_SERIES` (process, remote, errno) keys get their own
//! series for good, every later key counts into one `other` series.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use porthog_core::timeline::{Failure, FailureClass};

/// Distinct (process, remote, errno) series at most; the rest count as `other`.
pub const MAX_SERIES: usize = 100;

/// (process name, remote or "", errno name) -> failures since start.
pub type Counts = BTreeMap<(String, String, String), u64>;

#[derive(Clone, Default)]
pub struct Book(Arc<Mutex<Counts>>);

impl Book {
    /// Counts an allocation failure; refusals that are not exhaustion (a non-local address, a
    /// fixed port taken) are not ephemeral-port failures and are left out.
    pub fn record(&self, f: &Failure) {
        if f.class != FailureClass::Exhaustion {
            return;
        }
        let remote = f.remote.map(|r| r.to_string()).unwrap_or_default();
        let mut key = (f.name.clone(), remote, f.errno.as_str().to_owned());
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !counts.contains_key(&key) && counts.len() >= MAX_SERIES {
            key = (crate::present::metrics::OTHER.into(), String::new(), String::new());
        }
        *counts.entry(key).or_default() += 1;
    }

    pub fn counts(&self) -> Counts {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use porthog_core::Protocol;
    use porthog_core::timeline::Errno;

    use super::*;

    fn failure(name: &str, port: u16) -> Failure {
        Failure {
            time: String::new(),
            pid: 1,
            name: name.into(),
            container: None,
            protocol: Protocol::Tcp,
            remote: Some(format!("127.0.0.1:{port}").parse().unwrap()),
            errno: Errno::AddrNotAvail,
            call: "connect".into(),
            class: FailureClass::Exhaustion,
            netns: None,
        }
    }

    #[test]
    fn bounded_first_come_first_served() {
        let book = Book::default();
        for port in 0..(MAX_SERIES as u16 + 5) {
            book.record(&failure("client", port));
        }
        book.record(&failure("client", 0));
        let counts = book.counts();
        assert_eq!(counts.len(), MAX_SERIES + 1);
        let key = ("client".to_owned(), "127.0.0.1:0".to_owned(), "EADDRNOTAVAIL".to_owned());
        assert_eq!(counts[&key], 2);
        assert_eq!(counts[&("other".to_owned(), String::new(), String::new())], 5);
    }
}
