//! The live Linux collector: enters the namespace, dumps the sockets over sock_diag while walking
//! /proc/*/fd for their owners, joins the two, reads the owners and the port settings, and
//! records every gap. It orchestrates only: each step lives in its own file.

pub(crate) mod netns;
mod bpf;
mod owners;
mod process;
mod settings;
mod sock_diag;
mod sockets;

use std::num::NonZeroU32;

use anyhow::anyhow;
use porthog_core::{Gap, GapKind, Os, Snapshot, Socket};

use super::CollectOptions;
use owners::{Owners, ProcessList};
use sock_diag::SockDiag;

pub fn snapshot(opts: &CollectOptions) -> anyhow::Result<Snapshot> {
    raise_nofile_limit();
    // First, before any thread or socket exists: both inherit this thread's namespace.
    let _entered = opts.netns.as_ref().map(netns::enter).transpose()?;
    let mut snapshot = Snapshot::new(Os::Linux, "sock_diag");
    snapshot.netns = opts.netns.as_ref().map(|t| t.label());

    let diag = SockDiag::open();
    let netns_inode = netns::current_inode()?;
    snapshot.settings = settings::read(&mut snapshot.gaps);
    // The dump runs on a thread started from here, so a /proc/thread-self/net fallback reads
    // the inspected namespace. The fd walk meanwhile uses rayon's pool; /proc/PID/fd does not
    // depend on the network namespace, whichever namespace the pool's threads were born in.
    let (dump, owners) = std::thread::scope(|scope| {
        let dump = scope.spawn(move || {
            let mut sockets = Vec::new();
            let mut gaps = Vec::new();
            sockets::sockets(diag, &mut sockets, &mut gaps).map(|source| (source, sockets, gaps))
        });
        let owners = ProcessList::read(netns_inode).map(|list| {
            let owners = list.scan_inside();
            (list, owners)
        });
        (dump.join(), owners)
    });
    let (source, sockets, gaps) = dump.map_err(|_| anyhow!("the sock_diag thread panicked"))??;
    let (list, mut owners) = owners?;
    snapshot.source = source.to_string();
    snapshot.sockets = sockets;
    snapshot.gaps.extend(gaps);

    // Pass 2 only for sockets no process inside the namespace holds (a socket created before its
    // process moved, or passed over a unix socket); an owner inside always wins, so the answer
    // does not depend on unrelated sockets.
    let mut pids = attribute(&mut snapshot.sockets, &owners);
    if snapshot.sockets.iter().any(|s| s.inode != 0 && s.pid.is_none()) {
        let outside = list.scan_outside();
        pids.extend(attribute(&mut snapshot.sockets, &outside));
        pids.sort_unstable();
        pids.dedup();
        owners.merge_counts(&outside);
    }
    let (processes, exited) = process::read(&pids);
    snapshot.processes = processes;
    attribution_gaps(&snapshot.sockets, &owners, exited, &mut snapshot.gaps);
    if snapshot.source == "sock_diag" && !kernel_shows_bound_inactive() {
        snapshot.gaps.push(Gap {
            kind: GapKind::Invisible,
            count: None,
            message: "bound-but-unconnected TCP sockets are not visible: sock_diag dumps them \
                      (BOUND_INACTIVE) only from Linux 6.10"
                .into(),
            advice: Some("run on Linux 6.10 or later to see bind() leaks".into()),
        });
    }
    Ok(snapshot)
}

/// The fd walk holds up to `TABLES_AT_ONCE` fd directories open; a soft limit of 1024 would be
/// tight beside the netlink socket and rayon's threads. Best effort: the hard limit is the cap.
fn raise_nofile_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let _ = setrlimit(Resource::Nofile, Rlimit { current: lim.maximum, maximum: lim.maximum });
    }
}

/// Sets `Socket::pid` of sockets that have none from the fd walk; returns the pids it used,
/// sorted and distinct.
fn attribute(sockets: &mut [Socket], owners: &Owners) -> Vec<u32> {
    let mut pids = Vec::new();
    for s in sockets.iter_mut().filter(|s| s.inode != 0 && s.pid.is_none()) {
        s.pid = owners.pid(s.inode).and_then(NonZeroU32::new);
        pids.extend(s.pid.map(NonZeroU32::get));
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn attribution_gaps(sockets: &[Socket], owners: &Owners, exited: u64, gaps: &mut Vec<Gap>) {
    // TIME_WAIT and request sockets have inode 0: no process owns them, which is no gap.
    let n = sockets.iter().filter(|s| s.inode != 0 && s.pid.is_none()).count() as u64;
    if n > 0 && owners.denied > 0 {
        gaps.push(Gap {
            kind: GapKind::Unattributed,
            count: Some(n),
            message: format!(
                "{n} sockets unattributed: permission denied reading /proc/PID/fd of {} processes",
                owners.denied
            ),
            advice: Some("run as root (or with CAP_SYS_PTRACE)".into()),
        });
    } else if n > 0 {
        gaps.push(Gap {
            kind: GapKind::Unattributed,
            count: Some(n),
            message: format!(
                "{n} sockets belong to no process's fd table: kernel sockets, or sockets of \
                 processes that closed them or exited during the scan"
            ),
            advice: None,
        });
    }
    if owners.unread > 0 {
        gaps.push(Gap {
            kind: GapKind::Unattributed,
            count: Some(owners.unread),
            message: format!(
                "{} processes' fd tables were not read: porthog ran out of file descriptors (EMFILE/ENFILE)",
                owners.unread
            ),
            advice: Some("raise porthog's open-file limit (ulimit -n) or the system's (fs.file-max)".into()),
        });
    }
    if owners.gone > 0 {
        gaps.push(Gap {
            kind: GapKind::ProcessGone,
            count: Some(owners.gone),
            message: format!(
                "{} processes exited before their fd tables could be read; their sockets, if \
                 still open, are unattributed",
                owners.gone
            ),
            advice: None,
        });
    }
    if exited > 0 {
        gaps.push(Gap {
            kind: GapKind::ProcessGone,
            count: Some(exited),
            message: format!(
                "{exited} socket owners exited while being read: their name, command line, user \
                 or cgroup may be missing"
            ),
            advice: None,
        });
    }
}

/// sock_diag dumps TCP_BOUND_INACTIVE sockets from Linux 6.10 (`inet_diag_dump_icsk`).
fn kernel_shows_bound_inactive() -> bool {
    let uname = rustix::system::uname();
    kernel_at_least(&uname.release().to_string_lossy(), (6, 10))
}

/// Compares the `major.minor` prefix of a release string like "6.18.44-fc-v782".
fn kernel_at_least(release: &str, wanted: (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= wanted,
        // An unreadable release: assume the old behaviour, which at worst adds a needless gap.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_its_own_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let snapshot = snapshot(&CollectOptions::default()).unwrap();
        assert_eq!(snapshot.source, "sock_diag");
        assert_eq!(snapshot.netns, None);
        let mine = snapshot.sockets.iter().find(|s| s.local_port == port).unwrap();
        let me = std::process::id();
        assert_eq!(mine.pid.map(NonZeroU32::get), Some(me));
        assert_eq!(snapshot.process(me).map(|p| p.pid), Some(me));
        assert!(snapshot.settings.tcp_range.is_some());
        assert!(snapshot.processes.windows(2).all(|w| w[0].pid < w[1].pid));
    }

    #[test]
    fn kernel_versions() {
        assert!(kernel_at_least("6.18.44-fc-v782", (6, 10)));
        assert!(kernel_at_least("6.10.0", (6, 10)));
        assert!(!kernel_at_least("6.9.12-arch1-1", (6, 10)));
        assert!(!kernel_at_least("5.15.0-105-generic", (6, 10)));
        assert!(kernel_at_least("7.0", (6, 10)));
        assert!(!kernel_at_least("garbage", (6, 10)));
    }
}
