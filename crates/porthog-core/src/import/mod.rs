//! Offline input: text captured on any machine (Windows netstat, PowerShell, netsh, event logs;
//! Linux ss, /proc/net, sysctl; porthog's own JSON) turned into the same `Snapshot` the live
//! collector makes. Pure: bytes in, records out. One pasted file may mix several formats with
//! shell prompts between them; each section is recognised by its own parser.

mod cursor;
pub mod decode;
mod error;
mod events;
mod netsh;
mod netstat;
mod powershell;
mod proc_net_text;
mod ps_csv;
mod ps_json;
mod ps_table;
mod recording;
mod ss;
mod sysctl_lines;
mod winevent;

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use cursor::{Cursor, Line};
pub use decode::Encoding;
pub use error::ImportError;

use crate::model::{Gap, GapKind, Os, Process, Snapshot, Socket};
use crate::report::Report;
pub use crate::report::{Evidence, SourceInfo};

/// A format porthog reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Windows `netstat -ano`, `-anob`, `-anoq`, localized.
    Netstat,
    /// `netsh int ipv4|ipv6 show dynamicport tcp|udp`.
    NetshDynamicport,
    /// `netsh int ipv4|ipv6 show excludedportrange protocol=tcp|udp`.
    NetshExcluded,
    /// Linux `ss -tanp`, `-tanpe`, `-uanp`.
    Ss,
    /// `sysctl` lines for the port settings.
    Sysctl,
    /// Linux `/proc/net/tcp`, `tcp6`, `udp`, `udp6`.
    ProcNet,
    /// `Get-NetTCPConnection` / `Get-NetUDPEndpoint` as a table (default view or Format-Table).
    PowershellTable,
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
    pub const ALL: [Format; 11] = [
        Format::Netstat,
        Format::NetshDynamicport,
        Format::NetshExcluded,
        Format::Ss,
        Format::Sysctl,
        Format::ProcNet,
        Format::PowershellTable,
        Format::PowershellCsv,
        Format::PowershellJson,
        Format::Wevtutil,
        Format::GetWinevent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Netstat => "netstat",
            Format::NetshDynamicport => "netsh-dynamicport",
            Format::NetshExcluded => "netsh-excluded",
            Format::Ss => "ss",
            Format::Sysctl => "sysctl",
            Format::ProcNet => "proc-net",
            Format::PowershellTable => "powershell-table",
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
            Format::NetshDynamicport => "netsh int ipv4 show dynamicport tcp",
            Format::NetshExcluded => "netsh int ipv4 show excludedportrange protocol=tcp",
            Format::Ss => "ss -tanp / ss -uanp",
            Format::Sysctl => {
                "sysctl net.ipv4.ip_local_port_range net.ipv4.ip_local_reserved_ports net.ipv4.tcp_tw_reuse"
            }
            Format::ProcNet => "cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6",
            Format::PowershellTable => {
                "Get-NetTCPConnection | Format-Table -AutoSize | Out-String -Width 4096 (or Get-NetUDPEndpoint)"
            }
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

    /// Whose machine the format comes from.
    pub fn os(self) -> Os {
        match self {
            Format::Netstat
            | Format::NetshDynamicport
            | Format::NetshExcluded
            | Format::PowershellTable
            | Format::PowershellCsv
            | Format::PowershellJson
            | Format::Wevtutil
            | Format::GetWinevent => Os::Windows,
            Format::Ss | Format::Sysctl | Format::ProcNet => Os::Linux,
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

/// Accumulates what the parsers find across all inputs.
#[derive(Debug, Default)]
pub struct Builder {
    pub sockets: Vec<Socket>,
    /// Executable or process names by pid (netstat -b, ss users:(...)).
    pub names: HashMap<u32, String>,
    /// Ranges, reserved or excluded ports and reuse switches, as the inputs gave them.
    pub settings: crate::model::Settings,
    pub events: Vec<(u32, Option<String>)>,
    /// Addresses Format-Table cut with `...`/`…`, read as unspecified.
    pub truncated_addresses: u64,
    /// Malformed rows skipped in lenient mode, with the first one's place.
    pub skipped: u64,
    pub first_skipped: Option<String>,
    /// Records each (file, format) contributed.
    counts: HashMap<(usize, Format), u64>,
    file: usize,
    /// Sections (one parser's run over consecutive lines) that gave socket rows.
    socket_sections: std::collections::BTreeSet<usize>,
    /// Sections started so far, across all files.
    section: usize,
}

impl Builder {
    /// Counts one record of `format` for the current file.
    pub fn record(&mut self, format: Format) {
        *self.counts.entry((self.file, format)).or_default() += 1;
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
    let mut b = Builder::default();
    let mut encodings = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let (text, enc) = decode::decode(input.bytes, opts.encoding);
        encodings.push(enc);
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
        let before: u64 = b.counts.values().sum::<u64>() + b.skipped;
        read_text(input.name, &text, opts, &mut b)?;
        if b.counts.values().sum::<u64>() + b.skipped == before {
            return Err(ImportError::unrecognized(input.name, &text, opts.format));
        }
    }
    finish(inputs, &encodings, b)
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
    b: &mut Builder,
) -> Result<(), ImportError> {
    let mut cur = Cursor::new(name, text);
    while let Some(line) = cur.peek() {
        let fmt = opts.format.filter(|f| starts(*f, line, &cur)).or_else(|| {
            if opts.format.is_some() {
                None
            } else {
                Format::ALL.into_iter().find(|f| starts(*f, line, &cur))
            }
        });
        if fmt.is_some() {
            b.section += 1;
        }
        match fmt {
            Some(Format::Netstat) => netstat::parse(&mut cur, b, opts.lenient)?,
            Some(Format::NetshDynamicport) => netsh::parse_dynamicport(&mut cur, b)?,
            Some(Format::NetshExcluded) => netsh::parse_excluded(&mut cur, b)?,
            Some(Format::Ss) => ss::parse(&mut cur, b, opts.lenient)?,
            Some(Format::Sysctl) => sysctl_lines::parse(&mut cur, b)?,
            Some(Format::ProcNet) => proc_net_text::parse(&mut cur, b, opts.lenient)?,
            Some(Format::PowershellTable) => ps_table::parse(&mut cur, b, opts.lenient)?,
            Some(Format::PowershellCsv) => ps_csv::parse(&mut cur, b, opts.lenient)?,
            Some(Format::PowershellJson) => ps_json::parse(&mut cur, b, opts.lenient)?,
            Some(Format::Wevtutil) => events::parse_wevtutil(&mut cur, b, opts.lenient)?,
            Some(Format::GetWinevent) => winevent::parse(&mut cur, b, opts.lenient)?,
            None => {
                cur.next();
            }
        }
    }
    Ok(())
}

fn starts(format: Format, line: Line<'_>, cur: &Cursor<'_>) -> bool {
    match format {
        Format::Netstat => netstat::starts(line),
        Format::NetshDynamicport => netsh::starts_dynamicport(line, cur),
        Format::NetshExcluded => netsh::starts_excluded(line, cur),
        Format::Ss => ss::starts(line),
        Format::Sysctl => sysctl_lines::starts(line),
        Format::ProcNet => proc_net_text::starts(line),
        Format::PowershellTable => ps_table::starts(line, cur),
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
    let mut formats: Vec<(usize, Format)> = b.counts.keys().copied().collect();
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
            records: b.counts[&(i, f)],
        })
        .collect();
    let has = |f: Format| formats.iter().any(|(_, x)| *x == f);

    let mut snapshot =
        Snapshot::new(os, formats.iter().map(|(_, f)| f.as_str()).collect::<Vec<_>>().join(" + "));
    snapshot.settings = b.settings.clone();
    snapshot.gaps.extend(missing_settings(os, &snapshot, has(Format::NetshExcluded)));
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
                    "{merged} socket rows appeared in more than one listing (e.g. netstat -anoq and netstat -anob of the same moment) \
                     and were counted once"
                ),
                advice: None,
            });
        }
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
