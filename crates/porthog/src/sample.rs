//! One sample for `watch` and `record`: a live snapshot, its TIME_WAIT attributed from history
//! (the owner book: a socket seen ESTABLISHED under pid X keeps X when it turns TIME_WAIT), the
//! check's report, and the connections that appeared since the previous sample with their
//! openers, and the failures the OS logged during the interval (Windows: Tcpip 4227/4231/4266,
//! which raise the sample's verdict as they raise a check's). Reads the system only through
//! `collect` (on Linux as root, `collect::EventSource`: a full walk, then the TCP state events
//! since, walked again when the events cannot vouch for the table; elsewhere, or with
//! `PORTHOG_FULL_WALK=1`, `collect::snapshot` every sample) and `collect::new_events`; `digest`
//! is pure and tested.

use std::num::NonZeroU32;
use std::time::{Duration, Instant, SystemTime};

use porthog_core::event_log::EventCursor;
use porthog_core::timeline::{
    FourTuple, OpenedConnection, OwnerBook, OwnerCount, RECORD_SCHEMA_VERSION, RecordLine,
};
use porthog_core::{
    AnalyzeOptions, PortRange, Protocol, Report, Snapshot, State, analyze, timestamp,
};
use rustc_hash::FxHashMap as HashMap;

use crate::collect::{self, CollectOptions, EventSource};

/// Linux TIME_WAIT lasts 60 s; an opener is kept a little longer than that after it was last
/// seen, so that a TIME_WAIT socket found near the end of its 60 s is still attributed.
const OWNER_TTL_S: f64 = 65.0;

/// What `watch` shows and `record` writes for one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the first sample (monotonic live; from the recorded times in a replay).
    pub at: f64,
    /// Wall-clock time, RFC 3339 UTC with milliseconds.
    pub time: String,
    pub report: Report,
    /// Connections not in the previous sample (every connection, in the first one).
    pub opened: Vec<OpenedConnection>,
    /// TIME_WAIT sockets attributed from history, per opener.
    pub time_wait_owners: Vec<OwnerCount>,
}

impl Sample {
    pub fn into_record(self) -> RecordLine {
        RecordLine::Sample {
            time: self.time,
            report: Box::new(self.report),
            opened: self.opened,
            time_wait_owners: self.time_wait_owners,
        }
    }
}

/// The first line of a recording.
pub fn header(netns: Option<String>, interval_s: f64) -> RecordLine {
    RecordLine::Header {
        schema_version: RECORD_SCHEMA_VERSION,
        porthog: env!("CARGO_PKG_VERSION").to_owned(),
        netns,
        all_netns: false,
        started: now_text(),
        interval_ms: (interval_s * 1000.0).round() as u64,
    }
}

/// Now, as the contract writes times.
pub fn now_text() -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    timestamp::format_unix_ms(ms)
}

/// The connections of the previous sample, by identity across samples: its socket cookie, or
/// its 4-tuple where the source gives no cookie. TIME_WAIT keeps the cookie of the socket it
/// came from (`inet_twsk_alloc` copies `sk_cookie`), so a connection that closed is not new.
/// Each connection maps to the number of the last sample that showed it: one lookup a
/// connection tells new (absent, or older than the previous sample) from seen, and keeps the
/// map for the next sample (issue 9). Two maps, so the ~100k cookies of a busy namespace take
/// 16 bytes each, not a 4-tuple's 68.
#[derive(Default)]
struct Seen {
    cookies: HashMap<u64, u64>,
    tuples: HashMap<FourTuple, u64>,
    /// The number of the sample being compared; 0 before the first.
    sample: u64,
}

impl Seen {
    /// Marks the connection seen in this sample; the sample that showed it before: this one or
    /// the previous one (None: neither).
    fn mark(&mut self, cookie: u64, tuple: FourTuple) -> Option<u64> {
        if cookie == 0 {
            return self.tuples.insert(tuple, self.sample);
        }
        // A connection the TCP events showed without a cookie, which the next full walk made:
        // the same connection, not a new one.
        self.cookies.insert(cookie, self.sample).or_else(|| self.tuples.get(&tuple).copied())
    }

    /// Forgets the connections this sample did not show.
    fn keep_this_sample(&mut self) {
        let now = self.sample;
        self.cookies.retain(|_, at| *at == now);
        self.tuples.retain(|_, at| *at == now);
    }
}

/// How the sampler reads the sockets.
enum Walks {
    /// Not decided yet: the first sample decides.
    Untried,
    /// A full walk, then events (`collect::EventSource`).
    Events(Box<EventSource>),
    /// Every socket every sample (`collect::snapshot`).
    EverySample,
}

/// `PORTHOG_FULL_WALK` set, non-empty and not "0": every sample walks every socket (the way
/// before the events, kept for comparison).
fn full_walk_asked() -> bool {
    std::env::var_os("PORTHOG_FULL_WALK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Takes samples, remembering what the next one needs: the owner book and the previous
/// sample's connections (only those: memory stays bounded).
pub struct Sampler {
    collect: CollectOptions,
    analyze: AnalyzeOptions,
    book: OwnerBook,
    /// Boxed: a `Source` holds a `Sampler` or a fleet sampler, of like size.
    seen: Box<Seen>,
    started: Instant,
    /// Where in the OS's log of failures the next sample resumes.
    events: EventCursor,
    interval: Duration,
    walks: Walks,
}

impl Sampler {
    pub fn new(collect: CollectOptions, analyze: AnalyzeOptions, interval_s: f64) -> Sampler {
        Sampler {
            collect,
            analyze,
            book: OwnerBook::new(OWNER_TTL_S.max(2.0 * interval_s + 5.0)),
            seen: Box::default(),
            started: Instant::now(),
            events: EventCursor::new(),
            interval: Duration::try_from_secs_f64(interval_s).unwrap_or(Duration::from_secs(1)),
            walks: Walks::Untried,
        }
    }

    /// The sockets now: from the events where they can be used (the first sample says on
    /// stderr, once, why not), else a full walk.
    fn snapshot(&mut self) -> anyhow::Result<Snapshot> {
        match &mut self.walks {
            Walks::Events(source) => source.sample(),
            Walks::EverySample => collect::snapshot(&self.collect),
            Walks::Untried if full_walk_asked() || !collect::may_use_events() => {
                self.walks = Walks::EverySample;
                collect::snapshot(&self.collect)
            }
            Walks::Untried => match EventSource::start(&self.collect) {
                Ok((source, snapshot)) => {
                    self.walks = Walks::Events(Box::new(source));
                    Ok(snapshot)
                }
                Err(e) => {
                    eprintln!(
                        "porthog: every sample walks every socket: the TCP state events cannot \
                         be used ({e:#})"
                    );
                    self.walks = Walks::EverySample;
                    collect::snapshot(&self.collect)
                }
            },
        }
    }

    /// Collects and digests one sample; the failures logged since the previous one (on the
    /// first, during the last interval) raise its verdict exactly as they raise a check's.
    pub fn sample(&mut self) -> anyhow::Result<Sample> {
        let mut snapshot = self.snapshot()?;
        let (logged, gaps) = collect::new_events(&mut self.events, self.interval);
        snapshot.gaps.extend(gaps);
        let at = self.started.elapsed().as_secs_f64();
        let mut sample = self.digest(snapshot, at, now_text());
        porthog_core::add_evidence(&mut sample.report, logged);
        Ok(sample)
    }

    /// Everything after collection: learn owners, attribute TIME_WAIT, find the new
    /// connections, analyze.
    pub fn digest(&mut self, mut snapshot: Snapshot, at: f64, time: String) -> Sample {
        let started = Instant::now();
        self.book.learn(&snapshot, at);
        let learned = started.elapsed();
        let time_wait_owners = self.book.attribute_time_wait(&mut snapshot);
        self.book.expire(at);
        let booked = started.elapsed();
        let opened = opened(&snapshot, &mut self.seen);
        let compared = started.elapsed();
        let report = analyze(&snapshot, &self.analyze);
        if crate::collect::timings() {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            eprintln!(
                "porthog: sample digested in {:.1} ms: owner book learned {:.1}, TIME_WAIT \
                 attributed and expired {:.1}, new connections {:.1}, analysis {:.1}",
                ms(started.elapsed()),
                ms(learned),
                ms(booked - learned),
                ms(compared - booked),
                ms(started.elapsed() - compared)
            );
        }
        Sample { at, time, report, opened, time_wait_owners }
    }
}

/// The connections holding an ephemeral port (connected, local port in the range, not
/// reserved, not an accepted socket on a listener's port) that the previous sample in `seen`
/// lacks, with their openers (pid 0: opened and closed between two samples, so no process was
/// ever seen holding it). `seen` keeps all of them, for the next call.
fn opened(snapshot: &Snapshot, seen: &mut Seen) -> Vec<OpenedConnection> {
    let settings = &snapshot.settings;
    let tcp = settings.tcp_range.unwrap_or(PortRange::LINUX_DEFAULT);
    let udp = settings.udp_range.unwrap_or(tcp);
    let mut listeners = vec![false; usize::from(u16::MAX) + 1];
    for s in &snapshot.sockets {
        if s.protocol == Protocol::Tcp && s.state == State::Listen {
            listeners[usize::from(s.local_port)] = true;
        }
    }
    seen.sample += 1;
    let mut out = Vec::new();
    for s in snapshot.sockets.iter().filter(|s| s.is_connected()) {
        let (range, reserved) = match s.protocol {
            Protocol::Tcp => (tcp, settings.tcp_reserved.as_ref()),
            Protocol::Udp => (udp, settings.udp_reserved.as_ref()),
        };
        let ephemeral = range.contains(s.local_port)
            && !reserved.is_some_and(|r| r.contains(s.local_port))
            && !(s.protocol == Protocol::Tcp && listeners[usize::from(s.local_port)]);
        if !ephemeral {
            continue;
        }
        let tuple = FourTuple::of(s);
        // Shown twice in this sample: listed once; in the previous one: not new (older ones
        // were forgotten).
        if seen.mark(s.cookie, tuple).is_none() {
            let pid = s.pid.map_or(0, NonZeroU32::get);
            let name = snapshot.process(pid).map_or("", |p| p.name.as_str()).to_owned();
            out.push(OpenedConnection { local: tuple.local, remote: tuple.remote, pid, name });
        }
    }
    seen.keep_this_sample();
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;

    use porthog_core::{Os, Process, Socket};

    use super::*;

    /// A loopback connection from `lport` to 127.0.0.1:7070, with the port as its cookie.
    pub fn conn(state: State, lport: u16, pid: u32) -> Socket {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        Socket {
            pid: NonZeroU32::new(pid),
            cookie: u64::from(lport),
            inode: if state == State::TimeWait { 0 } else { u32::from(lport) },
            ..Socket::new(Protocol::Tcp, state, (ip, lport), (ip, 7070))
        }
    }

    /// A namespace with a 100-port range, a listener on 7070 (pid 7, "server") and `sockets`.
    pub fn snapshot(sockets: Vec<Socket>, processes: &[(u32, &str)]) -> Snapshot {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut s = Snapshot::new(Os::Linux, "test");
        s.settings.tcp_range = PortRange::new(40000, 40099);
        s.settings.tw_reuse = Some(porthog_core::TwReuse::Off);
        s.sockets = sockets;
        s.sockets.push(Socket {
            pid: NonZeroU32::new(7),
            inode: 1,
            ..Socket::new(Protocol::Tcp, State::Listen, (ip, 7070), (IpAddr::from([0; 4]), 0))
        });
        s.processes = std::iter::once((7, "server"))
            .chain(processes.iter().copied())
            .map(|(pid, name)| Process { pid, name: name.to_owned(), ..Default::default() })
            .collect();
        s.processes.sort_by_key(|p| p.pid);
        s
    }

    #[test]
    fn new_connections_are_those_not_in_the_previous_sample() {
        let mut sampler = Sampler::new(CollectOptions::default(), AnalyzeOptions::default(), 1.0);
        let first = snapshot(
            (40000..40010).map(|p| conn(State::Established, p, 42)).collect(),
            &[(42, "client")],
        );
        let s0 = sampler.digest(first, 0.0, "t0".into());
        assert_eq!(s0.opened.len(), 10, "the first sample lists every connection");

        // 10 stay open, 5 more open, and the first 10 close: TIME_WAIT, same cookies.
        let mut sockets: Vec<Socket> =
            (40000..40010).map(|p| conn(State::TimeWait, p, 0)).collect();
        sockets.extend((40010..40015).map(|p| conn(State::Established, p, 42)));
        // Opened and closed between the samples: never seen with an owner.
        sockets.extend((40015..40018).map(|p| conn(State::TimeWait, p, 0)));
        // The server's side of each connection is on the listener's port: not ephemeral.
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        sockets.push(Socket {
            pid: NonZeroU32::new(7),
            cookie: 999,
            ..Socket::new(Protocol::Tcp, State::Established, (ip, 7070), (ip, 40011))
        });
        let s1 = sampler.digest(snapshot(sockets, &[(42, "client")]), 1.0, "t1".into());
        let mut got: Vec<(u16, u32, &str)> =
            s1.opened.iter().map(|o| (o.local.port(), o.pid, o.name.as_str())).collect();
        got.sort();
        let mut want: Vec<(u16, u32, &str)> = (40010..40015).map(|p| (p, 42, "client")).collect();
        want.extend((40015..40018).map(|p| (p, 0, "")));
        assert_eq!(got, want);
        // The 10 TIME_WAIT sockets seen ESTABLISHED under 42 are 42's.
        assert_eq!(
            s1.time_wait_owners,
            vec![OwnerCount { pid: 42, name: "client".into(), count: 10 }]
        );
        let client = s1.report.processes.iter().find(|p| p.pid == 42).unwrap();
        assert_eq!(client.states.get("TIME_WAIT"), Some(&10));
    }

    /// The sets of earlier samples are reused, emptied: each sample compares with the one
    /// before it only.
    #[test]
    fn each_sample_is_compared_with_the_one_before_it() {
        let mut sampler = Sampler::new(CollectOptions::default(), AnalyzeOptions::default(), 1.0);
        let ports = |ports: &[u16]| {
            let sockets = ports.iter().map(|&p| conn(State::Established, p, 42));
            snapshot(sockets.collect(), &[(42, "client")])
        };
        let mut opened = |snap, at: f64| {
            let sample = sampler.digest(snap, at, format!("t{at}"));
            let mut got: Vec<u16> = sample.opened.iter().map(|o| o.local.port()).collect();
            got.sort_unstable();
            got
        };
        assert_eq!(opened(ports(&[40000, 40001, 40002]), 0.0), vec![40000, 40001, 40002]);
        assert_eq!(opened(ports(&[40002, 40003, 40004]), 1.0), vec![40003, 40004]);
        // 40000 was in the first sample, not the second: new again.
        assert_eq!(opened(ports(&[40000, 40004, 40005]), 2.0), vec![40000, 40005]);
        assert_eq!(opened(ports(&[40000, 40004, 40005]), 3.0), Vec::<u16>::new());
        let cookie_less = |p| Socket { cookie: 0, ..conn(State::Established, p, 42) };
        let snap = snapshot(vec![cookie_less(40000), cookie_less(40050)], &[(42, "client")]);
        assert_eq!(opened(snap, 4.0), vec![40000, 40050], "a tuple is not a cookie");
    }

    #[test]
    fn without_cookies_the_four_tuple_identifies_a_connection() {
        let mut sampler = Sampler::new(CollectOptions::default(), AnalyzeOptions::default(), 1.0);
        let plain = |p| Socket { cookie: 0, ..conn(State::Established, p, 42) };
        sampler.digest(snapshot(vec![plain(40000)], &[(42, "c")]), 0.0, "t0".into());
        let s1 = sampler.digest(
            snapshot(vec![plain(40000), plain(40001)], &[(42, "c")]),
            1.0,
            "t1".into(),
        );
        assert_eq!(s1.opened.iter().map(|o| o.local.port()).collect::<Vec<_>>(), vec![40001]);
    }

    /// The connections of `sockets` that hold an ephemeral port, by identity, the slow way.
    fn ephemeral(snap: &Snapshot) -> Vec<(u64, FourTuple)> {
        let listeners: Vec<u16> = snap
            .sockets
            .iter()
            .filter(|s| s.protocol == Protocol::Tcp && s.state == State::Listen)
            .map(|s| s.local_port)
            .collect();
        let range = snap.settings.tcp_range.unwrap();
        snap.sockets
            .iter()
            .filter(|s| s.is_connected() && range.contains(s.local_port))
            .filter(|s| !(s.protocol == Protocol::Tcp && listeners.contains(&s.local_port)))
            .map(|s| (s.cookie, FourTuple::of(s)))
            .collect()
    }

    proptest::proptest! {
        /// Samples of changing connections (cookies or none, repeated, closed to TIME_WAIT):
        /// the sampler's kept map lists, in every sample, exactly the connections that a fresh
        /// comparison with the previous snapshot alone finds new, each once.
        #[test]
        fn kept_map_lists_what_a_fresh_comparison_does(
            samples in proptest::collection::vec(
                proptest::collection::vec((40000u16..40012, 0u64..4, proptest::bool::ANY), 0..12),
                1..8,
            )
        ) {
            let mut sampler =
                Sampler::new(CollectOptions::default(), AnalyzeOptions::default(), 1.0);
            let mut previous: Vec<(u64, FourTuple)> = Vec::new();
            for (at, rows) in samples.iter().enumerate() {
                let sockets = rows
                    .iter()
                    .map(|&(port, cookie, closed)| {
                        let state = if closed { State::TimeWait } else { State::Established };
                        Socket { cookie, ..conn(state, port, if closed { 0 } else { 42 }) }
                    })
                    .collect();
                let snap = snapshot(sockets, &[(42, "client")]);
                let now = ephemeral(&snap);
                // Seen before: its cookie, or its 4-tuple without a cookie (a connection the
                // events showed before a walk made its cookie), in the previous sample or
                // earlier in this one.
                let mut want: Vec<FourTuple> = Vec::new();
                let (mut cookies_now, mut tuples_now) = (Vec::new(), Vec::new());
                for &(cookie, tuple) in &now {
                    let tuple_seen = previous.iter().any(|p| p.0 == 0 && p.1 == tuple)
                        || tuples_now.contains(&tuple);
                    let seen = tuple_seen
                        || (cookie != 0
                            && (previous.iter().any(|p| p.0 == cookie)
                                || cookies_now.contains(&cookie)));
                    if cookie != 0 {
                        cookies_now.push(cookie);
                    } else {
                        tuples_now.push(tuple);
                    }
                    if !seen {
                        want.push(tuple);
                    }
                }
                let sample = sampler.digest(snap, at as f64, format!("t{at}"));
                let got: Vec<FourTuple> = sample
                    .opened
                    .iter()
                    .map(|o| FourTuple {
                        protocol: Protocol::Tcp,
                        local: o.local,
                        remote: o.remote,
                    })
                    .collect();
                proptest::prop_assert_eq!(got, want);
                previous = now;
            }
        }
    }
}
