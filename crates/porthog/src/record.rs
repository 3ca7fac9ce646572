//! `porthog record`: samples written as JSON Lines (`docs/record.md`): a header, then one
//! sample per interval (the check's report with TIME_WAIT attributed from history, the
//! connections opened since the previous sample with their openers, the TIME_WAIT owners),
//! until `--duration` is over or SIGINT/SIGTERM/SIGHUP arrives; then it flushes and exits 0.
//! As root, the failures and lost counts of the kernel tracer (`porthog trace`'s loop, on its
//! own thread) are written between the samples as they arrive; only this thread writes.
//! Each line is flushed as it is written, so a killed recording is readable up to its end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use porthog_core::timeline::{Failure, RecordLine};

use crate::cli::RecordOptions;
use crate::collect::CollectOptions;
use crate::fleet::Source;
use crate::sample;
use crate::signals;

/// What the writing loop receives: a stop signal, or a line from the failure tracer.
enum Message {
    Stop,
    Line(RecordLine),
}

pub fn run(opts: &RecordOptions) -> Result<u8> {
    let (tx, inbox) = mpsc::channel::<Message>();
    let stopper = tx.clone();
    signals::forward(move || {
        let _ = stopper.send(Message::Stop);
    })?;
    // Before the file: without the privilege --all-netns needs, nothing is created.
    let collect = CollectOptions { netns: opts.netns.clone() };
    let mut source = Source::new(collect, opts.analyze, opts.interval_s, opts.all_netns)?;
    let name = opts.output.display().to_string();
    let file = File::create(&opts.output).with_context(|| format!("cannot create {name}"))?;
    let mut out = BufWriter::new(file);
    let netns = opts.netns.as_ref().map(|n| n.label());
    let mut header = sample::header(netns, opts.interval_s);
    if let RecordLine::Header { all_netns, .. } = &mut header {
        *all_netns = opts.all_netns;
    }
    // The first sample decides whether recording can work at all (namespace, permissions).
    let first = match line(&mut source, &[]) {
        Ok(s) => s,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&opts.output);
            return Err(e);
        }
    };
    write_line(&mut out, &header, &name)?;
    write_line(&mut out, &first, &name)?;
    // Failures and lost counts come from the tracer's thread; only this thread writes.
    let feed = if opts.trace { start_feed(opts, &tx) } else { None };
    drop(tx);
    eprintln!("porthog: recording to {name}");

    let interval = Duration::from_secs_f64(opts.interval_s);
    let start = Instant::now();
    let (mut written, mut failed) = (1u64, 0u64);
    // Failures since the last sample: they make that sample's verdict at least critical.
    let mut interval_failures: Vec<Failure> = Vec::new();
    for n in 1u32.. {
        let due = interval * n;
        if opts.duration.is_some_and(|d| due > d) {
            break;
        }
        let stopped = loop {
            match inbox.recv_timeout((start + due).saturating_duration_since(Instant::now())) {
                Ok(Message::Stop) => break true,
                Ok(Message::Line(line)) => {
                    if let RecordLine::Failure(f) = &line {
                        interval_failures.push(f.clone());
                    }
                    write_line(&mut out, &line, &name)?
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break false,
                Err(mpsc::RecvTimeoutError::Disconnected) => break true,
            }
        };
        if stopped {
            break;
        }
        match line(&mut source, &interval_failures) {
            Ok(line) => {
                interval_failures.clear();
                write_line(&mut out, &line, &name)?;
                written += 1;
            }
            // A namespace deleted or a scan that failed once: said, counted, and go on.
            Err(e) => {
                failed += 1;
                eprintln!("porthog: warning: sample {} failed: {e:#}", n + 1);
            }
        }
    }
    if let Some(feed) = feed {
        feed.stop();
    }
    while let Ok(message) = inbox.try_recv() {
        if let Message::Line(line) = message {
            write_line(&mut out, &line, &name)?;
        }
    }
    out.flush().with_context(|| format!("writing {name}"))?;
    let failed = if failed > 0 { format!(" ({failed} failed)") } else { String::new() };
    eprintln!(
        "porthog: recorded {} to {name}{failed}",
        porthog_core::report::plural(written, "sample")
    );
    Ok(0)
}

/// One sample as a line, raised by the failures since the previous sample (issue 7).
fn line(source: &mut Source, failures: &[Failure]) -> Result<RecordLine> {
    let mut s = source.sample()?;
    s.raise_for_failures(failures, "since the previous sample");
    Ok(s.into_record())
}

/// The kernel tracer of `porthog trace`, its failures and lost counts sent as lines. Without
/// it (not root, no tracefs) the recording goes on with samples only, and says why once.
fn start_feed(
    opts: &RecordOptions,
    tx: &mpsc::Sender<Message>,
) -> Option<crate::trace::FeedHandle> {
    let (failures, lost) = (tx.clone(), tx.clone());
    let feed = crate::trace::spawn_feed(
        crate::trace::Scope::of(opts.all_netns, opts.netns.clone()),
        move |f| {
            let _ = failures.send(Message::Line(RecordLine::Failure(f)));
        },
        move |count| {
            let _ = lost.send(Message::Line(RecordLine::Lost { time: sample::now_text(), count }));
        },
    );
    match feed {
        Ok(feed) => Some(feed),
        Err(e) => {
            eprintln!("porthog: note: no failures in the recording: {e:#}");
            None
        }
    }
}

fn write_line(out: &mut BufWriter<File>, line: &RecordLine, name: &str) -> Result<()> {
    serde_json::to_writer(&mut *out, line).with_context(|| format!("encoding a line of {name}"))?;
    out.write_all(b"\n").and_then(|()| out.flush()).with_context(|| format!("writing {name}"))
}

#[cfg(test)]
mod tests {
    use porthog_core::timeline::RecordLine;

    use crate::sample;
    use crate::watch::tests::{failure, samples};

    const SCHEMA: &str = include_str!("../../../docs/record.schema.json");

    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).expect("JSON")
    }

    /// Validates every line against docs/record.schema.json, which carries the report's
    /// schema in its `$defs` (no registry, no network).
    fn errors(lines: &[serde_json::Value]) -> Vec<String> {
        let v = jsonschema::validator_for(&json(SCHEMA)).expect("record schema is valid");
        lines
            .iter()
            .flat_map(|l| v.iter_errors(l).map(|e| format!("{e} at {}", e.instance_path())))
            .collect()
    }

    fn lines() -> Vec<serde_json::Value> {
        let mut lines = vec![sample::header(Some("blue".into()), 0.5)];
        lines.extend(samples().into_iter().map(sample::Sample::into_record));
        lines.push(RecordLine::Failure(failure()));
        lines.push(RecordLine::Lost { time: "2026-11-24T02:00:05.000Z".into(), count: 3 });
        // --all-netns: a header saying so, a fleet sample, a failure with its namespace.
        let mut header = sample::header(None, 1.0);
        if let RecordLine::Header { all_netns, .. } = &mut header {
            *all_netns = true;
        }
        lines.push(header);
        lines.push(fleet_sample().into_record());
        // A namespace deleted since, whose failures give it an entry with no pools.
        let mut gone = fleet_sample();
        let deleted = porthog_core::timeline::Failure { netns: Some(4026532999), ..failure() };
        gone.raise_for_failures(&[deleted], "since the previous sample");
        assert!(gone.fleet.namespaces.iter().any(|ns| ns.label() == "gone net:[4026532999]"));
        lines.push(gone.into_record());
        lines.push(RecordLine::Failure(porthog_core::timeline::Failure {
            netns: Some(4026532281),
            ..failure()
        }));
        lines.iter().map(|l| serde_json::to_value(l).unwrap()).collect()
    }

    /// Two namespaces, one with connections, through the fleet sampler.
    fn fleet_sample() -> crate::fleet::FleetSample {
        use crate::sample::tests::{conn, snapshot};
        let ns = |inode, name: Option<&str>, n: u16| crate::collect::Collected {
            inode,
            name: name.map(str::to_owned),
            container: Some("docker 3f4e1c0a9b8d".into()),
            pids: vec![42],
            snapshot: snapshot(
                (40000..40000 + n).map(|p| conn(porthog_core::State::Established, p, 42)).collect(),
                &[(42, "client")],
            ),
            unchanged: false,
        };
        let mut sampler =
            crate::fleet::FleetSampler::for_tests(porthog_core::AnalyzeOptions::default(), 1.0);
        sampler.digest(
            vec![ns(4026532281, Some("blue"), 90), ns(4026532282, None, 0)],
            vec![],
            0.0,
            "2026-11-24T02:00:06.000Z".into(),
        )
    }

    #[test]
    fn what_record_writes_matches_the_schema() {
        let lines = lines();
        assert!(lines.iter().any(|l| !l["opened"].as_array().is_none_or(Vec::is_empty)));
        assert!(lines.iter().any(|l| !l["time_wait_owners"].as_array().is_none_or(Vec::is_empty)));
        let errors = errors(&lines);
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn the_schema_rejects_what_the_contract_forbids() {
        let good = lines();
        let mut bad = good[1].clone();
        bad["report"]["verdict"] = "fine".into();
        assert!(!errors(&[bad]).is_empty(), "the report inside a sample is checked");
        let mut bad = good[0].clone();
        bad["type"] = "headline".into();
        assert!(!errors(&[bad]).is_empty());
        let mut bad = good[1].clone();
        bad["opened"] =
            serde_json::json!([{"local": "here", "remote": "127.0.0.1:1", "pid": 1, "name": ""}]);
        assert!(!errors(&[bad]).is_empty());
        let fleet = good.iter().find(|l| l["type"] == "fleet_sample").unwrap().clone();
        let mut bad = fleet.clone();
        bad["namespaces"][0]["inode"] = "blue".into();
        assert!(!errors(&[bad]).is_empty(), "a fleet sample's namespaces are checked");
        let mut bad = fleet;
        bad["namespaces"][0]["report"]["verdict"] = "fine".into();
        assert!(!errors(&[bad]).is_empty(), "so are their reports");
        let mut bad = good.iter().find(|l| l["type"] == "failure").unwrap().clone();
        bad["errno"] = "ENOENT".into();
        assert!(!errors(&[bad]).is_empty());
    }
}
