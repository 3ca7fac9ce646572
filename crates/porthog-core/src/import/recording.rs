//! A `porthog record` file (JSON Lines, `docs/record.md`): recognised by its first line, a
//! `header` record. Reading one gives the report of its last sample, whose TIME_WAIT sockets
//! were already attributed from history when it was recorded. Only the first and the last
//! lines are parsed: a recording can be long.

use crate::report::{Report, SourceInfo};
use crate::timeline::RecordLine;

/// The report of the recording's last sample, if `text` is a recording.
pub(super) fn last_report(name: &str, text: &str) -> Option<Result<Report, String>> {
    let first = text.trim_start_matches('\u{feff}').lines().next()?.trim();
    if !(first.starts_with('{') && first.contains("\"header\"")) {
        return None;
    }
    let Ok(RecordLine::Header { schema_version, .. }) = serde_json::from_str::<RecordLine>(first)
    else {
        return None;
    };
    if schema_version != crate::timeline::RECORD_SCHEMA_VERSION {
        return Some(Err(format!(
            "a porthog recording of schema_version {schema_version}; this porthog reads version {}",
            crate::timeline::RECORD_SCHEMA_VERSION
        )));
    }
    let samples = text.lines().filter(|l| l.contains("\"type\":\"sample\"")).count() as u64;
    // Walk back from the end: a recording killed mid-write may end in a cut-off line.
    let mut cut = false;
    for (i, line) in text.lines().rev().filter(|l| !l.trim().is_empty()).enumerate() {
        if !line.contains("\"type\":\"sample\"") {
            continue;
        }
        match serde_json::from_str::<RecordLine>(line) {
            Ok(RecordLine::Sample { time, mut report, .. }) => {
                report.sources.push(SourceInfo {
                    file: name.to_owned(),
                    format: format!("porthog-record (last of {samples} samples, at {time})"),
                    encoding: "utf-8".to_owned(),
                    records: samples,
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
            Ok(_) => {}
            Err(_) if i == 0 => cut = true,
            Err(e) => {
                return Some(Err(format!(
                    "sample line {} from the end cannot be read: {e}",
                    i + 1
                )));
            }
        }
    }
    Some(Err("a porthog recording with no sample: it was stopped before the first one".into()))
}
