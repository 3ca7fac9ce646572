//! The live view as plain text, for a non-terminal stdout and `--once`: one frame per sample,
//! the same content as the screen (pools with trend, processes, destinations, TIME_WAIT
//! owners, failures). `&App` in, text out.

use std::fmt::Write as _;

use porthog_core::report::grouped;

use super::app::App;
use super::draw::clock;
use super::fleet::Fleet;
use super::trend::{rate_text, sparkline};

/// Rows per list.
const ROWS: usize = 10;

pub fn frame(app: &App) -> String {
    let mut out = String::new();
    if let Some(fleet) = &app.fleet {
        namespaces(fleet, app, &mut out);
    }
    let Some(sample) = &app.latest else {
        out.push_str("no sample yet\n");
        return out;
    };
    let _ = writeln!(
        out,
        "porthog watch  {}  sample {} at {}",
        app.source,
        app.samples,
        clock(&sample.time)
    );
    let _ = writeln!(
        out,
        "{}  {}",
        sample.report.verdict.as_str().to_uppercase(),
        sample.report.summary
    );
    let per = |r: Option<f64>| r.map_or("…".to_owned(), rate_text);

    let pools = app.pools();
    if !pools.is_empty() {
        let _ = writeln!(out, "\nPools (tightest first)");
        for r in pools.iter().take(ROWS) {
            let spark = r.history.map_or(String::new(), |h| sparkline(h.percents(), 20));
            let _ = writeln!(
                out,
                "  {}  {} / {} ({:.0} %) {}  TIME_WAIT {}  new {}  sustainable {}  time left {}  {}",
                r.label,
                grouped(r.pool.used),
                grouped(r.pool.capacity),
                r.pool.percent,
                spark.trim_end(),
                grouped(r.pool.time_wait),
                r.rate.map_or("-".to_owned(), rate_text),
                r.sustainable.map_or("-".to_owned(), rate_text),
                r.time_left.text(),
                r.pool.level.as_str().to_uppercase()
            );
        }
    }
    let procs = app.processes();
    if !procs.is_empty() {
        let _ = writeln!(out, "\nProcesses (sort: {})", app.sort.as_str());
        for p in procs.iter().take(ROWS) {
            let exited = if p.exited { " (exited)" } else { "" };
            let pid = if p.pid == 0 { "-".to_owned() } else { p.pid.to_string() };
            let (ports, time_wait) = p.held_text();
            let _ = writeln!(
                out,
                "  {pid:>7}  {}{exited}  ports {ports}  new {}  TIME_WAIT {time_wait}",
                p.name,
                per(p.rate),
            );
        }
    }
    let dests = app.destinations();
    if !dests.is_empty() {
        let _ = writeln!(out, "\nDestinations");
        for d in dests.iter().take(ROWS) {
            let _ = writeln!(
                out,
                "  {}  {} / {}  new {}",
                d.remote,
                grouped(d.used),
                grouped(d.capacity),
                per(d.rate)
            );
        }
    }
    let owners = app.time_wait_owners();
    if !owners.is_empty() {
        let _ = writeln!(out, "\nTIME_WAIT owners (from history)");
        for o in owners.iter().take(ROWS) {
            let _ = writeln!(out, "  {:>7}  {}  {}", o.pid, o.name, grouped(o.count));
        }
    }
    let failures = app.recent_failures();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nRecent failures ({} in all)", grouped(app.failures_total));
        for f in failures.iter().take(ROWS) {
            let _ = writeln!(
                out,
                "  {}  {} {}  {}  {}{}",
                f.time,
                f.pid,
                f.name,
                f.remote.map_or("-".to_owned(), |r| r.to_string()),
                f.errno.as_str(),
                app.failure_netns(f).map_or(String::new(), |ns| format!("  in {ns}"))
            );
        }
    }
    let logged = app.recent_logged();
    if !logged.is_empty() {
        let _ = writeln!(out, "\nLogged by the OS ({} in all)", grouped(app.logged_total));
        for e in logged.iter().take(ROWS) {
            let _ = writeln!(out, "  {}", logged_line(e));
        }
    }
    if app.lost > 0 {
        let _ = writeln!(out, "\n{} kernel events lost", grouped(app.lost));
    }
    if let Some(note) = &app.note {
        let _ = writeln!(out, "\n{note}");
    }
    out.push('\n');
    out
}

/// `--all-netns`: the worst verdict, every namespace worst first (gone ones after), then a
/// heading for the namespace whose detail follows.
fn namespaces(fleet: &Fleet, app: &App, out: &mut String) {
    let Some(latest) = &fleet.latest else { return };
    let n = fleet.present();
    let worst = fleet.rows.first().filter(|r| !r.is_gone());
    let _ = writeln!(
        out,
        "porthog watch  {}  {} at {}",
        app.source,
        porthog_core::report::plural(n as u64, "network namespace"),
        clock(&latest.time)
    );
    let _ = writeln!(
        out,
        "{}  worst of {n}: {}",
        latest.fleet.verdict.as_str().to_uppercase(),
        worst.map_or("none could be read", |r| r.label.as_str())
    );
    for gap in &latest.fleet.gaps {
        let _ = writeln!(out, "  gap: {}", gap.message);
    }
    let _ = writeln!(out, "\nNetwork namespaces (worst first)");
    for r in &fleet.rows {
        let mark = if Some(r.inode) == fleet.shown { ">" } else { " " };
        let level = if r.is_gone() { "-".to_owned() } else { r.verdict.as_str().to_uppercase() };
        let tightest = if r.tightest.is_empty() { "no pool in use" } else { r.tightest.as_str() };
        let row = format!("{mark} {}  {level}  {tightest}  {}", r.header, r.presence_text());
        let _ = writeln!(out, "{}", row.trim_end());
    }
    if let Some(label) = fleet.shown.and_then(|i| fleet.label(i)) {
        let _ = writeln!(out, "\n=== network namespace {label} ===");
    }
}

/// One logged event row: `2026-11-28T10:00:03  Tcpip 4231 ×2  the global TCP ...`.
pub fn logged_line(e: &porthog_core::import::Evidence) -> String {
    format!(
        "{}  Tcpip {} ×{}  {}",
        e.last.as_deref().unwrap_or("-"),
        e.id,
        grouped(e.count),
        e.meaning
    )
}
