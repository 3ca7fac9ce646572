//! `porthog record`: samples written as JSON Lines (`docs/record.md`): a header, then one
//! sample per interval (the check's report with TIME_WAIT attributed from history, the
//! connections opened since the previous sample with their openers, the TIME_WAIT owners),
//! until `--duration` is over or SIGINT/SIGTERM/SIGHUP arrives; then it flushes and exits 0.
//! Each line is flushed as it is written, so a killed recording is readable up to its end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use porthog_core::timeline::RecordLine;

use crate::cli::RecordOptions;
use crate::collect::CollectOptions;
use crate::sample::{self, Sampler};
use crate::signals;

pub fn run(opts: &RecordOptions) -> Result<u8> {
    let stop = signals::block()?;
    let (tx, stopped) = mpsc::channel::<()>();
    stop.forward(move || {
        let _ = tx.send(());
    });
    let name = opts.output.display().to_string();
    let file = File::create(&opts.output).with_context(|| format!("cannot create {name}"))?;
    let mut out = BufWriter::new(file);
    let netns = opts.netns.as_ref().map(|n| n.label());
    let mut sampler =
        Sampler::new(CollectOptions { netns: opts.netns.clone() }, opts.analyze, opts.interval_s);
    let header = sample::header(netns, opts.interval_s);
    // The first sample decides whether recording can work at all (namespace, permissions).
    let first = match sampler.sample() {
        Ok(s) => s,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&opts.output);
            return Err(e);
        }
    };
    write_line(&mut out, &header, &name)?;
    write_line(&mut out, &first.into_record(), &name)?;

    let interval = Duration::from_secs_f64(opts.interval_s);
    let start = Instant::now();
    let (mut written, mut failed) = (1u64, 0u64);
    for n in 1u32.. {
        let due = interval * n;
        if opts.duration.is_some_and(|d| due > d) {
            break;
        }
        match stopped.recv_timeout((start + due).saturating_duration_since(Instant::now())) {
            Ok(()) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        match sampler.sample() {
            Ok(s) => {
                write_line(&mut out, &s.into_record(), &name)?;
                written += 1;
            }
            // A namespace deleted or a scan that failed once: said, counted, and go on.
            Err(e) => {
                failed += 1;
                eprintln!("porthog: warning: sample {} failed: {e:#}", n + 1);
            }
        }
    }
    out.flush().with_context(|| format!("writing {name}"))?;
    let failed = if failed > 0 { format!(" ({failed} failed)") } else { String::new() };
    eprintln!("porthog: recorded {written} samples to {name}{failed}");
    Ok(0)
}

fn write_line(out: &mut BufWriter<File>, line: &RecordLine, name: &str) -> Result<()> {
    serde_json::to_writer(&mut *out, line).with_context(|| format!("encoding a line of {name}"))?;
    out.write_all(b"\n").and_then(|()| out.flush()).with_context(|| format!("writing {name}"))
}
