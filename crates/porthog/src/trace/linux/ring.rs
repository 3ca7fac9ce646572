//! The records of a perf ring buffer: `struct perf_event_header` then the body, 8-byte aligned,
//! possibly wrapping around the end of the buffer. Pure: it says where tail..head lies in the
//! ring and reads a copy of those bytes; `perf.rs` owns the mmap, the barriers, the copy and
//! publishing the new tail.
//! Samples are laid out for `PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_RAW`; side-band
//! records (fork, exit, comm, namespaces) end with `sample_id` (`sample_id_all`: pid, tid, time).

use super::tasks::TaskRecord;

/// `PERF_RECORD_LOST`: `{ header; u64 id; u64 lost; }`.
pub const RECORD_LOST: u32 = 2;
/// `PERF_RECORD_COMM`: `{ header; u32 pid, tid; char comm[]; sample_id }`.
pub const RECORD_COMM: u32 = 3;
/// `PERF_RECORD_EXIT` and `_FORK`: `{ header; u32 pid, ppid, tid, ptid; u64 time; sample_id }`.
pub const RECORD_EXIT: u32 = 4;
pub const RECORD_FORK: u32 = 7;
/// `PERF_RECORD_NAMESPACES`: `{ header; u32 pid, tid; u64 nr; { u64 dev, inode }[nr]; sample_id }`,
/// the network namespace first (`NET_NS_INDEX` is 0).
pub const RECORD_NAMESPACES: u32 = 16;
/// `PERF_RECORD_SAMPLE`.
pub const RECORD_SAMPLE: u32 = 9;
/// `PERF_RECORD_LOST_SAMPLES`: `{ header; u64 lost; }`.
pub const RECORD_LOST_SAMPLES: u32 = 13;

const HEADER: usize = 8;

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// pid (thread group), tid, time (ns, the event's clock), the tracepoint's raw record.
    Sample { pid: u32, tid: u32, time: u64, raw: &'a [u8] },
    /// The kernel dropped this many records: the buffer was full.
    Lost(u64),
    /// A task was created, exec'd or renamed, changed namespace, or exited (at `time`).
    Task { time: u64, record: TaskRecord },
    /// A record of a type porthog does not ask for, or a malformed one (counted by the caller).
    Other(u32),
}

/// Where the bytes of positions `tail..head` are in a ring of `len` bytes (positions grow
/// forever; the byte of position p is at `p % len`, and `len` is a power of two): one span, or
/// two when they wrap around the end, as (offset, length). At most `len` bytes: more than that
/// would mean the kernel overwrote what porthog had not released, which it never does.
pub fn spans(len: usize, tail: u64, head: u64) -> [(usize, usize); 2] {
    debug_assert!(len.is_power_of_two());
    let n = head.saturating_sub(tail).min(len as u64) as usize;
    let start = (tail % len as u64) as usize;
    let first = n.min(len - start);
    [(start, first), (0, n - first)]
}

/// Reads every complete record in `bytes`, a copy of the ring from the tail on. Returns how
/// many bytes it read: the new tail is that far on; a truncated record at the end waits for
/// the next head.
pub fn read(bytes: &[u8], mut each: impl FnMut(Record<'_>)) -> usize {
    let mut pos = 0;
    while bytes.len() - pos >= HEADER {
        let header = &bytes[pos..pos + HEADER];
        let ty = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
        let size = u16::from_ne_bytes([header[6], header[7]]) as usize;
        if size < HEADER {
            // A corrupt header would loop forever: skip everything that was written.
            each(Record::Other(ty));
            return bytes.len();
        }
        if bytes.len() - pos < size {
            break;
        }
        each(parse(ty, &bytes[pos..pos + size]));
        pos += size;
    }
    pos
}

fn parse(ty: u32, rec: &[u8]) -> Record<'_> {
    let u32_at = |o: usize| rec.get(o..o + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| {
        rec.get(o..o + 8)
            .map(|b| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    match ty {
        RECORD_SAMPLE => {
            // PERF_SAMPLE_TID: u32 pid, u32 tid; PERF_SAMPLE_TIME: u64; PERF_SAMPLE_RAW: u32
            // size, then the raw record (its size includes padding to 8 bytes).
            let sample = || {
                let (pid, tid, time, size) = (u32_at(8)?, u32_at(12)?, u64_at(16)?, u32_at(24)?);
                let raw = rec.get(28..28usize.checked_add(size as usize)?)?;
                Some(Record::Sample { pid, tid, time, raw })
            };
            sample().unwrap_or(Record::Other(ty))
        }
        RECORD_LOST => u64_at(16).map_or(Record::Other(ty), Record::Lost),
        RECORD_COMM | RECORD_EXIT | RECORD_FORK | RECORD_NAMESPACES => {
            task(ty, rec).map_or(Record::Other(ty), |(time, record)| Record::Task { time, record })
        }
        RECORD_LOST_SAMPLES => u64_at(8).map_or(Record::Other(ty), Record::Lost),
        _ => Record::Other(ty),
    }
}

/// A side-band record and its time (the last 8 bytes: `sample_id`'s time).
fn task(ty: u32, rec: &[u8]) -> Option<(u64, TaskRecord)> {
    let u32_at = |o: usize| rec.get(o..o + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| {
        rec.get(o..o + 8)
            .map(|b| u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    let end = rec.len().checked_sub(16)?;
    let time = u64_at(end + 8)?;
    let (pid, second) = (u32_at(8)?, u32_at(12)?);
    let record = match ty {
        RECORD_COMM => {
            let comm = rec.get(16..end)?;
            let comm = &comm[..comm.iter().position(|&b| b == 0).unwrap_or(comm.len())];
            TaskRecord::Comm { pid, tid: second, comm: String::from_utf8_lossy(comm).into_owned() }
        }
        RECORD_FORK => TaskRecord::Fork { pid, ppid: second, tid: u32_at(16)?, ptid: u32_at(20)? },
        RECORD_EXIT => TaskRecord::Exit { pid, tid: u32_at(16)? },
        _ => {
            if u64_at(16)? == 0 || end < 40 {
                return None;
            }
            TaskRecord::Netns { pid, tid: second, ino: u64_at(32)? }
        }
    };
    Some((time, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pid: u32, time: u64, raw: &[u8]) -> Vec<u8> {
        let body = 8 + 8 + 4 + raw.len();
        let size = (HEADER + body).next_multiple_of(8);
        let mut r = Vec::with_capacity(size);
        r.extend(RECORD_SAMPLE.to_ne_bytes());
        r.extend(0u16.to_ne_bytes());
        r.extend((size as u16).to_ne_bytes());
        r.extend(pid.to_ne_bytes());
        r.extend((pid + 1).to_ne_bytes());
        r.extend(time.to_ne_bytes());
        r.extend((raw.len() as u32).to_ne_bytes());
        r.extend(raw);
        r.resize(size, 0);
        r
    }

    fn lost(n: u64) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend(RECORD_LOST.to_ne_bytes());
        r.extend(0u16.to_ne_bytes());
        r.extend(24u16.to_ne_bytes());
        r.extend(1u64.to_ne_bytes());
        r.extend(n.to_ne_bytes());
        r
    }

    /// Writes `records` into a ring of `len` bytes starting at position `at`.
    fn ring_with(len: usize, at: u64, records: &[Vec<u8>]) -> (Vec<u8>, u64) {
        let mut ring = vec![0xAAu8; len];
        let mut pos = at;
        for r in records {
            for &b in r {
                ring[(pos % len as u64) as usize] = b;
                pos += 1;
            }
        }
        (ring, pos)
    }

    /// What `CpuRing::drain` does, on a ring in memory: copy tail..head, read the copy.
    fn collect(ring: &[u8], tail: u64, head: u64) -> (Vec<String>, u64) {
        let mut copy = Vec::new();
        for (offset, len) in spans(ring.len(), tail, head) {
            copy.extend_from_slice(&ring[offset..offset + len]);
        }
        let mut out = Vec::new();
        let read = read(&copy, |r| {
            out.push(match r {
                Record::Sample { pid, tid, time, raw } => format!("s{pid}/{tid}@{time}:{raw:?}"),
                Record::Lost(n) => format!("lost{n}"),
                Record::Task { time, record } => format!("{record:?}@{time}"),
                Record::Other(t) => format!("other{t}"),
            })
        });
        (out, tail + read as u64)
    }

    #[test]
    fn spans_of_the_ring() {
        assert_eq!(spans(128, 0, 0), [(0, 0), (0, 0)]);
        assert_eq!(spans(128, 8, 40), [(8, 32), (0, 0)]);
        assert_eq!(spans(128, 120, 136), [(120, 8), (0, 8)], "wraps");
        assert_eq!(spans(128, 256 + 16, 256 + 128), [(16, 112), (0, 0)]);
        assert_eq!(spans(128, 64, 64 + 128), [(64, 64), (0, 64)], "a full ring");
        assert_eq!(spans(128, 0, 1000), [(0, 128), (0, 0)], "never more than the ring");
        assert_eq!(spans(128, 50, 10), [(50, 0), (0, 0)], "a head behind the tail reads nothing");
    }

    #[test]
    fn reads_samples_and_lost_records() {
        let recs = [sample(10, 100, &[1, 2, 3, 4]), lost(7), sample(20, 200, &[9; 12])];
        let (ring, head) = ring_with(256, 0, &recs);
        let (out, next) = collect(&ring, 0, head);
        assert_eq!(
            out,
            ["s10/11@100:[1, 2, 3, 4]", "lost7", "s20/21@200:[9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]"]
        );
        assert_eq!(next, head);
    }

    #[test]
    fn records_wrapping_around_the_end_are_whole() {
        // Start 16 bytes before the end of a 128-byte ring: the first sample's header fits,
        // its body wraps; then the header itself of a later record wraps.
        for start in [112u64, 120, 124, 128 + 116] {
            let recs =
                [sample(10, 100, &[1, 2, 3, 4, 5, 6, 7, 8]), lost(3), sample(30, 300, &[4; 4])];
            let (ring, head) = ring_with(128, start, &recs);
            let (out, next) = collect(&ring, start, head);
            assert_eq!(
                out,
                ["s10/11@100:[1, 2, 3, 4, 5, 6, 7, 8]", "lost3", "s30/31@300:[4, 4, 4, 4]"],
                "start {start}"
            );
            assert_eq!(next, head);
        }
    }

    #[test]
    fn a_partial_record_waits_for_the_next_head() {
        let recs = [sample(10, 100, &[1; 4]), sample(20, 200, &[2; 4])];
        let (ring, head) = ring_with(256, 0, &recs);
        let first = recs[0].len() as u64;
        let (out, next) = collect(&ring, 0, head - 3);
        assert_eq!(out.len(), 1);
        assert_eq!(next, first);
        let (out, next) = collect(&ring, next, head);
        assert_eq!(out, ["s20/21@200:[2, 2, 2, 2]"]);
        assert_eq!(next, head);
    }

    /// A side-band record: `body` then sample_id (pid, tid, time), padded to 8 bytes.
    fn side_band(ty: u32, body: &[u8], time: u64) -> Vec<u8> {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(8), 0);
        let size = HEADER + body.len() + 16;
        let mut r = Vec::new();
        r.extend(ty.to_ne_bytes());
        r.extend(0u16.to_ne_bytes());
        r.extend((size as u16).to_ne_bytes());
        r.extend(body);
        r.extend(7u32.to_ne_bytes());
        r.extend(7u32.to_ne_bytes());
        r.extend(time.to_ne_bytes());
        r
    }

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    #[test]
    fn reads_task_records() {
        let mut comm = words(&[200, 201]);
        comm.extend(b"porthog-loadgen\0");
        let mut fork = words(&[200, 100, 201, 100]);
        fork.extend(5u64.to_ne_bytes());
        let mut ns = words(&[200, 201]);
        ns.extend(7u64.to_ne_bytes());
        for (dev, ino) in [(4u64, 4026532500u64), (4, 1), (4, 2), (4, 3), (4, 4), (4, 5), (4, 6)] {
            ns.extend(dev.to_ne_bytes());
            ns.extend(ino.to_ne_bytes());
        }
        let recs = [
            side_band(RECORD_FORK, &fork, 10),
            side_band(RECORD_COMM, &comm, 11),
            side_band(RECORD_NAMESPACES, &ns, 12),
            side_band(RECORD_EXIT, &fork, 13),
        ];
        let (ring, head) = ring_with(512, 480, &recs);
        let (out, _) = collect(&ring, 480, head);
        assert_eq!(
            out,
            [
                "Fork { pid: 200, tid: 201, ppid: 100, ptid: 100 }@10",
                "Comm { pid: 200, tid: 201, comm: \"porthog-loadgen\" }@11",
                "Netns { pid: 200, tid: 201, ino: 4026532500 }@12",
                "Exit { pid: 200, tid: 201 }@13",
            ]
        );
    }

    #[test]
    fn garbage_never_loops_or_panics() {
        // A header claiming size 0, and a sample whose raw size runs past its record.
        let mut bad = sample(1, 1, &[0; 4]);
        bad[24..28].copy_from_slice(&1000u32.to_ne_bytes());
        let (ring, head) = ring_with(64, 0, &[bad]);
        assert_eq!(collect(&ring, 0, head).0, ["other9"]);
        let zero = vec![0u8; 16];
        let (ring, head) = ring_with(64, 0, &[zero]);
        assert_eq!(collect(&ring, 0, head), (vec!["other0".to_string()], head));
    }
}
