//! What `Get-NetTCPConnection` and `Get-NetUDPEndpoint` objects hold, however PowerShell printed
//! them (table, CSV, JSON): the property names porthog reads, the `State` enum of
//! MSFT_NetTCPConnection by name and by number, and addresses that Format-Table may have cut.
//! Shared by ps_table.rs, ps_csv.rs and ps_json.rs; no parsing of any layout here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{Protocol, State};

/// The properties porthog reads, in the order of [`Cells`].
pub const PROPERTIES: [&str; 6] =
    ["LocalAddress", "LocalPort", "RemoteAddress", "RemotePort", "State", "OwningProcess"];

/// What every importer says it expected of a row.
pub const EXPECTED: &str = "LocalAddress, LocalPort and (TCP) RemoteAddress, RemotePort, State, with OwningProcess (Get-NetTCPConnection or Get-NetUDPEndpoint)";

/// The text of each property in one row; `None` where the row (or the layout) has none.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cells<'a> {
    pub local_address: Option<&'a str>,
    pub local_port: Option<&'a str>,
    pub remote_address: Option<&'a str>,
    pub remote_port: Option<&'a str>,
    pub state: Option<&'a str>,
    pub owning_process: Option<&'a str>,
}

/// A row read from any layout: the socket's fields and whether an address was cut short.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub protocol: Protocol,
    pub state: State,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub pid: u32,
    /// Addresses (0, 1 or 2) Format-Table cut with `...`/`…`; they are unspecified here.
    pub cut: u8,
}

/// TCP objects have State and the remote end; UDP endpoints have neither
/// (MSFT_NetUDPEndpoint has LocalAddress, LocalPort, OwningProcess only).
pub fn protocol_of(has_state: bool, has_remote: bool) -> Protocol {
    if has_state || has_remote { Protocol::Tcp } else { Protocol::Udp }
}

impl Cells<'_> {
    /// The row these cells make, for a section of `protocol`; `None` when a value does not parse.
    pub fn row(&self, protocol: Protocol) -> Option<Row> {
        let mut cut = 0;
        let local_ip = address(self.local_address?, &mut cut)?;
        let local_port = port(self.local_port?)?;
        let (state, remote) = match protocol {
            Protocol::Tcp => {
                let state = state_name(self.state?).or_else(|| state_number(self.state?))?;
                let ip = match self.remote_address {
                    Some(a) => address(a, &mut cut)?,
                    None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                };
                (state, (ip, self.remote_port.map_or(Some(0), port)?))
            }
            // An unconnected endpoint, as netstat shows UDP (`*:*`).
            Protocol::Udp => (State::Close, (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
        };
        let pid = match self.owning_process.map(str::trim) {
            None | Some("") => 0,
            Some(p) => p.parse().ok()?,
        };
        Some(Row { protocol, state, local: (local_ip, local_port), remote, pid, cut })
    }
}

fn port(s: &str) -> Option<u16> {
    s.trim().parse().ok()
}

/// Format-Table cuts a value too wide for its column and ends it with `...` (Windows
/// PowerShell 5.1) or `…` (PowerShell 7).
pub fn strip_cut(s: &str) -> Option<&str> {
    s.strip_suffix("...").or_else(|| s.strip_suffix('…'))
}

/// `10.0.0.7`, `::`, `fe80::1%12`; a cut address becomes the unspecified address of its
/// family and is counted in `cut`: the port and the owner are what the pool needs.
pub fn address(s: &str, cut: &mut u8) -> Option<IpAddr> {
    let s = s.trim();
    if let Some(head) = strip_cut(s) {
        *cut += 1;
        return Some(if head.contains(':') {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        });
    }
    super::netstat::ip_addr(s.split_once('%').map_or(s, |(a, _)| a))
}

/// MSFT_NetTCPConnection.State by name, as tables, CSV and `ConvertTo-Json -EnumsAsStrings`
/// print it. A name Format-Table cut (`Establis...`) is read when its prefix is unambiguous.
pub fn state_name(s: &str) -> Option<State> {
    const NAMES: [(&str, State); 13] = [
        ("Closed", State::Close),
        ("Listen", State::Listen),
        ("SynSent", State::SynSent),
        ("SynReceived", State::SynRecv),
        ("Established", State::Established),
        ("FinWait1", State::FinWait1),
        ("FinWait2", State::FinWait2),
        ("CloseWait", State::CloseWait),
        ("Closing", State::Closing),
        ("LastAck", State::LastAck),
        ("TimeWait", State::TimeWait),
        // A TCB about to be deleted holds its port no longer than a closed one (netstat's
        // DELETE_TCB is read the same way).
        ("DeleteTCB", State::Close),
        ("Bound", State::Bound),
    ];
    let s = s.trim();
    if let Some(head) = strip_cut(s) {
        let mut found = NAMES.iter().filter(|(n, _)| {
            n.len() >= head.len() && n[..head.len()].eq_ignore_ascii_case(head) && !head.is_empty()
        });
        return match (found.next(), found.next()) {
            (Some((_, st)), None) => Some(*st),
            _ => None,
        };
    }
    NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)).map(|(_, st)| *st)
}

/// MSFT_NetTCPConnection.State as a number (ConvertTo-Json without -EnumsAsStrings):
/// 1 Closed .. 12 DeleteTCB, 100 Bound (the MOF's ValueMap).
pub fn state_number(s: &str) -> Option<State> {
    state_code(s.trim().parse().ok()?)
}

pub fn state_code(n: u64) -> Option<State> {
    Some(match n {
        1 | 12 => State::Close,
        2 => State::Listen,
        3 => State::SynSent,
        4 => State::SynRecv,
        5 => State::Established,
        6 => State::FinWait1,
        7 => State::FinWait2,
        8 => State::CloseWait,
        9 => State::Closing,
        10 => State::LastAck,
        11 => State::TimeWait,
        100 => State::Bound,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn states_by_name_number_and_cut_name() {
        assert_eq!(state_name("TimeWait"), Some(State::TimeWait));
        assert_eq!(state_name("bound"), Some(State::Bound));
        assert_eq!(state_name("DeleteTCB"), Some(State::Close));
        assert_eq!(state_name("Establis..."), Some(State::Established));
        assert_eq!(state_name("SynRec…"), Some(State::SynRecv));
        assert_eq!(state_name("FinWait..."), None, "FinWait1 or FinWait2");
        assert_eq!(state_name("..."), None);
        assert_eq!(state_name("Wartend"), None);
        assert_eq!(state_number("11"), Some(State::TimeWait));
        assert_eq!(state_number("100"), Some(State::Bound));
        assert_eq!(state_number("13"), None);
    }

    #[test]
    fn a_tcp_row_with_a_cut_remote_address() {
        let cells = Cells {
            local_address: Some("fe80::1c2d:3e4f:5a6b:7c8d%12"),
            local_port: Some("50325"),
            remote_address: Some("2001:db8:4000:12:a1b2:c3d4:e5f6:..."),
            remote_port: Some("443"),
            state: Some("Established"),
            owning_process: Some("5996"),
        };
        let row = cells.row(Protocol::Tcp).unwrap();
        assert_eq!(row.local, (ip("fe80::1c2d:3e4f:5a6b:7c8d"), 50325));
        assert_eq!(row.remote, (ip("::"), 443));
        assert_eq!((row.state, row.pid, row.cut), (State::Established, 5996, 1));
    }

    #[test]
    fn a_udp_row_without_owner_and_bad_values() {
        let cells = Cells {
            local_address: Some("0.0.0.0"),
            local_port: Some("5353"),
            ..Default::default()
        };
        let row = cells.row(Protocol::Udp).unwrap();
        assert_eq!((row.protocol, row.state, row.pid), (Protocol::Udp, State::Close, 0));
        assert_eq!(row.remote, (ip("0.0.0.0"), 0));
        let bad = Cells { local_port: Some("65536"), ..cells };
        assert_eq!(bad.row(Protocol::Udp), None);
        let host = Cells { local_address: Some("web01"), ..cells };
        assert_eq!(host.row(Protocol::Udp), None);
        assert_eq!(cells.row(Protocol::Tcp), None, "a TCP row needs a State");
    }
}
