//! The kernel side of a trace: finds tracefs, opens the four tracepoints on every CPU, takes
//! the first snapshot, and runs the read loop (wait, drain every ring, hand over what is in
//! order). What to do with the records is `tracer.rs`'s.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use porthog_core::lifecycle::{Caught, Lifecycle};
use porthog_core::timeline::Failure;
use porthog_core::tracepoint::{self as format, Decoder};

use super::clock::Clock;
use super::perf::{self, CpuRing, Tracepoint};
use super::tasks::{LiveProc, ProcSource, Tasks};
use super::tracefs;
use super::tracer::Tracer;
use crate::collect::linux::netns;
use crate::collect::{self, CollectOptions, NetnsTarget};

/// The longest a caught failure waits before it is printed (the reader also wakes at once when
/// a failure is written, see `Tracepoint::wake_each`).
const POLL: Duration = Duration::from_millis(100);
/// Only the three errnos of port exhaustion leave the kernel (DOMAIN.md).
const FAILURE_FILTER: &str = "ret == -99 || ret == -98 || ret == -11";
/// CLOSE -> SYN_SENT (the opener) and FIN_WAIT1, FIN_WAIT2 or CLOSING -> CLOSE (entering
/// TIME_WAIT). Other closes need no event: `tcp_destroy_sock` ends every socket's entry.
const SET_STATE_FILTER: &str = "protocol == 6 && ((oldstate == 7 && newstate == 2) || \
     (newstate == 7 && (oldstate == 4 || oldstate == 5 || oldstate == 11)))";

/// Open, enabled tracepoints and the tracer that reads them.
pub struct Session {
    pub rings: Vec<CpuRing>,
    pub tracer: Tracer<LiveProc>,
    pub clock: Clock,
    pub notes: Vec<String>,
    pub started: Instant,
    pub collect_opts: CollectOptions,
}

impl Session {
    pub fn open(target: Option<&NetnsTarget>) -> Result<Session> {
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
        let mut tracer = Tracer::new(decoder, Tasks::new(netns, LiveProc), Lifecycle::default());
        tracer.lifecycle.learn_open(&first);
        Ok(Session { rings, tracer, clock, notes, started, collect_opts })
    }

    /// The trace loop: waits for kernel events, reads the rings, hands over each failure in
    /// time order and each new lost count, until `stop` is set or `duration` is over; then
    /// disables the events and hands over what was left in the rings.
    pub fn pump(
        &mut self,
        stop: &AtomicBool,
        duration: Option<Duration>,
        mut on_failure: impl FnMut(Failure),
        mut on_lost: impl FnMut(u64),
    ) -> Result<()> {
        let Session { rings, tracer, clock, started, .. } = self;
        let started = *started;
        let mut last_sweep = started;
        let mut copy = Vec::new();
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
            for ring in rings.iter_mut() {
                ring.drain(&mut copy, |record| tracer.take(record));
            }
            for caught in tracer.end_round(stopping) {
                on_failure(failure(&caught, &tracer.tasks, clock));
            }
            if let Some(n) = tracer.new_lost() {
                on_lost(n);
            }
            if stopping {
                return Ok(());
            }
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                tracer.sweep(Clock::mono_now_s());
                last_sweep = Instant::now();
            }
        }
    }
}

/// A caught failure as it is printed: wall-clock time, the process and its container.
pub fn failure<P: ProcSource>(caught: &Caught, tasks: &Tasks<P>, clock: &Clock) -> Failure {
    Failure {
        time: porthog_core::trace_report::rfc3339_millis(clock.wall_ms(caught.time)),
        pid: caught.who.pid,
        name: caught.who.name.to_string(),
        container: tasks.container(caught.who.pid),
        protocol: caught.protocol,
        remote: caught.remote,
        errno: caught.errno,
        call: caught.call.as_str().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permission_error_says_what_porthog_needs() {
        let e = needs_root(&io::Error::from_raw_os_error(13), "opening perf events");
        let text = e.to_string();
        assert!(text.starts_with("porthog trace needs root (or CAP_PERFMON"), "{text}");
        assert!(text.contains("EACCES") && text.ends_with("opening perf events"), "{text}");
        let e = needs_root(&io::Error::from_raw_os_error(2), "reading the format");
        assert_eq!(
            e.to_string(),
            format!("reading the format: {}", io::Error::from_raw_os_error(2))
        );
    }
}
