//! PowerShell tables: `Get-NetTCPConnection` and `Get-NetUDPEndpoint` as the default view or
//! `Format-Table`. A header of property names over a rule of dash groups gives the columns; each
//! row is read by those columns, not by white space, because a cell may be empty
//! (AppliedSetting of a listener). Also the [`Layout`] the Get-WinEvent table reuses. Values
//! too wide for their column end in `...`/`…`: a cut address is kept as unspecified and counted.

use super::powershell::{Cells, EXPECTED, protocol_of, strip_cut};
use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::Socket;

/// The columns of a Format-Table table, in character columns (not bytes: a row may hold `…`).
#[derive(Debug)]
pub struct Layout<'h> {
    cols: Vec<Column<'h>>,
}

#[derive(Debug, Clone, Copy)]
struct Column<'h> {
    name: &'h str,
    start: usize,
    end: usize,
}

impl<'h> Layout<'h> {
    /// A header of names over a rule with one dash group per name, each group exactly under
    /// its name (left-aligned columns start there, right-aligned ones end there).
    pub fn parse(header: &'h str, rule: &str) -> Option<Layout<'h>> {
        if !rule.contains('-') || rule.trim().chars().any(|c| c != '-' && c != ' ') {
            return None;
        }
        let names = tokens(header);
        let groups = tokens(rule);
        let same = names.len() == groups.len()
            && names.iter().zip(&groups).all(|(n, g)| (n.0, n.1) == (g.0, g.1));
        same.then(|| Layout {
            cols: names.into_iter().map(|(start, end, name)| Column { name, start, end }).collect(),
        })
    }

    /// The column of a property; a header Format-Table cut (`OwningPro...`) names the property
    /// it is a prefix of.
    pub fn index(&self, property: &str) -> Option<usize> {
        self.cols.iter().position(|c| {
            c.name == property
                || strip_cut(c.name).is_some_and(|h| h.len() >= 3 && property.starts_with(h))
        })
    }

    pub fn len(&self) -> usize {
        self.cols.len()
    }

    /// Splits `row` into `cells` (byte ranges, one per column, `None` when empty). A word belongs
    /// to the column whose dash group it overlaps, else to the nearest column on its left: a
    /// left-aligned value starts under its dashes and a right-aligned one ends under them.
    pub fn cells(&self, row: &str, cells: &mut Vec<Option<(usize, usize)>>) {
        cells.clear();
        cells.resize(self.cols.len(), None);
        if row.is_ascii() {
            // The hot path (a million rows): a byte is a column, and words are found by bytes.
            let b = row.as_bytes();
            let space = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
            let mut i = 0;
            while i < b.len() {
                let Some(start) = b[i..].iter().position(|c| !space(c)).map(|k| i + k) else {
                    break;
                };
                let end = b[start..].iter().position(space).map_or(b.len(), |k| start + k);
                let cell = &mut cells[self.column_of(start, end)];
                *cell = Some(cell.map_or((start, end), |(s, _)| (s, end)));
                i = end;
            }
            return;
        }
        let mut word: Option<(usize, usize)> = None; // (byte, column) where the word began
        let ends = std::iter::once((row.len(), ' '));
        for (col, (byte, ch)) in row.char_indices().chain(ends).enumerate() {
            if ch.is_whitespace() {
                if let Some((b0, c0)) = word.take() {
                    let j = self.column_of(c0, col);
                    let cell = &mut cells[j];
                    *cell = Some(cell.map_or((b0, byte), |(s, _)| (s, byte)));
                }
            } else if word.is_none() {
                word = Some((byte, col));
            }
        }
    }

    fn column_of(&self, start: usize, end: usize) -> usize {
        self.cols
            .iter()
            .position(|c| start < c.end && c.start < end)
            .or_else(|| self.cols.iter().rposition(|c| c.start <= start))
            .unwrap_or(0)
    }
}

/// Words of a header or rule line as (start column, end column, text).
fn tokens(line: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut start = None; // (byte, column)
    let ends = std::iter::once((line.len(), ' '));
    for (col, (byte, ch)) in line.char_indices().chain(ends).enumerate() {
        match (ch.is_whitespace(), start) {
            (true, Some((b0, c0))) => {
                out.push((c0, col, &line[b0..byte]));
                start = None;
            }
            (false, None) => start = Some((byte, col)),
            _ => {}
        }
    }
    out
}

/// A header with LocalAddress and LocalPort over its rule.
pub fn starts(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    line.text.contains("LocalPort")
        && cur
            .peek2()
            .and_then(|rule| Layout::parse(line.text, rule.text))
            .is_some_and(|l| l.index("LocalAddress").is_some() && l.index("LocalPort").is_some())
}

/// A shell prompt after the table ends it (`PS C:\>`, `C:\Users\x>`).
pub fn is_prompt(t: &str) -> bool {
    let b = t.as_bytes();
    (t.starts_with("PS ") && t.contains('>'))
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && b[2] == b'\\'
            && t.contains('>'))
}

/// Whether a line of the table under `head` and `rule` begins a row (for a read in two
/// halves, split.rs): a `-Wrap` continuation leaves LocalPort, a number that never wraps, empty.
pub fn row_start<'h>(head: &'h str, rule: &str) -> Option<impl Fn(&str) -> bool + Sync + 'h> {
    let layout = Layout::parse(head, rule)?;
    let lp = layout.index("LocalPort")?;
    Some(move |line: &str| {
        let t = line.trim();
        if t.is_empty() || is_prompt(t) {
            return false;
        }
        let mut spans = Vec::new();
        layout.cells(line, &mut spans);
        spans.get(lp).is_some_and(Option::is_some)
    })
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let (Some(head), Some(rule)) = (cur.next(), cur.next()) else { return Ok(()) };
    let Some(layout) = Layout::parse(head.text, rule.text) else { return Ok(()) };
    let [la, lp, ra, rp, st, op] = super::powershell::PROPERTIES.map(|p| layout.index(p));
    let protocol = protocol_of(st.is_some(), ra.is_some() || rp.is_some());
    let mut spans = Vec::with_capacity(layout.len());
    // The cells of the line after a row, computed to see whether it continues the row
    // (`Format-Table -Wrap`); kept for the next round when it does not.
    let mut next_spans = Vec::with_capacity(layout.len());
    let mut have_next = false;
    let props = [la, lp, ra, rp, st, op];
    while let Some(line) = cur.peek() {
        let t = line.text.trim();
        if t.is_empty() || is_prompt(t) {
            break;
        }
        cur.next();
        if have_next {
            std::mem::swap(&mut spans, &mut next_spans);
        } else {
            layout.cells(line.text, &mut spans);
        }
        have_next = false;
        // `-Wrap` goes on with a value in the next lines, which leave LocalPort (a number that
        // never wraps) empty.
        let mut wrapped: Option<[Option<String>; 6]> = None;
        while let Some(next) = cur.peek().filter(|l| {
            let t = l.text.trim();
            !t.is_empty() && !is_prompt(t)
        }) {
            layout.cells(next.text, &mut next_spans);
            have_next = true;
            if lp.is_none_or(|i| next_spans[i].is_some()) {
                break;
            }
            let owned = wrapped.get_or_insert_with(|| {
                props.map(|i| i.and_then(|i| spans[i]).map(|(s, e)| line.text[s..e].to_owned()))
            });
            for (slot, i) in owned.iter_mut().zip(props) {
                if let Some((s, e)) = i.and_then(|i| next_spans[i]) {
                    slot.get_or_insert_with(String::new).push_str(&next.text[s..e]);
                }
            }
            cur.next();
            have_next = false;
        }
        let cell = |k: usize| match &wrapped {
            Some(owned) => owned[k].as_deref(),
            None => props[k].and_then(|i| spans[i]).map(|(s, e)| &line.text[s..e]),
        };
        let cells = Cells {
            local_address: cell(0),
            local_port: cell(1),
            remote_address: cell(2),
            remote_port: cell(3),
            state: cell(4),
            owning_process: cell(5),
        };
        // A TCP table always has the remote end; a missing one is a broken row, not a UDP one.
        let complete = ra.is_none_or(|_| cells.remote_address.is_some());
        match cells.row(protocol).filter(|_| complete) {
            Some(r) => {
                b.truncated_addresses += u64::from(r.cut);
                // Get-NetUDPEndpoint's default view has no OwningProcess column.
                b.no_owner_column_rows += u64::from(op.is_none());
                b.socket(
                    Format::PowershellTable,
                    Socket::new(r.protocol, r.state, r.local, r.remote),
                    r.pid,
                );
            }
            None => b.malformed(
                lenient,
                ImportError::malformed(cur.name(), line, Format::PowershellTable, EXPECTED),
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportOptions, Input, import};
    use crate::model::{Protocol, Snapshot, State};
    use std::net::IpAddr;

    fn snapshot(text: &str) -> Snapshot {
        crate::import::testing::snapshot_of("t.txt", text)
    }

    #[test]
    fn cells_follow_the_dashes_not_the_spaces() {
        let l = Layout::parse("   Id Name   Message", "   -- ----   -------").unwrap();
        let mut cells = Vec::new();
        let row = "12345 svchost       a long… message";
        l.cells(row, &mut cells);
        let text: Vec<Option<&str>> = cells.iter().map(|c| c.map(|(s, e)| &row[s..e])).collect();
        assert_eq!(text, [Some("12345"), Some("svchost"), Some("a long… message")]);
        l.cells("    7              x", &mut cells);
        assert_eq!(cells, [Some((4, 5)), None, Some((19, 20))]);
        assert!(Layout::parse("Id Name", "-- --- -").is_none());
        assert!(Layout::parse("Id Name", "-- -----").is_none());
    }

    #[test]
    fn default_view_with_empty_applied_setting_and_cut_addresses() {
        let s = snapshot(
            "\r\nLocalAddress                        LocalPort RemoteAddress                       RemotePort State       AppliedSetting OwningProcess\r\n\
             ------------                        --------- -------------                       ---------- -----       -------------- -------------\r\n\
             ::                                  49677     ::                                  0          Listen                     724\r\n\
             fe80::808e:5a8a:b0bd:568e:1111:2... 50325     2001:db8:4000:12:a1b2:c3d4:e5f6:... 8080       Established Datacenter     5996\r\n\
             10.10.20.36                         50326     10.100.2.141                        443        TimeWait    Internet       0\r\n\r\n\r\n",
        );
        assert_eq!(s.sockets.len(), 3);
        let (l, e, t) = (&s.sockets[0], &s.sockets[1], &s.sockets[2]);
        assert_eq!(
            (l.state, l.local_port, l.pid.map(|p| p.get())),
            (State::Listen, 49677, Some(724))
        );
        assert_eq!(
            (e.local_ip, e.remote_ip),
            ("::".parse::<IpAddr>().unwrap(), "::".parse().unwrap())
        );
        assert_eq!(
            (e.local_port, e.remote_port, e.pid.map(|p| p.get())),
            (50325, 8080, Some(5996))
        );
        assert_eq!((t.state, t.pid, t.remote_port), (State::TimeWait, None, 443));
        let gap =
            s.gaps.iter().find(|g| g.message.contains("cut")).expect("a gap for cut addresses");
        assert_eq!(gap.count, Some(2));
    }

    #[test]
    fn udp_default_view_and_autosize_right_aligned_numbers() {
        let s = snapshot(
            "LocalAddress LocalPort\n------------ ---------\n::           61592\n0.0.0.0      5353\n\n\
             LocalAddress LocalPort RemoteAddress RemotePort       State OwningProcess\n\
             ------------ --------- ------------- ----------       ----- -------------\n\
             10.0.0.7         49823 10.0.0.5             443 Established          4321\n",
        );
        assert_eq!(s.sockets.len(), 3);
        assert_eq!(
            (s.sockets[0].protocol, s.sockets[0].state, s.sockets[0].pid),
            (Protocol::Udp, State::Close, None)
        );
        let tcp = &s.sockets[2];
        assert_eq!((tcp.protocol, tcp.local_port, tcp.remote_port), (Protocol::Tcp, 49823, 443));
        assert_eq!(tcp.pid.map(|p| p.get()), Some(4321));
    }

    #[test]
    fn wrap_continues_long_addresses_on_the_next_lines() {
        let s = snapshot(
            "LocalAddress         LocalPort RemoteAddress        RemotePort State       OwningProcess\n\
             ------------         --------- -------------        ---------- -----       -------------\n\
             fe80::1c2d:3e4f:5a6b     50325 2001:db8:4000:12:a1b       8080 Established          5996\n\
             :7c8d%12                       2:c3d4:e5f6:7\n\
             10.10.20.36              50326 10.100.2.141                443 TimeWait                0\n\
             ::                       49677 ::                            0 Listen               724\n",
        );
        let got: Vec<(IpAddr, u16, IpAddr, State)> =
            s.sockets.iter().map(|x| (x.local_ip, x.local_port, x.remote_ip, x.state)).collect();
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert_eq!(
            got,
            [
                (
                    ip("fe80::1c2d:3e4f:5a6b:7c8d"),
                    50325,
                    ip("2001:db8:4000:12:a1b2:c3d4:e5f6:7"),
                    State::Established
                ),
                (ip("10.10.20.36"), 50326, ip("10.100.2.141"), State::TimeWait),
                (ip("::"), 49677, ip("::"), State::Listen),
            ]
        );
        assert!(s.gaps.iter().all(|g| !g.message.contains("cut")));
    }

    #[test]
    fn a_bad_row_names_its_line_and_a_prompt_ends_the_table() {
        let text = "LocalAddress LocalPort RemoteAddress RemotePort State\n------------ --------- ------------- ---------- -----\n\
                    10.0.0.7     49823     10.0.0.5      443        Established\n10.0.0.7     4982x     10.0.0.5      443        Established\n";
        let e =
            import(&[Input { name: "ps.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(
            e.to_string().starts_with("ps.txt:4: powershell-table row: expected LocalAddress"),
            "{e}"
        );
        let ok =
            "LocalAddress LocalPort\n------------ ---------\n::           61592\nPS C:\\> exit\n";
        assert_eq!(snapshot(ok).sockets.len(), 1);
    }
}

#[cfg(test)]
mod owner_tests {
    #[test]
    fn a_table_without_owning_process_says_owners_are_missing() {
        let s = crate::import::testing::snapshot_of(
            "udp.txt",
            "LocalAddress LocalPort\n------------ ---------\n::           61592\n0.0.0.0      5353\n",
        );
        let gap = s
            .gaps
            .iter()
            .find(|g| g.kind == crate::model::GapKind::Unattributed)
            .expect("a gap for owners");
        assert_eq!(gap.count, Some(2));
        assert!(gap.advice.as_deref().unwrap().contains("OwningProcess"), "{:?}", gap.advice);
    }
}
