//! `/proc/net/sockstat` and `/proc/net/sockstat6` of one network namespace, and the one rule
//! porthog draws from them: which socket dumps can find nothing, so need not run (issue 9).
//!
//! Every TCP or UDP dump walks hash tables that all namespaces share, so a namespace costs as
//! much as the whole host's sockets however few it has itself. These counters are per
//! namespace and cost two small reads:
//! - `sockets: used` counts every socket user space created in the namespace, of any family
//!   (`sock_inuse_get`; sockets the kernel creates for itself are not counted);
//! - `TCP: inuse` / `TCP6: inuse` count the hashed (listening or connected) TCP sockets of each
//!   family, kernel ones included (`sock_prot_inuse_add` on hash and unhash);
//! - `tw` counts the namespace's TIME_WAIT sockets of both families (`tcp_death_row`);
//! - `UDP: inuse` / `UDP6: inuse` count the bound UDP sockets of each family, the only ones a
//!   UDP dump lists (`udp_lib_get_port`).
//!
//! A bound-but-inactive TCP socket is in none of the TCP counts, but is a user socket, so
//! `sockets: used` is above zero while one exists. Request sockets (SYN_RECV) need a listener.

use std::fmt;

/// The counters porthog reads; `None` where the text did not carry one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sockstat {
    pub sockets_used: Option<u64>,
    pub tcp_inuse: Option<u64>,
    pub tcp6_inuse: Option<u64>,
    pub tcp_time_wait: Option<u64>,
    pub udp_inuse: Option<u64>,
    pub udp6_inuse: Option<u64>,
}

/// A line that names a counter but gives no number for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockstatError {
    pub line: String,
}

impl fmt::Display for SockstatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected sockstat line {:?}: expected `NAME: key value ...`", self.line)
    }
}

impl std::error::Error for SockstatError {}

impl Sockstat {
    /// Parses the text of sockstat and sockstat6 (either may be empty: a kernel without IPv6
    /// has no sockstat6, and its counters stay unknown). Unknown lines and keys are skipped.
    pub fn parse(sockstat: &str, sockstat6: &str) -> Result<Sockstat, SockstatError> {
        let mut s = Sockstat::default();
        for line in sockstat.lines().chain(sockstat6.lines()) {
            let Some((name, rest)) = line.split_once(':') else {
                if line.trim().is_empty() {
                    continue;
                }
                return Err(SockstatError { line: line.to_owned() });
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            for pair in words.chunks(2) {
                let [key, value] = pair else {
                    return Err(SockstatError { line: line.to_owned() });
                };
                let Ok(value) = value.parse::<u64>() else {
                    return Err(SockstatError { line: line.to_owned() });
                };
                let field = match (name.trim(), *key) {
                    ("sockets", "used") => &mut s.sockets_used,
                    ("TCP", "inuse") => &mut s.tcp_inuse,
                    ("TCP", "tw") => &mut s.tcp_time_wait,
                    ("TCP6", "inuse") => &mut s.tcp6_inuse,
                    ("UDP", "inuse") => &mut s.udp_inuse,
                    ("UDP6", "inuse") => &mut s.udp6_inuse,
                    _ => continue,
                };
                *field = Some(value);
            }
        }
        Ok(s)
    }

    /// No TCP or UDP socket of any kind can be in the namespace: no user socket at all, no
    /// TIME_WAIT, and no hashed TCP or bound UDP socket (a kernel-made one included). Read
    /// before porthog opens a socket there itself; unknown counters answer false.
    pub fn no_sockets(&self) -> bool {
        [
            self.sockets_used,
            self.tcp_time_wait,
            self.tcp_inuse,
            self.tcp6_inuse,
            self.udp_inuse,
            self.udp6_inuse,
        ]
        .iter()
        .all(|c| *c == Some(0))
    }

    /// Whether a UDP dump of the family (`v6`) can find nothing: no bound UDP socket of it.
    pub fn no_udp(&self, v6: bool) -> bool {
        if v6 { self.udp6_inuse == Some(0) } else { self.udp_inuse == Some(0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "sockets: used 26\nTCP: inuse 1 orphan 0 tw 3 alloc 1 mem 129\n\
                      UDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";
    const V6: &str = "TCP6: inuse 2\nUDP6: inuse 4\nUDPLITE6: inuse 0\nRAW6: inuse 0\n\
                      FRAG6: inuse 0 memory 0\n";

    #[test]
    fn reads_the_counters_of_both_files() {
        let s = Sockstat::parse(V4, V6).unwrap();
        assert_eq!(
            s,
            Sockstat {
                sockets_used: Some(26),
                tcp_inuse: Some(1),
                tcp6_inuse: Some(2),
                tcp_time_wait: Some(3),
                udp_inuse: Some(0),
                udp6_inuse: Some(4),
            }
        );
        assert!(!s.no_sockets());
        assert!(s.no_udp(false) && !s.no_udp(true));
    }

    #[test]
    fn an_empty_namespace_needs_no_dump() {
        let v4 = "sockets: used 0\nTCP: inuse 0 orphan 7 tw 0 alloc 40 mem 3\nUDP: inuse 0 mem 0\n";
        let v6 = "TCP6: inuse 0\nUDP6: inuse 0\n";
        assert!(Sockstat::parse(v4, v6).unwrap().no_sockets());
        // Each counter alone keeps the dump: orphan, alloc and mem are host-wide, not read.
        for (from, to) in [
            ("used 0", "used 1"),
            ("tw 0", "tw 1"),
            ("TCP: inuse 0", "TCP: inuse 1"),
            ("UDP: inuse 0", "UDP: inuse 1"),
        ] {
            assert!(!Sockstat::parse(&v4.replace(from, to), v6).unwrap().no_sockets(), "{to}");
        }
        assert!(!Sockstat::parse(v4, "TCP6: inuse 1\nUDP6: inuse 0\n").unwrap().no_sockets());
        // Without sockstat6 (no IPv6) the v6 counters are unknown, so the dump runs.
        assert!(!Sockstat::parse(v4, "").unwrap().no_sockets());
        let empty = Sockstat::parse(v4, v6).unwrap();
        assert!(empty.no_udp(false) && empty.no_udp(true));
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        let e = Sockstat::parse("TCP: inuse x\n", "").unwrap_err();
        assert!(e.to_string().contains("TCP: inuse x"), "{e}");
        assert!(Sockstat::parse("TCP: inuse\n", "").is_err());
        assert!(Sockstat::parse("garbage\n", "").is_err());
        assert_eq!(Sockstat::parse("\n", "").unwrap(), Sockstat::default());
        assert!(!Sockstat::default().no_sockets() && !Sockstat::default().no_udp(true));
    }
}
