//! Parsers for the Linux port settings, shared by the live collector (which reads the files
//! under `/proc/sys/net/ipv4/` inside the inspected namespace) and the `sysctl -a` importer.
//! Bytes in, values out: no file access here.

use thiserror::Error;

use crate::model::TwReuse;
use crate::ports::{PortRange, PortSet};

/// A setting's text did not have the form the kernel writes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{setting}: expected {expected}, found {found:?}")]
pub struct SettingError {
    pub setting: &'static str,
    pub expected: &'static str,
    pub found: String,
}

fn error(setting: &'static str, expected: &'static str, text: &str) -> SettingError {
    let mut found: String = text.trim().chars().take(60).collect();
    if text.trim().chars().count() > 60 {
        found.push('…');
    }
    SettingError { setting, expected, found }
}

/// `ip_local_port_range`: two numbers separated by white space (the file uses a tab).
pub fn parse_port_range(text: &str) -> Result<PortRange, SettingError> {
    const NAME: &str = "net.ipv4.ip_local_port_range";
    const EXPECTED: &str = "two port numbers, low then high, e.g. \"32768\t60999\"";
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(lo)), Some(Ok(hi)), None) => {
            PortRange::new(lo, hi).ok_or_else(|| error(NAME, EXPECTED, text))
        }
        _ => Err(error(NAME, EXPECTED, text)),
    }
}

/// `ip_local_reserved_ports`: a comma-separated list of ports and ranges, possibly empty.
pub fn parse_port_list(text: &str) -> Result<PortSet, SettingError> {
    const NAME: &str = "net.ipv4.ip_local_reserved_ports";
    const EXPECTED: &str = "a comma-separated list of ports and ranges, e.g. \"8080,9000-9100\"";
    let mut set = PortSet::new();
    for item in text.trim().split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let range = match item.split_once('-') {
            Some((a, b)) => match (a.trim().parse(), b.trim().parse()) {
                (Ok(a), Ok(b)) => PortRange::new(a, b),
                _ => None,
            },
            None => item.parse().ok().map(|p| PortRange { start: p, end: p }),
        };
        set.insert(range.ok_or_else(|| error(NAME, EXPECTED, text))?);
    }
    Ok(set)
}

/// `tcp_tw_reuse`: 0, 1 or 2.
pub fn parse_tw_reuse(text: &str) -> Result<TwReuse, SettingError> {
    match text.trim() {
        "0" => Ok(TwReuse::Off),
        "1" => Ok(TwReuse::On),
        "2" => Ok(TwReuse::Loopback),
        _ => Err(error("net.ipv4.tcp_tw_reuse", "0, 1 or 2", text)),
    }
}

/// `tcp_timestamps`: 0 off; 1 and 2 both negotiate timestamps (2 without random offsets).
pub fn parse_timestamps(text: &str) -> Result<bool, SettingError> {
    match text.trim() {
        "0" => Ok(false),
        "1" | "2" => Ok(true),
        _ => Err(error("net.ipv4.tcp_timestamps", "0, 1 or 2", text)),
    }
}

/// `tcp_tw_reuse_delay`: milliseconds.
pub fn parse_millis(setting: &'static str, text: &str) -> Result<u32, SettingError> {
    text.trim().parse().map_err(|_| error(setting, "a number of milliseconds", text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_as_the_kernel_writes_it() {
        assert_eq!(parse_port_range("32768\t60999\n"), Ok(PortRange::LINUX_DEFAULT));
        assert_eq!(parse_port_range(" 40000 40099 "), Ok(PortRange { start: 40000, end: 40099 }));
        assert!(parse_port_range("60999\t32768\n").is_err());
        assert!(parse_port_range("32768").is_err());
        assert!(parse_port_range("1 2 3").is_err());
        assert!(parse_port_range("a b").is_err());
        assert!(parse_port_range("70000 80000").is_err());
    }

    #[test]
    fn reserved_ports() {
        assert!(parse_port_list("\n").unwrap().is_empty());
        let s = parse_port_list("8080,9000-9100\n").unwrap();
        assert_eq!(s.len(), 1 + 101);
        assert!(s.contains(9050) && !s.contains(9101));
        let e = parse_port_list("8080,x").unwrap_err();
        assert_eq!(e.setting, "net.ipv4.ip_local_reserved_ports");
        assert!(e.to_string().contains("8080,x"), "{e}");
        assert!(parse_port_list("9100-9000").is_err());
    }

    #[test]
    fn switches() {
        assert_eq!(parse_tw_reuse("2\n"), Ok(TwReuse::Loopback));
        assert_eq!(parse_tw_reuse("1"), Ok(TwReuse::On));
        assert_eq!(parse_tw_reuse("0"), Ok(TwReuse::Off));
        assert!(parse_tw_reuse("3").is_err());
        assert_eq!(parse_timestamps("1\n"), Ok(true));
        assert_eq!(parse_timestamps("0\n"), Ok(false));
        assert_eq!(parse_millis("x", "1000\n"), Ok(1000));
    }

    #[test]
    fn long_garbage_is_cut_in_the_message() {
        let junk = "z".repeat(500);
        let e = parse_tw_reuse(&junk).unwrap_err();
        assert!(e.to_string().len() < 200);
    }
}
