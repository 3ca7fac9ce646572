//! The live Windows collector (issue 10): the socket tables of iphlpapi, their owners, the
//! dynamic ranges and exclusions from `netsh`, and Tcpip events from the System log. Makes the
//! calls only; `porthog_core::win_table` turns what they gave into the same `Snapshot` the
//! netstat/netsh importers make, so live and offline reports of one machine agree.

mod events;
mod owners;
mod tables;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;
use porthog_core::event_log::EventCursor;
use porthog_core::import::Evidence;
use porthog_core::win_table::{self, NetshOutput, NetshSettings, Refreshed};
use porthog_core::{Gap, Settings, Snapshot};

use super::CollectOptions;

pub fn snapshot(opts: &CollectOptions) -> Result<Snapshot> {
    if opts.netns.is_some() {
        anyhow::bail!("--netns names a Linux network namespace; Windows has none");
    }
    let rows = tables::rows()?;
    let (settings, gaps) = netsh_settings();
    let mut snapshot = win_table::snapshot(&rows, &[], settings, gaps);
    let owners = owners::owners(&win_table::owner_pids(&snapshot));
    win_table::name_processes(&mut snapshot, &owners);
    let elevated = owners::elevated();
    snapshot.gaps.extend(win_table::unnamed_owners_gap(&snapshot, &owners, elevated));
    snapshot.gaps.extend(win_table::unread_users_gap(&snapshot, &owners, elevated));
    Ok(snapshot)
}

/// Tcpip events of the System log of the last `since`.
pub fn evidence(since: Duration) -> (Vec<Evidence>, Vec<Gap>) {
    events::evidence(since)
}

/// Tcpip events logged since `cursor`'s last poll.
pub fn new_events(cursor: &mut EventCursor, first: Duration) -> (Vec<Evidence>, Vec<Gap>) {
    events::poll(cursor, first)
}

/// The settings read from netsh, kept for `win_table::NETSH_REFRESH`: a check runs netsh
/// once, `watch` and `record` once at start and then every few minutes, not every sample. A
/// read that left a setting unread (a gap) is not kept: the next sample runs netsh again.
static NETSH: Mutex<Option<Refreshed<NetshSettings>>> = Mutex::new(None);

/// The ranges and exclusions from netsh's latest good outputs (read again when stale or
/// when the latest read failed).
fn netsh_settings() -> (Settings, Vec<Gap>) {
    // A poisoned lock means a panic mid-read elsewhere: the kept settings are still whole.
    let mut guard = NETSH.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cache = guard.get_or_insert_with(|| Refreshed::new(win_table::NETSH_REFRESH));
    let read = || win_table::settings(&netsh());
    cache.get(Instant::now(), read, win_table::netsh_failed).clone()
}

/// Runs each netsh command porthog reads; a command that cannot start is an `Err` for the gap.
fn netsh() -> Vec<NetshOutput> {
    win_table::netsh_commands()
        .into_iter()
        .map(|(args, format)| {
            let command = format!("netsh {}", args.join(" "));
            let output = match Command::new("netsh").args(&args).output() {
                Ok(out) if out.status.success() => Ok(out.stdout),
                Ok(out) => Err(format!("exited with {}", out.status)),
                Err(e) => Err(format!("could not run: {e}")),
            };
            NetshOutput { command, format, output }
        })
        .collect()
}

/// `s` as a NUL-terminated UTF-16 string, for a W function.
fn to_wide_nul(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// The UTF-16 text of `buf` up to its first NUL (all of it without one).
fn from_wide_nul(buf: &[u16]) -> String {
    let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf16_lossy(&buf[..end])
}
