//! `porthog trace` on Linux: opens the tracepoints, reads every CPU's ring buffer, puts the
//! records back in time order, keeps the events of the watched namespace, feeds the lifecycle
//! join, prints each failure as it is caught, and at the end attributes the TIME_WAIT sockets
//! of a final snapshot and prints the summary. It orchestrates only: each step has its file.

mod perf;
mod ring;
mod tasks;
mod tracefs;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use porthog_core::lifecycle::{Caught, Event, EventKind, Lifecycle, Who, tcp_state};
use porthog_core::timeline::{Failure, FourTuple};
use porthog_core::trace_report::{TraceLine, TraceSummary, rfc3339_millis};
use porthog_core::{Level, Protocol};

use crate::cli::{Format, TraceOptions};
use crate::collect::linux::netns;
use crate::collect::{self, CollectOptions, NetnsTarget};
use crate::present;
use perf::{CpuRing, Tracepoint};
use porthog_core::tracepoint::{self as format, Decoded, Decoder};
use ring::Record;
use tasks::{LiveProc, TaskRecord, Tasks};

/// The longest a caught failure waits before it is printed (the reader also wakes at once when
/// a failure is written, see `Tracepoint::wake_each`).
const POLL: Duration = Duration::from_millis(100);
/// Only the three errnos of port exhaustion leave the kernel (DOMAIN.md).
const FAILURE_FILTER: &str = "ret == -99 || ret == -98 || ret == -11";
/// CLOSE -> SYN_SENT (the opener) and FIN_WAIT1, FIN_WAIT2 or CLOSING -> CLOSE (entering
/// TIME_WAIT). Other closes need no event: `tcp_destroy_sock` ends every socket's entry.
const SET_STATE_FILTER: &str = "protocol == 6 && ((oldstate == 7 && newstate == 2) || \
     (newstate == 7 && (oldstate == 4 || oldstate == 5 || oldstate == 11)))";

pub fn run(opts: &TraceOptions) -> Result<u8> {
    // SIGINT, SIGTERM or SIGHUP ends the loop; a second one, while the summary is being made,
    // ends porthog at once.
    let stop = crate::signals::flag()?;
    let mut session = Session::open(opts.netns.as_ref())?;
    for note in &session.notes {
        eprintln!("porthog: note: {note}");
    }
    let place = opts.netns.as_ref().map_or_else(
        || "this network namespace".to_owned(),
        |t| format!("network namespace {}", t.label()),
    );
    eprintln!(
        "porthog: tracing connect() and bind() failures and TCP connections in {place} on {} CPUs{}; Ctrl-C to stop",
        session.rings.len(),
        opts.duration.map_or(String::new(), |d| format!(" for {:.1} s", d.as_secs_f64()))
    );

    let out = std::cell::RefCell::new(Output::new(opts.report.format));
    let clock = session.clock;
    session.pump(
        &stop,
        opts.duration,
        |f| out.borrow_mut().failure(&f),
        |n| out.borrow_mut().lost(n, &clock),
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
    };
    let code = exit_code(&summary);
    out.summary(summary, opts)?;
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
    netns: Option<NetnsTarget>,
    on_failure: impl Fn(Failure) + Send + 'static,
    on_lost: impl Fn(u64) + Send + 'static,
) -> Result<FeedHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("porthog-trace".into())
        .spawn(move || {
            let mut session = match Session::open(netns.as_ref()) {
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

/// Open, enabled tracepoints and the tracer that reads them.
struct Session {
    rings: Vec<CpuRing>,
    tracer: Tracer,
    clock: Clock,
    notes: Vec<String>,
    started: Instant,
    collect_opts: CollectOptions,
}

impl Session {
    fn open(target: Option<&NetnsTarget>) -> Result<Session> {
        let netns = match target {
            Some(target) => netns::inode(target)?,
            None => netns::current_inode()?,
        };
        let (rings, decoder, notes) = open_tracepoints()?;
        let clock = Clock::now();
        for ring in &rings {
            ring.enable(true).context("enabling the tracepoints")?;
        }
        // Rates count from here: the first snapshot below is part of the trace.
        let started = Instant::now();
        // Who holds the connections open now: those that close during the trace are theirs.
        let collect_opts = CollectOptions { netns: target.cloned() };
        let first = collect::snapshot(&collect_opts)?;
        let mut tracer = Tracer {
            decoder,
            tasks: Tasks::new(netns, LiveProc),
            lifecycle: Lifecycle::default(),
            pending: Vec::new(),
            lost: 0,
            scratch: Vec::new(),
        };
        tracer.lifecycle.learn_open(&first);
        Ok(Session { rings, tracer, clock, notes, started, collect_opts })
    }

    /// The trace loop: waits for kernel events, reads the rings, hands over each failure in
    /// time order and each new lost count, until `stop` is set or `duration` is over; then
    /// disables the events and hands over what was left in the rings.
    fn pump(
        &mut self,
        stop: &AtomicBool,
        duration: Option<Duration>,
        mut on_failure: impl FnMut(Failure),
        mut on_lost: impl FnMut(u64),
    ) -> Result<()> {
        let Session { rings, tracer, clock, started, .. } = self;
        let started = *started;
        let mut watermark = 0u64;
        let mut last_sweep = started;
        let mut lost_shown = 0u64;
        loop {
            let stopping =
                stop.load(Ordering::Relaxed) || duration.is_some_and(|d| started.elapsed() >= d);
            if stopping {
                // Nothing new after this; what is in the rings is read below.
                for ring in rings.iter() {
                    let _ = ring.enable(false);
                }
            } else {
                let left = duration.map_or(POLL, |d| d.saturating_sub(started.elapsed()).min(POLL));
                perf::wait(rings, left).context("waiting for kernel events")?;
            }
            let round_max = tracer.drain(rings);
            // Records of one CPU are in order; across CPUs, one written after the previous
            // round started cannot be older than what that round saw. So everything up to the
            // previous round's newest time is complete (perf's "finished round").
            let upto = if stopping { u64::MAX } else { watermark };
            for caught in tracer.flush(upto) {
                on_failure(failure(&caught, &tracer.tasks, clock));
            }
            watermark = watermark.max(round_max);
            if tracer.lost > lost_shown {
                on_lost(tracer.lost - lost_shown);
                lost_shown = tracer.lost;
            }
            if stopping {
                return Ok(());
            }
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                let now = clock.secs(clock.mono_now());
                tracer.lifecycle.sweep(now);
                tracer.tasks.sweep(now);
                last_sweep = Instant::now();
            }
        }
    }
}

/// The final check's exit status, but at least critical when the kernel refused allocations
/// during the trace: they happened, whatever the pools look like now.
fn exit_code(summary: &TraceSummary) -> u8 {
    if summary.failures.is_empty() {
        summary.report.exit_code()
    } else {
        // Refusals seen are an answer even when the final socket list was incomplete.
        summary.report.verdict.max(Level::Critical).exit_code() as u8
    }
}

/// Finds tracefs, reads the four formats, opens the events on every CPU (disabled).
fn open_tracepoints() -> Result<(Vec<CpuRing>, Decoder, Vec<String>)> {
    let fs = tracefs::Tracefs::find_or_mount().map_err(|e| needs_root(&e.error, &e.what))?;
    let format =
        |group: &str, name: &str| fs.format(group, name).map_err(|e| needs_root(&e.error, &e.what));
    let exit_connect = format("syscalls", "sys_exit_connect")?;
    let exit_bind = format("syscalls", "sys_exit_bind")?;
    let set_state = format("sock", "inet_sock_set_state")?;
    let destroy = format("tcp", "tcp_destroy_sock")?;
    let decoder = Decoder::new(&exit_connect, &exit_bind, &set_state, &destroy)
        .with_context(|| format!("reading tracepoint formats under {}", fs.root().display()))?;
    let tp = |f: &format::Format, filter: Option<&str>, wake_each: bool| Tracepoint {
        id: u64::from(f.id),
        label: f.name.clone(),
        filter: filter.map(str::to_owned),
        wake_each,
        side_band: false,
    };
    // The first is the one whose ring buffer the others write into: it sets the wakeup mark.
    let tracepoints = [
        Tracepoint { side_band: true, ..tp(&set_state, Some(SET_STATE_FILTER), false) },
        tp(&destroy, None, false),
        tp(&exit_connect, Some(FAILURE_FILTER), true),
        tp(&exit_bind, Some(FAILURE_FILTER), true),
    ];
    let cpus = perf::online_cpus().context("reading /sys/devices/system/cpu/online")?;
    let (rings, notes) =
        perf::open(&tracepoints, &cpus).map_err(|e| needs_root(&e.error, &e.what))?;
    Ok((rings, decoder, notes))
}

/// A permission error becomes the message that says what porthog needs; others stay as they are.
fn needs_root(error: &io::Error, what: &str) -> anyhow::Error {
    let name = match rustix::io::Errno::from_io_error(error) {
        Some(rustix::io::Errno::ACCESS) => Some("EACCES"),
        Some(rustix::io::Errno::PERM) => Some("EPERM"),
        _ => None,
    };
    match name {
        Some(name) => anyhow!(
            "porthog trace needs root (or CAP_PERFMON and CAP_SYS_ADMIN) to open kernel tracepoints: {name} ({error}) {what}"
        ),
        None => anyhow!("{what}: {error}"),
    }
}

/// A record read from a ring, kept until its order is certain.
enum Pending {
    Sample { pid: u32, tid: u32, decoded: Decoded },
    Task(TaskRecord),
}

/// Reads the rings and keeps decoded records until their order is certain.
struct Tracer {
    decoder: Decoder,
    tasks: Tasks<LiveProc>,
    lifecycle: Lifecycle,
    /// Records read but not yet applied, with their time in ns.
    pending: Vec<(u64, Pending)>,
    lost: u64,
    scratch: Vec<u8>,
}

impl Tracer {
    /// Reads every ring; returns the newest time seen.
    fn drain(&mut self, rings: &mut [CpuRing]) -> u64 {
        let mut newest = 0;
        let Tracer { decoder, pending, lost, scratch, .. } = self;
        for ring in rings.iter_mut() {
            ring.drain(scratch, |record| match record {
                Record::Sample { pid, tid, time, raw } => {
                    newest = newest.max(time);
                    if let Some(decoded) = decoder.decode(raw) {
                        pending.push((time, Pending::Sample { pid, tid, decoded }));
                    }
                }
                Record::Task { time, record } => {
                    newest = newest.max(time);
                    pending.push((time, Pending::Task(record)));
                }
                Record::Lost(n) => *lost += n,
                // Records porthog did not ask for, or malformed: nothing to learn from them.
                Record::Other(_) => {}
            });
        }
        newest
    }

    /// Applies the pending records up to `upto` (ns) in time order; returns the failures.
    fn flush(&mut self, upto: u64) -> Vec<Caught> {
        // Stable: records of one thread with equal times keep their order.
        self.pending.sort_by_key(|(t, _)| *t);
        let n = self.pending.partition_point(|(t, _)| *t <= upto);
        let mut caught = Vec::new();
        for (time, pending) in self.pending.drain(..n) {
            let secs = time as f64 / 1e9;
            match pending {
                Pending::Task(record) => self.tasks.apply(record, secs),
                Pending::Sample { pid, tid, decoded } => {
                    if let Some(kind) = event_kind(decoded, pid, tid, secs, &mut self.tasks) {
                        caught.extend(self.lifecycle.apply(Event { time: secs, kind }));
                    }
                }
            }
        }
        caught
    }
}

/// Turns a decoded record into a lifecycle event; None for what porthog does not follow, and
/// for events of threads outside the watched namespace. Transitions other than CLOSE->SYN_SENT
/// are kept whatever their pid: they run in softirq, and are joined by socket address to an
/// opener that passed this filter.
fn event_kind(
    decoded: Decoded,
    pid: u32,
    tid: u32,
    now: f64,
    tasks: &mut Tasks<LiveProc>,
) -> Option<EventKind> {
    let who = |tasks: &mut Tasks<LiveProc>| {
        tasks.resolve(pid, tid, now).map(|r| Who { pid, tid, name: r.name })
    };
    match decoded {
        Decoded::Exit { call, ret } => {
            // The kernel filter may be missing: check again.
            if ![-99, -98, -11].contains(&ret) {
                return None;
            }
            Some(EventKind::CallFailed { who: who(tasks)?, call, ret })
        }
        Decoded::SetState {
            skaddr,
            old: tcp_state::CLOSE,
            new: tcp_state::SYN_SENT,
            remote,
            ..
        } => Some(EventKind::Connecting { skaddr, who: who(tasks)?, remote }),
        Decoded::SetState { skaddr, old, new: tcp_state::CLOSE, local, remote } => {
            Some(EventKind::Closed {
                skaddr,
                from: old,
                tuple: FourTuple { protocol: Protocol::Tcp, local, remote },
            })
        }
        Decoded::SetState { .. } => None,
        Decoded::Destroy { skaddr, cookie } => Some(EventKind::Destroyed { skaddr, cookie }),
    }
}

fn failure(caught: &Caught, tasks: &Tasks<LiveProc>, clock: &Clock) -> Failure {
    Failure {
        time: rfc3339_millis(clock.wall_ms(caught.time)),
        pid: caught.who.pid,
        name: caught.who.name.to_string(),
        container: tasks.container(caught.who.pid),
        protocol: caught.protocol,
        remote: caught.remote,
        errno: caught.errno,
        call: caught.call.as_str().to_owned(),
    }
}

/// Sample times are CLOCK_MONOTONIC; this pairs one reading with the wall clock.
#[derive(Clone, Copy)]
struct Clock {
    mono0_ns: i64,
    wall0_ms: i64,
}

impl Clock {
    fn now() -> Clock {
        let mono0_ns = Clock::ns(rustix::time::clock_gettime(rustix::time::ClockId::Monotonic));
        let wall0_ns = Clock::ns(rustix::time::clock_gettime(rustix::time::ClockId::Realtime));
        Clock { mono0_ns, wall0_ms: wall0_ns / 1_000_000 }
    }

    fn ns(t: rustix::time::Timespec) -> i64 {
        t.tv_sec * 1_000_000_000 + t.tv_nsec
    }

    fn mono_now(&self) -> i64 {
        Clock::ns(rustix::time::clock_gettime(rustix::time::ClockId::Monotonic))
    }

    fn secs(&self, mono_ns: i64) -> f64 {
        mono_ns as f64 / 1e9
    }

    /// Wall-clock milliseconds of a monotonic time in seconds.
    fn wall_ms(&self, mono_s: f64) -> i64 {
        self.wall0_ms + ((mono_s * 1e9) as i64 - self.mono0_ns) / 1_000_000
    }
}

/// Where lines go: text or JSON Lines on stdout. A closed pipe ends the output quietly.
struct Output {
    format: Format,
    closed: bool,
}

impl Output {
    fn new(format: Format) -> Output {
        Output { format, closed: false }
    }

    fn write(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut stdout = io::stdout().lock();
        if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("porthog: writing to standard output: {e}");
            }
            self.closed = true;
        }
    }

    fn failure(&mut self, failure: &Failure) {
        let text = match self.format {
            Format::Json => present::trace::json_line(&TraceLine::Failure(failure.clone())),
            Format::Text { color } => present::trace::failure_text(failure, color),
        };
        self.write(&text);
    }

    fn lost(&mut self, count: u64, clock: &Clock) {
        let time = rfc3339_millis(clock.wall_ms(clock.secs(clock.mono_now())));
        let text = match self.format {
            Format::Json => present::trace::json_line(&TraceLine::Lost { time, count }),
            Format::Text { .. } => present::trace::lost_text(&time, count),
        };
        self.write(&text);
    }

    fn summary(&mut self, summary: TraceSummary, opts: &TraceOptions) -> Result<()> {
        let text = match self.format {
            Format::Json => present::trace::json_line(&TraceLine::Summary(Box::new(summary))),
            Format::Text { color } => present::trace::summary_text(
                &summary,
                opts.netns.as_ref().map(|t| t.label()).as_deref(),
                opts.report.top,
                color,
            ),
        };
        self.write(&text);
        Ok(())
    }
}
