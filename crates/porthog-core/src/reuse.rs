//! When a `--all-netns` collection may re-use a namespace's previous TCP and UDP result
//! instead of dumping its sockets again (issue 9). Every dump walks the host-wide shared socket
//! hashes, so an unchanged namespace costs as much as the whole host; the change signal (a BPF
//! program counting each namespace's TCP state changes, `sock:inet_sock_set_state`) and the
//! namespace's own sockstat counters say whether anything changed. Pure: the caller reads the
//! counters and keeps the previous result.
//!
//! What neither sees: a TCP socket created before the last walk and bound after it without
//! listen() or connect() (`sockets: used` counts socket(), not bind()), a UDP socket bound,
//! connected or disconnected at a constant count, an owner passing its socket to another
//! process, exec'ing or exiting while a child keeps the fd, and (on kernels without
//! SO_NETNS_COOKIE, which the caller checks) a new namespace under a just freed inode number
//! whose counters match the dead one's (see docs/ARCHITECTURE.md).
//! `MAX_REUSE_AGE` bounds how long any of them can stay unseen.

use std::time::Duration;

use crate::model::{Socket, State};
use crate::sockstat::Sockstat;

/// A namespace is walked again at least this often, whatever the signal says.
pub const MAX_REUSE_AGE: Duration = Duration::from_secs(300);

/// A re-used namespace's port settings (ip_local_port_range, tcp_tw_reuse, ...) are read
/// again at least this often: no socket event shows a sysctl write, and reading them costs a
/// file open each, in every namespace.
pub const SETTINGS_MAX_AGE: Duration = Duration::from_secs(60);

/// Whether a namespace's settings read `age` ago may stand for now: only while younger than
/// `max_age` ([`SETTINGS_MAX_AGE`] unless the operator set another, `settings_max_age`), since
/// nothing else shows a sysctl write.
pub fn settings_still_fresh(age: Duration, max_age: Duration) -> bool {
    age < max_age
}

/// The settings' re-read bound from its environment override (`PORTHOG_SETTINGS_MAX_AGE`, in
/// whole seconds from 1 to [`SETTINGS_MAX_AGE`]: it can only shorten the bound the docs
/// promise), or an error saying what is wrong with `text`.
pub fn settings_max_age(text: &str) -> Result<Duration, String> {
    let most = SETTINGS_MAX_AGE.as_secs();
    match text.trim().parse::<u64>() {
        Ok(secs) if (1..=most).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "PORTHOG_SETTINGS_MAX_AGE={text:?} is not a whole number of seconds from 1 to {most}"
        )),
    }
}

/// A namespace's last conntrack dump is re-used while its statistics file
/// (/proc/net/stat/nf_conntrack: the entry count and every per-CPU counter) reads the same,
/// byte for byte, and the dump is younger than this. An entry that expired and another made
/// in its place between two reads leave the count equal: this bounds how long that stays
/// unseen.
pub const CONNTRACK_MAX_AGE: Duration = Duration::from_secs(60);

/// Whether the last conntrack read (`previous_stat`, `age` ago) may stand for now: the
/// statistics text is unchanged and the read is younger than [`CONNTRACK_MAX_AGE`].
pub fn conntrack_unchanged(previous_stat: &str, now_stat: &str, age: Duration) -> bool {
    age < CONNTRACK_MAX_AGE && previous_stat == now_stat
}

/// What is compared between collections, read before the namespace's sockets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// The namespace's TCP state changes counted by the signal (0 before its first).
    pub changes: u64,
    /// The signal's count of changes it could not attribute (its map was full).
    pub lost: u64,
    /// The namespace's sockstat counters; `None` when they could not be read.
    pub sockstat: Option<Sockstat>,
}

/// The previous walk of a namespace, as the reuse rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    pub fingerprint: Fingerprint,
    /// Time since the walk.
    pub age: Duration,
    /// The shortest TIME_WAIT timer then known, in milliseconds.
    pub shortest_time_wait_ms: Option<u32>,
}

/// Walk again, or re-use the previous result (with its TIME_WAIT timers aged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Reuse,
    /// Why the namespace is walked again.
    Walk(&'static str),
}

/// The rule: re-use only when a previous walk exists, nothing counted changed since, the
/// counters could be read both times, no TIME_WAIT timer ran out and the walk is not older than
/// `MAX_REUSE_AGE`.
pub fn decide(previous: Option<&Walked>, now: &Fingerprint) -> Decision {
    let Some(p) = previous else { return Decision::Walk("not walked yet") };
    if p.age >= MAX_REUSE_AGE {
        return Decision::Walk("the staleness bound");
    }
    if p.fingerprint.lost != now.lost {
        return Decision::Walk("the signal lost changes");
    }
    if p.fingerprint.changes != now.changes {
        return Decision::Walk("TCP state changes");
    }
    match (p.fingerprint.sockstat, now.sockstat) {
        (Some(a), Some(b)) if a == b => {}
        (Some(_), Some(_)) => return Decision::Walk("sockstat counters changed"),
        _ => return Decision::Walk("sockstat unreadable"),
    }
    let elapsed_ms = u32::try_from(p.age.as_millis()).unwrap_or(u32::MAX);
    if p.shortest_time_wait_ms.is_some_and(|ms| ms <= elapsed_ms) {
        return Decision::Walk("a TIME_WAIT timer ran out");
    }
    Decision::Reuse
}

/// The shortest known TIME_WAIT timer of `sockets` (0 means unknown and is skipped).
pub fn shortest_time_wait_ms(sockets: &[Socket]) -> Option<u32> {
    sockets
        .iter()
        .filter(|s| s.state == State::TimeWait && s.timer_ms > 0)
        .map(|s| s.timer_ms)
        .min()
}

/// Advances the known TIME_WAIT timers of re-used sockets by `elapsed`, so the reusable-by-age
/// rule judges them as if just read. A timer never reaches 0 (which means unknown): `decide`
/// walks again before one would.
pub fn age_time_wait(sockets: &mut [Socket], elapsed: Duration) {
    let ms = u32::try_from(elapsed.as_millis()).unwrap_or(u32::MAX);
    for s in sockets.iter_mut().filter(|s| s.state == State::TimeWait && s.timer_ms > 0) {
        s.timer_ms = s.timer_ms.saturating_sub(ms).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn fp(changes: u64, tw: u64) -> Fingerprint {
        let sockstat = Sockstat { tcp_time_wait: Some(tw), ..Sockstat::default() };
        Fingerprint { changes, lost: 0, sockstat: Some(sockstat) }
    }

    fn walked(f: Fingerprint, secs: u64, tw_ms: Option<u32>) -> Walked {
        Walked { fingerprint: f, age: Duration::from_secs(secs), shortest_time_wait_ms: tw_ms }
    }

    #[test]
    fn reuses_only_what_nothing_says_changed() {
        let p = walked(fp(7, 2), 15, Some(40_000));
        assert_eq!(decide(Some(&p), &fp(7, 2)), Decision::Reuse);
        assert_eq!(decide(None, &fp(7, 2)), Decision::Walk("not walked yet"));
        assert_eq!(decide(Some(&p), &fp(8, 2)), Decision::Walk("TCP state changes"));
        assert_eq!(decide(Some(&p), &fp(7, 1)), Decision::Walk("sockstat counters changed"));
        let unread = Fingerprint { sockstat: None, ..fp(7, 2) };
        assert_eq!(decide(Some(&p), &unread), Decision::Walk("sockstat unreadable"));
        let lost = Fingerprint { lost: 1, ..fp(7, 2) };
        assert_eq!(decide(Some(&p), &lost), Decision::Walk("the signal lost changes"));
    }

    #[test]
    fn staleness_and_time_wait_expiry_force_a_walk() {
        let old = walked(fp(7, 2), MAX_REUSE_AGE.as_secs(), None);
        assert_eq!(decide(Some(&old), &fp(7, 2)), Decision::Walk("the staleness bound"));
        let expiring = walked(fp(7, 2), 15, Some(15_000));
        assert_eq!(decide(Some(&expiring), &fp(7, 2)), Decision::Walk("a TIME_WAIT timer ran out"));
        let unknown_timers = walked(fp(7, 2), 15, None);
        assert_eq!(decide(Some(&unknown_timers), &fp(7, 2)), Decision::Reuse);
    }

    #[test]
    fn settings_are_read_again_once_the_bound_is_reached() {
        let a_minute = SETTINGS_MAX_AGE;
        assert!(settings_still_fresh(Duration::ZERO, a_minute));
        assert!(settings_still_fresh(a_minute - Duration::from_millis(1), a_minute));
        assert!(!settings_still_fresh(a_minute, a_minute));
        assert!(!settings_still_fresh(Duration::from_secs(3), Duration::from_secs(2)));
        assert_eq!(settings_max_age(" 2\n"), Ok(Duration::from_secs(2)));
        assert_eq!(settings_max_age("60"), Ok(SETTINGS_MAX_AGE));
        for bad in ["0", "-1", "1.5", "", "soon", "61", "3600"] {
            let e = settings_max_age(bad).unwrap_err();
            assert!(e.contains("PORTHOG_SETTINGS_MAX_AGE") && e.contains("from 1 to 60"), "{e}");
        }
    }

    #[test]
    fn conntrack_is_read_again_when_its_statistics_change_or_age() {
        let stat = "entries  found\n00000003 00000000\n00000003 00000001\n";
        let young = Duration::from_secs(15);
        assert!(conntrack_unchanged(stat, stat, young));
        assert!(!conntrack_unchanged(stat, &stat.replace("01\n", "02\n"), young));
        assert!(!conntrack_unchanged(stat, stat, CONNTRACK_MAX_AGE));
    }

    #[test]
    fn time_wait_timers_age_and_stay_known() {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let tw = |ms| Socket {
            timer_ms: ms,
            ..Socket::new(Protocol::Tcp, State::TimeWait, (ip, 40001), (ip, 7070))
        };
        let est = Socket {
            timer_ms: 9_000,
            ..Socket::new(Protocol::Tcp, State::Established, (ip, 40002), (ip, 7070))
        };
        let mut sockets = vec![tw(50_000), tw(10_000), tw(0), est];
        assert_eq!(shortest_time_wait_ms(&sockets), Some(10_000));
        age_time_wait(&mut sockets, Duration::from_secs(15));
        let timers: Vec<u32> = sockets.iter().map(|s| s.timer_ms).collect();
        assert_eq!(timers, [35_000, 1, 0, 9_000]);
    }
}
