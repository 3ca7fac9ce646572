//! `Get-NetTCPConnection | Export-Csv` (and Get-NetUDPEndpoint, and ConvertTo-Csv): an optional
//! `#TYPE ...MSFT_NetTCPConnection` line (Windows PowerShell 5.1 without -NoTypeInformation;
//! PowerShell 7 omits it), a header of quoted property names, then one record per object with
//! every field quoted (nulls may be bare), states as names. `-UseCulture` on German Windows
//! writes `;`. The section ends at a blank line or at the first record of another width.

use super::powershell::{Cells, EXPECTED, PROPERTIES, protocol_of};
use super::ps_table::is_prompt;
use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::{Protocol, Socket};

/// `#TYPE` naming a class of ours, or a header naming LocalAddress and LocalPort.
pub fn starts(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    match type_line(line.text) {
        Some(_) => cur.peek2().is_some_and(|h| header_delimiter(h.text).is_some()),
        None => header_delimiter(line.text).is_some(),
    }
}

/// `#TYPE Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetTCPConnection`
/// (or `Selected.` of it): the protocol when the class says.
fn type_line(t: &str) -> Option<Option<Protocol>> {
    let rest = t.trim().strip_prefix("#TYPE")?;
    Some(if rest.contains("MSFT_NetUDPEndpoint") {
        Some(Protocol::Udp)
    } else if rest.contains("MSFT_NetTCPConnection") {
        Some(Protocol::Tcp)
    } else {
        None
    })
}

/// The delimiter of a CSV header that names LocalAddress and LocalPort.
fn header_delimiter(t: &str) -> Option<u8> {
    let t = t.trim();
    // The character after the first field: `"State",` or `State;`.
    let after_first = match t.strip_prefix('"') {
        Some(rest) => rest.split_once('"').map(|(_, r)| r)?,
        None => t.trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_'),
    };
    let delim = match after_first.bytes().next()? {
        d @ (b',' | b';' | b'\t') => d,
        _ => return None,
    };
    let has = |want: &str| t.split(char::from(delim)).any(|f| f.trim().trim_matches('"') == want);
    (has("LocalAddress") && has("LocalPort")).then_some(delim)
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let mut class = None;
    if let Some(t) = cur.peek().and_then(|l| type_line(l.text)) {
        class = t;
        cur.next();
    }
    let Some(delim) = cur.peek().and_then(|l| header_delimiter(l.text)) else { return Ok(()) };
    let (rest, first_no) = cur.remaining();
    // A blank line ends the export (PowerShell never writes one inside it); cutting there keeps
    // an unbalanced quote in what follows from swallowing the rest of the input.
    let section = match rest.find("\n\n").or_else(|| rest.find("\n\r\n")) {
        Some(i) => &rest[..i + 1],
        None => rest,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delim)
        .from_reader(section.as_bytes());
    let mut record = csv::StringRecord::new();
    let header = match rdr.read_record(&mut record) {
        Ok(true) => record.clone(),
        _ => {
            cur.next();
            return Ok(());
        }
    };
    let [la, lp, ra, rp, st, op] = PROPERTIES.map(|p| header.iter().position(|h| h == p));
    let protocol = class.unwrap_or_else(|| protocol_of(st.is_some(), ra.is_some() || rp.is_some()));
    // csv leaves its position before or inside a record's CRLF; a line starts after it.
    let line_start = |byte: u64| {
        let t = &section[(byte as usize).min(section.len())..];
        let t = t.strip_prefix('\r').unwrap_or(t);
        section.len() - t.strip_prefix('\n').unwrap_or(t).len()
    };
    let text_at = |at: usize| section[at..].lines().next().unwrap_or("");
    // Counting the lines before `at` is for errors only: it would make the happy path quadratic.
    let line_at = |at: usize| Line {
        no: first_no + section[..at].bytes().filter(|&c| c == b'\n').count(),
        text: text_at(at),
    };
    let mut end = line_start(rdr.position().byte());
    loop {
        let at = line_start(rdr.position().byte());
        // A prompt ends the export even when it happens to hold as many commas as the header.
        if is_prompt(text_at(at).trim()) {
            break;
        }
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) if record.len() != header.len() => break,
            Ok(true) => {
                let field = |i: Option<usize>| i.and_then(|i| record.get(i));
                let cells = Cells {
                    local_address: field(la),
                    local_port: field(lp),
                    remote_address: field(ra),
                    remote_port: field(rp),
                    state: field(st),
                    owning_process: field(op),
                };
                match cells.row(protocol) {
                    Some(r) => {
                        let sock = Socket::new(r.protocol, r.state, r.local, r.remote);
                        b.socket(Format::PowershellCsv, sock, r.pid);
                    }
                    None => b.malformed(
                        lenient,
                        ImportError::malformed(
                            cur.name(),
                            line_at(at),
                            Format::PowershellCsv,
                            EXPECTED,
                        ),
                    )?,
                }
            }
            Err(_) => {
                let e = ImportError::malformed(
                    cur.name(),
                    line_at(at),
                    Format::PowershellCsv,
                    "a CSV record (quotes balanced)",
                );
                b.malformed(lenient, e)?;
                end = section.len();
                break;
            }
        }
        end = line_start(rdr.position().byte());
    }
    cur.advance(&rest[..end]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::import::{ImportOptions, Imported, Input, import};
    use crate::model::{Protocol, Snapshot, State};

    fn snapshot(text: &str) -> Snapshot {
        crate::import::testing::snapshot_of("t.csv", text)
    }

    #[test]
    fn type_line_quoted_fields_bare_nulls_and_a_prompt_after() {
        let s = snapshot(
            "#TYPE Microsoft.Management.Infrastructure.CimInstance#ROOT/StandardCimv2/MSFT_NetTCPConnection\r\n\
             \"State\",\"AppliedSetting\",\"OwningProcess\",\"LocalAddress\",\"LocalPort\",\"RemoteAddress\",\"RemotePort\"\r\n\
             \"Listen\",,\"4\",\"0.0.0.0\",\"445\",\"0.0.0.0\",\"0\"\r\n\
             \"TimeWait\",\"Internet\",\"0\",\"10.0.0.7\",\"50001\",\"10.0.0.5\",\"443\"\r\n\
             \"Bound\",,\"5432\",\"0.0.0.0\",\"50002\",\"0.0.0.0\",\"0\"\r\n\
             PS C:\\> echo a,b,c,d,e,f,g\r\n",
        );
        let got: Vec<(State, u16, Option<u32>)> =
            s.sockets.iter().map(|x| (x.state, x.local_port, x.pid.map(|p| p.get()))).collect();
        assert_eq!(
            got,
            [
                (State::Listen, 445, Some(4)),
                (State::TimeWait, 50001, None),
                (State::Bound, 50002, Some(5432))
            ]
        );
    }

    #[test]
    fn udp_by_columns_with_semicolons() {
        let s = snapshot(
            "\"LocalAddress\";\"LocalPort\";\"OwningProcess\"\n\"::\";\"5353\";\"2212\"\n\"0.0.0.0\";\"123\";\"1480\"\n\n\"junk\"\n",
        );
        assert_eq!(s.sockets.len(), 2);
        assert!(s.sockets.iter().all(|x| x.protocol == Protocol::Udp && x.state == State::Close));
    }

    #[test]
    fn bad_record_names_its_line() {
        let text = "\"LocalAddress\",\"LocalPort\",\"RemoteAddress\",\"RemotePort\",\"State\",\"OwningProcess\"\n\
                    \"10.0.0.7\",\"50001\",\"10.0.0.5\",\"443\",\"Established\",\"4\"\n\
                    \"10.0.0.7\",\"50002\",\"10.0.0.5\",\"443\",\"Estab\",\"4\"\n";
        let e =
            import(&[Input { name: "c.csv", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(e.to_string().starts_with("c.csv:3: powershell-csv row"), "{e}");
        let crlf = text.replace('\n', "\r\n");
        let e =
            import(&[Input { name: "c.csv", bytes: crlf.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(e.to_string().starts_with("c.csv:3: powershell-csv row"), "{e}");
        let lenient = ImportOptions { lenient: true, ..Default::default() };
        match import(&[Input { name: "c.csv", bytes: text.as_bytes() }], &lenient).unwrap() {
            Imported::Snapshot { snapshot, .. } => assert_eq!(snapshot.sockets.len(), 1),
            Imported::Report(_) => unreachable!(),
        }
    }
}
