//! `draw(&App, &mut Frame)`: the live view, pure drawing. Title and verdict, the tightest pools
//! with their sparkline, rate, sustainable rate and time left, processes and destinations with
//! their rate of new ports, TIME_WAIT owners from history, recent failures, and the help
//! overlay. Reads the App, changes nothing.

use porthog_core::Level;
use porthog_core::report::{grouped, plural};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, Wrap};

use super::app::App;
use super::fleet::Fleet;
use super::trend::{TimeLeft, rate_text, sparkline};

const SPARK: usize = 24;

pub fn draw(app: &App, frame: &mut Frame) {
    let [title, verdict, namespaces, pools, lists, history, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(namespaces_height(app)),
        Constraint::Length(pools_height(app)),
        Constraint::Min(6),
        Constraint::Length(8),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title_line(app)), title);
    frame.render_widget(Paragraph::new(verdict_line(app)), verdict);
    if let Some(fleet) = &app.fleet {
        draw_namespaces(fleet, frame, namespaces);
    }
    draw_pools(app, frame, pools);
    let [procs, dests] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(lists);
    draw_processes(app, frame, procs);
    draw_destinations(app, frame, dests);
    let [owners, failures] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(history);
    draw_owners(app, frame, owners);
    draw_failures(app, frame, failures);
    frame.render_widget(Paragraph::new(footer_line(app)), footer);
    if app.help {
        draw_help(frame);
    }
}

pub fn level_color(level: Level) -> Color {
    match level {
        Level::Ok => Color::Green,
        Level::Info => Color::Blue,
        Level::Warn => Color::Yellow,
        Level::Critical | Level::Exhausted => Color::Red,
    }
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::new().add_modifier(Modifier::DIM)
}

fn title_line(app: &App) -> Line<'static> {
    let mut spans = vec![
        Span::styled(" porthog watch ", bold().add_modifier(Modifier::REVERSED)),
        Span::raw(format!(" {} · every {} s", app.source, app.interval_s)),
    ];
    if let Some(s) = &app.latest {
        spans.push(Span::raw(format!(" · sample {} at {}", app.samples, clock(&s.time))));
    }
    spans.push(Span::raw(format!(" · sort: {}", app.sort.as_str())));
    if !app.filter.is_empty() {
        spans.push(Span::styled(format!(" · filter: {}", app.filter), bold()));
    }
    if app.paused {
        let skipped = if app.skipped > 0 {
            format!(" ({} held)", plural(app.skipped, "sample"))
        } else {
            String::new()
        };
        spans.push(Span::styled(format!(" · PAUSED{skipped}"), bold().fg(Color::Yellow)));
    }
    Line::from(spans)
}

/// "02:11:05" from an RFC 3339 time; the whole text when it is not one.
pub fn clock(time: &str) -> &str {
    time.get(11..19).unwrap_or(time)
}

fn verdict_line(app: &App) -> Line<'static> {
    // With --all-netns: whose verdict this is.
    let place = app
        .fleet
        .as_ref()
        .and_then(|f| f.shown.and_then(|i| f.label(i)))
        .map_or(String::new(), |label| format!(" {label}:"));
    match &app.latest {
        None => Line::styled(" waiting for the first sample…", dim()),
        Some(s) => Line::from(vec![
            Span::styled(
                format!(" {} ", s.report.verdict.as_str().to_uppercase()),
                bold().fg(level_color(s.report.verdict)),
            ),
            Span::raw(format!("{place} {}", s.report.summary)),
        ]),
    }
}

/// `--all-netns`: up to 8 namespaces listed (the shown one kept in view); 0 otherwise.
fn namespaces_height(app: &App) -> u16 {
    app.fleet.as_ref().map_or(0, |f| f.rows.len().clamp(1, 8) as u16 + 3)
}

/// The namespace list: worst first, the shown one marked, gone and new ones said so.
fn draw_namespaces(fleet: &Fleet, frame: &mut Frame, area: Rect) {
    let header =
        Row::new(["", "NAMESPACE", "VERDICT", "TIGHTEST POOL", ""].map(Cell::from)).style(dim());
    let visible = area.height.saturating_sub(3).max(1) as usize;
    let shown_at = fleet.rows.iter().position(|r| Some(r.inode) == fleet.shown).unwrap_or(0);
    let skip = (shown_at + 1).saturating_sub(visible);
    let rows: Vec<Row> = fleet
        .rows
        .iter()
        .skip(skip)
        .map(|r| {
            let shown = Some(r.inode) == fleet.shown;
            let (level, style) = if r.is_gone() {
                ("-".to_owned(), dim())
            } else {
                (r.verdict.as_str().to_uppercase(), Style::new().fg(level_color(r.verdict)))
            };
            let row = Row::new(vec![
                Cell::from(if shown { "▶" } else { "" }),
                Cell::from(r.header.clone()),
                Cell::from(level).style(style),
                Cell::from(r.tightest.clone()),
                Cell::from(r.presence_text()).style(bold()),
            ]);
            if shown { row.style(bold()) } else { row }
        })
        .collect();
    let widths = [
        Constraint::Length(1),
        Constraint::Min(30),
        Constraint::Length(9),
        Constraint::Min(30),
        Constraint::Length(16),
    ];
    let title = format!(
        " Network namespaces: {} (worst first; Tab / n next, Shift-Tab / p previous) ",
        fleet.present()
    );
    frame.render_widget(
        Table::new(rows, widths).header(header).block(Block::bordered().title(title)),
        area,
    );
}

fn pools_height(app: &App) -> u16 {
    let rows = app.latest.as_ref().map_or(1, |s| s.report.pools.len().clamp(1, 8));
    rows as u16 + 3
}

fn draw_pools(app: &App, frame: &mut Frame, area: Rect) {
    let header = Row::new(
        [
            "POOL",
            "USED / CAP",
            "USE",
            "HISTORY",
            "TIME_WAIT",
            "NEW",
            "SUSTAINABLE",
            "TIME LEFT",
            "LEVEL",
        ]
        .map(Cell::from),
    )
    .style(dim());
    let rows: Vec<Row> = app
        .pools()
        .into_iter()
        .map(|r| {
            let color = level_color(r.pool.level);
            let spark = r.history.map_or(String::new(), |h| sparkline(h.percents(), SPARK));
            let left = match r.time_left {
                TimeLeft::Seconds(_) | TimeLeft::Exhausted => {
                    Cell::from(r.time_left.text()).style(bold().fg(color))
                }
                _ => Cell::from(r.time_left.text()),
            };
            Row::new(vec![
                Cell::from(r.label.clone()),
                Cell::from(format!("{} / {}", grouped(r.pool.used), grouped(r.pool.capacity))),
                Cell::from(format!("{:.0} %", r.pool.percent)),
                Cell::from(spark).style(Style::new().fg(color)),
                Cell::from(grouped(r.pool.time_wait)),
                Cell::from(r.rate.map_or("-".to_owned(), rate_text)),
                Cell::from(r.sustainable.map_or("-".to_owned(), rate_text)),
                left,
                Cell::from(r.pool.level.as_str().to_uppercase()).style(Style::new().fg(color)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Min(24),
        Constraint::Length(15),
        Constraint::Length(5),
        Constraint::Length(SPARK as u16),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(11),
        Constraint::Length(10),
        Constraint::Length(9),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(" Pools nearest exhaustion (effective use over time) "));
    frame.render_widget(table, area);
}

fn rate_cell(rate: Option<f64>) -> Cell<'static> {
    Cell::from(rate.map_or("…".to_owned(), rate_text))
}

fn draw_processes(app: &App, frame: &mut Frame, area: Rect) {
    let header =
        Row::new(["PID", "NAME", "PORTS", "NEW", "TIME_WAIT"].map(Cell::from)).style(dim());
    let rows: Vec<Row> = app
        .processes()
        .into_iter()
        .map(|p| {
            let name = if p.exited { format!("{} (exited)", p.name) } else { p.name.clone() };
            let (ports, time_wait) = p.held_text();
            Row::new(vec![
                Cell::from(if p.pid == 0 { "-".to_owned() } else { p.pid.to_string() }),
                Cell::from(name),
                Cell::from(ports),
                rate_cell(p.rate),
                Cell::from(time_wait),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Min(12),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(9),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(" Processes: ports held, new ports per second "));
    frame.render_widget(table, area);
}

fn draw_destinations(app: &App, frame: &mut Frame, area: Rect) {
    let header = Row::new(["DESTINATION", "USED / CAP", "NEW"].map(Cell::from)).style(dim());
    let rows: Vec<Row> = app
        .destinations()
        .into_iter()
        .map(|d| {
            Row::new(vec![
                Cell::from(d.remote.to_string()),
                Cell::from(if d.capacity == 0 {
                    "-".to_owned()
                } else {
                    format!("{} / {}", grouped(d.used), grouped(d.capacity))
                }),
                rate_cell(d.rate),
            ])
        })
        .collect();
    let widths = [Constraint::Min(16), Constraint::Length(15), Constraint::Length(8)];
    let table =
        Table::new(rows, widths).header(header).block(Block::bordered().title(" Destinations "));
    frame.render_widget(table, area);
}

fn draw_owners(app: &App, frame: &mut Frame, area: Rect) {
    let header = Row::new(["PID", "NAME", "TIME_WAIT"].map(Cell::from)).style(dim());
    let rows: Vec<Row> = app
        .time_wait_owners()
        .into_iter()
        .map(|o| {
            Row::new(vec![
                Cell::from(o.pid.to_string()),
                Cell::from(o.name.clone()),
                Cell::from(grouped(o.count)),
            ])
        })
        .collect();
    let empty = rows.is_empty();
    let widths = [Constraint::Length(8), Constraint::Min(10), Constraint::Length(9)];
    let block = Block::bordered().title(" TIME_WAIT owners (from history) ");
    if empty {
        let text = "none attributed: TIME_WAIT sockets get an owner once a sample has seen them \
                    ESTABLISHED";
        frame.render_widget(
            Paragraph::new(Span::styled(text, dim())).wrap(Wrap { trim: true }).block(block),
            area,
        );
    } else {
        frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
    }
}

fn draw_failures(app: &App, frame: &mut Frame, area: Rect) {
    let lost =
        if app.lost > 0 { format!(", {} lost", plural(app.lost, "event")) } else { String::new() };
    let logged_total = if app.logged_total > 0 {
        format!(", {} logged by the OS", grouped(app.logged_total))
    } else {
        String::new()
    };
    let block = Block::bordered().title(format!(
        " Recent failures ({} in all{lost}{logged_total}) ",
        grouped(app.failures_total)
    ));
    let (failures, logged) = (app.recent_failures(), app.recent_logged());
    if failures.is_empty() && logged.is_empty() {
        let text = "none seen: allocation failures come from the kernel tracer (porthog trace, \
                    as root), the Windows System log (Tcpip 4227, 4231, 4266) or a recording \
                    that has them; samples cannot see them";
        frame.render_widget(
            Paragraph::new(Span::styled(text, dim())).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    }
    let header =
        Row::new(["TIME", "PID", "NAME", "DESTINATION", "ERRNO"].map(Cell::from)).style(dim());
    let red = Style::new().fg(Color::Red);
    let mut rows: Vec<Row> = failures
        .into_iter()
        .map(|f| {
            Row::new(vec![
                Cell::from(f.time.get(11..23).unwrap_or(&f.time).to_owned()),
                Cell::from(f.pid.to_string()),
                Cell::from(match app.failure_netns(f) {
                    Some(ns) => format!("{} in {ns}", f.name),
                    None => f.name.clone(),
                }),
                Cell::from(f.remote.map_or("-".to_owned(), |r| r.to_string())),
                Cell::from(f.errno.as_str()).style(red),
            ])
        })
        .collect();
    // A logged event has no process nor destination: its id, count and meaning instead.
    rows.extend(logged.into_iter().map(|e| {
        let time = e.last.as_deref().unwrap_or("-");
        Row::new(vec![
            Cell::from(time.get(11..19).unwrap_or(time).to_owned()),
            Cell::from("-"),
            Cell::from(format!("Tcpip {} ×{}: {}", e.id, grouped(e.count), e.meaning)),
            Cell::from("-"),
            Cell::from("logged").style(red),
        ])
    }));
    let widths = [
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Min(10),
        Constraint::Length(22),
        Constraint::Length(13),
    ];
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

fn footer_line(app: &App) -> Line<'static> {
    if let Some(text) = &app.editing {
        return Line::from(vec![
            Span::styled(" filter: ", bold()),
            Span::raw(format!("{text}▏")),
            Span::styled("  Enter applies · Esc clears", dim()),
        ]);
    }
    let mut spans = vec![Span::styled(" s sort · / filter · space pause · ? help · q quit", dim())];
    if let Some(note) = &app.note {
        spans.push(Span::raw(format!("   {note}")));
    }
    Line::from(spans)
}

fn draw_help(frame: &mut Frame) {
    let text = vec![
        Line::styled("Keys", bold()),
        Line::raw(""),
        Line::raw("  s        sort processes and destinations by ports held, rate, name"),
        Line::raw("  /        filter by process name, pid or destination (Enter applies,"),
        Line::raw("           Esc clears)"),
        Line::raw("  space    pause: keep the screen still (the newest sample is held)"),
        Line::raw("  Tab, n   --all-netns: show the next namespace (Shift-Tab, p: previous)"),
        Line::raw("  ?        this help            q, Ctrl-C   quit"),
        Line::raw(""),
        Line::styled("Columns", bold()),
        Line::raw(""),
        Line::raw("  NEW          new ports per second since the previous sample"),
        Line::raw("  SUSTAINABLE  new connections per second the pool takes forever:"),
        Line::raw("               capacity / 60 s of TIME_WAIT"),
        Line::raw("  TIME LEFT    before the pool is full at the trend of the last samples"),
        Line::raw("  TIME_WAIT    owners from history: the process seen holding the"),
        Line::raw("               connection before it closed, even after it exited"),
    ];
    let area = frame.area();
    let w = 76.min(area.width);
    let h = (text.len() as u16 + 2).min(area.height);
    let popup = Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" Help (? or Esc closes) ")),
        popup,
    );
}
