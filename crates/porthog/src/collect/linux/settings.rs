//! The port settings of the calling thread's network namespace, read from /proc/sys/net/ipv4
//! (which follows the thread, not the process) and parsed by `porthog_core::sysctl`. A setting
//! that cannot be read or parsed stays `None` with a gap naming the file; never fatal.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use porthog_core::{Gap, GapKind, Settings, reuse, sysctl};

const DIR: &str = "/proc/sys/net/ipv4";

/// A namespace's settings as last read, and when (`--all-netns` keeps them).
#[derive(Debug)]
pub struct Kept {
    pub settings: Settings,
    pub gaps: Vec<Gap>,
    pub at: Instant,
}

/// `previous` again while fresh ([`reuse::settings_still_fresh`] within [`max_age`]), else the
/// settings read anew.
pub fn read_reusing(previous: Option<Kept>) -> Kept {
    match previous {
        Some(kept) if reuse::settings_still_fresh(kept.at.elapsed(), max_age()) => kept,
        _ => {
            let at = Instant::now();
            let mut gaps = Vec::new();
            let settings = read(&mut gaps);
            Kept { settings, gaps, at }
        }
    }
}

/// How long kept settings stand: `SETTINGS_MAX_AGE`, or `PORTHOG_SETTINGS_MAX_AGE` seconds
/// (read once per process; the e2e tests shorten it to see a sysctl write within seconds). A
/// bad value is said once on stderr and the default kept.
fn max_age() -> Duration {
    static MAX_AGE: OnceLock<Duration> = OnceLock::new();
    *MAX_AGE.get_or_init(|| match std::env::var("PORTHOG_SETTINGS_MAX_AGE") {
        Ok(text) => reuse::settings_max_age(&text).unwrap_or_else(|e| {
            eprintln!(
                "porthog: note: {e}; settings are read again every {} s",
                reuse::SETTINGS_MAX_AGE.as_secs()
            );
            reuse::SETTINGS_MAX_AGE
        }),
        Err(_) => reuse::SETTINGS_MAX_AGE,
    })
}

/// Reads the settings; call it on a thread inside the inspected namespace.
pub fn read(gaps: &mut Vec<Gap>) -> Settings {
    let mut settings = Settings {
        tcp_range: setting("ip_local_port_range", sysctl::parse_port_range, gaps),
        tcp_reserved: setting("ip_local_reserved_ports", sysctl::parse_port_list, gaps),
        tw_reuse: setting("tcp_tw_reuse", sysctl::parse_tw_reuse, gaps),
        timestamps: setting("tcp_timestamps", sysctl::parse_timestamps, gaps),
        tw_reuse_delay_ms: None,
        ..Settings::default()
    };
    // One range and one reserved set govern TCP and UDP alike (`inet_get_local_port_range`).
    settings.udp_range = settings.tcp_range;
    settings.udp_reserved = settings.tcp_reserved.clone();
    // Only recent kernels have this file; before it the delay is a fixed 1 s, which is what the
    // analysis assumes for `None`, so its absence is not a gap.
    let delay = format!("{DIR}/tcp_tw_reuse_delay");
    if std::path::Path::new(&delay).exists() {
        settings.tw_reuse_delay_ms = setting(
            "tcp_tw_reuse_delay",
            |t| sysctl::parse_millis("net.ipv4.tcp_tw_reuse_delay", t),
            gaps,
        );
    }
    settings
}

fn setting<T, E: std::fmt::Display>(
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
    gaps: &mut Vec<Gap>,
) -> Option<T> {
    let path = format!("{DIR}/{name}");
    let result = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {path}: {e}"))
        .and_then(|text| parse(&text).map_err(|e| format!("cannot parse {path}: {e}")));
    match result {
        Ok(value) => Some(value),
        Err(message) => {
            gaps.push(Gap {
                kind: GapKind::Setting,
                count: None,
                message,
                advice: Some("the kernel default is assumed".into()),
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        let mut gaps = Vec::new();
        let s = read(&mut gaps);
        assert!(gaps.is_empty(), "{gaps:?}");
        assert!(s.tcp_range.is_some() && s.tcp_range == s.udp_range);
        assert!(s.tcp_reserved.is_some() && s.tcp_reserved == s.udp_reserved);
        assert!(s.tw_reuse.is_some() && s.timestamps.is_some());
    }

    #[test]
    fn missing_file_is_a_gap() {
        let mut gaps = Vec::new();
        let v = setting("no_such_setting", sysctl::parse_tw_reuse, &mut gaps);
        assert_eq!(v, None);
        assert_eq!(gaps.len(), 1);
        assert!(gaps[0].message.contains("/proc/sys/net/ipv4/no_such_setting"), "{gaps:?}");
    }
}
