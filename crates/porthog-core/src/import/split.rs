//! A large section read in two halves on two threads (issue 11: 150 MB/s on a two-core machine).
//! The section is cut at the start of a record near its middle. The first thread reads from the
//! section's start to the cut, as if the input ended there; the second reads the section's
//! header, then goes on at the cut (its lines numbered as in the whole input). Each half goes
//! into its own `Builder`, merged in input order, so the result is the one-thread result:
//! - a parser's state between two records is what its header gave it (a parser that decides
//!   something from its first row is not split unless the header decides it, see `rule`);
//! - if the first half's section ends before the cut, the second half is dropped and reading
//!   goes on where the first stopped, as it would on one thread;
//! - errors come in input order: the first half's, else the second's.

use super::{
    Builder, Cursor, Format, ImportError, lsof, netstat, netstat_linux, ps_list, ps_table, ss,
};

/// Sections shorter than this are read on one thread: a thread costs more than it saves.
const AT_LEAST: usize = 8 << 20;

/// Lines looked at past the middle for a record's start (a Format-List block is 10-30 lines).
const SEARCH_LINES: usize = 4096;

/// Whether a line begins a record, given the line before it.
type Starts<'t> = Box<dyn Fn(&str, &str) -> bool + Sync + 't>;

/// How a section of `format` may be cut: how many header lines it starts with and where its
/// records start. `None`: not split (the format, or this section, needs one thread).
fn rule<'t>(format: Format, cur: &Cursor<'t>, before: Option<&str>) -> Option<(usize, Starts<'t>)> {
    match format {
        // Whether rows end in a PID: the first row decides unless the header or command did.
        Format::Netstat if netstat::header_decides(before) => {
            Some((0, Box::new(|_, t| netstat::is_row_start(t))))
        }
        Format::Lsof => {
            let head = cur.peek().is_some_and(|l| lsof::is_header(l.text));
            Some((usize::from(head), Box::new(|_, t| lsof::is_row(t))))
        }
        Format::Ss => {
            let head = cur.peek().is_some_and(|l| ss::is_header(l.text));
            Some((usize::from(head), Box::new(|_, t| ss::is_row_start(t))))
        }
        Format::NetstatLinux => {
            let mut c = cur.clone();
            let mut head = 0;
            while head < 3 && c.next().is_some_and(|l| netstat_linux::is_header(l.text)) {
                head += 1;
            }
            Some((head, Box::new(|_, t| netstat_linux::is_row_start(t))))
        }
        Format::PowershellList => {
            Some((0, Box::new(|before, t| before.trim().is_empty() && ps_list::is_property(t))))
        }
        Format::PowershellTable => {
            let (head, rule) = (cur.peek()?, cur.peek2()?);
            let starts = ps_table::row_start(head.text, rule.text)?;
            Some((2, Box::new(move |_, t| starts(t))))
        }
        _ => None,
    }
}

/// Reads the section of `format` at `cur` in two halves, if it is large and the format allows;
/// `None` if it must be read on one thread.
pub(super) fn read(
    format: Format,
    cur: &mut Cursor<'_>,
    b: &mut Builder,
    lenient: bool,
    before: Option<&str>,
) -> Option<Result<(), ImportError>> {
    let rest = cur.remaining().0;
    if rest.len() < AT_LEAST || std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let (head_lines, starts) = rule(format, cur, before)?;
    let bytes = rest.as_bytes();
    let mut head = 0;
    for _ in 0..head_lines {
        head += memchr::memchr(b'\n', &bytes[head..])? + 1;
    }
    let mid = cut(rest, head + (rest.len() - head) / 2, &*starts)?;
    let rows = estimate_rows(&rest[head..], &*starts);
    let (first, second) = cur.halves(head, mid);
    let start = b.sockets.len();
    let mut b1 = b.for_section();
    let mut b2 = b.for_section();
    // The first half's rows go after the ones already read, in one vector big enough for the
    // whole section (capacity never touched costs no memory), so the merge copies only the
    // second half's rows.
    b1.sockets = std::mem::take(&mut b.sockets);
    b1.sockets.reserve(rows);
    // The second half numbers its lines as if the first half had none: its line count is
    // known once the first is read (counting them ahead would read the first half twice).
    let halves = std::thread::scope(|s| {
        let two = std::thread::Builder::new()
            .spawn_scoped(s, || {
                let mut second = second;
                let r = parse(format, &mut second, &mut b2, lenient, before);
                (r, second, b2)
            })
            .ok()?;
        let mut first = first;
        let r = parse(format, &mut first, &mut b1, lenient, before);
        Some(((r, first), two.join().unwrap_or_else(|p| std::panic::resume_unwind(p))))
    });
    let Some(((r1, first), (mut r2, mut second, mut b2))) = halves else {
        // No second thread to be had (a process or memory limit): one thread reads it all.
        b.sockets = b1.sockets;
        return None;
    };
    let pending = match r1 {
        Ok(pending) => pending,
        Err(e) => return Some(Err(e)),
    };
    b.absorb(b1);
    // The first half ended the section before the cut: what it read is the whole section.
    let pending = if !first.remaining().0.trim().is_empty() {
        cur.resume(&first);
        pending
    } else {
        let lines = first.line_no() - cur.line_no() - head_lines;
        // A message of the second half names a line: read it again, numbered right (rare: a
        // bad row, or a port name netstat -a printed that porthog does not know).
        if r2.is_err() || b2.first_skipped.is_some() || b2.first_unplaced.is_some() {
            second = cur.halves(head, mid).1;
            second.add_skipped_lines(lines);
            b2 = b.for_section();
            r2 = parse(format, &mut second, &mut b2, lenient, before);
        } else {
            second.add_skipped_lines(lines);
        }
        let more = match r2 {
            Ok(more) => more,
            Err(e) => return Some(Err(e)),
        };
        b.absorb(b2);
        cur.resume(&second);
        pending.merge(more)
    };
    pending.finish(b, start);
    Some(Ok(()))
}

/// What a half leaves to do once the whole section is read: the conclusions a parser draws
/// from all its rows.
enum Pending {
    Nothing,
    /// Sockets shared by several processes, counted once.
    Lsof,
    Ss(ss::Rows),
    NetstatLinux(netstat_linux::Rows),
}

impl Pending {
    fn merge(self, second: Pending) -> Pending {
        match (self, second) {
            (Pending::Ss(a), Pending::Ss(b)) => Pending::Ss(a.merge(b)),
            (Pending::NetstatLinux(a), Pending::NetstatLinux(b)) => {
                Pending::NetstatLinux(a.merge(b))
            }
            (first, _) => first,
        }
    }

    /// `start`: where the section's sockets start in `b`.
    fn finish(self, b: &mut Builder, start: usize) {
        match self {
            Pending::Nothing => {}
            Pending::Lsof => lsof::after_halves(b, start),
            Pending::Ss(rows) => ss::finish(b, rows),
            Pending::NetstatLinux(rows) => netstat_linux::finish(b, rows),
        }
    }
}

fn parse(
    format: Format,
    cur: &mut Cursor<'_>,
    b: &mut Builder,
    lenient: bool,
    before: Option<&str>,
) -> Result<Pending, ImportError> {
    Ok(match format {
        Format::Netstat => {
            netstat::parse(cur, b, lenient, before)?;
            Pending::Nothing
        }
        Format::Lsof => {
            lsof::parse_half(cur, b, lenient)?;
            Pending::Lsof
        }
        Format::Ss => Pending::Ss(ss::rows(cur, b, lenient)?),
        Format::NetstatLinux => Pending::NetstatLinux(netstat_linux::rows(cur, b, lenient)?),
        Format::PowershellList => {
            ps_list::parse(cur, b, lenient)?;
            Pending::Nothing
        }
        Format::PowershellTable => {
            ps_table::parse(cur, b, lenient)?;
            Pending::Nothing
        }
        _ => Pending::Nothing,
    })
}

/// The start of the first record at or after byte `from` of `text`, found within
/// `SEARCH_LINES` lines.
fn cut(text: &str, from: usize, starts: &dyn Fn(&str, &str) -> bool) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = from + memchr::memchr(b'\n', &bytes[from..])? + 1;
    let mut before = line_at(text, from);
    for _ in 0..SEARCH_LINES {
        if at >= text.len() {
            return None;
        }
        let line = line_at(text, at);
        if starts(before, line) {
            return Some(at);
        }
        before = line;
        at += memchr::memchr(b'\n', &bytes[at..])? + 1;
    }
    None
}

/// The line (without its ending) that holds byte `at`.
fn line_at(text: &str, at: usize) -> &str {
    let bytes = text.as_bytes();
    let from = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
    let to = memchr::memchr(b'\n', &bytes[at..]).map_or(text.len(), |i| at + i);
    let line = &text[from..to];
    line.strip_suffix('\r').unwrap_or(line)
}

/// Records in `text`, estimated from its first 64 KiB, with a margin.
fn estimate_rows(text: &str, starts: &dyn Fn(&str, &str) -> bool) -> usize {
    let sample = &text[..text.floor_char_boundary(64 << 10)];
    let mut before = "";
    let mut records = 0usize;
    for line in sample.lines() {
        records += usize::from(starts(before, line));
        before = line;
    }
    let per_record = sample.len() / records.max(1);
    text.len() / per_record.max(1) * 5 / 4 + 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportOptions, Imported, Input, import};
    use crate::model::Snapshot;

    /// Rows enough for a section over `AT_LEAST`, each made by `row(i)`.
    fn rows(row: impl Fn(usize) -> String) -> String {
        let mut text = String::new();
        let mut i = 0;
        while text.len() < AT_LEAST + (1 << 20) {
            text += &row(i);
            i += 1;
        }
        text
    }

    fn imported(text: &str, lenient: bool) -> Result<Snapshot, String> {
        let opts = ImportOptions { lenient, ..Default::default() };
        match import(&[Input { name: "big.txt", bytes: text.as_bytes() }], &opts) {
            Ok(Imported::Snapshot { snapshot, .. }) => Ok(snapshot),
            Ok(other) => panic!("expected sockets, got {other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    /// What one thread reads: the parser run on the whole section.
    fn one_thread(format: Format, text: &str, before: Option<&str>) -> Builder {
        let mut cur = Cursor::new("big.txt", text);
        let mut b = Builder::default();
        // Whatever precedes the section (a netstat header) is not the parser's.
        if before.is_some() {
            cur.next();
        }
        parse(format, &mut cur, &mut b, false, before).unwrap().finish(&mut b, 0);
        b
    }

    const NETSTAT_HEADER: &str =
        "  Proto  Local Address          Foreign Address        State           PID";

    fn netstat_row(i: usize) -> String {
        format!(
            "  TCP    10.0.{}.{}:{}  10.1.0.{}:443  ESTABLISHED     {}\n",
            i / 65536 % 256,
            i / 256 % 256,
            1024 + i % 60000,
            i % 7,
            100 + i % 13
        )
    }

    #[test]
    fn two_halves_read_what_one_thread_reads() {
        let netstat = format!("{NETSTAT_HEADER}\n{}", rows(netstat_row));
        let lsof = "COMMAND     PID USER   FD   TYPE   DEVICE SIZE/OFF NODE NAME\n".to_owned()
            + &rows(|i| {
                // Every 1000th socket shows again in another process, far away in the file.
                let inode = if i % 1000 == 999 { i - 999 } else { i };
                format!(
                    "java       {} user    3u  IPv4   {}      0t0  TCP 10.0.0.{}:{}->10.1.0.1:5432 (ESTABLISHED)\n",
                    4000 + i % 5,
                    100_000 + inode,
                    i / 60000 % 250,
                    1024 + i % 60000
                )
            });
        let list = rows(|i| {
            format!(
                "\nLocalAddress   : 10.0.{}.{}\nLocalPort      : {}\nRemoteAddress  : 10.1.0.1\n\
                 RemotePort     : 443\nState          : Established\nOwningProcess  : {}\n",
                i / 65536 % 256,
                i / 256 % 256,
                1024 + i % 60000,
                100 + i % 13
            )
        });
        let table = "LocalAddress         LocalPort RemoteAddress        RemotePort State       OwningProcess\n\
                     ------------         --------- -------------        ---------- -----       -------------\n"
            .to_owned()
            + &rows(|i| {
                let cell = |local: &str, remote: &str| {
                    format!(
                        "{local:<20} {:>9} {remote:<20} {:>10} {:<11} {:>13}\n",
                        1024 + i % 60000,
                        443,
                        "Established",
                        100 + i % 13
                    )
                };
                if i % 3 == 0 {
                    // `-Wrap`: an address longer than its column goes on in the next line.
                    let local = format!("2001:db8:4000:12:ab:cd::{:x}", i % 65536);
                    let (l1, l2) = local.split_at(20);
                    cell(l1, "2001:db8::1") + &format!("{l2:<20}\n")
                } else {
                    cell(&format!("10.0.0.{}", i % 250), "10.1.1.1")
                }
            });
        let ss = "State  Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n".to_owned()
            + &rows(|i| {
                let state = if i % 4 == 0 { "TIME-WAIT" } else { "ESTAB" };
                let users = if i % 4 == 0 {
                    String::new()
                } else {
                    format!(" users:((\"java\",pid={},fd=3))", 100 + i % 13)
                };
                format!(
                    "{state:<9} 0 0 10.0.0.{}:{} 10.1.0.1:5432{users}\n",
                    i / 60000 % 250,
                    1024 + i % 60000
                ) + if i % 5 == 0 { "\t cubic wscale:7,7 rto:204\n" } else { "" }
            });
        let netstat_linux = "Active Internet connections (servers and established)\n\
             Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name\n"
            .to_owned()
            + &rows(|i| {
                format!(
                    "tcp        0      0 10.0.0.{}:{:<5}  10.1.0.1:5432   ESTABLISHED {}/java\n",
                    i / 60000 % 250,
                    1024 + i % 60000,
                    100 + i % 13
                )
            });
        for (format, text, before) in [
            (Format::Ss, ss.as_str(), None),
            (Format::NetstatLinux, &netstat_linux, None),
            (Format::Netstat, netstat.as_str(), Some(NETSTAT_HEADER)),
            (Format::Lsof, &lsof, None),
            (Format::PowershellList, &list, None),
            (Format::PowershellTable, &table, None),
        ] {
            let mut cur = Cursor::new("big.txt", text);
            if before.is_some() {
                cur.next();
            }
            let mut two = Builder::default();
            match read(format, &mut cur, &mut two, false, before) {
                Some(Ok(())) => {}
                Some(Err(e)) => panic!("{format}: {e}"),
                None => panic!("{format} was not read in two halves"),
            }
            assert_eq!(cur.peek(), None, "{format}: not read to the end");
            let one = one_thread(format, text, before);
            assert!(one.sockets.len() > 50_000, "{format}: {}", one.sockets.len());
            assert_eq!(one.sockets.len(), two.sockets.len(), "{format}");
            assert!(one.sockets == two.sockets, "{format}: the sockets differ");
            assert_eq!(one.names, two.names, "{format}");
            assert_eq!(one.notes, two.notes, "{format}");
            assert_eq!(one.counts, two.counts, "{format}");
            assert_eq!(one.gaps, two.gaps, "{format}");
            let whole = imported(text, false).unwrap();
            assert!(whole.sockets == one.sockets, "{format}: import differs");
        }
    }

    #[test]
    fn a_bad_row_in_the_second_half_is_named_by_its_line() {
        let mut text = format!("{NETSTAT_HEADER}\n{}", rows(netstat_row));
        let lines = text.lines().count();
        text += "  TCP    10.0.0.1  10.1.0.1:443  ESTABLISHED     100\n";
        text += &netstat_row(1);
        let e = imported(&text, false).unwrap_err();
        assert!(e.contains(&format!("big.txt:{}", lines + 1)), "{e}");
        let s = imported(&text, true).unwrap();
        assert_eq!(s.sockets.len(), lines);
        // After a section read in two halves, the next one's lines keep their numbers.
        let mut text = format!("{NETSTAT_HEADER}\n{}", rows(netstat_row));
        let lines = text.lines().count();
        text += "some other text\n  TCP    10.0.0.1:5  10.1.0.1:443  ESTABLISHED     x\n";
        let e = imported(&text, false).unwrap_err();
        assert!(e.contains(&format!("big.txt:{}", lines + 2)), "{e}");
    }

    #[test]
    fn a_section_that_ends_in_the_first_half_is_read_as_on_one_thread() {
        // The first section ends at a line no parser takes, a little before the middle; rows
        // after it start a section of their own (a fragment without its header).
        let part = rows(netstat_row);
        let first = &part[..part.len() / 3];
        let first = &first[..first.rfind('\n').unwrap() + 1];
        let text = format!("{NETSTAT_HEADER}\n{first}some other text\n{part}");
        let s = imported(&text, false).unwrap();
        let rows = first.lines().count() + part.lines().count();
        assert_eq!(s.sockets.len(), rows);
        let mut cur = Cursor::new("big.txt", &text);
        cur.next();
        let mut b = Builder::default();
        parse(Format::Netstat, &mut cur, &mut b, false, Some(NETSTAT_HEADER)).unwrap();
        assert_eq!(b.sockets[..], s.sockets[..b.sockets.len()]);
    }
}
