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
        let refused: u64 = self.failures.iter().map(|f| f.count).sum();
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

/// RFC 3339 with milliseconds, UTC, from milliseconds since the Unix epoch:
/// `2026-11-24T02:30:00.123Z`.
pub fn rfc3339_millis(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (min, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::FailureCount;
    use crate::model::Protocol;
    use crate::timeline::Errno;

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
            count: 5,
        };
        let s = ok_summary(vec![refused.clone(), FailureCount { count: 1, ..refused }]).judged();
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
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_millis(1_795_487_400_123), "2026-11-24T02:30:00.123Z");
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
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
        });
        let json = serde_json::to_string(&line).unwrap();
        assert_eq!(
            json,
            r#"{"type":"failure","time":"2026-11-24T02:30:00.123Z","pid":42,"name":"client","container":null,"protocol":"tcp","remote":"127.0.0.1:7070","errno":"EADDRNOTAVAIL","call":"connect"}"#
        );
        assert_eq!(serde_json::from_str::<TraceLine>(&json).unwrap(), line);
    }
}
