//! The kernel side of a trace: finds tracefs, opens the five tracepoints on every CPU, takes
//! the first snapshot, and runs the read loop (wait, drain every ring, hand over what is in
//! order). What to do with the records is `tracer.rs`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use porthog_core::lifecycle::{Caught, Lifecycle, tcp_state};
use porthog_core::timeline::{Errno, Failure};
use porthog_core::tracepoint::{self as format, Decoder};

use super::clock::Clock;
use super::error::SysError;
use super::perf::{self, CpuRing, Tracepoint};
use super::tasks::{LiveProc, ProcSource, Tasks};
use super::tracefs;
use super::tracer::Tracer;
use crate::collect::linux::netns;
use crate::collect::{self, CollectOptions};
use crate::trace::Scope;

/// The longest a caught failure waits before it is printed (the reader also wakes at once when
/// a failure is written, see `Tracepoint::wake_each`).
const POLL: Duration = Duration::from_millis(100);
/// Only the errnos of port exhaustion leave the kernel: `ret == -99 || ret == -98 || ...`.
fn failure_filter() -> String {
    let each: Vec<String> = Errno::ALL.iter().map(|e| format!("ret == -{}", e.number())).collect();
    each.join(" || ")
}

/// CLOSE -> SYN_SENT (the opener) and FIN_WAIT1, FIN_WAIT2 or CLOSING -> CLOSE (entering
/// TIME_WAIT). Other closes need no event: `tcp_destroy_sock` ends every socket's entry.
fn set_state_filter() -> String {
    use tcp_state::{CLOSE, CLOSING, FIN_WAIT1, FIN_WAIT2, SYN_SENT};
    format!(
        "protocol == {IPPROTO_TCP} && ((oldstate == {CLOSE} && newstate == {SYN_SENT}) || \
         (newstate == {CLOSE} && (oldstate == {FIN_WAIT1} || oldstate == {FIN_WAIT2} || oldstate == {CLOSING})))"
    )
}

/// `IPPROTO_TCP`, as `inet_sock_set_state` records the protocol.
const IPPROTO_TCP: u8 = 6;

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
    pub fn open(scope: &Scope) -> Result<Session> {
        let (target, netns) = match scope {
            Scope::One(Some(target)) => (Some(target), Some(netns::inode(target)?)),
            Scope::One(None) => (None, Some(netns::current_inode()?)),
            Scope::All => (None, None),
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
        let mut tracer = Tracer::new(decoder, Tasks::new(netns, LiveProc), Lifecycle::default());
        // Every namespace: only failures are wanted (watch and record sample the namespaces
        // themselves), so no namespace's connections are learnt.
        if netns.is_some() {
            let first = collect::snapshot(&collect_opts)?;
            tracer.lifecycle.learn_open(&first);
        }
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
        time: porthog_core::timestamp::format_unix_ms(clock.wall_ms(caught.time)),
        pid: caught.who.pid,
        name: caught.who.name.to_string(),
        container: tasks.container(caught.who.pid),
        protocol: caught.protocol,
        remote: caught.remote,
        errno: caught.errno,
        call: caught.call.as_str().to_owned(),
        class: caught.class,
        netns: caught.who.netns,
    }
}

/// Finds tracefs, reads the four formats, opens the events on every CPU (disabled).
fn open_tracepoints() -> Result<(Vec<CpuRing>, Decoder, Vec<String>)> {
    let fs = tracefs::Tracefs::find_or_mount().map_err(SysError::into_anyhow)?;
    let format = |group: &str, name: &str| fs.format(group, name).map_err(SysError::into_anyhow);
    let exit_connect = format("syscalls", "sys_exit_connect")?;
    let exit_bind = format("syscalls", "sys_exit_bind")?;
    let set_state = format("sock", "inet_sock_set_state")?;
    let destroy = format("tcp", "tcp_destroy_sock")?;
    // bind()'s sockaddr tells bind(port 0) (exhaustion) from a fixed port (taken): issue 7.
    let enter_bind = format("syscalls", "sys_enter_bind")?;
    let decoder = Decoder::new(&exit_connect, &exit_bind, &set_state, &destroy)
        .and_then(|d| d.with_enter_bind(&enter_bind))
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
        Tracepoint { side_band: true, ..tp(&set_state, Some(&set_state_filter()), false) },
        tp(&destroy, None, false),
        tp(&exit_connect, Some(&failure_filter()), true),
        tp(&exit_bind, Some(&failure_filter()), true),
        tp(&enter_bind, None, false),
    ];
    let cpus = perf::online_cpus().context("reading /sys/devices/system/cpu/online")?;
    let (rings, notes) = perf::open(&tracepoints, &cpus).map_err(SysError::into_anyhow)?;
    Ok((rings, decoder, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel filters are made from the core's errno and state tables; these are the
    /// strings the kernel was given before they were.
    #[test]
    fn kernel_filters_come_from_the_core_tables() {
        assert_eq!(failure_filter(), "ret == -99 || ret == -98 || ret == -11");
        assert_eq!(
            set_state_filter(),
            "protocol == 6 && ((oldstate == 7 && newstate == 2) || \
             (newstate == 7 && (oldstate == 4 || oldstate == 5 || oldstate == 11)))"
        );
    }
}
