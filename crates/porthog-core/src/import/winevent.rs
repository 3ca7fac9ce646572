//! `Get-WinEvent -FilterHashtable @{LogName='System'; ProviderName='Tcpip'; Id=4227,4231,4266}`
//! as its default table (under a `   ProviderName: Tcpip` group line: TimeCreated, Id,
//! LevelDisplayName, Message cut with `...` or `…`) and as `| Format-List` (`TimeCreated  : ...` blocks).
//! Property names are never translated; dates follow the culture and are normalised in events.rs.
//! The table is read by its columns, since TimeCreated holds spaces.

use super::events::{record, skip_blanks_before};
use super::ps_table::{Layout, is_prompt};
use super::{Builder, Cursor, Format, ImportError, Line};

const EXPECTED_ROW: &str = "TimeCreated, Id, LevelDisplayName, Message under the header";

pub fn starts(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    starts_table(line, cur) || list_block_at(cur, 0)
}

/// `   ProviderName: Tcpip`, the group line Format-Table prints above each provider's rows.
fn group_provider(t: &str) -> Option<&str> {
    t.trim_start().strip_prefix("ProviderName:").map(str::trim)
}

/// The header and rule of an event table at lookahead `n`.
fn table_at<'a>(cur: &Cursor<'a>, n: usize) -> Option<Layout<'a>> {
    let layout = Layout::parse(cur.peek_nth(n)?.text, cur.peek_nth(n + 1)?.text)?;
    (layout.index("TimeCreated").is_some() && layout.index("Id").is_some()).then_some(layout)
}

fn starts_table(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    match group_provider(line.text) {
        Some(_) => (1..=3).any(|n| table_at(cur, n).is_some()),
        None => table_at(cur, 0).is_some(),
    }
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    if list_block_at(cur, 0) { parse_list(cur, b, lenient) } else { parse_table(cur, b, lenient) }
}

fn parse_table(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let mut group = None;
    if let Some(p) = cur.peek().and_then(|l| group_provider(l.text)) {
        group = Some(p);
        cur.next();
        while cur.peek().is_some_and(|l| l.text.trim().is_empty()) {
            cur.next();
        }
    }
    let Some(layout) = table_at(cur, 0) else {
        cur.next();
        return Ok(());
    };
    cur.next();
    cur.next();
    let (time, id, provider) =
        (layout.index("TimeCreated"), layout.index("Id"), layout.index("ProviderName"));
    let mut spans = Vec::with_capacity(layout.len());
    while let Some(line) = cur.peek() {
        let t = line.text.trim();
        if t.is_empty() || is_prompt(t) {
            break;
        }
        cur.next();
        layout.cells(line.text, &mut spans);
        let cell = |i: Option<usize>| i.and_then(|i| spans[i]).map(|(s, e)| &line.text[s..e]);
        match cell(id).and_then(|v| v.parse::<u32>().ok()) {
            Some(n) => record(b, Format::GetWinevent, cell(provider).or(group), n, cell(time)),
            None => b.malformed(
                lenient,
                ImportError::malformed(cur.name(), line, Format::GetWinevent, EXPECTED_ROW),
            )?,
        }
    }
    Ok(())
}

/// A Format-List line: `Label : value`, the label a property name padded with spaces.
fn list_field(t: &str) -> Option<(&str, &str)> {
    let (label, value) = t.split_once(':')?;
    let name = label.trim_end();
    let is_name = !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric());
    (is_name && label.ends_with(' ')).then(|| (name, value.trim()))
}

/// A Format-List block of an event at lookahead `n`: label lines up to a blank line, among
/// them Id and TimeCreated or ProviderName.
fn list_block_at(cur: &Cursor<'_>, n: usize) -> bool {
    if cur.peek_nth(n).and_then(|l| list_field(l.text)).is_none() {
        return false;
    }
    let (mut id, mut other) = (false, false);
    // `Format-List *` prints some 25 properties, and Message may wrap over many lines.
    for l in (n..n + 200).map_while(|k| cur.peek_nth(k)).take_while(|l| !l.text.trim().is_empty()) {
        match list_field(l.text) {
            Some(("Id", v)) => id = v.parse::<u32>().is_ok(),
            Some(("TimeCreated" | "ProviderName", _)) => other = true,
            _ => {}
        }
    }
    id && other
}

fn parse_list(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    while list_block_at(cur, 0) {
        let (mut time, mut provider, mut id) = (None, None, None);
        while let Some(line) = cur.peek().filter(|l| !l.text.trim().is_empty()) {
            cur.next();
            match list_field(line.text) {
                Some(("TimeCreated", v)) => time = Some(v),
                Some(("ProviderName", v)) => provider = Some(v),
                Some(("Id", v)) => id = Some((v, line)),
                // Other properties, and Message continuation lines.
                _ => {}
            }
        }
        // list_block_at saw the Id within this block.
        let Some((v, line)) = id else { break };
        match v.parse::<u32>() {
            Ok(n) => record(b, Format::GetWinevent, provider, n, time),
            Err(_) => b.malformed(
                lenient,
                ImportError::malformed(cur.name(), line, Format::GetWinevent, "Id : N"),
            )?,
        }
        skip_blanks_before(cur, |_| true);
        if !list_block_at(cur, 0) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::import::{Evidence, ImportOptions, Input, import};

    fn evidence_of(text: &str) -> Vec<Evidence> {
        crate::import::testing::evidence_of("ev.txt", text)
    }

    #[test]
    fn default_table_en_us_with_cut_messages() {
        let ev = evidence_of(
            "\r\n\r\n   ProviderName: Tcpip\r\n\r\n\
             TimeCreated                     Id LevelDisplayName Message\r\n\
             -----------                     -- ---------------- -------\r\n\
             1/15/2024 10:23:45 AM         4231 Warning          A request to allocate an ephemeral port number from the global TCP p...\r\n\
             1/15/2024 9:02:11 AM          4227 Warning          TCP/IP failed to establish an outgoing connection because the sel...\r\n\
             1/14/2024 11:59:59 PM         4231 Warning          A request to allocate an ephemeral port number from the global TCP p...\r\n\r\n\r\n",
        );
        let got: Vec<_> =
            ev.iter().map(|e| (e.id, e.count, e.first.as_deref(), e.last.as_deref())).collect();
        assert_eq!(
            got,
            [
                (4227, 1, Some("2024-01-15T09:02:11"), Some("2024-01-15T09:02:11")),
                (4231, 2, Some("2024-01-14T23:59:59"), Some("2024-01-15T10:23:45")),
            ]
        );
    }

    #[test]
    fn other_providers_groups_are_read_and_skipped() {
        let ev = evidence_of(
            "   ProviderName: Service Control Manager\n\nTimeCreated                     Id LevelDisplayName Message\n\
             -----------                     -- ---------------- -------\n1/15/2024 10:23:45 AM         4231 Information      x\n",
        );
        assert!(ev.is_empty());
    }

    #[test]
    fn format_list_de_de_with_wrapped_messages() {
        let ev = evidence_of(
            "\nTimeCreated  : 15.01.2024 10:23:45\nProviderName : Tcpip\nId           : 4266\n\
             Message      : Fehler beim Zuweisen einer kurzlebigen Portnummer aus dem globalen\n               UDP-Portbereich.\n\n\
             TimeCreated  : 15.01.2024 10:20:00\nProviderName : Tcpip\nId           : 4266\nMessage      : Fehler.\n\n\nPS C:\\> \n",
        );
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].id, ev[0].count), (4266, 2));
        assert_eq!(ev[0].first.as_deref(), Some("2024-01-15T10:20:00"));
    }

    #[test]
    fn a_bad_id_names_its_line() {
        let text = "TimeCreated                     Id LevelDisplayName Message\n\
                    -----------                     -- ---------------- -------\n1/15/2024 10:23:45 AM         42x1 Warning          x\n";
        let e =
            import(&[Input { name: "g.txt", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(
            e.to_string().starts_with("g.txt:3: get-winevent row: expected TimeCreated"),
            "{e}"
        );
    }
}
