//! `porthog trace` on Linux: opens the tracepoints, reads every CPU's ring buffer, puts the
//! records back in time order, keeps the events of the watched namespace, feeds the lifecycle
//! join, prints each failure as it is caught, and at the end attributes the TIME_WAIT sockets
//! of a final snapshot and prints the summary. It orchestrates only: the kernel side is
//! `session.rs`, the ordering and the join `tracer.rs`, the output `present/trace.rs`.

mod clock;
mod error;
mod perf;
mod ring;
mod session;
mod tasks;
mod tracefs;
mod tracer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, anyhow};
use porthog_core::timeline::Failure;
use porthog_core::timestamp::format_unix_ms;
use porthog_core::trace_report::TraceSummary;

use crate::cli::TraceOptions;
use crate::collect;
use crate::present::trace::Output;
use clock::Clock;
use session::Session;

pub fn run(opts: &TraceOptions) -> Result<u8> {
    // SIGINT, SIGTERM or SIGHUP ends the loop; a second one, while the summary is being made,
    // ends porthog at once.
    let stop = crate::signals::flag()?;
    let mut session = Session::open(&crate::trace::Scope::One(opts.netns.clone()))?;
    for note in &session.notes {
        eprintln!("porthog: note: {note}");
    }
    let place = opts.netns.as_ref().map_or_else(
        || "this network namespace".to_owned(),
        |t| format!("network namespace {}", t.label()),
    );
    eprintln!(
        "porthog: tracing connect() and bind() failures and TCP connections in {place} on {}{}; Ctrl-C to stop",
        porthog_core::report::plural(session.rings.len() as u64, "CPU"),
        opts.duration.map_or(String::new(), |d| format!(" for {:.1} s", d.as_secs_f64()))
    );

    let out = std::cell::RefCell::new(Output::new(std::io::stdout(), opts.report.format));
    let clock = session.clock;
    session.pump(
        &stop,
        opts.duration,
        |f| out.borrow_mut().failure(&f),
        |n| out.borrow_mut().lost(&format_unix_ms(clock.wall_ms(Clock::mono_now_s())), n),
    )?;
    let mut out = out.into_inner();
    let Session { rings, tracer, started, collect_opts, .. } = session;
    let duration_s = started.elapsed().as_secs_f64();
    drop(rings);

    let mut snapshot = collect::snapshot(&collect_opts)?;
    let time_wait_owners = tracer.lifecycle.book().attribute_time_wait(&mut snapshot);
    let report = porthog_core::analyze(&snapshot, &opts.report.analyze);
    let summary = TraceSummary {
        failures: tracer.lifecycle.failures(),
        time_wait_owners,
        new_connections: tracer.lifecycle.new_connections(duration_s),
        time_wait_produced: tracer.lifecycle.time_wait_produced(),
        lost_events: tracer.lost,
        unresolved_events: tracer.tasks.unresolved,
        duration_s,
        report,
    }
    .judged();
    let code = summary.exit_code();
    let netns = opts.netns.as_ref().map(|t| t.label());
    out.summary(summary, netns.as_deref(), opts.report.top);
    Ok(code)
}

/// The tracer of `porthog trace` on a thread of its own, for `watch` and `record`: failures
/// and lost counts go to the callbacks as they are caught, until the handle is dropped.
pub struct FeedHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FeedHandle {
    /// Stops the tracer after it handed over what the kernel still buffered.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for FeedHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens the tracepoints on a new thread (returning its error, if any, here) and runs the
/// trace loop there until the handle is dropped; the last records are read and handed over
/// before the drop returns.
pub fn spawn_feed(
    scope: crate::trace::Scope,
    on_failure: impl Fn(Failure) + Send + 'static,
    on_lost: impl Fn(u64) + Send + 'static,
) -> Result<FeedHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("porthog-trace".into())
        .spawn(move || {
            let mut session = match Session::open(&scope) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            if let Err(e) = session.pump(&flag, None, on_failure, on_lost) {
                eprintln!("porthog: warning: the failure tracer stopped: {e:#}");
            }
        })
        .context("starting the tracer thread")?;
    let mut handle = FeedHandle { stop, thread: Some(thread) };
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            handle.thread = None;
            Err(anyhow!("the tracer thread ended before it was ready"))
        }
    }
}
