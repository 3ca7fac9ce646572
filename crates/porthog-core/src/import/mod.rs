//! Offline input: text captured on any machine (Windows netstat, PowerShell, netsh, event logs;
//! Linux ss, /proc/net, sysctl; porthog's own JSON) turned into the same `Snapshot` the live
//! collector makes. Pure: bytes in, records out. One pasted file may mix several formats with
//! shell prompts between them; each section is recognised by its own parser.

mod cursor;
pub mod decode;
mod error;
pub mod event_xml;
pub(crate) mod events;
mod lsof;
pub(crate) mod netsh;
mod netstat;
mod netstat_linux;
mod paste;
mod powershell;
mod proc_net_text;
mod ps_csv;
mod ps_json;
mod ps_list;
mod ps_table;
mod recording;
mod services;
mod split;
mod ss;
mod ss_summary;
mod sysctl_lines;
mod text;
mod winevent;

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use cursor::{Cursor, Line, Release};
pub use decode::Encoding;
pub use error::{ImportError, printable};
pub use events::kept_ids as kept_event_ids;
pub use powershell::state_code as windows_tcp_state;

use crate::model::{Gap, GapKind, Os, Process, Snapshot, Socket};
pub use crate::report::{Evidence, SourceInfo};
use crate::report::{Report, plural};

/// A format porthog reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Windows `netstat -ano`, `-anob`, `-anoq`, localized.
    Netstat,
    /// Linux `netstat -tanp` and its variants (net-tools or busybox).
    NetstatLinux,
    /// `netsh int ipv4|ipv6 show dynamicport tcp|udp`.
    NetshDynamicport,
    /// `netsh int ipv4|ipv6 show excludedportrange protocol=tcp|udp`.
    NetshExcluded,
    /// Linux `ss -tanp`, `-tanpe`, `-uanp`, `ss -tan state X`, and `-i`/`-m`/`-o` extras.
    Ss,
    /// Linux `ss -s`: totals only.
    SsSummary,
    /// `lsof -nP -iTCP`, `lsof -i -n -P`.
    Lsof,
    /// `sysctl` lines for the port settings.
    Sysctl,
    /// Linux `/proc/net/tcp`, `tcp6`, `udp`, `udp6`.
    ProcNet,
    /// `Get-NetTCPConnection` / `Get-NetUDPEndpoint` as a table (default view or Format-Table).
    PowershellTable,
    /// `Get-NetTCPConnection` / `Get-NetUDPEndpoint` as `Format-List`: one block per socket.
    PowershellList,
    /// `Get-NetTCPConnection | Export-Csv` (or ConvertTo-Csv).
    PowershellCsv,
    /// `Get-NetTCPConnection | ConvertTo-Json`, PowerShell 5.1 or 7.
    PowershellJson,
    /// `wevtutil qe System ... /f:text`: Tcpip events 4227, 4231, 4266.
    Wevtutil,
    /// `Get-WinEvent` as a table or `Format-List`: Tcpip events 4227, 4231, 4266.
    GetWinevent,
}

impl Format {
    pub const ALL: [Format; 15] = [
        Format::Netstat,
        Format::NetstatLinux,
        Format::NetshDynamicport,
        Format::NetshExcluded,
        Format::Ss,
        Format::SsSummary,
        Format::Lsof,
        Format::Sysctl,
        Format::ProcNet,
        Format::PowershellTable,
        Format::PowershellList,
        Format::PowershellCsv,
        Format::PowershellJson,
        Format::Wevtutil,
        Format::GetWinevent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Netstat => "netstat",
            Format::NetstatLinux => "netstat-linux",
            Format::NetshDynamicport => "netsh-dynamicport",
            Format::NetshExcluded => "netsh-excluded",
            Format::Ss => "ss",
            Format::SsSummary => "ss-summary",
            Format::Lsof => "lsof",
            Format::Sysctl => "sysctl",
            Format::ProcNet => "proc-net",
            Format::PowershellTable => "powershell-table",
            Format::PowershellList => "powershell-list",
            Format::PowershellCsv => "powershell-csv",
            Format::PowershellJson => "powershell-json",
            Format::Wevtutil => "wevtutil",
            Format::GetWinevent => "get-winevent",
        }
    }

    /// The command that produces this format, for messages.
    pub fn command(self) -> &'static str {
        match self {
            Format::Netstat => "netstat -ano (or -anob, -anoq)",
            Format::NetstatLinux => "netstat -tanp (Linux, as root)",
            Format::NetshDynamicport => "netsh int ipv4 show dynamicport tcp",
            Format::NetshExcluded => "netsh int ipv4 show excludedportrange protocol=tcp",
            Format::Ss => "ss -tanp / ss -uanp",
            Format::SsSummary => "ss -s",
            Format::Lsof => "lsof -nP -iTCP -iUDP",
            Format::Sysctl => {
                "sysctl net.ipv4.ip_local_port_range net.ipv4.ip_local_reserved_ports net.ipv4.tcp_tw_reuse"
            }
            Format::ProcNet => "cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6",
            Format::PowershellTable => {
                "Get-NetTCPConnection | Format-Table -AutoSize | Out-String -Width 4096 (or Get-NetUDPEndpoint)"
            }
            Format::PowershellList => "Get-NetTCPConnection | Format-List (or Get-NetUDPEndpoint)",
            Format::PowershellCsv => "Get-NetTCPConnection | Export-Csv tcp.csv -NoTypeInformation",
            Format::PowershellJson => "Get-NetTCPConnection | ConvertTo-Json",
            Format::Wevtutil => {
                "wevtutil qe System /q:\"*[System[Provider[@Name='Tcpip'] and (EventID=4227 or EventID=4231 or EventID=4266)]]\" /f:text"
            }
            Format::GetWinevent => {
                "Get-WinEvent -FilterHashtable @{LogName='System'; ProviderName='Tcpip'; Id=4227,4231,4266}"
            }
        }
    }

    /// Whether the format lists sockets (and so can show that there are none).
    pub fn lists_sockets(self) -> bool {
        match self {
            Format::Netstat
            | Format::NetstatLinux
            | Format::Ss
            | Format::Lsof
            | Format::ProcNet
            | Format::PowershellTable
            | Format::PowershellList
            | Format::PowershellCsv
            | Format::PowershellJson => true,
            Format::NetshDynamicport
            | Format::NetshExcluded
            | Format::SsSummary
            | Format::Sysctl
            | Format::Wevtutil
            | Format::GetWinevent => false,
        }
    }

    /// Whose machine the format comes from.
    pub fn os(self) -> Os {
        match self {
            Format::Netstat
            | Format::NetshDynamicport
            | Format::NetshExcluded
            | Format::PowershellTable
            | Format::PowershellList
            | Format::PowershellCsv
            | Format::PowershellJson
            | Format::Wevtutil
            | Format::GetWinevent => Os::Windows,
            Format::Ss
            | Format::SsSummary
            | Format::Lsof
            | Format::Sysctl
            | Format::ProcNet
            | Format::NetstatLinux => Os::Linux,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        Format::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
            format!("unknown format {s:?}; known: {}", names.join(", "))
        })
    }
}

/// `--format NAME` on the command line: each name with the command that produces it.
#[cfg(feature = "clap")]
impl clap::ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &Format::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()).help(self.command()))
    }
}

/// One input: a file's name (or "-") and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
}

/// How to read the inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Read every input as this format instead of detecting.
    pub format: Option<Format>,
    /// Decode every input with this encoding instead of detecting.
    pub encoding: Option<Encoding>,
    /// Skip malformed rows (counted) instead of failing on the first.
    pub lenient: bool,
}

/// What the inputs held.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "made once per run, never stored in bulk")]
pub enum Imported {
    /// Sockets and settings, to analyze.
    Snapshot { snapshot: Snapshot, sources: Vec<SourceInfo>, evidence: Vec<Evidence> },
    /// A report porthog saved earlier with `--json`, or the last sample of a `porthog record`
    /// file.
    Report(Box<Report>),
}

/// The Windows shell a capture came from, for advice that fits it: a prompt (`PS C:\>` or
/// `C:\>`) or the encoding gives it away (PowerShell 5.1 `>` writes UTF-16, cmd.exe an OEM
/// code page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    Cmd,
    PowerShell,
}

impl Shell {
    fn of_prompt(t: &str) -> Option<Shell> {
        let t = t.trim_start();
        if t.starts_with("PS ") && t.contains('>') {
            Some(Shell::PowerShell)
        } else {
            ps_table::is_prompt(t).then_some(Shell::Cmd)
        }
    }

    fn of_encoding(e: Encoding) -> Option<Shell> {
        match e {
            Encoding::Utf16Le | Encoding::Utf16Be => Some(Shell::PowerShell),
            Encoding::Cp437 | Encoding::Cp850 | Encoding::Cp932 => Some(Shell::Cmd),
            Encoding::Utf8 | Encoding::Utf8Bom => None,
        }
    }
}

/// The one command that captures sockets with their owners, in `shell`.
fn owners_command(shell: Option<Shell>) -> &'static str {
    match shell {
        Some(Shell::PowerShell) => "Get-NetTCPConnection | Export-Csv tcp.csv -NoTypeInformation",
        Some(Shell::Cmd) | None => "netstat -anoq",
    }
}

/// The one command whose whole output a filtered fragment of `format` was cut from.
fn unfiltered(format: Format, shell: Option<Shell>) -> &'static str {
    match format {
        Format::Netstat => owners_command(shell),
        Format::NetstatLinux => "netstat -tanp",
        Format::Ss => "ss -tanp",
        Format::Lsof => "lsof -nP -i",
        other => other.command(),
    }
}

/// Accumulates what the parsers find across all inputs.
#[derive(Debug, Default)]
pub struct Builder {
    pub sockets: Vec<Socket>,
    /// Executable or process names by pid (netstat -b, ss users:(...)): see [`Builder::name`].
    pub names: rustc_hash::FxHashMap<u32, String>,
    /// Ranges, reserved or excluded ports and reuse switches, as the inputs gave them.
    pub settings: crate::model::Settings,
    pub events: Vec<(u32, Option<String>)>,
    /// Addresses Format-Table cut with `...`/`…`, read as unspecified.
    pub truncated_addresses: u64,
    /// netstat rows without a PID column (`-an`), TIME_WAIT aside: their owners are unknown.
    pub no_pid_rows: u64,
    /// PowerShell table rows without an OwningProcess column (Get-NetUDPEndpoint's default view).
    pub no_owner_column_rows: u64,
    /// netstat `-a` rows whose port is a service name porthog does not know, with the first.
    pub unplaced_rows: u64,
    pub first_unplaced: Option<String>,
    /// Pasting noise removed from the inputs (paste.rs), and the file of the first truncation.
    pub paste: paste::Noise,
    pub first_truncated_file: Option<String>,
    /// The shell the first prompt or encoding named.
    pub shell: Option<Shell>,
    /// Malformed rows skipped in lenient mode, with the first one's place.
    pub skipped: u64,
    pub first_skipped: Option<String>,
    /// Records each (file, format) contributed, in the order first seen (a handful of entries:
    /// a linear search, and the hot path hits the last one).
    counts: Vec<((usize, Format), u64)>,
    /// How each (file, format) was read, where that is not plain (`SourceInfo::notes`).
    notes: HashMap<(usize, Format), Vec<String>>,
    file: usize,
    /// Sections (one parser's run over consecutive lines) that gave socket rows.
    socket_sections: std::collections::BTreeSet<usize>,
    /// Sections started so far, across all files.
    section: usize,
    /// What the captures cannot show (owners, states, TIME_WAIT, listeners), once each.
    gaps: Vec<Gap>,
    /// `ss -s`: (TCP sockets, TIME_WAIT), judged against the range once it is known.
    pub ss_summary: Option<(u64, u64)>,
    /// (file, format) sections read as rows without their header: filtered fragments.
    fragments: std::collections::BTreeSet<(usize, Format)>,
}

impl Builder {
    /// Counts one record of `format` for the current file.
    pub fn record(&mut self, format: Format) {
        *self.count_of(format) += 1;
    }

    /// The record count of the current file's `format`, made 0 if it has none yet.
    fn count_of(&mut self, format: Format) -> &mut u64 {
        let key = (self.file, format);
        let i = match self.counts.iter().rposition(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.counts.push((key, 0));
                self.counts.len() - 1
            }
        };
        &mut self.counts[i].1
    }

    /// Says how the current file's `format` section was read (a variant, an assumption); each
    /// note once.
    pub fn note(&mut self, format: Format, note: &str) {
        let notes = self.notes.entry((self.file, format)).or_default();
        if !notes.iter().any(|n| n == note) {
            notes.push(note.to_owned());
        }
    }

    /// Says that the current file's `format` rows came without their header (a filtered
    /// fragment such as `| grep TIME_WAIT`): `note` goes to `sources[]`, and `finish` adds the
    /// gap that names the unfiltered capture.
    pub fn fragment(&mut self, format: Format, note: &str) {
        self.note(format, note);
        self.fragments.insert((self.file, format));
    }

    /// Names `pid`, unless an earlier row did (the first name a capture gives a pid stands).
    /// Called for every row of a million-row capture: no allocation once the pid is named.
    pub fn name(&mut self, pid: u32, name: &str) {
        self.names.entry(pid).or_insert_with(|| name.to_owned());
    }

    /// Adds a socket owned by `pid` (0: no owner, as Windows reports TIME_WAIT).
    pub fn socket(&mut self, format: Format, mut s: Socket, pid: u32) {
        s.pid = NonZeroU32::new(pid);
        self.sockets.push(s);
        // Hot path (a million rows): only the first socket of a section touches the set.
        if self.socket_sections.last() != Some(&self.section) {
            self.socket_sections.insert(self.section);
        }
        self.record(format);
    }

    /// Something a capture cannot show, once per message; counts of the same message add up.
    pub fn gap(&mut self, gap: Gap) {
        match self.gaps.iter_mut().find(|g| g.message == gap.message) {
            Some(g) => {
                g.count = match (g.count, gap.count) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                }
            }
            None => self.gaps.push(gap),
        }
    }

    /// An empty builder for one half of the current section (split.rs).
    fn for_section(&self) -> Builder {
        Builder { file: self.file, section: self.section, ..Builder::default() }
    }

    /// Takes in what `other`, a builder `for_section` made, read after what this one read: the
    /// result is as if one builder had read both in turn.
    fn absorb(&mut self, other: Builder) {
        let Builder {
            mut sockets,
            names,
            settings: _,
            mut events,
            truncated_addresses,
            no_pid_rows,
            no_owner_column_rows,
            unplaced_rows,
            first_unplaced,
            paste: _,
            first_truncated_file: _,
            shell,
            skipped,
            first_skipped,
            counts,
            notes,
            file: _,
            socket_sections,
            section: _,
            gaps,
            ss_summary: _,
            fragments,
        } = other;
        if self.sockets.is_empty() && sockets.capacity() > self.sockets.capacity() {
            std::mem::swap(&mut self.sockets, &mut sockets);
        }
        self.sockets.append(&mut sockets);
        for (pid, name) in names {
            self.names.entry(pid).or_insert(name);
        }
        self.events.append(&mut events);
        self.truncated_addresses += truncated_addresses;
        self.no_pid_rows += no_pid_rows;
        self.no_owner_column_rows += no_owner_column_rows;
        self.unplaced_rows += unplaced_rows;
        self.first_unplaced = self.first_unplaced.take().or(first_unplaced);
        self.shell = self.shell.or(shell);
        self.skipped += skipped;
        self.first_skipped = self.first_skipped.take().or(first_skipped);
        let file = self.file;
        for ((f, format), n) in counts {
            self.file = f;
            *self.count_of(format) += n;
        }
        self.file = file;
        for ((f, format), list) in notes {
            let mine = self.notes.entry((f, format)).or_default();
            for note in list {
                if !mine.contains(&note) {
                    mine.push(note);
                }
            }
        }
        self.socket_sections.extend(socket_sections);
        self.fragments.extend(fragments);
        for gap in gaps {
            self.gap(gap);
        }
    }

    /// A malformed row: an error, or in lenient mode a counted skip.
    pub fn malformed(&mut self, lenient: bool, e: ImportError) -> Result<(), ImportError> {
        if !lenient {
            return Err(e);
        }
        self.skipped += 1;
        if self.first_skipped.is_none() {
            self.first_skipped = Some(e.to_string());
        }
        Ok(())
    }
}

/// Reads every input into one snapshot of one machine.
pub fn import(inputs: &[Input<'_>], opts: &ImportOptions) -> Result<Imported, ImportError> {
    import_paged(inputs, opts, Release::NONE)
}

/// [`import`], telling `release` which part of each input it has read (a caller that mapped a
/// large file drops those pages: the text is scanned twice, to validate it and to find pasting
/// noise, then read once, and none of it needs to stay in memory whole).
pub fn import_paged(
    inputs: &[Input<'_>],
    opts: &ImportOptions,
    release: Release<'_>,
) -> Result<Imported, ImportError> {
    let mut b = Builder::default();
    let mut encodings = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (text, enc) = decode::decode_paged(input.bytes, opts.encoding, release);
        if decode::is_binary(input.bytes, &text, enc) {
            return Err(ImportError::binary(input.name));
        }
        encodings.push(enc);
        b.shell = b.shell.or_else(|| Shell::of_encoding(enc));
        if let Some(report) =
            recording::last_report(input.name, &text).or_else(|| own_report(&text))
        {
            if inputs.len() > 1 {
                return Err(ImportError::whole(
                    input.name,
                    "a saved porthog report or recording must be read on its own",
                ));
            }
            return Ok(Imported::Report(Box::new(
                report.map_err(|e| ImportError::whole(input.name, &e))?,
            )));
        }
        b.file = i;
        // A recognised section counts even when it holds no rows: a header-only `/proc/net/tcp6`
        // or `ss -tanp` is a capture of zero sockets, not an unknown format (issue 8).
        let before = b.section;
        read_text(input.name, &text, opts, release, &mut b)?;
        if b.section == before {
            return Err(ImportError::unrecognized(input.name, &text, opts.format));
        }
    }
    finish(inputs, &encodings, b)
}

/// Whether any input was a socket listing, even one of zero sockets. Without one (only settings,
/// say) there is nothing to judge; with only empty listings the machine had no sockets, which
/// is an answer (verdict ok, and a gap says so).
pub fn has_socket_listing(sources: &[SourceInfo]) -> bool {
    sources.iter().any(|s| s.format.parse::<Format>().is_ok_and(Format::lists_sockets))
}

/// A porthog `--json` report, if that is what the text is.
fn own_report(text: &str) -> Option<Result<Report, String>> {
    let t = text.trim_start();
    if !(t.starts_with('{') && t[..t.floor_char_boundary(200)].contains("\"schema_version\"")) {
        return None;
    }
    Some(serde_json::from_str::<Report>(t).map_err(|e| {
        format!(
            "looks like a porthog JSON report but cannot be read: {e} (line {}, column {})",
            e.line(),
            e.column()
        )
    }))
}

/// Walks the lines, handing each section to the parser that recognises its first line.
fn read_text(
    name: &str,
    text: &str,
    opts: &ImportOptions,
    release: Release<'_>,
    b: &mut Builder,
) -> Result<(), ImportError> {
    let (text, noise) = paste::normalize_paged(text, release);
    if noise.first_truncated.is_some() && b.first_truncated_file.is_none() {
        b.first_truncated_file = Some(printable(name).into_owned());
    }
    b.paste.add(&noise);
    let mut cur = Cursor::paged(name, &text, release);
    // The last non-blank line no parser took: a netstat header, or the prompt of a fragment.
    let mut skipped: Option<&str> = None;
    while let Some(line) = cur.peek() {
        let fmt = opts.format.filter(|f| starts(*f, line, &cur)).or_else(|| {
            if opts.format.is_some() {
                None
            } else {
                Format::ALL.into_iter().find(|f| starts(*f, line, &cur))
            }
        });
        if let Some(f) = fmt {
            b.section += 1;
            // Listed in `sources` with 0 records if the section turns out empty.
            b.count_of(f);
            // A large section is read on two threads when its format allows.
            if let Some(read) = split::read(f, &mut cur, b, opts.lenient, skipped) {
                read?;
                skipped = None;
                continue;
            }
        }
        match fmt {
            Some(Format::Netstat) => netstat::parse(&mut cur, b, opts.lenient, skipped)?,
            Some(Format::NetstatLinux) => netstat_linux::parse(&mut cur, b, opts.lenient)?,
            Some(Format::NetshDynamicport) => netsh::parse_dynamicport(&mut cur, b)?,
            Some(Format::NetshExcluded) => netsh::parse_excluded(&mut cur, b)?,
            Some(Format::Ss) => ss::parse(&mut cur, b, opts.lenient)?,
            Some(Format::SsSummary) => ss_summary::parse(&mut cur, b)?,
            Some(Format::Lsof) => lsof::parse(&mut cur, b, opts.lenient)?,
            Some(Format::Sysctl) => sysctl_lines::parse(&mut cur, b)?,
            Some(Format::ProcNet) => proc_net_text::parse(&mut cur, b, opts.lenient)?,
            Some(Format::PowershellTable) => ps_table::parse(&mut cur, b, opts.lenient)?,
            Some(Format::PowershellList) => ps_list::parse(&mut cur, b, opts.lenient)?,
            Some(Format::PowershellCsv) => ps_csv::parse(&mut cur, b, opts.lenient)?,
            Some(Format::PowershellJson) => ps_json::parse(&mut cur, b, opts.lenient)?,
            Some(Format::Wevtutil) => events::parse_wevtutil(&mut cur, b, opts.lenient)?,
            Some(Format::GetWinevent) => winevent::parse(&mut cur, b, opts.lenient)?,
            None => {
                if !line.text.trim().is_empty() {
                    skipped = Some(line.text);
                    b.shell = b.shell.or_else(|| Shell::of_prompt(line.text));
                }
                cur.next();
                continue;
            }
        }
        skipped = None;
    }
    Ok(())
}

fn starts(format: Format, line: Line<'_>, cur: &Cursor<'_>) -> bool {
    match format {
        Format::Netstat => netstat::starts(line),
        Format::NetstatLinux => netstat_linux::starts(line),
        Format::NetshDynamicport => netsh::starts_dynamicport(line, cur),
        Format::NetshExcluded => netsh::starts_excluded(line, cur),
        Format::Ss => ss::starts(line),
        Format::SsSummary => ss_summary::starts(line, cur),
        Format::Lsof => lsof::starts(line),
        Format::Sysctl => sysctl_lines::starts(line),
        Format::ProcNet => proc_net_text::starts(line),
        Format::PowershellTable => ps_table::starts(line, cur),
        Format::PowershellList => ps_list::starts(line, cur),
        Format::PowershellCsv => ps_csv::starts(line, cur),
        Format::PowershellJson => ps_json::starts(line, cur),
        Format::Wevtutil => events::starts_wevtutil(line, cur),
        Format::GetWinevent => winevent::starts(line, cur),
    }
}

fn finish(
    inputs: &[Input<'_>],
    encodings: &[Encoding],
    mut b: Builder,
) -> Result<Imported, ImportError> {
    let mut formats: Vec<(usize, Format)> = b.counts.iter().map(|(k, _)| *k).collect();
    formats.sort_unstable();
    let oses: Vec<Os> = formats.iter().map(|(_, f)| f.os()).collect();
    let os = oses.first().copied().unwrap_or(Os::Linux);
    if let Some((i, f)) = formats.iter().find(|(_, f)| f.os() != os) {
        return Err(ImportError::whole(
            inputs[*i].name,
            &format!(
                "{} output is from {:?} but {} output is from {:?}: give the captures of one machine at a time",
                f,
                f.os(),
                formats[0].1,
                os
            ),
        ));
    }
    let sources: Vec<SourceInfo> = formats
        .iter()
        .map(|&(i, f)| SourceInfo {
            file: inputs[i].name.to_owned(),
            format: f.as_str().to_owned(),
            encoding: encodings[i].as_str().to_owned(),
            records: b.counts.iter().find(|(k, _)| *k == (i, f)).map_or(0, |(_, n)| *n),
            notes: b.notes.remove(&(i, f)).unwrap_or_default(),
        })
        .collect();
    let has = |f: Format| formats.iter().any(|(_, x)| *x == f);

    // The source names where the sockets came from: settings and event logs are no socket
    // listing (they show in `sources`).
    let listings: Vec<&str> =
        formats.iter().filter(|(_, f)| f.lists_sockets()).map(|(_, f)| f.as_str()).collect();
    let mut snapshot = Snapshot::new(os, listings.join(" + "));
    snapshot.settings = b.settings.clone();
    snapshot.gaps.extend(missing_settings(os, &snapshot, has(Format::NetshExcluded)));
    snapshot.gaps.append(&mut b.gaps);
    if let Some((total, time_wait)) = b.ss_summary
        && b.sockets.is_empty()
    {
        let range = snapshot.settings.tcp_range.unwrap_or(crate::ports::PortRange::LINUX_DEFAULT);
        snapshot.gaps.push(Gap {
            kind: GapKind::Incomplete,
            count: None,
            message: format!(
                "`ss -s` gives totals only: {total} TCP sockets, {time_wait} in TIME_WAIT against the {}-port range {}-{}; \
                 pools are per destination and cannot be judged from totals",
                range.len(),
                range.start,
                range.end
            ),
            advice: Some("capture `ss -tanp` for the pools and their owners".to_owned()),
        });
    }
    if b.skipped > 0 {
        snapshot.gaps.push(Gap {
            kind: GapKind::Incomplete,
            count: Some(b.skipped),
            message: format!(
                "{} malformed rows were skipped (--lenient); the first: {}",
                b.skipped,
                b.first_skipped.as_deref().unwrap_or("?")
            ),
            advice: Some(
                "counts may be short by that many sockets; fix or recapture the input".to_owned(),
            ),
        });
    }
    // The same socket twice means two listings of one moment (netstat -anoq then -anob, in two
    // files or pasted one after the other); rows of one listing never repeat.
    if b.socket_sections.len() > 1 {
        let merged = merge_duplicates(&mut b.sockets);
        if merged > 0 {
            snapshot.gaps.push(Gap {
                kind: GapKind::Source,
                count: Some(merged),
                message: format!(
                    "{} seen in more than one listing (e.g. {} of the same moment), counted once",
                    plural(merged, "socket row"),
                    match os {
                        Os::Windows => "netstat -anoq and netstat -anob",
                        Os::Linux => "ss -tanp and /proc/net/tcp",
                    }
                ),
                advice: None,
            });
        }
    }
    let listings = formats.iter().filter(|(_, f)| f.lists_sockets()).count();
    if listings > 0 && b.sockets.is_empty() {
        snapshot.gaps.push(Gap {
            kind: GapKind::Source,
            count: Some(0),
            message: format!(
                "the socket listing{} held no sockets: the machine (or namespace) had none when it was captured",
                if listings == 1 { "" } else { "s" }
            ),
            advice: Some(
                "if it has sockets, capture again as an administrator (root) and inside the right network namespace".to_owned(),
            ),
        });
    }
    snapshot.gaps.extend(paste_gaps(&b));
    for &(i, f) in &b.fragments {
        let rows = b.counts.iter().find(|(k, _)| *k == (i, f)).map_or(0, |(_, n)| *n);
        snapshot.gaps.push(Gap {
            kind: GapKind::Incomplete,
            count: Some(rows),
            message: format!(
                "{}: {} without their header, a filtered fragment: the sockets the filter left out \
                 (other states, destinations, owners) are not seen, so the pools hold only these rows",
                printable(inputs[i].name),
                plural(rows, &format!("{f} row"))
            ),
            advice: Some(format!("capture `{}` without the filter", unfiltered(f, b.shell))),
        });
    }
    if b.no_pid_rows > 0 {
        snapshot.gaps.push(Gap {
            kind: GapKind::Unattributed,
            count: Some(b.no_pid_rows),
            message: format!(
                "{} socket{} no owner in the input: netstat ran without -o, so it printed no PID column",
                b.no_pid_rows,
                if b.no_pid_rows == 1 { " has" } else { "s have" }
            ),
            advice: Some(format!("capture `{}` instead", owners_command(b.shell))),
        });
    }
    if b.no_owner_column_rows > 0 {
        let n = b.no_owner_column_rows;
        snapshot.gaps.push(Gap {
            kind: GapKind::Unattributed,
            count: Some(n),
            message: format!(
                "{n} socket{} no owner in the input: the PowerShell table has no OwningProcess column (the default view of Get-NetUDPEndpoint)",
                if n == 1 { " has" } else { "s have" }
            ),
            advice: Some(
                "capture `Get-NetUDPEndpoint | Select-Object LocalAddress,LocalPort,OwningProcess | Format-Table -AutoSize` instead"
                    .to_owned(),
            ),
        });
    }
    if b.unplaced_rows > 0 {
        snapshot.gaps.push(Gap {
            kind: GapKind::Source,
            count: Some(b.unplaced_rows),
            message: format!(
                "{} netstat rows name their local port by a service name porthog does not know, so they could not be placed in a pool (first: {})",
                b.unplaced_rows,
                b.first_unplaced.as_deref().unwrap_or("?")
            ),
            advice: Some("capture with `netstat -ano` (numbers, not names)".to_owned()),
        });
    }
    if b.truncated_addresses > 0 {
        snapshot.gaps.push(Gap {
            kind: GapKind::Source,
            count: Some(b.truncated_addresses),
            message: format!(
                "{} addresses were cut short by Format-Table (`...` or `…`) and could not be read: those sockets are counted by port and owner with an unspecified address",
                b.truncated_addresses
            ),
            advice: Some(
                "capture with `Get-NetTCPConnection | Format-Table -AutoSize | Out-String -Width 4096`, or `| Export-Csv tcp.csv -NoTypeInformation`".to_owned(),
            ),
        });
    }
    let evidence = events::evidence(&b.events);
    let mut pids: Vec<u32> = b.sockets.iter().filter_map(|s| s.pid.map(NonZeroU32::get)).collect();
    pids.sort_unstable();
    pids.dedup();
    snapshot.processes = pids
        .into_iter()
        .map(|pid| Process {
            pid,
            name: b.names.get(&pid).cloned().unwrap_or_else(|| "?".to_owned()),
            ..Default::default()
        })
        .collect();
    snapshot.sockets = b.sockets;
    Ok(Imported::Snapshot { snapshot, sources, evidence })
}

/// Gaps for the pasting noise `paste.rs` removed: what it was, how many lines. Truncation
/// means rows are missing, so an `ok` from such a list is no answer (`Incomplete`).
fn paste_gaps(b: &Builder) -> Vec<Gap> {
    let n = &b.paste;
    let mut gaps = Vec::new();
    let removed: Vec<String> = [
        (n.fences, "markdown code fence lines"),
        (n.quoted, "quote markers (`> `)"),
        (n.timestamped, "chat timestamps"),
        (n.numbered, "line numbers"),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, what)| format!("{what} on {count} lines"))
    .collect();
    if !removed.is_empty() {
        gaps.push(Gap {
            kind: GapKind::Source,
            count: Some(n.fences + n.quoted + n.timestamped + n.numbered),
            message: format!("pasting noise was removed before reading: {}", removed.join(", ")),
            advice: None,
        });
    }
    if n.truncated > 0 {
        gaps.push(Gap {
            kind: GapKind::Incomplete,
            count: Some(n.truncated),
            message: format!(
                "the paste was cut short in {} place{} (`...` or a row cut off; first at {}:{}): rows are missing",
                n.truncated,
                if n.truncated == 1 { "" } else { "s" },
                b.first_truncated_file.as_deref().unwrap_or("?"),
                n.first_truncated.unwrap_or(0)
            ),
            advice: Some("attach the whole capture as a file instead of pasting it".to_owned()),
        });
    }
    gaps
}

/// Keeps one socket per (protocol, local, remote, state), preferring a row with an owner, in
/// input order. Returns how many rows were dropped.
fn merge_duplicates(sockets: &mut Vec<Socket>) -> u64 {
    let key =
        |s: &Socket| (s.protocol, s.local_ip, s.local_port, s.remote_ip, s.remote_port, s.state);
    let mut order: Vec<usize> = (0..sockets.len()).collect();
    order.sort_by(|&a, &b| {
        key(&sockets[a])
            .cmp(&key(&sockets[b]))
            .then(sockets[b].pid.is_some().cmp(&sockets[a].pid.is_some()))
            .then(a.cmp(&b))
    });
    let mut keep = vec![true; sockets.len()];
    for w in order.windows(2) {
        if key(&sockets[w[0]]) == key(&sockets[w[1]]) {
            keep[w[1]] = false;
        }
    }
    let before = sockets.len();
    let mut i = 0;
    sockets.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    (before - sockets.len()) as u64
}

/// Gaps for settings the inputs did not give, naming the command that captures them.
fn missing_settings(os: Os, s: &Snapshot, has_exclusions: bool) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let gap = |message: String, advice: &str| Gap {
        kind: GapKind::Setting,
        count: None,
        message,
        advice: Some(advice.to_owned()),
    };
    match os {
        Os::Windows => {
            if s.settings.tcp_range.is_none() {
                gaps.push(gap(
                    "the TCP dynamic port range was not in the input: the default 49152-65535 (16,384 ports) is assumed".into(),
                    "capture `netsh int ipv4 show dynamicport tcp` too",
                ));
            }
            if !has_exclusions {
                gaps.push(gap(
                    "the excluded port ranges were not in the input: the pool may be smaller than shown (Hyper-V, WinNAT, WSL and Docker reserve blocks)".into(),
                    "capture `netsh int ipv4 show excludedportrange protocol=tcp` too",
                ));
            }
        }
        Os::Linux => {
            if s.settings.tcp_range.is_none() {
                gaps.push(gap(
                    "net.ipv4.ip_local_port_range was not in the input: the default 32768-60999 (28,232 ports) is assumed".into(),
                    "capture `sysctl net.ipv4.ip_local_port_range net.ipv4.ip_local_reserved_ports net.ipv4.tcp_tw_reuse net.ipv4.tcp_timestamps` too",
                ));
            }
            if s.settings.tw_reuse.is_none() {
                gaps.push(gap(
                    "net.ipv4.tcp_tw_reuse was not in the input: the kernel default 2 (loopback only) is assumed".into(),
                    "capture `sysctl net.ipv4.tcp_tw_reuse net.ipv4.tcp_timestamps` too",
                ));
            }
        }
    }
    gaps
}

/// What the importers' unit tests share: one text in, what it held out.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Evidence, ImportOptions, Imported, Input, Snapshot, import};

    pub(crate) fn snapshot_of(name: &str, text: &str) -> Snapshot {
        match import(&[Input { name, bytes: text.as_bytes() }], &ImportOptions::default()) {
            Ok(Imported::Snapshot { snapshot, .. }) => snapshot,
            other => panic!("{name}: expected sockets, got {other:?}"),
        }
    }

    pub(crate) fn evidence_of(name: &str, text: &str) -> Vec<Evidence> {
        match import(&[Input { name, bytes: text.as_bytes() }], &ImportOptions::default()) {
            Ok(Imported::Snapshot { evidence, .. }) => evidence,
            other => panic!("{name}: expected events, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::num::NonZeroU32;

    use proptest::prelude::*;

    use super::*;
    use crate::model::{Protocol, State};
    use crate::ports::PortRange;
    use crate::{AnalyzeOptions, analyze};

    fn arb_socket() -> impl Strategy<Value = Socket> {
        (0usize..12, 0u16..200, 0u8..4, 0u16..3, 0u32..5, any::<bool>()).prop_map(
            |(st, lp, rip, rp, pid, udp)| {
                let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
                Socket {
                    pid: NonZeroU32::new(pid),
                    inode: pid,
                    ..Socket::new(
                        if udp { Protocol::Udp } else { Protocol::Tcp },
                        State::ALL[st],
                        (ip(1), 40000 + lp),
                        (ip(2 + rip), 7000 + rp),
                    )
                }
            },
        )
    }

    proptest! {
        /// A saved --json report read back through `import` is the same report: same verdict,
        /// pools, processes and counts.
        #[test]
        fn own_json_round_trips(sockets in prop::collection::vec(arb_socket(), 0..300), windows in any::<bool>()) {
            let mut s = Snapshot::new(if windows { Os::Windows } else { Os::Linux }, "test");
            s.settings.tcp_range = PortRange::new(40000, 40199);
            s.settings.udp_range = s.settings.tcp_range;
            s.sockets = sockets;
            let report = analyze(&s, &AnalyzeOptions::default());
            let json = serde_json::to_string_pretty(&report).unwrap();
            let back = match import(&[Input { name: "r.json", bytes: json.as_bytes() }], &ImportOptions::default()) {
                Ok(Imported::Report(r)) => *r,
                other => panic!("expected a report, got {other:?}"),
            };
            prop_assert_eq!(back.verdict, report.verdict);
            prop_assert_eq!(&back.totals, &report.totals);
            prop_assert_eq!(back, report);
        }

        /// No input makes the importer panic, in any format or encoding.
        #[test]
        fn any_bytes_are_an_error_or_a_snapshot(bytes in prop::collection::vec(any::<u8>(), 0..400), f in 0usize..Format::ALL.len(), forced in any::<bool>()) {
            let opts = ImportOptions { format: forced.then_some(Format::ALL[f]), ..Default::default() };
            let _ = import(&[Input { name: "x", bytes: &bytes }], &opts);
        }
    }

    #[test]
    fn a_truncated_report_is_a_clear_error() {
        let text = r#"{"schema_version": 1, "verdict": "ok", "summ"#;
        let e =
            import(&[Input { name: "r.json", bytes: text.as_bytes() }], &ImportOptions::default())
                .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("r.json: looks like a porthog JSON report but cannot be read"),
            "{e}"
        );
    }

    #[test]
    fn inputs_from_two_oses_are_refused() {
        let netstat = "  TCP    10.0.0.7:49152   10.0.0.5:443   ESTABLISHED   4321\n";
        let ss = "ESTAB 0 0 10.0.0.7:40000 10.0.0.5:5432\n";
        let inputs = [
            Input { name: "win.txt", bytes: netstat.as_bytes() },
            Input { name: "linux.txt", bytes: ss.as_bytes() },
        ];
        let e = import(&inputs, &ImportOptions::default()).unwrap_err();
        assert!(e.to_string().contains("give the captures of one machine at a time"), "{e}");
    }

    #[test]
    fn garbage_names_the_formats_tried_and_shows_the_first_lines() {
        let e = import(
            &[Input { name: "junk.bin", bytes: b"hello\nworld\n" }],
            &ImportOptions::default(),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("junk.bin: no known format recognised (tried netstat, "), "{msg}");
        assert!(msg.contains("  | hello"), "{msg}");
    }
}
