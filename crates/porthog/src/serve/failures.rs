//! Allocation failures the kernel tracer catches while `serve` runs, counted for
//! `porthog_allocation_failures_total`, each in the namespace the failing thread was in. A
//! counter must only grow, so the bound on series is first come, first served: the first
//! `MAX_SERIES` (netns, process, remote, errno) keys get their own series for good, every
//! later key counts into one `other` series (netns and process `other`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use porthog_core::timeline::{Failure, FailureClass};

use crate::present::metrics::OTHER;

/// Distinct (netns, process, remote, errno) series at most; the rest count as `other`.
pub const MAX_SERIES: usize = 100;

/// (netns label, process name, remote or "", errno name) -> failures since start.
pub type Counts = crate::present::metrics::FailureCounts;

#[derive(Clone, Default)]
pub struct Book {
    counts: Arc<Mutex<Counts>>,
    /// The label of each namespace of the latest collection, by inode (what the pool metrics
    /// call it). A failure in a namespace not collected yet is labelled `net:[INODE]`.
    labels: Arc<Mutex<HashMap<u64, String>>>,
}

impl Book {
    /// The labels of the namespaces just collected, replacing the previous ones.
    pub fn set_labels(&self, labels: HashMap<u64, String>) {
        *self.labels.lock().unwrap_or_else(PoisonError::into_inner) = labels;
    }

    /// A failure's namespace as the metrics label it.
    fn netns(&self, f: &Failure) -> String {
        let Some(inode) = f.netns else { return OTHER.to_owned() };
        let labels = self.labels.lock().unwrap_or_else(PoisonError::into_inner);
        labels.get(&inode).cloned().unwrap_or_else(|| format!("net:[{inode}]"))
    }

    /// Counts an allocation failure; refusals that are not exhaustion (a non-local address, a
    /// fixed port taken) are not ephemeral-port failures and are left out.
    pub fn record(&self, f: &Failure) {
        if f.class != FailureClass::Exhaustion {
            return;
        }
        let remote = f.remote.map(|r| r.to_string()).unwrap_or_default();
        let mut key = (self.netns(f), f.name.clone(), remote, f.errno.as_str().to_owned());
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if !counts.contains_key(&key) && counts.len() >= MAX_SERIES {
            key = (OTHER.into(), OTHER.into(), String::new(), String::new());
        }
        *counts.entry(key).or_default() += 1;
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use porthog_core::Protocol;
    use porthog_core::timeline::Errno;

    use super::*;

    fn failure(name: &str, port: u16) -> Failure {
        Failure { netns: Some(7), ..failure_anywhere(name, port) }
    }

    fn failure_anywhere(name: &str, port: u16) -> Failure {
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
        let key = |netns: &str| {
            let (n, c) = (netns.to_owned(), "client".to_owned());
            (n, c, "127.0.0.1:0".to_owned(), "EADDRNOTAVAIL".to_owned())
        };
        assert_eq!(counts[&key("net:[7]")], 2);
        let other = ("other".to_owned(), "other".to_owned(), String::new(), String::new());
        assert_eq!(counts[&other], 5);
    }

    /// Each failure counts in its own namespace, labelled as the pool metrics label it.
    #[test]
    fn failures_count_in_their_namespace() {
        let book = Book::default();
        book.set_labels(HashMap::from([(7, "blue".to_owned()), (8, "red".to_owned())]));
        book.record(&failure("client", 1));
        book.record(&Failure { netns: Some(9), ..failure("client", 1) });
        let netns: Vec<String> = book.counts().into_keys().map(|k| k.0).collect();
        assert_eq!(netns, ["blue", "net:[9]"]);
    }
}
