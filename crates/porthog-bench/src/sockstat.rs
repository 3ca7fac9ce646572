//! How many TCP sockets the namespace holds right now, from /proc/<pid>/net/sockstat{,6} of a
//! process inside it: cheap enough to read before every tool run. `inuse` counts hashed
//! sockets (listeners, established, closing) per namespace and `tw` the namespace's TIME_WAIT
//! sockets (sockstat_seq_show() in net/ipv4/proc.c), so inuse + inuse6 + tw is every TCP socket
//! a sock_diag dump returns, minus SYN_RECV request sockets.

use anyhow::{Context, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCount {
    /// IPv4 sockets other than TIME_WAIT.
    pub inuse: u64,
    /// IPv6 sockets other than TIME_WAIT.
    pub inuse6: u64,
    /// TIME_WAIT sockets of both families.
    pub time_wait: u64,
}

impl TcpCount {
    pub fn total(&self) -> u64 {
        self.inuse + self.inuse6 + self.time_wait
    }
}

/// Reads the counts of the namespace `pid` lives in.
pub fn read(pid: u32) -> Result<TcpCount> {
    let v4 = std::fs::read_to_string(format!("/proc/{pid}/net/sockstat"))
        .with_context(|| format!("reading /proc/{pid}/net/sockstat"))?;
    let v6 = std::fs::read_to_string(format!("/proc/{pid}/net/sockstat6")).unwrap_or_default();
    let mut count = parse(&v4, "TCP:").context("parsing sockstat")?;
    count.inuse6 = parse(&v6, "TCP6:").map(|c| c.inuse).unwrap_or(0);
    Ok(count)
}

/// Parses the `TCP: inuse N orphan N tw N ...` (or `TCP6: inuse N`) line.
fn parse(text: &str, prefix: &str) -> Option<TcpCount> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    let mut words = line.split_whitespace().skip(1);
    let mut count = TcpCount::default();
    while let (Some(key), Some(value)) = (words.next(), words.next()) {
        let value: u64 = value.parse().ok()?;
        match key {
            "inuse" => count.inuse = value,
            "tw" => count.time_wait = value,
            _ => {}
        }
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tcp_line() {
        let text = "sockets: used 5\nTCP: inuse 200004 orphan 0 tw 49876 alloc 370005 mem 208\nUDP: inuse 0 mem 0\n";
        let c = parse(text, "TCP:").unwrap();
        assert_eq!(c, TcpCount { inuse: 200004, inuse6: 0, time_wait: 49876 });
        assert_eq!(c.total(), 249880);
    }

    #[test]
    fn parses_tcp6_and_rejects_missing_lines() {
        let text = "TCP6: inuse 3\nUDP6: inuse 0\n";
        assert_eq!(parse(text, "TCP6:").unwrap().inuse, 3);
        assert!(parse("UDP: inuse 0\n", "TCP:").is_none());
    }
}
