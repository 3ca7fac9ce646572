//! Who the socket owners are: name, command line, user and cgroup placement of each pid that owns
//! at least one socket of the snapshot (never of every process on the host). A process that exits
//! while being read keeps what was read and is counted, never fatal. Parsing of the cgroup text
//! belongs to porthog-core; this file only reads /proc.

use std::collections::HashMap;
use std::io;

use nix::unistd::{Uid, User};
use porthog_core::{Placement, Process, cgroup};
use rayon::prelude::*;
use rustix::io::Errno;

/// The processes of `pids` (sorted, without duplicates), sorted by pid, and how many of them
/// exited while they were being read.
pub fn read(pids: &[u32]) -> (Vec<Process>, u64) {
    let read: Vec<(Process, bool)> = pids.par_iter().map(|&pid| read_one(pid)).collect();
    let gone = read.iter().filter(|(_, gone)| *gone).count() as u64;
    let mut processes: Vec<Process> = read.into_iter().map(|(p, _)| p).collect();

    // getpwuid_r may read /etc/passwd or ask NSS: once per user, not per process.
    let mut users: HashMap<u32, Option<String>> = HashMap::new();
    for p in &mut processes {
        if let Some(uid) = p.uid {
            p.user = users
                .entry(uid)
                .or_insert_with(|| {
                    User::from_uid(Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
                })
                .clone();
        }
    }
    (processes, gone)
}

/// One process; `true` when it vanished before everything could be read.
fn read_one(pid: u32) -> (Process, bool) {
    let mut gone = false;
    let mut file = |name: &str| match std::fs::read(format!("/proc/{pid}/{name}")) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            gone |= vanished(&e);
            None
        }
    };
    let name = file("comm").map(|b| comm_text(&b));
    let cmdline = file("cmdline").map(|b| command_line(&b)).unwrap_or_default();
    let uid = file("status").and_then(|b| real_uid(&String::from_utf8_lossy(&b)));
    let placement = file("cgroup").map(|b| placement_text(&b)).unwrap_or_default();
    let process = Process {
        pid,
        name: name.unwrap_or_else(|| "?".into()),
        cmdline,
        uid,
        user: None,
        placement,
    };
    (process, gone)
}

/// The process name (`/proc/PID/comm`); None if it is gone or unreadable.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/comm")).ok().map(|b| comm_text(&b))
}

/// Where the process runs, from `/proc/PID/cgroup`; None if it is gone or unreadable.
pub fn placement(pid: u32) -> Option<Placement> {
    std::fs::read(format!("/proc/{pid}/cgroup")).ok().map(|b| placement_text(&b))
}

fn comm_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end_matches('\n').to_string()
}

fn placement_text(bytes: &[u8]) -> Placement {
    cgroup::parse(&String::from_utf8_lossy(bytes))
}

/// ENOENT when /proc/PID is gone; ESRCH when it is still there but the task is dead.
fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || Errno::from_io_error(e) == Some(Errno::SRCH)
}

/// `/proc/PID/cmdline` separates arguments with NUL: join them with spaces.
fn command_line(bytes: &[u8]) -> String {
    let text: Vec<u8> = bytes.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
    String::from_utf8_lossy(&text).trim().to_string()
}

/// The real uid: the first of the four numbers of the `Uid:` line of /proc/PID/status.
fn real_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_cmdline() {
        let status = "Name:\tnginx\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t33\t33\t33\t33\nGid:\t33\t33\t33\t33\n";
        assert_eq!(real_uid(status), Some(33));
        assert_eq!(real_uid("Name:\tx\n"), None);
        assert_eq!(command_line(b"nginx: worker process\0\0"), "nginx: worker process");
        assert_eq!(command_line(b"python3\0-m\0http.server\0"), "python3 -m http.server");
        assert_eq!(command_line(b""), "");
    }

    #[test]
    fn reads_itself_and_counts_the_dead() {
        let me = std::process::id();
        let (processes, gone) = read(&[me, u32::MAX - 1]);
        assert_eq!(gone, 1);
        assert_eq!(processes[0].pid, me);
        assert!(!processes[0].name.is_empty() && processes[0].name != "?");
        assert_eq!(processes[0].uid, Some(rustix::process::getuid().as_raw()));
        assert!(processes[0].user.is_some());
        assert_eq!(processes[1].name, "?");
    }
}
