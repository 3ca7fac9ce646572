//! PowerShell `Format-List` of `Get-NetTCPConnection` / `Get-NetUDPEndpoint` (`| fl`, `| fl *`):
//! one block of `Name : Value` lines per socket, blocks apart by blank lines. A value too long
//! for the window goes on in indented lines below it. The properties read are the ones every
//! layout shares (powershell.rs); the others (CreationTime, OffloadState, ...) are skipped.

use std::borrow::Cow;

use super::powershell::{Cells, EXPECTED, PROPERTIES, protocol_of};
use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::Socket;

/// Lines a block may have before LocalAddress and LocalPort must have shown up (`fl *` prints
/// about 25 properties per object).
const MAX_BLOCK: usize = 40;

/// `Name : Value` (or `Name :` with no value): the property name and the value.
fn property(t: &str) -> Option<(&str, &str)> {
    let (name, value) = t.split_once(':')?;
    let name = name.trim_end();
    let ok = !name.is_empty()
        && !t.starts_with([' ', '\t'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| (name, value.trim()))
}

/// Whether `t` is a `Name : Value` line (after a blank line: a block's first, split.rs).
pub fn is_property(t: &str) -> bool {
    property(t).is_some()
}

/// A continuation of the value above: indented text that is no property.
fn is_continuation(t: &str) -> bool {
    t.starts_with([' ', '\t']) && !t.trim().is_empty()
}

/// Whether the block starting at lookahead `n` holds a socket (LocalAddress and LocalPort).
fn block_at(cur: &Cursor<'_>, n: usize) -> bool {
    // A copy of the cursor walks the block once (peek_nth would rescan from the start).
    let mut c = cur.clone();
    for _ in 0..n {
        c.next();
    }
    if c.peek().is_none_or(|l| property(l.text).is_none()) {
        return false;
    }
    let (mut address, mut port) = (false, false);
    for _ in 0..MAX_BLOCK {
        let Some(l) = c.next() else { break };
        match property(l.text) {
            Some(("LocalAddress", _)) => address = true,
            Some(("LocalPort", _)) => port = true,
            Some(_) => {}
            None if is_continuation(l.text) => {}
            None => break,
        }
        if address && port {
            return true;
        }
    }
    false
}

pub fn starts(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    property(line.text).is_some() && block_at(cur, 0)
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    loop {
        let mut n = 0;
        while cur.peek_nth(n).is_some_and(|l| l.text.trim().is_empty()) {
            n += 1;
        }
        if !block_at(cur, n) {
            return Ok(());
        }
        for _ in 0..n {
            cur.next();
        }
        block(cur, b, lenient)?;
    }
}

/// One object: its property lines and their continuations.
fn block(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let mut values: [Option<Cow<'_, str>>; 6] = Default::default();
    let mut last: Option<usize> = None;
    let Some(first) = cur.peek() else { return Ok(()) };
    while let Some(line) = cur.peek() {
        if let Some((name, value)) = property(line.text) {
            last = PROPERTIES.iter().position(|p| *p == name);
            if let Some(i) = last {
                values[i] = Some(Cow::Borrowed(value));
            }
        } else if is_continuation(line.text) {
            // A long value wrapped by the window: it goes on without a break.
            if let Some(v) = last.and_then(|i| values[i].as_mut()) {
                v.to_mut().push_str(line.text.trim());
            }
        } else {
            break;
        }
        cur.next();
    }
    let v = |i: usize| values[i].as_deref().filter(|s| !s.is_empty());
    let cells = Cells {
        local_address: v(0),
        local_port: v(1),
        remote_address: v(2),
        remote_port: v(3),
        state: v(4),
        owning_process: v(5),
    };
    let protocol = protocol_of(cells.state.is_some(), cells.remote_address.is_some());
    match cells.row(protocol) {
        Some(r) => b.socket(
            Format::PowershellList,
            Socket::new(r.protocol, r.state, r.local, r.remote),
            r.pid,
        ),
        None => b.malformed(
            lenient,
            ImportError::malformed(cur.name(), first, Format::PowershellList, EXPECTED),
        )?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::import::{ImportOptions, Imported, Input, import};
    use crate::model::{Protocol, State};

    #[test]
    fn tcp_and_udp_objects_with_a_wrapped_value() {
        let text = "PS C:\\> Get-NetTCPConnection | Format-List\r\n\r\n\
                    LocalAddress   : 10.0.0.7\r\nLocalPort      : 49823\r\nRemoteAddress  : 10.0.0.5\r\nRemotePort     : 443\r\n\
                    State          : Established\r\nAppliedSetting : Internet\r\nOwningProcess  : 4321\r\n\
                    CreationTime   : 1/2/2024 10:42:13 AM\r\nOffloadState   : InHost\r\n\r\n\
                    LocalAddress   : fe80::1c2d:3e4f:5a6b:7c8d:1111:\r\n                 2222%12\r\nLocalPort      : 50325\r\n\
                    RemoteAddress  : ::\r\nRemotePort     : 0\r\nState          : Listen\r\nOwningProcess  : 724\r\n\r\n\r\n\
                    PS C:\\> Get-NetUDPEndpoint | fl\r\n\r\n\
                    LocalAddress  : 0.0.0.0\r\nLocalPort     : 5353\r\nOwningProcess : 2900\r\nCreationTime  : 1/2/2024 9:00:00 AM\r\n\r\n";
        let Imported::Snapshot { snapshot: s, sources, .. } =
            import(&[Input { name: "fl.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(sources.len(), 1);
        assert_eq!((sources[0].format.as_str(), sources[0].records), ("powershell-list", 3));
        let got: Vec<_> = s
            .sockets
            .iter()
            .map(|x| (x.protocol, x.state, x.local_port, x.remote_port, x.pid.map(|p| p.get())))
            .collect();
        assert_eq!(
            got,
            [
                (Protocol::Tcp, State::Established, 49823, 443, Some(4321)),
                (Protocol::Tcp, State::Listen, 50325, 0, Some(724)),
                (Protocol::Udp, State::Close, 5353, 0, Some(2900)),
            ]
        );
        assert_eq!(
            s.sockets[1].local_ip,
            "fe80::1c2d:3e4f:5a6b:7c8d:1111:2222".parse::<std::net::IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_bad_value_names_the_block() {
        let text = "LocalAddress : 10.0.0.7\nLocalPort    : 4982x\nState        : Established\n";
        let e =
            import(&[Input { name: "fl.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(e.to_string().starts_with("fl.txt:1: powershell-list row"), "{e}");
    }
}
