//! The Windows System log as `check`, `watch` and `record` ask it for Tcpip events 4227, 4231
//! and 4266: the XPath query (the last `--since` for a check; for a sampler, only events newer
//! than the last one it saw, by `EventRecordID`) and the cursor that keeps each event to the
//! one interval it arrived in. Pure: the Windows collector runs the query (`EvtQuery`) and
//! hands the rendered XML here, so all of this is tested on any OS (issue 10).

use std::collections::HashSet;
use std::time::Duration;

use crate::import::{event_xml, events};
use crate::report::Evidence;

/// Which events a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Logged during the last this long (`TimeCreated[timediff(@SystemTime) <= ms]`).
    Last(Duration),
    /// Logged after the event with this `EventRecordID` (`EventRecordID > n`).
    After(u64),
}

/// The XPath filter of the System log for the Tcpip events porthog keeps.
pub fn query(since: Since) -> String {
    let ids: Vec<String> = events::kept_ids().map(|id| format!("EventID={id}")).collect();
    let when = match since {
        Since::Last(d) => format!("TimeCreated[timediff(@SystemTime) <= {}]", d.as_millis()),
        Since::After(n) => format!("EventRecordID > {n}"),
    };
    format!("*[System[Provider[@Name='Tcpip'] and ({}) and {when}]]", ids.join(" or "))
}

/// What one poll found: the evidence of the events not seen before, and how many documents
/// could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Polled {
    pub evidence: Vec<Evidence>,
    pub unreadable: u64,
}

/// A sampler's place in the log: each poll asks only for events after the newest it has seen,
/// and drops any it has already counted (the log may hand one back twice when it was written
/// between two calls), so each event raises the verdict of exactly one interval.
#[derive(Debug, Clone, Default)]
pub struct EventCursor {
    /// The newest `EventRecordID` seen so far; None before the first poll found one.
    last: Option<u64>,
    /// Record ids counted by the latest poll (a poll may return the newest again).
    seen: HashSet<u64>,
}

impl EventCursor {
    pub fn new() -> EventCursor {
        EventCursor::default()
    }

    /// The query for the next poll: before any event was seen, those of the last `first`
    /// (the sampling interval, so the first sample shows a storm going on as it starts);
    /// after that, only newer records.
    pub fn query(&self, first: Duration) -> String {
        query(self.last.map_or(Since::Last(first), Since::After))
    }

    /// Reads a poll's rendered events: keeps the Tcpip events porthog knows that are newer
    /// than the cursor and not counted before, and moves the cursor to the newest record.
    /// A document without a record id is kept (the query already asked for newer ones only)
    /// but cannot move the cursor.
    pub fn take<S: AsRef<str>>(&mut self, documents: &[S]) -> Polled {
        let mut kept = Vec::new();
        let mut unreadable = 0;
        let mut seen = HashSet::new();
        for doc in documents {
            let Some(e) = event_xml::parse(doc.as_ref()) else {
                unreadable += 1;
                continue;
            };
            if let Some(n) = e.record_id {
                let old = self.last.is_some_and(|last| n <= last) || self.seen.contains(&n);
                if old || !seen.insert(n) {
                    continue;
                }
            }
            if events::kept(e.provider.as_deref(), e.id) {
                kept.push((e.id, e.time.as_deref().map(events::normalise_time)));
            }
        }
        if let Some(newest) = seen.iter().max() {
            self.last = Some(self.last.map_or(*newest, |l| l.max(*newest)));
        }
        if !seen.is_empty() {
            self.seen = seen;
        }
        Polled { evidence: events::evidence(&kept), unreadable }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u32, record: u64, time: &str) -> String {
        format!(
            "<Event><System><Provider Name='Tcpip'/><EventID>{id}</EventID>\
             <TimeCreated SystemTime='{time}'/><EventRecordID>{record}</EventRecordID></System></Event>"
        )
    }

    #[test]
    fn queries_by_time_then_by_record() {
        assert_eq!(
            query(Since::Last(Duration::from_secs(86_400))),
            "*[System[Provider[@Name='Tcpip'] and (EventID=4227 or EventID=4231 or EventID=4266) \
             and TimeCreated[timediff(@SystemTime) <= 86400000]]]"
        );
        let mut cursor = EventCursor::new();
        assert!(cursor.query(Duration::from_secs(2)).ends_with("timediff(@SystemTime) <= 2000]]]"));
        cursor.take(&[event(4231, 41, "2026-11-28T10:00:00.1Z")]);
        assert!(cursor.query(Duration::from_secs(2)).ends_with("and EventRecordID > 41]]"));
    }

    #[test]
    fn each_event_counts_in_one_poll_only() {
        let mut cursor = EventCursor::new();
        let first = cursor.take(&[
            event(4231, 40, "2026-11-28T10:00:00.1Z"),
            event(4231, 41, "2026-11-28T10:00:01.1Z"),
            event(4231, 41, "2026-11-28T10:00:01.1Z"),
        ]);
        assert_eq!(first.evidence.len(), 1);
        assert_eq!((first.evidence[0].id, first.evidence[0].count), (4231, 2));
        assert_eq!(first.evidence[0].last.as_deref(), Some("2026-11-28T10:00:01"));
        // The log hands 41 back with two new ones: only the new ones count.
        let second = cursor.take(&[
            event(4231, 41, "2026-11-28T10:00:01.1Z"),
            event(4266, 42, "2026-11-28T10:00:02.1Z"),
            event(4227, 43, "2026-11-28T10:00:03.1Z"),
        ]);
        let got: Vec<(u32, u64)> = second.evidence.iter().map(|e| (e.id, e.count)).collect();
        assert_eq!(got, [(4227, 1), (4266, 1)]);
        // Nothing new: nothing, and the cursor stays.
        assert_eq!(cursor.take::<&str>(&[]), Polled::default());
        assert!(cursor.query(Duration::ZERO).ends_with("EventRecordID > 43]]"));
    }

    /// A 4231 new in an interval raises that interval's verdict as a 4231 of `--since` does in
    /// a check; a 4227 alone (churn) does not.
    #[test]
    fn a_new_4231_raises_the_interval_as_a_check_does() {
        let snap = crate::Snapshot::new(crate::Os::Windows, "test");
        let opts = crate::AnalyzeOptions::default();
        let mut cursor = EventCursor::new();
        let polled = cursor.take(&[event(4231, 7, "2026-11-28T10:00:00Z")]);
        let mut sampled = crate::analyze(&snap, &opts);
        assert_eq!(sampled.verdict, crate::Level::Ok);
        crate::add_evidence(&mut sampled, polled.evidence.clone());
        let checked = crate::analyze_imported(&snap, Vec::new(), polled.evidence, &opts);
        assert_eq!((sampled.verdict, &sampled.summary), (checked.verdict, &checked.summary));
        assert_eq!(sampled.verdict, crate::Level::Critical);
        assert_eq!(sampled.evidence, checked.evidence);
        let churn = cursor.take(&[event(4227, 8, "2026-11-28T10:00:01Z")]);
        let mut next = crate::analyze(&snap, &opts);
        crate::add_evidence(&mut next, churn.evidence);
        assert!(next.verdict < crate::Level::Critical, "{:?}", next.verdict);
    }

    #[test]
    fn other_events_and_garbage_move_nothing_but_are_counted() {
        let mut cursor = EventCursor::new();
        let other = event(7036, 50, "2026-11-28T10:00:00Z").replace("'Tcpip'", "'SCM'");
        let polled = cursor.take(&[other.as_str(), "garbage", "<EventID>4231</EventID>"]);
        assert_eq!(polled.unreadable, 1);
        // The Tcpip event without a record id is kept; the other provider's is not.
        assert_eq!(polled.evidence.iter().map(|e| e.count).sum::<u64>(), 1);
        // 50 was seen (another provider's record ids share the log's sequence).
        assert!(cursor.query(Duration::ZERO).ends_with("EventRecordID > 50]]"));
    }
}
