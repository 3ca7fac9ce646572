//! The live Windows sources as plain data: rows of `GetExtendedTcpTable` /
//! `GetExtendedUdpTable`, the owners porthog could name, and what `netsh` printed, turned into
//! the `Snapshot` that the offline importers make of `netstat -ano` and netsh captures, so that
//! `porthog.exe check` and `porthog analyze` of the same machine give one report (issue 10).
//! Pure: the Windows collector (crates/porthog/src/collect/windows/) makes the calls.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use crate::import::{self, Format, ImportOptions, Imported, Input, netsh};
use crate::model::{Gap, GapKind, Os, Placement, Process, Protocol, Settings, Snapshot, Socket};
use crate::ports::PortRange;
use crate::report::plural;

/// What `Snapshot::source` says of a live Windows snapshot.
pub const SOURCE: &str = "GetExtendedTcpTable + GetExtendedUdpTable";

/// The System process: kernel sockets (http.sys, SMB) are owned by pid 4.
pub const SYSTEM_PID: u32 = 4;

/// One row of either table. `state` is the `MIB_TCP_STATE` number (TCP only; the same numbers
/// as `Get-NetTCPConnection`'s State, 100 being BOUND).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub protocol: Protocol,
    pub state: u32,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub pid: u32,
}

/// A port as the tables give it: a DWORD whose low 16 bits hold the port in network byte order
/// (`MIB_TCPROW_OWNER_PID::dwLocalPort`); the high bits are undefined.
pub fn port(dword: u32) -> u16 {
    u16::from_be((dword & 0xffff) as u16)
}

/// The socket of a row, or `None` for a TCP state number porthog does not know. Pid 0 (the
/// owner of every TIME_WAIT row) is no owner.
pub fn socket(row: &Row) -> Option<Socket> {
    let (state, remote) = match row.protocol {
        Protocol::Tcp => (import::windows_tcp_state(u64::from(row.state))?, row.remote),
        // An unconnected UDP endpoint, as netstat prints `*:*`.
        Protocol::Udp => (crate::model::State::Close, (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
    };
    let mut s = Socket::new(row.protocol, state, row.local, remote);
    s.pid = NonZeroU32::new(row.pid);
    Some(s)
}

/// What porthog could learn about one owning process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// Full image path (`QueryFullProcessImageNameW`), when the process could be opened.
    pub path: Option<String>,
    /// Image name from a toolhelp snapshot, when the path could not be read.
    pub image: Option<String>,
    /// `DOMAIN\user`, where readable.
    pub user: Option<String>,
    /// Services this process hosts (svchost), as `netstat -b` shows them.
    pub services: Vec<String>,
}

impl Owner {
    /// Neither its image path nor its toolhelp image name could be read (System is named by
    /// its pid).
    pub fn is_unnamed(&self) -> bool {
        self.path.is_none() && self.image.is_none() && self.pid != SYSTEM_PID
    }

    /// The process as a report shows it: the image name, the path as its command line, and
    /// the services it hosts as its unit (the Windows counterpart of a systemd unit).
    pub fn process(&self) -> Process {
        let from_path = self.path.as_deref().map(|p| p.rsplit(['\\', '/']).next().unwrap_or(p));
        let name = match (from_path, self.image.as_deref()) {
            (Some(n), _) | (None, Some(n)) if !n.is_empty() => n.to_owned(),
            _ if self.pid == SYSTEM_PID => "System".to_owned(),
            _ => "?".to_owned(),
        };
        Process {
            pid: self.pid,
            name,
            cmdline: self.path.clone().unwrap_or_default(),
            uid: None,
            user: self.user.clone(),
            placement: Placement {
                unit: (!self.services.is_empty()).then(|| self.services.join(", ")),
                ..Placement::default()
            },
        }
    }
}

/// The snapshot of the rows, their owners and the settings; rows with a state number porthog
/// does not know are left out and counted in a gap.
pub fn snapshot(rows: &[Row], owners: &[Owner], settings: Settings, gaps: Vec<Gap>) -> Snapshot {
    let mut snap = Snapshot::new(Os::Windows, SOURCE);
    snap.settings = settings;
    snap.gaps = gaps;
    snap.sockets.reserve(rows.len());
    let mut unknown = 0u64;
    for row in rows {
        match socket(row) {
            Some(s) => snap.sockets.push(s),
            None => unknown += 1,
        }
    }
    if unknown > 0 {
        snap.gaps.push(Gap {
            kind: GapKind::Incomplete,
            count: Some(unknown),
            message: format!(
                "{} had a TCP state number porthog does not know and {} left out",
                plural(unknown, "table row"),
                if unknown == 1 { "was" } else { "were" }
            ),
            advice: Some("report the Windows version at porthog's issue tracker".to_owned()),
        });
    }
    name_processes(&mut snap, owners);
    snap
}

/// The pids that own sockets in `snap`, sorted: whose owners the collector looks up.
pub fn owner_pids(snap: &Snapshot) -> Vec<u32> {
    let mut pids: Vec<u32> =
        snap.sockets.iter().filter_map(|s| s.pid.map(NonZeroU32::get)).collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// `snap`'s processes from `owners` (a pid without one gets a bare entry).
pub fn name_processes(snap: &mut Snapshot, owners: &[Owner]) {
    let by_pid: HashMap<u32, &Owner> = owners.iter().map(|o| (o.pid, o)).collect();
    snap.processes = owner_pids(snap)
        .into_iter()
        .map(|pid| match by_pid.get(&pid) {
            Some(o) => o.process(),
            None => Owner { pid, ..Owner::default() }.process(),
        })
        .collect();
}

/// The gap for owners porthog could not name (not elevated, processes of other users and
/// services cannot be opened), counting their sockets in `snap`; None when all were named.
pub fn unnamed_owners_gap(snap: &Snapshot, owners: &[Owner], elevated: bool) -> Option<Gap> {
    let unnamed: HashSet<u32> = owners.iter().filter(|o| o.is_unnamed()).map(|o| o.pid).collect();
    if unnamed.is_empty() {
        return None;
    }
    let processes = unnamed.len() as u64;
    let sockets =
        snap.sockets.iter().filter(|s| s.pid.is_some_and(|p| unnamed.contains(&p.get()))).count()
            as u64;
    Some(Gap {
        kind: GapKind::Unattributed,
        count: Some(sockets),
        message: format!(
            "{} of {} could not be named (image path unreadable{}): their sockets are shown by pid",
            plural(sockets, "socket"),
            plural(processes, "process"),
            if elevated { "" } else { "; porthog is not running elevated" }
        ),
        advice: (!elevated)
            .then(|| "run porthog.exe from an elevated prompt (Run as administrator)".to_owned()),
    })
}

/// The gap for owners whose user porthog could not read (their token cannot be opened: other
/// users' processes and services, when not elevated), counting their sockets in `snap` as
/// every `Unattributed` gap counts sockets; None when every owner's user was read.
pub fn unread_users_gap(snap: &Snapshot, owners: &[Owner], elevated: bool) -> Option<Gap> {
    let unread: HashSet<u32> = owners.iter().filter(|o| o.user.is_none()).map(|o| o.pid).collect();
    if unread.is_empty() {
        return None;
    }
    let sockets =
        snap.sockets.iter().filter(|s| s.pid.is_some_and(|p| unread.contains(&p.get()))).count()
            as u64;
    Some(Gap {
        kind: GapKind::Unattributed,
        count: Some(sockets),
        message: format!(
            "the user owning {} could not be read ({} of {}: process token not readable{})",
            plural(sockets, "socket"),
            unread.len(),
            plural(owners.len() as u64, "owning process"),
            if elevated { "" } else { "; porthog is not running elevated" }
        ),
        advice: (!elevated)
            .then(|| "run porthog.exe from an elevated prompt (Run as administrator)".to_owned()),
    })
}

/// How long `watch` and `record` keep the dynamic ranges and exclusions read from netsh
/// before running it again: they change only when an admin or a service (Hyper-V, WinNAT,
/// Docker) changes them, and eight netsh runs per sample would cost more than the sample.
pub const NETSH_REFRESH: Duration = Duration::from_secs(300);

/// A value read once, then again only when it is older than `every` (the settings netsh gave
/// a sampler), or at the next call when the read failed: only a good read is kept for
/// `every`, so one netsh that failed does not leave a sampler on assumed settings for
/// minutes. The clock is the caller's: `now` is passed in.
#[derive(Debug, Clone)]
pub struct Refreshed<T> {
    every: Duration,
    /// The value, when it was read, and whether that read failed.
    value: Option<(T, Instant, bool)>,
}

impl<T> Refreshed<T> {
    pub fn new(every: Duration) -> Refreshed<T> {
        Refreshed { every, value: None }
    }

    /// The value, read by `read` on the first call, after a read that `failed`, and when the
    /// last read is `every` old.
    pub fn get(
        &mut self,
        now: Instant,
        read: impl FnOnce() -> T,
        failed: impl FnOnce(&T) -> bool,
    ) -> &T {
        let stale = self.value.as_ref().is_none_or(|(_, at, failed)| {
            *failed || now.saturating_duration_since(*at) >= self.every
        });
        if stale {
            self.value = None;
        }
        let (value, _, _) = self.value.get_or_insert_with(|| {
            let value = read();
            let failed = failed(&value);
            (value, now, failed)
        });
        value
    }
}

/// The settings netsh's outputs gave, and a `Setting` gap for each that could not be read.
pub type NetshSettings = (Settings, Vec<Gap>);

/// Whether a netsh read failed (left a setting unread): a sampler reads it again at the next
/// sample rather than keep it for `NETSH_REFRESH`.
pub fn netsh_failed((_, gaps): &NetshSettings) -> bool {
    !gaps.is_empty()
}

/// What one `netsh` command printed, or why it could not run.
#[derive(Debug, Clone)]
pub struct NetshOutput {
    /// The command, for messages (`netsh int ipv4 show dynamicport tcp`).
    pub command: String,
    /// The format its output has.
    pub format: Format,
    pub output: Result<Vec<u8>, String>,
}

/// The commands whose outputs [`settings`] reads, with the format of each: dynamic range and
/// exclusions, TCP and UDP, IPv4 and then IPv6.
pub fn netsh_commands() -> Vec<(Vec<&'static str>, Format)> {
    let mut out = Vec::new();
    for family in ["ipv4", "ipv6"] {
        for proto in ["tcp", "udp"] {
            out.push((vec!["int", family, "show", "dynamicport", proto], Format::NetshDynamicport));
        }
        for proto in ["protocol=tcp", "protocol=udp"] {
            out.push((
                vec!["int", family, "show", "excludedportrange", proto],
                Format::NetshExcluded,
            ));
        }
    }
    out
}

/// The dynamic ranges and exclusions from netsh's outputs, read by the offline netsh importers
/// (any language). A command that failed or printed nothing porthog recognises (wine's netsh
/// prints nothing) is a gap: the default range is assumed, or the exclusions are unknown.
pub fn settings(outputs: &[NetshOutput]) -> NetshSettings {
    let mut settings = Settings::default();
    let mut failed: Vec<(Format, &str, String)> = Vec::new();
    for out in outputs {
        let why = match &out.output {
            Err(e) => Some(e.clone()),
            Ok(bytes) => {
                let opts = ImportOptions { format: Some(out.format), ..ImportOptions::default() };
                match import::import(&[Input { name: &out.command, bytes }], &opts) {
                    Ok(Imported::Snapshot { snapshot, .. }) => {
                        merge(&mut settings, &snapshot.settings);
                        None
                    }
                    Ok(Imported::Report(_)) => Some("printed a porthog report".to_owned()),
                    Err(_) if bytes.iter().all(u8::is_ascii_whitespace) => {
                        Some("printed nothing".to_owned())
                    }
                    Err(e) => Some(format!("printed what porthog cannot read: {e}")),
                }
            }
        };
        if let Some(why) = why {
            failed.push((out.format, out.command.as_str(), why));
        }
    }
    let mut gaps = Vec::new();
    // What went wrong with the commands behind one setting (its format, `tcp` or `udp`).
    let why = |format: Format, proto: &str| {
        let these: Vec<String> = failed
            .iter()
            .filter(|(f, command, _)| *f == format && command.ends_with(proto))
            .map(|(_, command, why)| format!("`{command}` {why}"))
            .collect();
        if these.is_empty() { String::new() } else { format!(" ({})", these.join("; ")) }
    };
    let setting_gap = |message: String, advice: &str| Gap {
        kind: GapKind::Setting,
        count: None,
        message,
        advice: Some(advice.to_owned()),
    };
    for (range, proto) in [(settings.tcp_range, "TCP"), (settings.udp_range, "UDP")] {
        if range.is_none() {
            let d = PortRange::WINDOWS_DEFAULT;
            gaps.push(setting_gap(
                format!(
                    "the {proto} dynamic port range could not be read{}: assumed the default range {}-{} ({} ports)",
                    why(Format::NetshDynamicport, &proto.to_ascii_lowercase()),
                    d.start,
                    d.end,
                    d.len()
                ),
                &format!(
                    "check `netsh int ipv4 show dynamicport {}` by hand",
                    proto.to_ascii_lowercase()
                ),
            ));
        }
    }
    for (exclusions, proto) in [(&settings.tcp_reserved, "tcp"), (&settings.udp_reserved, "udp")] {
        if exclusions.is_none() {
            gaps.push(setting_gap(
                format!(
                    "the {} excluded port ranges could not be read{}: none assumed, the pool may be smaller than shown (Hyper-V, WinNAT, WSL and Docker reserve blocks)",
                    proto.to_ascii_uppercase(),
                    why(Format::NetshExcluded, proto)
                ),
                &format!("check `netsh int ipv4 show excludedportrange protocol={proto}` by hand"),
            ));
        }
    }
    (settings, gaps)
}

/// IPv4's range wins over IPv6's (they share one port space); exclusions of both add up, as
/// the netsh importer merges them.
fn merge(into: &mut Settings, from: &Settings) {
    into.tcp_range = into.tcp_range.or(from.tcp_range);
    into.udp_range = into.udp_range.or(from.udp_range);
    for (slot, got) in
        [(&mut into.tcp_reserved, &from.tcp_reserved), (&mut into.udp_reserved, &from.udp_reserved)]
    {
        if let Some(set) = got {
            netsh::add_exclusions(slot, set);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::State;
    use crate::{AnalyzeOptions, analyze};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn owners_name_processes_and_the_unnamed_are_a_gap() {
        let row = |pid, port| Row {
            protocol: Protocol::Tcp,
            state: 5,
            local: (ip("10.0.0.7"), port),
            remote: (ip("10.0.0.5"), 443),
            pid,
        };
        let rows = [row(9, 50000), row(9, 50001), row(4, 50002), row(12, 50003), row(0, 50004)];
        let mut snap = snapshot(&rows, &[], Settings::default(), Vec::new());
        assert_eq!(owner_pids(&snap), vec![4, 9, 12]);
        let owners = [
            Owner { pid: 9, ..Owner::default() },
            Owner { pid: 4, ..Owner::default() },
            Owner { pid: 12, image: Some("app.exe".into()), ..Owner::default() },
        ];
        name_processes(&mut snap, &owners);
        let names: Vec<_> = snap.processes.iter().map(|p| (p.pid, p.name.as_str())).collect();
        assert_eq!(names, [(4, "System"), (9, "?"), (12, "app.exe")]);
        let gap = unnamed_owners_gap(&snap, &owners, false).unwrap();
        assert_eq!(gap.count, Some(2), "pid 9's two sockets: {gap:?}");
        assert!(gap.message.contains("1 process"), "{}", gap.message);
        assert!(gap.advice.is_some());
        assert!(unnamed_owners_gap(&snap, &owners[1..], true).is_none());
    }

    #[test]
    fn unread_users_are_a_gap() {
        let owner = |pid, user: Option<&str>| Owner {
            pid,
            user: user.map(str::to_owned),
            ..Owner::default()
        };
        let owners = [owner(9, Some(r"HOST\ann")), owner(12, None), owner(4, None)];
        // pid 12 holds three sockets, pid 4 none, pid 9 (user read) one.
        let row = |pid, port| Row {
            protocol: Protocol::Tcp,
            state: 5,
            local: (ip("10.0.0.7"), port),
            remote: (ip("10.0.0.5"), 443),
            pid,
        };
        let rows = [row(12, 50000), row(12, 50001), row(12, 50002), row(9, 50003)];
        let snap = snapshot(&rows, &[], Settings::default(), Vec::new());
        let gap = unread_users_gap(&snap, &owners, false).unwrap();
        assert_eq!(gap.count, Some(3), "pid 12's three sockets, not two processes: {gap:?}");
        assert!(
            gap.message.starts_with(
                "the user owning 3 sockets could not be read (2 of 3 owning processes"
            ),
            "{}",
            gap.message
        );
        assert!(gap.message.contains("not running elevated") && gap.advice.is_some());
        assert!(unread_users_gap(&snap, &owners[..1], false).is_none());
        let elevated = unread_users_gap(&snap, &owners, true).unwrap();
        assert!(elevated.advice.is_none() && !elevated.message.contains("elevated"));
    }

    #[test]
    fn netsh_is_read_once_then_every_refresh() {
        let start = Instant::now();
        let mut reads = 0;
        let mut cache = Refreshed::new(NETSH_REFRESH);
        let good = |_: &()| false;
        for s in [0, 1, 2, 299] {
            cache.get(start + Duration::from_secs(s), || reads += 1, good);
        }
        assert_eq!(reads, 1, "one read for the first five minutes");
        cache.get(start + Duration::from_secs(300), || reads += 1, good);
        cache.get(start + Duration::from_secs(301), || reads += 1, good);
        assert_eq!(reads, 2);
        // A clock that went back (now before the read) does not read again.
        cache.get(start, || reads += 1, good);
        assert_eq!(reads, 2);
    }

    /// A failed read (netsh's settings with a gap) is read again at the next sample, not kept
    /// for five minutes; the first good one is kept.
    #[test]
    fn a_failed_netsh_read_is_retried_at_the_next_sample() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let failed = netsh_failed;
        let failing: Vec<NetshOutput> = netsh_commands()
            .into_iter()
            .map(|(args, format)| NetshOutput {
                command: format!("netsh {}", args.join(" ")),
                format,
                output: Err("exited with exit code: 1".into()),
            })
            .collect();
        let good =
            (Settings { tcp_range: PortRange::new(10000, 19999), ..Settings::default() }, vec![]);
        let mut cache = Refreshed::new(NETSH_REFRESH);
        let mut reads = 0;
        let first = cache.get(
            at(0),
            || {
                reads += 1;
                settings(&failing)
            },
            failed,
        );
        assert!(!first.1.is_empty() && first.0.tcp_range.is_none());
        let second = cache.get(
            at(1),
            || {
                reads += 1;
                settings(&failing)
            },
            failed,
        );
        assert_eq!((reads, second.1.len()), (2, 4), "read again one sample later");
        let third = cache.get(
            at(2),
            || {
                reads += 1;
                good.clone()
            },
            failed,
        );
        assert_eq!((reads, third.0.tcp_range), (3, PortRange::new(10000, 19999)));
        // The good read is kept for the refresh, even though the next read would fail.
        for s in [3, 100, 301] {
            let kept = cache.get(
                at(s),
                || {
                    reads += 1;
                    settings(&failing)
                },
                failed,
            );
            assert!(kept.1.is_empty());
        }
        assert_eq!(reads, 3);
        let stale = cache.get(
            at(302),
            || {
                reads += 1;
                settings(&failing)
            },
            failed,
        );
        assert_eq!((reads, stale.1.len()), (4, 4));
    }

    #[test]
    fn ports_are_network_order_in_the_low_bits() {
        assert_eq!(port(0x0000_50c3), 50000);
        assert_eq!(port(0xdead_50c3), 50000);
        assert_eq!(port(0x0000_5000), 80);
    }

    #[test]
    fn states_pids_and_udp() {
        let tw = Row {
            protocol: Protocol::Tcp,
            state: 11,
            local: (ip("10.0.0.7"), 50000),
            remote: (ip("10.0.0.5"), 443),
            pid: 0,
        };
        let s = socket(&tw).unwrap();
        assert_eq!((s.state, s.pid), (State::TimeWait, None));
        assert_eq!(socket(&Row { state: 100, ..tw }).unwrap().state, State::Bound);
        assert_eq!(socket(&Row { state: 77, ..tw }), None);
        let udp = socket(&Row { protocol: Protocol::Udp, state: 0, pid: 9, ..tw }).unwrap();
        assert_eq!(
            (udp.state, udp.remote_port, udp.pid.map(NonZeroU32::get)),
            (State::Close, 0, Some(9))
        );
    }

    /// The live rows and `netstat -ano` of the same sockets give the same report.
    #[test]
    fn live_rows_and_netstat_give_one_report() {
        let netstat = "\r\nActive Connections\r\n\r\n  Proto  Local Address          Foreign Address        State           PID\r\n\
            \x20 TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       912\r\n\
            \x20 TCP    10.0.0.7:50000         10.0.0.5:443           ESTABLISHED     4321\r\n\
            \x20 TCP    10.0.0.7:50001         10.0.0.5:443           TIME_WAIT       0\r\n\
            \x20 TCP    [::1]:50002            [::1]:8080             CLOSE_WAIT      4321\r\n\
            \x20 UDP    0.0.0.0:50003          *:*                                    4\r\n";
        let offline = crate::import::testing::snapshot_of("n.txt", netstat);
        let rows = [
            (2, ("0.0.0.0", 135), ("0.0.0.0", 0), 912),
            (5, ("10.0.0.7", 50000), ("10.0.0.5", 443), 4321),
            (11, ("10.0.0.7", 50001), ("10.0.0.5", 443), 0),
            (8, ("::1", 50002), ("::1", 8080), 4321),
        ]
        .map(|(state, l, r, pid)| Row {
            protocol: Protocol::Tcp,
            state,
            local: (ip(l.0), l.1),
            remote: (ip(r.0), r.1),
            pid,
        });
        let mut rows = rows.to_vec();
        rows.push(Row {
            protocol: Protocol::Udp,
            state: 0,
            local: (ip("0.0.0.0"), 50003),
            remote: (ip("0.0.0.0"), 0),
            pid: 4,
        });
        let live = snapshot(&rows, &[], offline.settings.clone(), Vec::new());
        assert_eq!(live.sockets, offline.sockets);
        let (a, b) = (
            analyze(&live, &AnalyzeOptions::default()),
            analyze(&offline, &AnalyzeOptions::default()),
        );
        assert_eq!(a.pools, b.pools);
        assert_eq!(a.totals, b.totals);
        assert_eq!(a.verdict, b.verdict);
        assert_eq!(live.process(4).unwrap().name, "System");
    }

    #[test]
    fn owners_show_image_path_and_services() {
        let o = Owner {
            pid: 1200,
            path: Some(r"C:\Windows\System32\svchost.exe".into()),
            services: vec!["Dnscache".into(), "RpcSs".into()],
            user: Some(r"NT AUTHORITY\NETWORK SERVICE".into()),
            ..Owner::default()
        };
        let p = o.process();
        assert_eq!(
            (p.name.as_str(), p.placement.unit.as_deref()),
            ("svchost.exe", Some("Dnscache, RpcSs"))
        );
        let p = Owner { pid: 77, image: Some("app.exe".into()), ..Owner::default() }.process();
        assert_eq!((p.name.as_str(), p.cmdline.as_str()), ("app.exe", ""));
        assert_eq!(Owner { pid: 78, ..Owner::default() }.process().name, "?");
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn netsh_outputs_in_any_language_give_the_settings() {
        let outputs: Vec<NetshOutput> = [
            ("netsh_dynamicport-tcp_de-DE_cp850.txt", Format::NetshDynamicport),
            ("netsh_excludedportrange-tcp_ja-JP_cp932.txt", Format::NetshExcluded),
        ]
        .into_iter()
        .map(|(f, format)| NetshOutput { command: f.into(), format, output: Ok(fixture(f)) })
        .collect();
        let (s, gaps) = settings(&outputs);
        assert!(s.tcp_range.is_some());
        assert!(s.tcp_reserved.as_ref().is_some_and(|r| !r.is_empty()));
        // UDP was not asked: its range and exclusions are gaps.
        assert_eq!(gaps.len(), 2, "{gaps:?}");
        assert!(gaps.iter().all(|g| g.message.contains("UDP")), "{gaps:?}");
    }

    #[test]
    fn silent_or_failing_netsh_is_a_gap_not_an_error() {
        let outputs: Vec<NetshOutput> = netsh_commands()
            .into_iter()
            .enumerate()
            .map(|(i, (args, format))| NetshOutput {
                command: format!("netsh {}", args.join(" ")),
                format,
                output: if i == 0 {
                    Err("not found".into())
                } else if i == 1 {
                    Ok(b"garbage\n".to_vec())
                } else {
                    Ok(Vec::new())
                },
            })
            .collect();
        let (s, gaps) = settings(&outputs);
        assert_eq!(s, Settings::default());
        assert_eq!(gaps.len(), 4);
        assert!(
            gaps[0].message.contains("assumed the default range 49152-65535"),
            "{}",
            gaps[0].message
        );
        assert!(
            gaps[0].message.contains("`netsh int ipv4 show dynamicport tcp` not found"),
            "{}",
            gaps[0].message
        );
        assert!(
            gaps[0].message.contains("`netsh int ipv6 show dynamicport tcp` printed nothing"),
            "{}",
            gaps[0].message
        );
        assert!(!gaps[0].message.contains("udp"), "{}", gaps[0].message);
        assert!(
            gaps[1].message.contains("dynamicport udp` printed what porthog cannot read"),
            "{}",
            gaps[1].message
        );
        assert!(gaps.iter().all(|g| g.kind == GapKind::Setting));
    }
}
