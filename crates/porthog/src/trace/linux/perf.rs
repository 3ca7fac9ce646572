//! perf_event_open on tracepoints: one event per tracepoint and online CPU (pid -1), all of a
//! CPU's events writing into one mmap'd ring buffer (PERF_EVENT_IOC_SET_OUTPUT), read with the
//! barriers of the kernel's ring-buffer protocol (`include/uapi/linux/perf_event.h`: read
//! `data_head`, then an acquire barrier; consume; a release barrier, then write `data_tail`).
//! Everything lives in file descriptors: if porthog dies, the kernel removes it all.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use perf_event_open_sys::bindings::{
    PERF_FLAG_FD_CLOEXEC, PERF_SAMPLE_RAW, PERF_SAMPLE_TID, PERF_SAMPLE_TIME, PERF_TYPE_TRACEPOINT,
    perf_event_attr, perf_event_mmap_page,
};
use perf_event_open_sys::{ioctls, perf_event_open};
use rustix::event::{PollFd, PollFlags, Timespec};

use super::ring::{self, Record};

/// `CLOCK_MONOTONIC` (1 on every Linux architecture): sample times comparable with
/// `clock_gettime`, so they can be turned into wall-clock times.
const CLOCK_MONOTONIC: i32 = 1;
/// Ring buffer per CPU: 4 MiB (about 40,000 records), less on machines with many CPUs so the
/// total stays near 64 MiB of locked memory.
const RING_BYTES: usize = 4 << 20;
const RING_TOTAL_BYTES: usize = 64 << 20;

/// One tracepoint to open on every CPU.
#[derive(Debug, Clone)]
pub struct Tracepoint {
    /// `events/<group>/<name>/id`.
    pub id: u64,
    pub label: String,
    /// Kernel-side filter (PERF_EVENT_IOC_SET_FILTER), e.g. `ret == -99`.
    pub filter: Option<String>,
    /// Wake the reader at every record (rare events that should be shown at once), instead of
    /// when a quarter of the buffer is full.
    pub wake_each: bool,
    /// Also report task fork, exec, namespace changes and exit (PERF_RECORD_FORK, _COMM,
    /// _NAMESPACES, _EXIT): set on one event per CPU. _NAMESPACES needs CAP_SYS_ADMIN.
    pub side_band: bool,
}

/// The events of one CPU and the ring buffer they share.
pub struct CpuRing {
    /// The first event owns the mapping; the others write into it.
    events: Vec<OwnedFd>,
    map: *mut u8,
    map_len: usize,
    data_offset: usize,
    data_size: usize,
    tail: u64,
}

/// What went wrong opening the events, with the errno that decides the message.
#[derive(Debug)]
pub struct OpenError {
    pub what: String,
    pub error: io::Error,
}

/// Opens every tracepoint on every CPU of `cpus`, disabled. Filters the kernel refuses are
/// returned as notes: porthog filters the same in user space anyway.
pub fn open(
    tracepoints: &[Tracepoint],
    cpus: &[u32],
) -> Result<(Vec<CpuRing>, Vec<String>), OpenError> {
    let page = rustix::param::page_size();
    let per_cpu = (RING_TOTAL_BYTES / cpus.len().max(1)).min(RING_BYTES);
    // A power of two number of pages, at least 16.
    let pages = (per_cpu / page).max(16);
    let pages = if pages.is_power_of_two() { pages } else { pages.next_power_of_two() / 2 };
    let data_size = pages * page;
    let mut notes = Vec::new();
    let mut rings = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        let mut events = Vec::with_capacity(tracepoints.len());
        for tp in tracepoints {
            let fd = open_one(tp, cpu, data_size).map_err(|error| OpenError {
                what: format!("perf_event_open of tracepoint {} on CPU {cpu}", tp.label),
                error,
            })?;
            if let Some(filter) = &tp.filter
                && let Err(e) = set_filter(&fd, filter)
                && cpu == cpus[0]
            {
                notes.push(format!(
                    "the kernel refused the filter `{filter}` on {} ({e}): porthog filters in user space instead",
                    tp.label
                ));
            }
            events.push(fd);
        }
        rings.push(CpuRing::map(events, page, data_size).map_err(|error| OpenError {
            what: format!("mapping the ring buffer of CPU {cpu}"),
            error,
        })?);
    }
    Ok((rings, notes))
}

fn open_one(tp: &Tracepoint, cpu: u32, data_size: usize) -> io::Result<OwnedFd> {
    let mut attr = perf_event_attr {
        type_: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<perf_event_attr>() as u32,
        config: tp.id,
        sample_type: u64::from(PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_RAW),
        clockid: CLOCK_MONOTONIC,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_period = 1;
    attr.set_disabled(1);
    attr.set_use_clockid(1);
    // Side-band records carry the pid, tid and time too, to be put in order with the samples.
    attr.set_sample_id_all(1);
    if tp.side_band {
        attr.set_comm(1);
        attr.set_comm_exec(1);
        attr.set_task(1);
        attr.set_namespaces(1);
    }
    if tp.wake_each {
        attr.__bindgen_anon_2.wakeup_events = 1;
    } else {
        attr.set_watermark(1);
        attr.__bindgen_anon_2.wakeup_watermark = (data_size / 4) as u32;
    }
    // SAFETY: `attr` is a fully initialised perf_event_attr of the size it declares; the
    // kernel may write the size it expects back into it, which is why it is mutable.
    let fd =
        unsafe { perf_event_open(&mut attr, -1, cpu as i32, -1, u64::from(PERF_FLAG_FD_CLOEXEC)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: perf_event_open returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_filter(fd: &OwnedFd, filter: &str) -> io::Result<()> {
    let filter =
        CString::new(filter).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: the fd is a perf event; the kernel copies the NUL-terminated string and does not
    // keep the pointer.
    let r = unsafe { ioctls::SET_FILTER(fd.as_raw_fd(), filter.as_ptr() as *mut _) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

impl CpuRing {
    fn map(events: Vec<OwnedFd>, page: usize, data_size: usize) -> io::Result<CpuRing> {
        let leader = &events[0];
        let map_len = page + data_size;
        // SAFETY: a new shared mapping of the perf event's ring (1 metadata page + 2^n data
        // pages), at an address the kernel picks; it is unmapped in Drop and never aliased as
        // a Rust reference except through the atomics and slices below.
        let map = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                map_len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                leader,
                0,
            )
        }?
        .cast::<u8>();
        let mut ring = CpuRing { events, map, map_len, data_offset: page, data_size, tail: 0 };
        for other in &ring.events[1..] {
            // SAFETY: both are perf events of the same CPU; the kernel checks that.
            if unsafe { ioctls::SET_OUTPUT(other.as_raw_fd(), ring.events[0].as_raw_fd()) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // Kernels since 4.1 say where the data area is; older ones leave 0 (one page in).
        let meta = ring.meta();
        // SAFETY: `meta` points into our live mapping; these fields are written once by the
        // kernel at mmap time.
        let (offset, size) = unsafe {
            (
                std::ptr::read_volatile(&raw const (*meta).data_offset),
                std::ptr::read_volatile(&raw const (*meta).data_size),
            )
        };
        if offset != 0 && size != 0 {
            ring.data_offset = offset as usize;
            ring.data_size = size as usize;
        }
        ring.tail = ring.tail_atomic().load(Ordering::Relaxed);
        Ok(ring)
    }

    fn meta(&self) -> *mut perf_event_mmap_page {
        self.map.cast()
    }

    fn head_atomic(&self) -> &AtomicU64 {
        // SAFETY: data_head is an aligned u64 in our live mapping that the kernel updates
        // concurrently: it must only be accessed atomically, which AtomicU64 guarantees.
        unsafe { AtomicU64::from_ptr(&raw mut (*self.meta()).data_head) }
    }

    fn tail_atomic(&self) -> &AtomicU64 {
        // SAFETY: as for data_head; the kernel reads data_tail to know what it may overwrite.
        unsafe { AtomicU64::from_ptr(&raw mut (*self.meta()).data_tail) }
    }

    /// Turns every event of this CPU on or off.
    pub fn enable(&self, on: bool) -> io::Result<()> {
        for fd in &self.events {
            // SAFETY: plain ioctls on our perf event fds.
            let r = unsafe {
                if on {
                    ioctls::ENABLE(fd.as_raw_fd(), 0)
                } else {
                    ioctls::DISABLE(fd.as_raw_fd(), 0)
                }
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Reads every complete record written so far and hands the space back to the kernel.
    /// Only the bytes in tail..head are touched: they are copied out of the mapping into
    /// `copy` (no reference to the ring is ever made, since the kernel writes the rest of it
    /// while we read), and the records are read from the copy.
    pub fn drain(&mut self, copy: &mut Vec<u8>, each: impl FnMut(Record<'_>)) {
        // Acquire: the records up to `head` are fully written before we read them (the
        // kernel's smp_wmb / smp_store_release pairs with this).
        let head = self.head_atomic().load(Ordering::Acquire);
        if head == self.tail {
            return;
        }
        copy.clear();
        for (offset, len) in ring::spans(self.data_size, self.tail, head) {
            copy.reserve(len);
            // SAFETY: `spans` keeps offset + len within data_size, so the source is inside
            // the data area of our live mapping. The kernel writes only outside tail..head
            // (it never overwrites what we have not released, and publishes head only after
            // the records before it are written), so these bytes do not change while they
            // are copied. The destination has `len` bytes reserved past its length, and the
            // two cannot overlap (one is our mmap, the other a heap allocation).
            unsafe {
                let src = self.map.add(self.data_offset + offset);
                std::ptr::copy_nonoverlapping(src, copy.as_mut_ptr().add(copy.len()), len);
                copy.set_len(copy.len() + len);
            }
        }
        let next = self.tail + ring::read(copy, each) as u64;
        self.tail = next;
        // Release: our reads of the records happen before the kernel may reuse the space.
        self.tail_atomic().store(next, Ordering::Release);
    }
}

impl Drop for CpuRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `map` with this length and is not used after.
        let _ = unsafe { rustix::mm::munmap(self.map.cast(), self.map_len) };
        // The event fds close after this (field drop), which removes the events.
    }
}

/// Waits until some ring has data past its wakeup mark, or `timeout` passes, or a signal comes.
pub fn wait(rings: &[CpuRing], timeout: std::time::Duration) -> io::Result<()> {
    let mut fds: Vec<PollFd<'_>> =
        rings.iter().map(|r| PollFd::new(&r.events[0], PollFlags::IN)).collect();
    let ts =
        Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) };
    match rustix::event::poll(&mut fds, Some(&ts)) {
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The online CPUs, from /sys/devices/system/cpu/online (`0-3,6`).
pub fn online_cpus() -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("unreadable CPU list {text:?}"))
    })
}

fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                cpus.extend(a.trim().parse::<u32>().ok()?..=b.trim().parse::<u32>().ok()?)
            }
            None => cpus.push(part.trim().parse().ok()?),
        }
    }
    (!cpus.is_empty()).then_some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0-3,6,8-9"), Some(vec![0, 1, 2, 3, 6, 8, 9]));
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
