//! Allocation failures the kernel tracer catches while `serve` runs, counted for
//! `porthog_allocation_failures_total`, each in the namespace the failing thread was in. A
//! counter must only grow and keep its labels, so failures are counted by namespace inode and
//! the inode is named when metrics are rendered, with the first label ever rendered for it
//! kept for good. The bound on series is first come, first served: the first `MAX_SERIES`
//! (netns, process, remote, errno) keys get their own series, every later key counts into one
//! `other` series (netns and process `other`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use porthog_core::timeline::{Failure, FailureClass};

use crate::present::metrics::OTHER;

/// Distinct (netns, process, remote, errno) series at most; the rest count as `other`.
pub const MAX_SERIES: usize = 100;

/// (netns label, process name, remote or "", errno name) -> failures since start.
pub type Counts = crate::present::metrics::FailureCounts;

/// (netns inode, None where the tracer did not read it; process name, remote or "", errno
/// name). The overflow key is (None, `other`, "", ""): no failure has an empty errno.
type Key = (Option<u64>, String, String, String);

#[derive(Default)]
struct Inner {
    counts: BTreeMap<Key, u64>,
    /// The label of each namespace of the latest collection, by inode (what the pool metrics
    /// call it). A namespace not collected yet is labelled `net:[INODE]`.
    labels: HashMap<u64, String>,
    /// The label each inode's series were first rendered with: a series never changes labels
    /// (Prometheus would take it for a new series and its rate() for a counter reset).
    rendered: HashMap<u64, String>,
}

#[derive(Clone, Default)]
pub struct Book {
    inner: Arc<Mutex<Inner>>,
}

impl Book {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The labels of the namespaces just collected, replacing the previous ones.
    pub fn set_labels(&self, labels: HashMap<u64, String>) {
        self.lock().labels = labels;
    }

    /// Counts an allocation failure; refusals that are not exhaustion (a non-local address, a
    /// fixed port taken) are not ephemeral-port failures and are left out.
    pub fn record(&self, f: &Failure) {
        if f.class != FailureClass::Exhaustion {
            return;
        }
        let remote = f.remote.map(|r| r.to_string()).unwrap_or_default();
        let mut key = (f.netns, f.name.clone(), remote, f.errno.as_str().to_owned());
        let mut inner = self.lock();
        if !inner.counts.contains_key(&key) && inner.counts.len() >= MAX_SERIES {
            key = (None, OTHER.into(), String::new(), String::new());
        }
        *inner.counts.entry(key).or_default() += 1;
    }

    /// The counts as series, each namespace by its first rendered label. Two inodes that
    /// render alike (a name reused after its namespace was deleted) add into one series,
    /// which still only grows.
    pub fn counts(&self) -> Counts {
        let mut inner = self.lock();
        let Inner { counts, labels, rendered } = &mut *inner;
        let mut out = Counts::new();
        for ((netns, name, remote, errno), n) in counts.iter() {
            let label = match netns {
                None => OTHER.to_owned(),
                Some(inode) => rendered
                    .entry(*inode)
                    .or_insert_with(|| {
                        labels.get(inode).cloned().unwrap_or_else(|| format!("net:[{inode}]"))
                    })
                    .clone(),
            };
            *out.entry((label, name.clone(), remote.clone(), errno.clone())).or_default() += n;
        }
        out
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

    /// A failure before the namespace's first collection and one after count in one series,
    /// named; once rendered, a label stays even if the namespace is renamed.
    #[test]
    fn one_namespace_one_series_whose_label_never_changes() {
        let book = Book::default();
        book.record(&failure("client", 1));
        book.set_labels(HashMap::from([(7, "blue".to_owned())]));
        book.record(&failure("client", 1));
        let series = book.counts();
        assert_eq!(series.len(), 1, "{series:?}");
        let key = |netns: &str| {
            let (n, c) = (netns.to_owned(), "client".to_owned());
            (n, c, "127.0.0.1:1".to_owned(), "EADDRNOTAVAIL".to_owned())
        };
        assert_eq!(series[&key("blue")], 2);

        book.set_labels(HashMap::from([(7, "renamed".to_owned())]));
        book.record(&failure("client", 1));
        assert_eq!(book.counts(), Counts::from([(key("blue"), 3)]));

        // Rendered before it was named: `net:[8]` for good.
        book.record(&Failure { netns: Some(8), ..failure("client", 1) });
        assert_eq!(book.counts()[&key("net:[8]")], 1);
        book.set_labels(HashMap::from([(8, "red".to_owned())]));
        book.record(&Failure { netns: Some(8), ..failure("client", 1) });
        let series = book.counts();
        assert_eq!((series.len(), series[&key("net:[8]")]), (2, 2), "{series:?}");
    }
}
