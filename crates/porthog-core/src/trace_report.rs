//! What `porthog trace --json` writes: JSON Lines told apart by `type` (`docs/trace.schema.json`):
//! one `failure` per failed allocation as it happens, a `lost` line whenever the kernel dropped
//! events, and one `summary` at the end. Pure data; the tracer fills it, presenters print it.

use serde::{Deserialize, Serialize};

use crate::level::Level;
use crate::lifecycle::{ConnectionRate, FailureCount};
use crate::report::{Report, plural};
use crate::timeline::{Failure, OwnerCount};

/// One line of `porthog trace --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TraceLine {
    /// An allocation failure, as it happened.
    Failure(Failure),
    /// Events the kernel dropped (ring buffer overrun) since the previous such line.
    Lost { time: String, count: u64 },
    /// The last line: counts over the whole run and the check report at its end.
    Summary(Box<TraceSummary>),
}

/// Everything `porthog trace` learnt over its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    /// Failures per process, destination and errno, most first.
    pub failures: Vec<FailureCount>,
    /// TIME_WAIT sockets present at the end, per process that opened them, most first.
    pub time_wait_owners: Vec<OwnerCount>,
    /// New connections per process and destination, most first.
    pub new_connections: Vec<ConnectionRate>,
    /// TIME_WAIT sockets produced during the run, per process that opened them, most first.
    pub time_wait_produced: Vec<OwnerCount>,
    /// Events the kernel dropped because porthog did not read them fast enough.
    pub lost_events: u64,
    /// Events of processes that exited before porthog could read their name and namespace.
    pub unresolved_events: u64,
    pub duration_s: f64,
    /// The check report at the end, with TIME_WAIT sockets attributed to their openers.
    pub report: Report,
}

impl TraceSummary {
    /// The summary of a run, judged: refusals caught during the trace make the verdict of the
    /// final check at least critical (they happened, whatever the pools look like at the end,
    /// and they are an answer even when the final socket list was incomplete). The verdict and
    /// `exit_code` then agree.
    pub fn judged(mut self) -> TraceSummary {
        // Only an ephemeral allocation that failed is evidence (DOMAIN.md 1).
        let refused: u64 = self
            .failures
            .iter()
            .filter(|f| f.class == crate::timeline::FailureClass::Exhaustion)
            .map(|f| f.count)
            .sum();
        if refused > 0 {
            let why = format!(
                "the kernel refused {} for lack of a port during the trace",
                plural(refused, "allocation")
            );
            self.report.raise(Level::Critical, &why);
        }
        self
    }

    /// Exit status: the final report's, once `judged`.
    pub fn exit_code(&self) -> u8 {
        self.report.exit_code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::FailureCount;
    use crate::model::Protocol;
    use crate::timeline::{Errno, FailureClass};

    fn ok_summary(failures: Vec<crate::lifecycle::FailureCount>) -> TraceSummary {
        let snapshot = crate::model::Snapshot::new(crate::model::Os::Linux, "test");
        TraceSummary {
            failures,
            time_wait_owners: vec![],
            new_connections: vec![],
            time_wait_produced: vec![],
            lost_events: 0,
            unresolved_events: 0,
            duration_s: 1.0,
            report: crate::analyze(&snapshot, &crate::AnalyzeOptions::default()),
        }
    }

    /// Issue 8: refusals caught raise the verdict itself, not only the exit status, so
    /// `trace --json` never says "ok" or "warn" and exits 2.
    #[test]
    fn refusals_caught_make_the_verdict_critical_and_the_exit_status_agrees() {
        let quiet = ok_summary(vec![]).judged();
        assert_eq!((quiet.report.verdict, quiet.exit_code()), (Level::Ok, 0));
        let refused = crate::lifecycle::FailureCount {
            pid: 7,
            name: "curl".into(),
            remote: None,
            call: "bind".into(),
            errno: Errno::AddrInUse,
            class: FailureClass::Exhaustion,
            count: 5,
        };
        // A bind() to an address that is not local says nothing about ports.
        let nonlocal = FailureCount {
            errno: Errno::AddrNotAvail,
            class: FailureClass::NotLocalAddress,
            ..refused.clone()
        };
        let alone = ok_summary(vec![nonlocal.clone()]).judged();
        assert_eq!((alone.report.verdict, alone.exit_code()), (Level::Ok, 0));
        let s = ok_summary(vec![refused.clone(), FailureCount { count: 1, ..refused }, nonlocal])
            .judged();
        assert_eq!((s.report.verdict, s.exit_code()), (Level::Critical, 2));
        assert!(
            s.report.summary.starts_with(
                "the kernel refused 6 allocations for lack of a port during the trace; the snapshot itself: "
            ),
            "{}",
            s.report.summary
        );
        assert_eq!(s.report.verdict.exit_code() as u8, s.exit_code());
    }

    #[test]
    fn failure_lines_are_tagged_and_flat() {
        let line = TraceLine::Failure(Failure {
            time: "2026-11-24T02:30:00.123Z".into(),
            pid: 42,
            name: "client".into(),
            container: None,
            protocol: Protocol::Tcp,
            remote: Some("127.0.0.1:7070".parse().unwrap()),
            errno: Errno::AddrNotAvail,
            call: "connect".into(),
            class: FailureClass::Exhaustion,
            netns: None,
        });
        let json = serde_json::to_string(&line).unwrap();
        assert_eq!(
            json,
            r#"{"type":"failure","time":"2026-11-24T02:30:00.123Z","pid":42,"name":"client","container":null,"protocol":"tcp","remote":"127.0.0.1:7070","errno":"EADDRNOTAVAIL","call":"connect","class":"exhaustion"}"#
        );
        assert_eq!(serde_json::from_str::<TraceLine>(&json).unwrap(), line);
    }
}
