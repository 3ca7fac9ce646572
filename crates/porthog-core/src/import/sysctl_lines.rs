//! `sysctl` output lines for the port settings (`net.ipv4.ip_local_port_range = 32768 60999`, tab-separated),
//! parsed with the same functions the live collector uses on /proc/sys.

use super::{Builder, Cursor, Format, ImportError};
use crate::import::Line;
use crate::sysctl;

pub fn starts(line: Line<'_>) -> bool {
    let t = line.text.trim_start();
    t.starts_with("net.ipv4.") && t.contains('=')
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder) -> Result<(), ImportError> {
    while let Some(line) = cur.peek().filter(|l| starts(*l)) {
        cur.next();
        let Some((key, value)) = line.text.split_once('=') else { continue };
        let bad = |e: sysctl::SettingError| {
            ImportError::malformed(cur.name(), line, Format::Sysctl, &e.to_string())
        };
        match key.trim() {
            "net.ipv4.ip_local_port_range" => {
                let r = sysctl::parse_port_range(value).map_err(bad)?;
                b.settings.tcp_range = Some(r);
                b.settings.udp_range = Some(r);
            }
            "net.ipv4.ip_local_reserved_ports" => {
                let set = sysctl::parse_port_list(value).map_err(bad)?;
                b.settings.tcp_reserved = Some(set.clone());
                b.settings.udp_reserved = Some(set);
            }
            "net.ipv4.tcp_tw_reuse" => {
                b.settings.tw_reuse = Some(sysctl::parse_tw_reuse(value).map_err(bad)?)
            }
            "net.ipv4.tcp_timestamps" => {
                b.settings.timestamps = Some(sysctl::parse_timestamps(value).map_err(bad)?)
            }
            "net.ipv4.tcp_tw_reuse_delay" => {
                b.settings.tw_reuse_delay_ms =
                    Some(sysctl::parse_millis("net.ipv4.tcp_tw_reuse_delay", value).map_err(bad)?)
            }
            _ => continue,
        }
        b.record(Format::Sysctl);
    }
    Ok(())
}
