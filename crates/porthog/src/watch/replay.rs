//! Playing a `porthog record` file back: its lines as the same events the live view gets,
//! streamed (a recording can be long), paced by the recorded times divided by `--speed`.

use std::fs::File;
use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use porthog_core::timeline::{RECORD_SCHEMA_VERSIONS, RecordLine};
use porthog_core::timestamp;

use super::app::Event;
use crate::fleet::FleetSample;
use crate::sample::Sample;
use porthog_core::fleet::Names;

pub struct Replay {
    lines: Lines<BufReader<File>>,
    line: u64,
    name: String,
    pub netns: Option<String>,
    /// Recorded with `--all-netns`: samples are fleet samples.
    pub all_netns: bool,
    pub interval_s: f64,
    first_ms: Option<u64>,
    samples: u64,
    /// The recorded namespaces' names, for failures in one deleted since.
    names: Names,
}

impl Replay {
    /// Opens a recording and reads its header.
    pub fn open(path: &Path) -> Result<Replay> {
        let name = path.display().to_string();
        let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
        let mut lines = BufReader::new(file).lines();
        let first = lines
            .next()
            .transpose()
            .with_context(|| format!("reading {name}"))?
            .unwrap_or_default();
        let header = serde_json::from_str::<RecordLine>(first.trim_start_matches('\u{feff}'));
        let Ok(RecordLine::Header { schema_version, netns, all_netns, interval_ms, .. }) = header
        else {
            bail!("{name}: not a porthog recording (its first line is not a header record)");
        };
        if !RECORD_SCHEMA_VERSIONS.contains(&schema_version) {
            bail!(
                "{name}: a recording of schema_version {schema_version}; this porthog reads versions {} to {}",
                RECORD_SCHEMA_VERSIONS.start(),
                RECORD_SCHEMA_VERSIONS.end()
            );
        }
        Ok(Replay {
            lines,
            line: 1,
            name,
            netns,
            all_netns,
            interval_s: interval_ms as f64 / 1000.0,
            first_ms: None,
            samples: 0,
            names: Names::default(),
        })
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Seconds since the first sample, from the recorded time of this one (counted).
    fn at(&mut self, time: &str) -> f64 {
        let ms = timestamp::parse_unix_ms(time);
        let first = *self.first_ms.get_or_insert(ms.unwrap_or(0));
        let at = match ms {
            Some(ms) => ms.saturating_sub(first) as f64 / 1000.0,
            None => self.samples as f64 * self.interval_s,
        };
        self.samples += 1;
        at
    }
}

impl Iterator for Replay {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        loop {
            let text = match self.lines.next()? {
                Ok(text) => text,
                Err(e) => return Some(Err(e).with_context(|| format!("reading {}", self.name))),
            };
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            let record = match serde_json::from_str::<RecordLine>(&text) {
                Ok(r) => r,
                Err(e) => {
                    return Some(Err(anyhow::anyhow!("{}:{}: {e}", self.name, self.line)));
                }
            };
            return Some(Ok(match record {
                RecordLine::FleetSample { time, namespaces, gaps } => {
                    let at = self.at(&time);
                    Event::Fleet(Box::new(FleetSample::from_record(
                        at,
                        time,
                        namespaces,
                        gaps,
                        &mut self.names,
                    )))
                }
                RecordLine::Sample { time, report, opened, time_wait_owners } => {
                    let at = self.at(&time);
                    Event::Snapshot(Box::new(Sample {
                        at,
                        time,
                        report: *report,
                        opened,
                        time_wait_owners,
                    }))
                }
                RecordLine::Failure(f) => Event::Failure(f),
                RecordLine::Lost { count, .. } => Event::Lost(count),
                RecordLine::Header { .. } => continue,
            }));
        }
    }
}

/// Sends the recording's events at `speed` times the recorded pace, holding while `paused`;
/// then a note, and Quit when `quit_at_end`.
pub fn play(
    mut replay: Replay,
    speed: f64,
    paused: Arc<AtomicBool>,
    tx: Sender<Event>,
    quit_at_end: bool,
) {
    let mut previous: Option<f64> = None;
    for event in replay.by_ref() {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                let _ = tx.send(Event::Note(format!("replay stopped: {e:#}")));
                break;
            }
        };
        let at = match &event {
            Event::Snapshot(s) => Some(s.at),
            Event::Fleet(s) => Some(s.at),
            _ => None,
        };
        if let Some(at) = at {
            if let Some(p) = previous {
                wait(Duration::from_secs_f64(((at - p) / speed).clamp(0.0, 3600.0)), &paused);
            }
            previous = Some(at);
        }
        if tx.send(event).is_err() {
            return;
        }
    }
    let _ = tx.send(Event::Note(format!(
        "replay finished: {}",
        porthog_core::report::plural(replay.samples(), "sample")
    )));
    if quit_at_end {
        let _ = tx.send(Event::Quit);
    }
}

/// Sleeps `d` of unpaused time: this paces playback, it orders nothing.
fn wait(d: Duration, paused: &AtomicBool) {
    let step = Duration::from_millis(20);
    let mut left = d;
    while !left.is_zero() || paused.load(Ordering::Relaxed) {
        let t = Instant::now();
        std::thread::sleep(if paused.load(Ordering::Relaxed) { step } else { step.min(left) });
        if !paused.load(Ordering::Relaxed) {
            left = left.saturating_sub(t.elapsed());
        }
    }
}
