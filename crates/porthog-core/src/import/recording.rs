//! A `porthog record` file (JSON Lines, `docs/record.md`): recognised by its first line, a
//! `header` record. Reading one gives the report of its last sample, whose TIME_WAIT sockets
//! were already attributed from history when it was recorded. Only the first and the last
//! lines are parsed: a recording can be long.

use std::collections::{HashMap, HashSet};

use crate::fleet::FleetReport;
use crate::report::{Report, SourceInfo};
use crate::timeline::{Failure, NamespaceSample, RecordLine};

/// The report of the recording's last sample, if `text` is a recording. Of a recording made
/// with `--all-netns` (`fleet_sample` lines), the worst namespace's report, named.
pub(super) fn last_report(name: &str, text: &str) -> Option<Result<Report, String>> {
    let first = text.trim_start_matches('\u{feff}').lines().next()?.trim();
    if !(first.starts_with('{') && first.contains("\"header\"")) {
        return None;
    }
    let Ok(RecordLine::Header { schema_version, .. }) = serde_json::from_str::<RecordLine>(first)
    else {
        return None;
    };
    if !crate::timeline::RECORD_SCHEMA_VERSIONS.contains(&schema_version) {
        return Some(Err(format!(
            "a porthog recording of schema_version {schema_version}; this porthog reads versions {} to {}",
            crate::timeline::RECORD_SCHEMA_VERSIONS.start(),
            crate::timeline::RECORD_SCHEMA_VERSIONS.end()
        )));
    }
    let is_sample =
        |l: &str| l.contains("\"type\":\"sample\"") || l.contains("\"type\":\"fleet_sample\"");
    let samples = text.lines().filter(|l| is_sample(l)).count() as u64;
    // Walk back from the end: a recording killed mid-write may end in a cut-off line.
    let mut cut = false;
    for (i, line) in text.lines().rev().filter(|l| !l.trim().is_empty()).enumerate() {
        if !is_sample(line) {
            continue;
        }
        let (time, mut report, what) = match serde_json::from_str::<RecordLine>(line) {
            Ok(RecordLine::Sample { time, mut report, .. }) => {
                // Failures anywhere in the recording outrank its last sample (issue 7), as a
                // logged Windows 4231 outranks a healthy netstat.
                crate::timeline::raise_for_failures(
                    &mut report,
                    &failures(text),
                    "during the recording",
                );
                (time, report, String::new())
            }
            Ok(RecordLine::FleetSample { time, namespaces, gaps }) => {
                let Some((report, what)) = worst_namespace(text, namespaces, gaps, &failures(text))
                else {
                    return Some(Err(format!(
                        "its last sample ({time}) holds no network namespace: none could be read"
                    )));
                };
                (time, Box::new(report), what)
            }
            Ok(_) => continue,
            Err(_) if i == 0 => {
                cut = true;
                continue;
            }
            Err(e) => {
                return Some(Err(format!(
                    "sample line {} from the end cannot be read: {e}",
                    i + 1
                )));
            }
        };
        report.sources.push(SourceInfo {
            file: name.to_owned(),
            format: format!(
                "porthog-record (last of {}, at {time}{what})",
                crate::report::plural(samples, "sample")
            ),
            encoding: "utf-8".to_owned(),
            records: samples,
            notes: Vec::new(),
        });
        if cut {
            report.gaps.push(crate::model::Gap {
                kind: crate::model::GapKind::Source,
                count: Some(1),
                message: "the recording ends in a cut-off sample line (porthog record \
                          was killed while writing?): the last complete sample is shown"
                    .to_owned(),
                advice: None,
            });
        }
        return Some(Ok(*report));
    }
    Some(Err("a porthog recording with no sample: it was stopped before the first one".into()))
}

/// Every failure line of the recording.
fn failures(text: &str) -> Vec<Failure> {
    text.lines()
        .filter(|l| l.contains("\"type\":\"failure\""))
        .filter_map(|l| match serde_json::from_str::<RecordLine>(l) {
            Ok(RecordLine::Failure(f)) => Some(f),
            _ => None,
        })
        .collect()
}

/// The worst namespace of a fleet sample, each raised first by the failures made in it, with
/// its name in `netns` and the summary; and what to add to the source's format. A namespace
/// that failed and was deleted before the last sample counts too, by its last name.
fn worst_namespace(
    text: &str,
    namespaces: Vec<NamespaceSample>,
    gaps: Vec<crate::model::Gap>,
    failures: &[Failure],
) -> Option<(Report, String)> {
    let listed: HashSet<u64> = namespaces.iter().map(|ns| ns.inode).collect();
    let namespaces = namespaces.into_iter().map(|ns| ns.split().0).collect();
    let mut fleet = FleetReport::new(namespaces, gaps);
    let gone: HashSet<u64> =
        failures.iter().filter_map(|f| f.netns).filter(|i| !listed.contains(i)).collect();
    fleet.raise_for_failures(failures, "during the recording", &last_names(text, gone));
    let n = fleet.namespaces.len();
    let worst = fleet.namespaces.into_iter().next()?;
    let label = worst.label();
    let mut report = worst.report;
    report.summary = format!("network namespace {label} (worst of {n}): {}", report.summary);
    report.netns = Some(label.clone());
    report.gaps.extend(fleet.gaps);
    Some((report, format!("; --all-netns, worst of {n} network namespaces: {label}")))
}

/// The name the recording last gave each of `inodes` (namespaces gone by its last sample).
/// Reads back from the end, only the fleet samples that mention a sought inode, and only
/// their namespaces' inodes and names: a recording can be long.
fn last_names(text: &str, mut inodes: HashSet<u64>) -> HashMap<u64, String> {
    #[derive(serde::Deserialize)]
    struct Named {
        inode: u64,
        name: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Names {
        namespaces: Vec<Named>,
    }
    let mut names = HashMap::new();
    let sought: Vec<(u64, String)> =
        inodes.iter().map(|i| (*i, format!("\"inode\":{i},"))).collect();
    for line in text.lines().rev().filter(|l| l.contains("\"type\":\"fleet_sample\"")) {
        if inodes.is_empty() {
            break;
        }
        if !sought.iter().any(|(i, key)| inodes.contains(i) && line.contains(key.as_str())) {
            continue;
        }
        let Ok(sample) = serde_json::from_str::<Names>(line) else { continue };
        for ns in sample.namespaces {
            if let Some(name) = ns.name.filter(|_| inodes.contains(&ns.inode)) {
                inodes.remove(&ns.inode);
                names.insert(ns.inode, name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportOptions, Imported, Input, import};
    use crate::model::{Os, Snapshot};
    use crate::{AnalyzeOptions, analyze};

    fn line(l: &RecordLine) -> String {
        serde_json::to_string(l).unwrap() + "\n"
    }

    fn sample(source: &str) -> RecordLine {
        let report = analyze(&Snapshot::new(Os::Linux, source), &AnalyzeOptions::default());
        RecordLine::Sample {
            time: "2026-11-24T02:00:00.000Z".into(),
            report: Box::new(report),
            opened: Vec::new(),
            time_wait_owners: Vec::new(),
        }
    }

    fn header() -> RecordLine {
        RecordLine::Header {
            schema_version: crate::timeline::RECORD_SCHEMA_VERSION,
            porthog: "0.1.0".into(),
            netns: None,
            all_netns: false,
            started: "2026-11-24T02:00:00.000Z".into(),
            interval_ms: 1000,
        }
    }

    fn read(text: &str) -> Result<Imported, crate::import::ImportError> {
        import(&[Input { name: "rec.jsonl", bytes: text.as_bytes() }], &ImportOptions::default())
    }

    #[test]
    fn a_recording_reads_as_its_last_sample() {
        let lost = RecordLine::Lost { time: "2026-11-24T02:00:01.000Z".into(), count: 2 };
        let text =
            line(&header()) + &line(&sample("first")) + &line(&sample("last")) + &line(&lost);
        let Ok(Imported::Report(r)) = read(&text) else { panic!("a report expected") };
        assert_eq!(r.source, "last");
        assert_eq!(r.sources.len(), 1);
        assert_eq!(r.sources[0].records, 2);
        assert!(r.sources[0].format.starts_with("porthog-record (last of 2 samples"));
        assert!(r.gaps.is_empty());
    }

    /// Issue 7, case 7: 500 failures and an OK last sample gave OK, exit 0.
    #[test]
    fn failures_in_a_recording_outrank_its_ok_last_sample() {
        use crate::timeline::{Errno, Failure, FailureClass};
        let failure = |class| {
            line(&RecordLine::Failure(Failure {
                time: "2026-11-24T02:00:00.500Z".into(),
                pid: 42,
                name: "client".into(),
                container: None,
                protocol: crate::model::Protocol::Tcp,
                remote: Some("127.0.0.1:7070".parse().unwrap()),
                errno: Errno::AddrNotAvail,
                call: "connect".into(),
                class,
                netns: None,
            }))
        };
        let mut text = line(&header()) + &line(&sample("first"));
        for _ in 0..500 {
            text += &failure(FailureClass::Exhaustion);
        }
        let Ok(Imported::Report(ok)) = read(&(line(&header()) + &line(&sample("last")))) else {
            panic!("a report expected")
        };
        assert_eq!(ok.exit_code(), 0);
        text += &line(&sample("last"));
        let Ok(Imported::Report(r)) = read(&text) else { panic!("a report expected") };
        assert_eq!((r.verdict, r.exit_code()), (crate::level::Level::Critical, 2));
        assert!(
            r.summary.starts_with(
                "the kernel refused 500 allocations for lack of a port during the recording: client (pid 42) connect() to 127.0.0.1:7070 ×500"
            ),
            "{}",
            r.summary
        );
        // A bind() to an address that is not local is no port problem.
        let text =
            line(&header()) + &failure(FailureClass::NotLocalAddress) + &line(&sample("last"));
        let Ok(Imported::Report(r)) = read(&text) else { panic!("a report expected") };
        assert_eq!(r.exit_code(), 0);
    }

    #[test]
    fn a_cut_off_last_line_falls_back_to_the_sample_before() {
        let last = line(&sample("last"));
        let text = line(&header()) + &line(&sample("first")) + &last[..last.len() / 2];
        let Ok(Imported::Report(r)) = read(&text) else { panic!("a report expected") };
        assert_eq!(r.source, "first");
        assert_eq!(r.gaps.len(), 1, "{:?}", r.gaps);
    }

    #[test]
    fn a_recording_without_samples_says_so() {
        let e = read(&line(&header())).err().unwrap();
        assert!(e.to_string().contains("no sample"), "{e}");
    }

    /// `record --all-netns`: the worst namespace of the last fleet sample, named; a failure made
    /// in a healthy namespace raises that one, not the others.
    #[test]
    fn a_fleet_recording_reads_as_its_worst_namespace() {
        use crate::level::Level;
        use crate::timeline::{Errno, Failure, FailureClass, NamespaceSample};
        let ns = |inode: u64, name: Option<&str>, verdict: Level| {
            let RecordLine::Sample { mut report, .. } = sample("ns") else { unreachable!() };
            report.verdict = verdict;
            NamespaceSample {
                inode,
                name: name.map(str::to_owned),
                container: None,
                pids: vec![7],
                report,
                opened: vec![],
                time_wait_owners: vec![],
            }
        };
        let fleet = |namespaces| RecordLine::FleetSample {
            time: "2026-11-24T02:00:01.000Z".into(),
            namespaces,
            gaps: vec![],
        };
        let head = line(&RecordLine::Header {
            schema_version: crate::timeline::RECORD_SCHEMA_VERSION,
            porthog: "0.1.0".into(),
            netns: None,
            all_netns: true,
            started: "2026-11-24T02:00:00.000Z".into(),
            interval_ms: 1000,
        });
        let text = head.clone()
            + &line(&fleet(vec![ns(1, Some("blue"), Level::Ok), ns(2, None, Level::Ok)]))
            + &line(&fleet(vec![ns(1, Some("blue"), Level::Ok), ns(2, Some("red"), Level::Warn)]));
        let Ok(Imported::Report(r)) = read(&text) else { panic!("a report expected") };
        assert_eq!((r.verdict, r.netns.as_deref()), (Level::Warn, Some("red")));
        assert!(r.summary.starts_with("network namespace red (worst of 2): "), "{}", r.summary);
        assert!(r.sources[0].format.contains("worst of 2 network namespaces: red"));

        let failure = |netns| {
            line(&RecordLine::Failure(Failure {
                time: "2026-11-24T02:00:00.500Z".into(),
                pid: 42,
                name: "client".into(),
                container: None,
                protocol: crate::model::Protocol::Tcp,
                remote: Some("10.0.0.2:80".parse().unwrap()),
                errno: Errno::AddrNotAvail,
                call: "connect".into(),
                class: FailureClass::Exhaustion,
                netns,
            }))
        };
        let blue = text.clone() + &failure(Some(1)) + &failure(Some(1));
        let Ok(Imported::Report(r)) = read(&blue) else { panic!("a report expected") };
        assert_eq!((r.verdict, r.netns.as_deref()), (Level::Critical, Some("blue")));
        assert!(
            r.summary.contains("refused 2 allocations for lack of a port during the recording"),
            "only blue's failures count in blue: {}",
            r.summary
        );

        // Failures in a namespace deleted before the last sample still count, labelled as the
        // recording last named it, else by its inode.
        let three = failure(Some(99)) + &failure(Some(99)) + &failure(Some(99));
        let Ok(Imported::Report(r)) = read(&(text.clone() + &three)) else { panic!("a report") };
        assert_eq!((r.verdict, r.netns.as_deref()), (Level::Critical, Some("gone net:[99]")));
        assert!(r.summary.starts_with("network namespace gone net:[99] (worst of 3): "));
        assert!(r.summary.contains("refused 3 allocations"), "{}", r.summary);
        assert!(r.pools.is_empty());
        let named = line(&fleet(vec![ns(99, Some("green"), Level::Ok)]));
        let text =
            head + &named + &text.lines().skip(1).map(|l| format!("{l}\n")).collect::<String>();
        let Ok(Imported::Report(r)) = read(&(text + &three)) else { panic!("a report") };
        assert_eq!((r.verdict, r.netns.as_deref()), (Level::Critical, Some("green")));
    }

    /// Recordings of version 1 (before `--all-netns`) are still read.
    #[test]
    fn version_1_recordings_are_read() {
        let text = line(&header()).replace("\"schema_version\":2", "\"schema_version\":1")
            + &line(&sample("last"));
        assert!(text.contains("\"schema_version\":1"));
        let Ok(Imported::Report(r)) = read(&text) else { panic!("a report expected") };
        assert_eq!(r.source, "last");
        let e = read(&text.replace("\"schema_version\":1", "\"schema_version\":3")).err().unwrap();
        assert!(e.to_string().contains("versions 1 to 2"), "{e}");
    }
}
