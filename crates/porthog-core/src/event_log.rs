//! The Windows System log as `check`, `watch` and `record` ask it for Tcpip events 4227, 4231
//! and 4266: the XPath query (the last `--since` for a check; for a sampler, the events logged
//! since its previous poll) and the cursor that keeps each event to the one interval it arrived
//! in. Pure: the Windows collector runs the query (`EvtQuery`) and hands the rendered XML and
//! the time of the poll here, so all of this is tested on any OS (issue 10).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::import::{event_xml, events};
use crate::report::Evidence;

/// Which events a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Logged during the last this long (`TimeCreated[timediff(@SystemTime) <= ms]`).
    Last(Duration),
    /// Logged after the event with this `EventRecordID`, or during the last this long
    /// (`EventRecordID > n or TimeCreated[...]`): the time also finds the events of a log
    /// cleared since, whose record ids start again from 1.
    AfterOrLast(u64, Duration),
}

/// How far a sampler's time window reaches back before its previous poll: the log's clock
/// and ours are read at slightly different moments, and an event logged while the previous
/// query ran must not fall between two windows (the cursor drops any it counted already).
pub const POLL_MARGIN: Duration = Duration::from_secs(1);

/// The XPath filter of the System log for the Tcpip events porthog keeps.
pub fn query(since: Since) -> String {
    let ids: Vec<String> = events::kept_ids().map(|id| format!("EventID={id}")).collect();
    let last = |d: Duration| format!("TimeCreated[timediff(@SystemTime) <= {}]", d.as_millis());
    let when = match since {
        Since::Last(d) => last(d),
        Since::AfterOrLast(n, d) => format!("(EventRecordID > {n} or {})", last(d)),
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

/// A sampler's place in the log: each poll asks for the events logged since the previous
/// poll (by the real time between them, which is the interval plus the time collection took,
/// so nothing logged meanwhile is lost) or after the newest record it has seen, and drops any
/// it has already counted (the windows overlap by `POLL_MARGIN`, and the log may hand one
/// back twice when it was written between two calls), so each event raises the verdict of
/// exactly one interval.
#[derive(Debug, Clone, Default)]
pub struct EventCursor {
    /// The newest `EventRecordID` seen so far; None before the first poll found one, and
    /// again once the log was found cleared.
    last: Option<u64>,
    /// Record ids counted by the latest poll (a poll may return the newest again).
    seen: HashSet<u64>,
    /// When the latest poll that read the log was made.
    polled: Option<Instant>,
}

impl EventCursor {
    pub fn new() -> EventCursor {
        EventCursor::default()
    }

    /// The query for a poll made at `now`: on the first, the events of the last `first` (the
    /// sampling interval, so the first sample shows a storm going on as it starts); after
    /// that, those logged since the previous poll (plus `POLL_MARGIN`), and once a record was
    /// seen, also any newer record (which does not depend on the clocks agreeing).
    pub fn query(&self, now: Instant, first: Duration) -> String {
        let window = self
            .polled
            .map_or(first, |previous| now.saturating_duration_since(previous) + POLL_MARGIN);
        query(match self.last {
            Some(n) => Since::AfterOrLast(n, window),
            None => Since::Last(window),
        })
    }

    /// Reads the rendered events of the poll made at `now`: keeps the Tcpip events porthog
    /// knows that are newer than the cursor and not counted before, and moves the cursor to
    /// the newest record. A document without a record id is kept but can neither be told
    /// from one counted before nor move the cursor (the System log gives every event one).
    /// When every record id the poll found is
    /// below the newest seen before, the log was cleared and its ids began again (a window
    /// reaching back to an older record also reaches the newest, logged after it): the
    /// cursor starts over from these records, which are all new.
    pub fn take<S: AsRef<str>>(&mut self, now: Instant, documents: &[S]) -> Polled {
        let parsed: Vec<_> = documents.iter().map(|d| event_xml::parse(d.as_ref())).collect();
        let newest = parsed.iter().flatten().filter_map(|e| e.record_id).max();
        if let (Some(newest), Some(last)) = (newest, self.last)
            && newest < last
        {
            self.last = None;
            self.seen.clear();
        }
        self.polled = Some(now);
        let mut kept = Vec::new();
        let mut unreadable = 0;
        let mut seen = HashSet::new();
        for e in parsed {
            let Some(e) = e else {
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
        let t0 = Instant::now();
        let mut cursor = EventCursor::new();
        let first = Duration::from_secs(2);
        assert!(cursor.query(t0, first).ends_with("timediff(@SystemTime) <= 2000]]]"));
        cursor.take(t0, &[event(4231, 41, "2026-11-28T10:00:00.1Z")]);
        assert!(
            cursor.query(t0 + Duration::from_secs(3), first).ends_with(
                "and (EventRecordID > 41 or TimeCreated[timediff(@SystemTime) <= 4000])]]"
            ),
            "{}",
            cursor.query(t0 + Duration::from_secs(3), first)
        );
    }

    /// Polls come the interval plus the collection time apart: each asks for the real time
    /// since the previous one (plus the margin), not for the interval, so a quiet log loses
    /// nothing logged during collection; a failed read (no `take`) widens the next window.
    #[test]
    fn a_quiet_log_is_asked_for_the_whole_time_since_the_previous_poll() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(1);
        let mut cursor = EventCursor::new();
        assert!(cursor.query(t0, interval).ends_with("<= 1000]]]"));
        cursor.take::<&str>(t0, &[]);
        let t1 = t0 + Duration::from_millis(1_750);
        assert!(
            cursor.query(t1, interval).ends_with("<= 2750]]]"),
            "{}",
            cursor.query(t1, interval)
        );
        cursor.take::<&str>(t1, &[]);
        // The read at t2 failed: the poll at t3 covers from t1 on.
        let t3 = t1 + Duration::from_millis(2_600);
        assert!(
            cursor.query(t3, interval).ends_with("<= 3600]]]"),
            "{}",
            cursor.query(t3, interval)
        );
        // The first event is counted once, though the overlapping window returns it again.
        let storm = event(4231, 7, "2026-11-28T10:00:00Z");
        assert_eq!(cursor.take(t3, &[storm.as_str()]).evidence[0].count, 1);
        assert!(cursor.take(t3 + interval, &[storm.as_str()]).evidence.is_empty());
    }

    /// A cleared System log starts its record ids again: `EventRecordID > last` would match
    /// nothing for the rest of the run, but the time window finds the new events; their ids
    /// below the newest seen say the log was cleared, and the cursor starts over from them.
    #[test]
    fn a_cleared_log_starts_the_cursor_over() {
        let t0 = Instant::now();
        let second = Duration::from_secs(1);
        let mut cursor = EventCursor::new();
        cursor.take(t0, &[event(4231, 5000, "2026-11-28T10:00:00Z")]);
        // Not cleared: the window hands back 5000 and 4999 with one new record.
        let again = cursor.take(
            t0 + second,
            &[
                event(4231, 5001, "2026-11-28T10:00:01Z"),
                event(4231, 5000, "2026-11-28T10:00:00Z"),
                event(4231, 4999, "2026-11-28T10:00:00Z"),
            ],
        );
        assert_eq!(again.evidence[0].count, 1);
        // Cleared, then two new 4231s with ids 1 and 2: both count, and the cursor follows.
        let t2 = t0 + 2 * second;
        let cleared = cursor.take(
            t2,
            &[event(4231, 2, "2026-11-28T10:00:02Z"), event(4231, 1, "2026-11-28T10:00:02Z")],
        );
        assert_eq!(cleared.evidence[0].count, 2);
        assert!(cursor.query(t2 + second, second).contains("EventRecordID > 2 or"));
        // The next poll hands 2 back with 3: only 3 counts.
        let next = cursor.take(
            t2 + second,
            &[event(4231, 3, "2026-11-28T10:00:03Z"), event(4231, 2, "2026-11-28T10:00:02Z")],
        );
        assert_eq!(next.evidence[0].count, 1);
    }

    #[test]
    fn each_event_counts_in_one_poll_only() {
        let t0 = Instant::now();
        let mut cursor = EventCursor::new();
        let first = cursor.take(
            t0,
            &[
                event(4231, 40, "2026-11-28T10:00:00.1Z"),
                event(4231, 41, "2026-11-28T10:00:01.1Z"),
                event(4231, 41, "2026-11-28T10:00:01.1Z"),
            ],
        );
        assert_eq!(first.evidence.len(), 1);
        assert_eq!((first.evidence[0].id, first.evidence[0].count), (4231, 2));
        assert_eq!(first.evidence[0].last.as_deref(), Some("2026-11-28T10:00:01"));
        // The log hands 41 back with two new ones: only the new ones count.
        let second = cursor.take(
            t0,
            &[
                event(4231, 41, "2026-11-28T10:00:01.1Z"),
                event(4266, 42, "2026-11-28T10:00:02.1Z"),
                event(4227, 43, "2026-11-28T10:00:03.1Z"),
            ],
        );
        let got: Vec<(u32, u64)> = second.evidence.iter().map(|e| (e.id, e.count)).collect();
        assert_eq!(got, [(4227, 1), (4266, 1)]);
        // Nothing new: nothing, and the cursor stays.
        assert_eq!(cursor.take::<&str>(t0, &[]), Polled::default());
        assert!(cursor.query(t0, Duration::ZERO).contains("EventRecordID > 43 or"));
    }

    /// A 4231 new in an interval raises that interval's verdict as a 4231 of `--since` does in
    /// a check; a 4227 alone (churn) does not.
    #[test]
    fn a_new_4231_raises_the_interval_as_a_check_does() {
        let snap = crate::Snapshot::new(crate::Os::Windows, "test");
        let opts = crate::AnalyzeOptions::default();
        let t0 = Instant::now();
        let mut cursor = EventCursor::new();
        let polled = cursor.take(t0, &[event(4231, 7, "2026-11-28T10:00:00Z")]);
        let mut sampled = crate::analyze(&snap, &opts);
        assert_eq!(sampled.verdict, crate::Level::Ok);
        crate::add_evidence(&mut sampled, polled.evidence.clone());
        let checked = crate::analyze_imported(&snap, Vec::new(), polled.evidence, &opts);
        assert_eq!((sampled.verdict, &sampled.summary), (checked.verdict, &checked.summary));
        assert_eq!(sampled.verdict, crate::Level::Critical);
        assert_eq!(sampled.evidence, checked.evidence);
        let churn = cursor.take(t0, &[event(4227, 8, "2026-11-28T10:00:01Z")]);
        let mut next = crate::analyze(&snap, &opts);
        crate::add_evidence(&mut next, churn.evidence);
        assert!(next.verdict < crate::Level::Critical, "{:?}", next.verdict);
    }

    #[test]
    fn other_events_and_garbage_move_nothing_but_are_counted() {
        let t0 = Instant::now();
        let mut cursor = EventCursor::new();
        let other = event(7036, 50, "2026-11-28T10:00:00Z").replace("'Tcpip'", "'SCM'");
        let polled = cursor.take(t0, &[other.as_str(), "garbage", "<EventID>4231</EventID>"]);
        assert_eq!(polled.unreadable, 1);
        // The Tcpip event without a record id is kept; the other provider's is not.
        assert_eq!(polled.evidence.iter().map(|e| e.count).sum::<u64>(), 1);
        // 50 was seen (another provider's record ids share the log's sequence).
        assert!(cursor.query(t0, Duration::ZERO).contains("EventRecordID > 50 or"));
    }
}
