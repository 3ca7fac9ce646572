//! The human report: verdict line first, then the pools nearest exhaustion, the processes
//! holding the most ports, findings with their fix, and what could not be seen. `&Report` in,
//! text out; colour only when asked (the caller decides from the terminal and --color).

use std::fmt::Write as _;

use anstyle::{AnsiColor, Effects, Style};
use porthog_core::pool::RangeReport;
use porthog_core::report::{ProcessReport, grouped, plural};
use porthog_core::{Level, Pool, Report, TwReuse};

const BAR_WIDTH: usize = 20;

/// Renders the report for a terminal `width` columns wide.
pub fn render(report: &Report, top: usize, color: bool, width: usize) -> String {
    let p = Painter { color };
    let width = width.clamp(60, 160);
    let mut out = String::new();

    out.push_str(&verdict_line(report, color));
    out.push_str("\n\n");
    context(report, &p, &mut out);
    pools(report, top, &p, &mut out);
    processes(report, top, &p, width, &mut out);
    findings(report, &p, width, &mut out);
    gaps(report, &p, width, &mut out);
    out
}

/// The first line of the report: the verdict word and the tightest pool.
pub fn verdict_line(report: &Report, color: bool) -> String {
    let p = Painter { color };
    let word = report.verdict.as_str().to_uppercase();
    format!(
        "{}  {}",
        p.paint(level_style(report.verdict).effects(Effects::BOLD), &word),
        report.summary
    )
}

/// Paints with anstyle when colour is on, and leaves text plain otherwise.
pub(super) struct Painter {
    pub(super) color: bool,
}

impl Painter {
    pub(super) fn paint(&self, style: Style, text: &str) -> String {
        if self.color { format!("{style}{text}{style:#}") } else { text.to_owned() }
    }
    fn heading(&self, text: &str) -> String {
        self.paint(Style::new().effects(Effects::BOLD), text)
    }
    fn dim(&self, text: &str) -> String {
        self.paint(Style::new().effects(Effects::DIMMED), text)
    }
}

pub(super) fn level_style(level: Level) -> Style {
    let c = match level {
        Level::Ok => AnsiColor::Green,
        Level::Info => AnsiColor::Blue,
        Level::Warn => AnsiColor::Yellow,
        Level::Critical | Level::Exhausted => AnsiColor::Red,
    };
    Style::new().fg_color(Some(c.into()))
}

fn context(report: &Report, p: &Painter, out: &mut String) {
    let ranges: Vec<String> = report.ranges.iter().map(range_text).collect();
    let mut settings = Vec::new();
    if let Some(mode) = report.settings.tw_reuse {
        settings.push(match mode {
            TwReuse::Off => "tcp_tw_reuse 0 (off)",
            TwReuse::On => "tcp_tw_reuse 1 (on)",
            TwReuse::Loopback => "tcp_tw_reuse 2 (loopback only)",
        });
    }
    if let Some(ts) = report.settings.timestamps {
        settings.push(if ts { "timestamps on" } else { "timestamps off" });
    }
    if !report.sources.is_empty() {
        let read: Vec<String> = report
            .sources
            .iter()
            .map(|s| {
                let notes = if s.notes.is_empty() {
                    String::new()
                } else {
                    format!(": {}", s.notes.join(", "))
                };
                format!(
                    "{}: {} ({}, {}{notes})",
                    s.file,
                    s.format,
                    s.encoding,
                    plural(s.records, "record")
                )
            })
            .collect();
        let _ = writeln!(out, "{}  {}", p.dim("Read   "), read.join("; "));
    }
    let _ = writeln!(out, "{}  {}", p.dim("Ranges "), ranges.join("; "));
    if !settings.is_empty() {
        let _ = writeln!(out, "{}  {}", p.dim("Reuse  "), settings.join("; "));
    }
    let netns =
        report.netns.as_ref().map_or(String::new(), |n| format!(" in network namespace {n}"));
    let t = &report.totals;
    let _ = writeln!(
        out,
        "{}  {} from {}{netns}; {} owned by no process (TIME_WAIT, orphans), {} unattributed",
        p.dim("Seen   "),
        plural(t.sockets, "socket"),
        report.source,
        grouped(t.ownerless),
        grouped(t.unattributed)
    );
    for e in &report.evidence {
        let span = match (&e.first, &e.last) {
            (Some(a), Some(z)) if a != z => format!(", {a} .. {z}"),
            (Some(a), _) => format!(", {a}"),
            _ => String::new(),
        };
        let what = match &e.counter {
            Some(counter) => format!("{} {counter}", e.kind),
            None => format!("event {}", e.id),
        };
        let _ = writeln!(
            out,
            "{}  {what} ×{}{span}: {}",
            p.dim("Logged "),
            grouped(e.count),
            e.meaning
        );
    }
    out.push('\n');
}

fn range_text(r: &RangeReport) -> String {
    let assumed = if r.assumed { ", assumed default" } else { "" };
    let reserved =
        if r.reserved > 0 { format!(", {} reserved", grouped(r.reserved)) } else { String::new() };
    format!("{} {}-{}: {} usable{reserved}{assumed}", r.protocol, r.start, r.end, grouped(r.usable))
}

fn pools(report: &Report, top: usize, p: &Painter, out: &mut String) {
    let shown: Vec<&Pool> =
        report.pools.iter().filter(|x| x.used > 0 || x.level > Level::Ok).take(top).collect();
    if shown.is_empty() {
        return;
    }
    let _ = writeln!(out, "{}", p.heading("Pools nearest exhaustion"));
    let rows: Vec<[String; 6]> = shown
        .iter()
        .map(|x| {
            [
                x.label(),
                format!("{} / {}", grouped(x.used), grouped(x.capacity)),
                format!("{:.0} %", x.percent),
                bar(x.percent),
                if x.time_wait == 0 {
                    String::new()
                } else if x.time_wait_reusable == 0 {
                    format!("{} TIME_WAIT", grouped(x.time_wait))
                } else {
                    format!(
                        "{} TIME_WAIT ({} reusable)",
                        grouped(x.time_wait),
                        grouped(x.time_wait_reusable)
                    )
                },
                if x.latent {
                    format!("{} (latent)", x.level.as_str().to_uppercase())
                } else {
                    x.level.as_str().to_uppercase()
                },
            ]
        })
        .collect();
    let headers = ["POOL", "USED / CAPACITY", "USE", "", "TIME_WAIT", "LEVEL"].map(str::to_owned);
    let widths = column_widths(&headers, &rows);
    let right = [false, true, true, false, false, false];
    let _ = writeln!(out, "  {}", p.dim(&join_row(&headers, &widths, &right, &[None; 6], p)));
    for (row, pool) in rows.iter().zip(&shown) {
        let style = Some(level_style(pool.level));
        let _ = writeln!(
            out,
            "  {}",
            join_row(row, &widths, &right, &[None, None, None, style, None, style], p)
        );
    }
    if report.totals.pools as usize > shown.len() {
        let _ = writeln!(
            out,
            "  {}",
            p.dim(&format!("({} pools in all)", grouped(report.totals.pools)))
        );
    }
    out.push('\n');
}

fn bar(percent: f64) -> String {
    let filled =
        ((percent / 100.0) * BAR_WIDTH as f64).round().clamp(0.0, BAR_WIDTH as f64) as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(BAR_WIDTH - filled))
}

fn processes(report: &Report, top: usize, p: &Painter, width: usize, out: &mut String) {
    let shown: Vec<&ProcessReport> = report.processes.iter().take(top).collect();
    if shown.is_empty() {
        return;
    }
    let _ = writeln!(out, "{}", p.heading("Processes holding the most ephemeral ports"));
    let rows: Vec<[String; 7]> = shown
        .iter()
        .map(|x| {
            let place = x
                .pod
                .as_ref()
                .map(|pod| format!("pod {pod}"))
                .or_else(|| {
                    x.container
                        .as_ref()
                        .map(|c| format!("container {}", c.chars().take(12).collect::<String>()))
                })
                .or_else(|| x.unit.clone())
                .unwrap_or_else(|| "-".to_owned());
            let states: Vec<String> = by_count(&x.states)
                .iter()
                .take(3)
                .map(|(s, n)| format!("{s} {}", grouped(*n)))
                .collect();
            let remotes: Vec<String> = x
                .top_remotes
                .iter()
                .take(2)
                .map(|r| format!("{} ×{}", r.remote, grouped(r.count)))
                .collect();
            [
                x.pid.to_string(),
                x.name.clone(),
                x.user.clone().unwrap_or_else(|| "?".to_owned()),
                place,
                grouped(x.ephemeral_ports),
                grouped(x.sockets),
                format!("{}   {}", states.join(", "), remotes.join(", ")),
            ]
        })
        .collect();
    let headers = ["PID", "NAME", "USER", "WHERE", "PORTS", "SOCKETS", "STATES   TOP DESTINATIONS"]
        .map(str::to_owned);
    let widths = column_widths(&headers, &rows);
    let right = [true, false, false, false, true, true, false];
    let _ = writeln!(out, "  {}", p.dim(&join_row(&headers, &widths, &right, &[None; 7], p)));
    for (row, proc_) in rows.iter().zip(&shown) {
        let _ = writeln!(out, "  {}", join_row(row, &widths, &right, &[None; 7], p));
        if !proc_.cmdline.is_empty() {
            let indent = widths[0] + 4;
            let _ = writeln!(
                out,
                "{}{}",
                " ".repeat(indent),
                p.dim(&shorten(&proc_.cmdline, width.saturating_sub(indent)))
            );
        }
    }
    if report.totals.processes as usize > shown.len() {
        let _ = writeln!(
            out,
            "  {}",
            p.dim(&format!("({} processes own sockets)", grouped(report.totals.processes)))
        );
    }
    out.push('\n');
}

fn by_count(states: &std::collections::BTreeMap<String, u32>) -> Vec<(&str, u32)> {
    let mut v: Vec<(&str, u32)> = states.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

fn findings(report: &Report, p: &Painter, width: usize, out: &mut String) {
    if report.findings.is_empty() {
        return;
    }
    let _ = writeln!(out, "{}", p.heading("Findings"));
    for f in &report.findings {
        let word = format!("{:<9}", f.level.as_str().to_uppercase());
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let body = wrap(&format!("{kind}: {}", f.message), width, 13);
        let _ = writeln!(out, "  {} {}", p.paint(level_style(f.level), &word), body.trim_start());
        let _ = writeln!(out, "{}", wrap(&format!("fix: {}", f.advice), width, 13));
    }
    out.push('\n');
}

fn gaps(report: &Report, p: &Painter, width: usize, out: &mut String) {
    if !report.gaps.is_empty() {
        let _ = writeln!(out, "{}", p.heading("Not seen"));
        for g in &report.gaps {
            let advice = g.advice.as_ref().map_or(String::new(), |a| format!("; {a}"));
            let _ = writeln!(
                out,
                "{}",
                wrap(&format!("- {}{advice}", g.message), width, 4).replacen("    -", "  -", 1)
            );
        }
        out.push('\n');
    }
    if !report.assumptions.is_empty() {
        let _ = writeln!(out, "{}", p.heading("Assumed"));
        for a in &report.assumptions {
            let _ = writeln!(
                out,
                "{}",
                p.dim(&wrap(&format!("- {a}"), width, 4).replacen("    -", "  -", 1))
            );
        }
    }
}

/// Wraps `text` to `width`, every line indented by `indent` spaces.
fn wrap(text: &str, width: usize, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let opts = textwrap::Options::new(width).initial_indent(&pad).subsequent_indent(&pad);
    textwrap::fill(text, opts)
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max || max < 2 {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

fn column_widths<const N: usize>(headers: &[String; N], rows: &[[String; N]]) -> [usize; N] {
    let mut w = headers.each_ref().map(|h| h.chars().count());
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    w
}

fn pad(cell: &str, width: usize, right: bool) -> String {
    let fill = width.saturating_sub(cell.chars().count());
    if right {
        format!("{}{cell}", " ".repeat(fill))
    } else {
        format!("{cell}{}", " ".repeat(fill))
    }
}

/// One table row: cells padded on plain text, then painted, so colour never skews the columns.
fn join_row<const N: usize>(
    cells: &[String; N],
    widths: &[usize; N],
    right: &[bool; N],
    styles: &[Option<Style>; N],
    p: &Painter,
) -> String {
    let parts: Vec<String> = (0..N)
        .map(|i| {
            let cell = pad(&cells[i], widths[i], right[i]);
            styles[i].map_or(cell.clone(), |st| p.paint(st, &cell))
        })
        .collect();
    parts.join("  ").trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::num::NonZeroU32;

    use porthog_core::{
        AnalyzeOptions, Os, PortRange, Process, Protocol, Snapshot, Socket, State, TwReuse, analyze,
    };

    use super::*;

    fn report() -> Report {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut s = Snapshot::new(Os::Linux, "sock_diag");
        s.settings.tcp_range = PortRange::new(40000, 40099);
        s.settings.udp_range = s.settings.tcp_range;
        s.settings.tw_reuse = Some(TwReuse::Loopback);
        s.settings.timestamps = Some(true);
        s.sockets = (40000..40100)
            .map(|p| Socket {
                pid: NonZeroU32::new(42),
                inode: 1,
                ..Socket::new(Protocol::Tcp, State::Established, (ip, p), (ip, 7070))
            })
            .collect();
        s.processes = vec![Process {
            pid: 42,
            name: "client".into(),
            cmdline: "client --to 127.0.0.1:7070".into(),
            user: Some("root".into()),
            ..Default::default()
        }];
        analyze(&s, &AnalyzeOptions::default())
    }

    #[test]
    fn verdict_line_comes_first() {
        let text = render(&report(), 10, false, 100);
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "EXHAUSTED  tcp 127.0.0.1 -> 127.0.0.1:7070  100 of 100 ports in use: new connect() calls fail with EADDRNOTAVAIL"
        );
        assert!(text.contains("Pools nearest exhaustion"));
        assert!(text.contains("████████████████████"), "{text}");
        assert!(text.contains("client --to 127.0.0.1:7070"));
        assert!(text.contains("127.0.0.1:7070 ×100"), "{text}");
        assert!(!text.contains('\u{1b}'), "no colour unless asked");
    }

    #[test]
    fn colour_only_when_asked() {
        let text = render(&report(), 10, true, 100);
        assert!(text.starts_with('\u{1b}'));
        assert!(text.contains("EXHAUSTED"));
    }

    /// A capture in the test fixtures, imported and analyzed as `porthog analyze` does.
    fn imported(files: &[&str]) -> Report {
        use porthog_core::import::{self, ImportOptions, Imported, Input};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../porthog-core/tests/fixtures/");
        let bytes: Vec<Vec<u8>> =
            files.iter().map(|f| std::fs::read(format!("{dir}{f}")).unwrap()).collect();
        let inputs: Vec<Input<'_>> =
            files.iter().zip(&bytes).map(|(name, bytes)| Input { name, bytes }).collect();
        match import::import(&inputs, &ImportOptions::default()).unwrap() {
            Imported::Snapshot { snapshot, sources, evidence } => porthog_core::analyze_imported(
                &snapshot,
                sources,
                evidence,
                &AnalyzeOptions::default(),
            ),
            Imported::Report(r) => *r,
        }
    }

    /// What could differ between two runs of the same report: nothing in these, but a
    /// report of a live machine names pids, inodes and ports; they are scrubbed so that
    /// snapshots of live reports can share these settings.
    fn snapshot(name: &str, text: &str) {
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"\bpid \d+", "pid [PID]");
        settings.add_filter(r"\binode \d+", "inode [INODE]");
        settings.bind(|| insta::assert_snapshot!(name, text));
    }

    #[test]
    fn snapshot_of_an_exhausted_connect_pool() {
        snapshot("exhausted_connect_pool", &render(&report(), 10, false, 100));
    }

    #[test]
    fn snapshot_of_an_empty_namespace() {
        let empty = analyze(&Snapshot::new(Os::Linux, "sock_diag"), &AnalyzeOptions::default());
        snapshot("empty_namespace", &render(&empty, 10, false, 100));
    }

    #[test]
    fn snapshot_of_a_linux_ticket() {
        snapshot(
            "linux_ticket",
            &render(&imported(&["linux-ticket_sysctl_ss.txt"]), 10, false, 100),
        );
    }

    #[test]
    fn snapshot_of_a_windows_ticket() {
        let files = ["netstat-anoq_win2022_de-DE_cp850.txt", "netsh_dynamicport-tcp_en-US.txt"];
        snapshot("windows_ticket", &render(&imported(&files), 5, false, 100));
    }

    #[test]
    fn bar_scales() {
        assert_eq!(bar(0.0), "░".repeat(20));
        assert_eq!(bar(50.0), format!("{}{}", "█".repeat(10), "░".repeat(10)));
        assert_eq!(bar(150.0), "█".repeat(20));
    }
}
