//! What `porthog trace` prints: a line per failure as it is caught, a warning when the kernel
//! dropped events, and the summary at the end, as text or JSON Lines
//! (`docs/trace.schema.json`). Lines in, text out; the tracer decides when to print, and
//! `Output` writes each line as it comes, ending quietly when the reader closes the pipe.

use std::fmt::Write as _;
use std::io;

use porthog_core::report::{grouped, plural};
use porthog_core::timeline::{Failure, FailureClass, OwnerCount};
use porthog_core::trace_report::{TraceLine, TraceSummary};

use anstyle::Effects;
use porthog_core::Level;

use super::text::{Painter, level_style, verdict_line};
use crate::cli::Format;

/// Where the lines go (stdout in porthog): text or JSON Lines. A closed pipe ends the output
/// quietly; another write error is said once.
pub struct Output<W: io::Write> {
    out: W,
    format: Format,
    closed: bool,
}

impl<W: io::Write> Output<W> {
    pub fn new(out: W, format: Format) -> Output<W> {
        Output { out, format, closed: false }
    }

    fn write(&mut self, text: &str) {
        if self.closed {
            return;
        }
        if let Err(e) = self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush()) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("porthog: writing to standard output: {e}");
            }
            self.closed = true;
        }
    }

    pub fn failure(&mut self, failure: &Failure) {
        let text = match self.format {
            Format::Json => json_line(&TraceLine::Failure(failure.clone())),
            Format::Text { color } => failure_text(failure, color),
        };
        self.write(&text);
    }

    /// The kernel dropped `count` events at `time` (RFC 3339).
    pub fn lost(&mut self, time: &str, count: u64) {
        let text = match self.format {
            Format::Json => json_line(&TraceLine::Lost { time: time.to_owned(), count }),
            Format::Text { .. } => lost_text(time, count),
        };
        self.write(&text);
    }

    pub fn summary(&mut self, summary: TraceSummary, netns: Option<&str>, top: usize) {
        let text = match self.format {
            Format::Json => json_line(&TraceLine::Summary(Box::new(summary))),
            Format::Text { color } => summary_text(&summary, netns, top, color),
        };
        self.write(&text);
    }
}

/// One JSON Lines record.
pub fn json_line(line: &TraceLine) -> String {
    // The types serialize infallibly (string keys, finite floats from counts).
    let mut s = serde_json::to_string(line)
        .unwrap_or_else(|e| format!(r#"{{"type":"error","error":"{e}"}}"#));
    s.push('\n');
    s
}

/// `2026-11-24T02:30:00.123Z  pid 4242 curl (container 3f2a…)  connect tcp -> 10.0.0.5:443  EADDRNOTAVAIL: ...`
pub fn failure_text(f: &Failure, color: bool) -> String {
    let mut s = format!("{}  pid {} {}", f.time, f.pid, f.name);
    if let Some(c) = &f.container {
        let _ = write!(s, " (container {})", porthog_core::model::short_container_id(c));
    }
    let _ = write!(s, "  {} {}", f.call, f.protocol.as_str());
    if let Some(r) = f.remote {
        let _ = write!(s, " -> {r}");
    }
    // An exhaustion is painted as the critical level is; a failure that is not about the
    // pool (a non-local address, a taken fixed port) as a warning, and says so.
    let level = if f.class == FailureClass::Exhaustion { Level::Critical } else { Level::Warn };
    let style = level_style(level).effects(Effects::BOLD);
    let errno = Painter { color }.paint(style, f.errno.as_str());
    let _ = writeln!(s, "  {errno}: {}", f.class.meaning(&f.call, f.errno));
    s
}

pub fn lost_text(time: &str, count: u64) -> String {
    format!(
        "{time}  WARNING: the kernel dropped {} (porthog read its buffers too slowly): counts from here on are lower bounds\n",
        plural(count, "event")
    )
}

/// The summary: failures, new connections, TIME_WAIT produced and owned, lost events, and the
/// verdict line of the final check.
pub fn summary_text(s: &TraceSummary, netns: Option<&str>, top: usize, color: bool) -> String {
    let mut out = String::new();
    let place = netns.map_or(String::new(), |n| format!(" in network namespace {n}"));
    let _ = writeln!(out, "\nporthog trace: {:.1} s{place}", s.duration_s);

    out.push_str("\nFailures per process and destination:\n");
    if s.failures.is_empty() {
        out.push_str("  none: the kernel refused no connect() or bind() for lack of a port\n");
    }
    for f in s.failures.iter().take(top) {
        let remote = f
            .remote
            .map_or_else(|| "(destination not shown by the kernel)".to_owned(), |r| r.to_string());
        let _ = writeln!(
            out,
            "  {:>7}  {:<16} {:<8} {:<24} {:<14} {:>8}{}",
            f.pid,
            f.name,
            f.call,
            remote,
            f.errno.as_str(),
            grouped(f.count),
            match f.class {
                FailureClass::Exhaustion => String::new(),
                other => format!("  (not exhaustion: {})", other.as_str().replace('_', " ")),
            }
        );
    }
    more(&mut out, s.failures.len(), top);

    out.push_str("\nNew connections per process and destination:\n");
    if s.new_connections.is_empty() {
        out.push_str("  none\n");
    }
    for c in s.new_connections.iter().take(top) {
        let _ = writeln!(
            out,
            "  {:>7}  {:<16} {:<24} {:>8}  {:>9.1}/s",
            c.pid,
            c.name,
            c.remote.to_string(),
            grouped(c.count),
            c.per_second
        );
    }
    more(&mut out, s.new_connections.len(), top);

    out.push_str("\nTIME_WAIT produced per process (connections it closed first):\n");
    owners(&mut out, &s.time_wait_produced, top);
    out.push_str(
        "\nTIME_WAIT owners now (who opened the TIME_WAIT sockets that exist at the end):\n",
    );
    owners(&mut out, &s.time_wait_owners, top);

    let _ = writeln!(
        out,
        "\nLost events: {}{}",
        grouped(s.lost_events),
        if s.lost_events > 0 {
            " (the ring buffers overflowed: the counts above are lower bounds)"
        } else {
            ""
        }
    );
    if s.unresolved_events > 0 {
        let _ = writeln!(
            out,
            "Events of processes that exited before porthog could read them: {} (not counted above)",
            grouped(s.unresolved_events)
        );
    }
    out.push('\n');
    out.push_str(&verdict_line(&s.report, color));
    out.push('\n');
    out
}

fn owners(out: &mut String, list: &[OwnerCount], top: usize) {
    if list.is_empty() {
        out.push_str("  none\n");
    }
    for o in list.iter().take(top) {
        let _ = writeln!(out, "  {:>7}  {:<16} {:>8}", o.pid, o.name, grouped(o.count));
    }
    more(out, list.len(), top);
}

fn more(out: &mut String, len: usize, top: usize) {
    if len > top {
        let _ = writeln!(out, "  ... and {} more (--top)", len - top);
    }
}

#[cfg(test)]
mod tests {
    use porthog_core::lifecycle::{ConnectionRate, FailureCount};
    use porthog_core::timeline::Errno;
    use porthog_core::{AnalyzeOptions, Os, Protocol, Snapshot, analyze};

    use super::*;

    fn failure() -> Failure {
        Failure {
            time: "2026-11-24T02:30:00.123Z".into(),
            pid: 4242,
            name: "curl".into(),
            container: Some("3f2a9c0d1e2b4a5f6789".into()),
            protocol: Protocol::Tcp,
            remote: Some("10.0.0.5:443".parse().unwrap()),
            errno: Errno::AddrNotAvail,
            call: "connect".into(),
            class: FailureClass::Exhaustion,
            netns: None,
        }
    }

    const SCHEMA: &str = include_str!("../../../../docs/trace.schema.json");

    /// Every line type follows docs/trace.schema.json, and the schema rejects what it should.
    #[test]
    fn lines_follow_the_schema() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let v = jsonschema::validator_for(&schema).unwrap();
        let check = |line: &TraceLine| {
            let value: serde_json::Value = serde_json::from_str(&json_line(line)).unwrap();
            if let Err(e) = v.validate(&value) {
                panic!("{e}: {value}");
            }
            value
        };
        check(&TraceLine::Failure(failure()));
        let udp = Failure {
            protocol: Protocol::Udp,
            remote: None,
            errno: Errno::Again,
            container: None,
            ..failure()
        };
        check(&TraceLine::Failure(udp));
        check(&TraceLine::Lost { time: "2026-11-24T02:30:00.123Z".into(), count: 5 });
        check(&TraceLine::Summary(Box::new(summary())));
        let mut bad: serde_json::Value =
            serde_json::from_str(&json_line(&TraceLine::Failure(failure()))).unwrap();
        bad["errno"] = "EPERM".into();
        assert!(!v.is_valid(&bad), "only the three errnos of exhaustion are traced");
        bad["errno"] = "EAGAIN".into();
        bad["time"] = "02:30".into();
        assert!(!v.is_valid(&bad), "times are RFC 3339");
    }

    fn summary() -> TraceSummary {
        let report = analyze(&Snapshot::new(Os::Linux, "test"), &AnalyzeOptions::default());
        TraceSummary {
            failures: vec![FailureCount {
                pid: 4242,
                name: "curl".into(),
                remote: Some("10.0.0.5:443".parse().unwrap()),
                call: "connect".into(),
                errno: Errno::AddrNotAvail,
                class: FailureClass::Exhaustion,
                count: 20,
            }],
            time_wait_owners: vec![OwnerCount { pid: 4242, name: "curl".into(), count: 50 }],
            new_connections: vec![ConnectionRate {
                pid: 4242,
                name: "curl".into(),
                remote: "10.0.0.5:443".parse().unwrap(),
                count: 100,
                per_second: 10.0,
            }],
            time_wait_produced: vec![],
            lost_events: 3,
            unresolved_events: 0,
            duration_s: 10.0,
            report,
        }
    }

    /// A pipe whose reader left after `room` bytes.
    struct Pipe {
        written: Vec<u8>,
        room: usize,
        writes: usize,
    }

    impl io::Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            if self.written.len() + buf.len() > self.room {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_writes_lines_in_the_format_and_stops_at_a_closed_pipe() {
        let mut out = Output::new(Vec::new(), Format::Json);
        out.failure(&failure());
        out.lost("2026-11-24T02:30:01.000Z", 7);
        out.summary(summary(), None, 10);
        let text = String::from_utf8(out.out).unwrap();
        let types: Vec<_> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].clone())
            .collect();
        assert_eq!(types, ["failure", "lost", "summary"]);

        let pipe = Pipe { written: Vec::new(), room: 300, writes: 0 };
        let mut out = Output::new(pipe, Format::Text { color: false });
        out.failure(&failure());
        out.failure(&failure());
        assert!(out.closed, "the second line did not fit");
        out.lost("2026-11-24T02:30:01.000Z", 7);
        out.summary(summary(), None, 10);
        assert_eq!(out.out.writes, 2, "nothing is written after the pipe closed");
        assert_eq!(out.out.written, failure_text(&failure(), false).as_bytes());
    }

    #[test]
    fn a_failure_line_says_who_where_and_what_it_means() {
        assert_eq!(
            failure_text(&failure(), false),
            "2026-11-24T02:30:00.123Z  pid 4242 curl (container 3f2a9c0d1e2b)  connect tcp -> 10.0.0.5:443  \
             EADDRNOTAVAIL: connect() found no free source port for this destination (Cannot assign requested address)\n"
        );
    }

    #[test]
    fn a_coloured_failure_line_paints_the_errno_as_critical() {
        let style = level_style(Level::Critical).effects(Effects::BOLD);
        let line = failure_text(&failure(), true);
        assert!(line.contains(&format!("  {style}EADDRNOTAVAIL{style:#}: connect()")), "{line:?}");
        let plain = line.replace(&format!("{style}"), "").replace(&format!("{style:#}"), "");
        assert_eq!(plain, failure_text(&failure(), false));
    }

    #[test]
    fn the_summary_lists_each_part_and_ends_with_the_verdict() {
        let s = summary();
        let text = summary_text(&s, Some("blue"), 10, false);
        assert!(text.contains("porthog trace: 10.0 s in network namespace blue"), "{text}");
        assert!(
            text.contains("connect  10.0.0.5:443             EADDRNOTAVAIL        20"),
            "{text}"
        );
        assert!(text.contains("10.0/s"), "{text}");
        assert!(text.contains("Lost events: 3 (the ring buffers overflowed"), "{text}");
        assert!(text.trim_end().lines().last().unwrap().starts_with("OK"), "{text}");
        let json = json_line(&TraceLine::Summary(Box::new(s)));
        assert!(json.starts_with(r#"{"type":"summary","failures":[{"pid":4242"#), "{json}");
        assert!(json.ends_with("}\n"));
    }
}
