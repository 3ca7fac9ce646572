//! The live view's state and the one function that changes it: `update(&mut App, Event)`.
//! Pure: no terminal, no clock, no system. Samples (live or replayed), keys and failures all
//! arrive as `Event`s; what `draw` shows is read from here (rows sorted and filtered).
//! Memory is bounded: fixed-length histories, the latest sample only, the last failures.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use porthog_core::import::Evidence;
use porthog_core::report::grouped;
use porthog_core::timeline::{Failure, raise_for_failures};
use porthog_core::{Pool, PoolKind};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::fleet::Fleet;
use super::trend::{History, TimeLeft};
use crate::fleet::FleetSample;
use crate::sample::Sample;

/// Failures kept for the pane.
pub const FAILURES: usize = 100;

/// Everything the view reacts to, on one channel.
#[derive(Debug, Clone)]
pub enum Event {
    /// Redraw (terminal resized).
    Tick,
    Key(KeyEvent),
    /// A new sample, live or replayed.
    Snapshot(Box<Sample>),
    /// A new sample of every namespace (`--all-netns`), live or replayed.
    Fleet(Box<FleetSample>),
    /// An allocation failure from the kernel tracer (`porthog trace`) or a recording.
    Failure(Failure),
    /// Kernel events the tracer lost.
    Lost(u64),
    /// A message for the status line (a sample that failed, the end of a replay).
    Note(String),
    Quit,
}

/// How the process and destination lists are ordered (`s` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Most ephemeral ports held first.
    #[default]
    Ports,
    /// Most new ports per second first.
    Rate,
    /// By name (or address).
    Name,
}

impl SortBy {
    fn next(self) -> SortBy {
        match self {
            SortBy::Ports => SortBy::Rate,
            SortBy::Rate => SortBy::Name,
            SortBy::Name => SortBy::Ports,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Ports => "ports",
            SortBy::Rate => "rate",
            SortBy::Name => "name",
        }
    }
}

/// The row of connections whose opener no sample saw (opened and closed between two samples):
/// only their rate is known; ports held and TIME_WAIT are not theirs to show.
pub const UNSEEN_OPENER: &str = "(opener not seen: opened and closed between samples)";

impl ProcessRow {
    /// Ports held and TIME_WAIT as shown: "-" for the row of unseen openers, whose counts are
    /// unknown rather than zero.
    pub fn held_text(&self) -> (String, String) {
        if self.pid == 0 {
            ("-".to_owned(), "-".to_owned())
        } else {
            (grouped(u64::from(self.ports)), grouped(self.time_wait))
        }
    }
}

/// A process row: what it holds now and how fast it takes new ports.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessRow {
    /// 0: connections opened and closed between two samples, opener unknown.
    pub pid: u32,
    pub name: String,
    /// Ephemeral ports held now (TIME_WAIT attributed from history included).
    pub ports: u32,
    /// New ports per second; None before the second sample.
    pub rate: Option<f64>,
    /// TIME_WAIT sockets attributed to it from history.
    pub time_wait: u64,
    /// Exited: known only from history.
    pub exited: bool,
}

/// A destination row.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRow {
    pub remote: SocketAddr,
    /// Ports used in its tightest connect() pool, and that pool's capacity.
    pub used: u32,
    pub capacity: u32,
    pub rate: Option<f64>,
}

/// A pool row with its trend.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRow<'a> {
    pub pool: &'a Pool,
    pub label: String,
    pub history: Option<&'a History>,
    pub rate: Option<f64>,
    pub sustainable: Option<f64>,
    pub time_left: TimeLeft,
}

#[derive(Debug, Default)]
pub struct App {
    /// Where the samples come from, for the title ("live", "netns blue", "replay rec.jsonl").
    pub source: String,
    pub interval_s: f64,
    /// The sample shown.
    pub latest: Option<Box<Sample>>,
    /// Seconds between the sample shown and the one before it (what its rates are over).
    pub dt: Option<f64>,
    /// Samples shown so far.
    pub samples: u64,
    /// `at` of the last sample received, shown or not.
    last_at: Option<f64>,
    histories: HashMap<String, History>,
    processes: Vec<ProcessRow>,
    destinations: Vec<DestinationRow>,
    pub failures: VecDeque<Failure>,
    pub failures_total: u64,
    /// Failures the OS logged (Windows: Tcpip 4227/4231/4266), one entry per event id and
    /// sample they arrived in; each already raised its own sample's verdict.
    pub logged: VecDeque<Evidence>,
    /// Logged events in all.
    pub logged_total: u64,
    /// Failures since the last sample: they make that sample's verdict at least critical.
    interval_failures: Vec<Failure>,
    pub lost: u64,
    pub sort: SortBy,
    /// The filter applied (lower case; empty: none).
    pub filter: String,
    /// The filter being typed after `/`, until Enter or Esc.
    pub editing: Option<String>,
    pub paused: bool,
    /// The newest sample that arrived while paused, with its dt; shown on resume.
    pending: Option<(Box<Sample>, Option<f64>)>,
    pub skipped: u64,
    pub help: bool,
    pub quit: bool,
    pub note: Option<String>,
    /// `--all-netns`: the namespace list; the panes show the sample of `fleet.shown`.
    pub fleet: Option<Fleet>,
    /// The newest fleet sample that arrived while paused; shown on resume.
    pending_fleet: Option<Box<FleetSample>>,
}

impl App {
    pub fn new(source: impl Into<String>, interval_s: f64) -> App {
        App { source: source.into(), interval_s, ..App::default() }
    }

    /// The namespace a failure was made in, as the namespace list labels it (`--all-netns`).
    pub fn failure_netns(&self, f: &Failure) -> Option<String> {
        let fleet = self.fleet.as_ref()?;
        let inode = f.netns?;
        Some(fleet.label(inode).map_or_else(|| format!("net:[{inode}]"), str::to_owned))
    }

    /// The exit status of the check: of the worst namespace with `--all-netns`.
    pub fn exit_code(&self) -> u8 {
        match self.fleet.as_ref().and_then(|f| f.latest.as_ref()) {
            Some(fs) => fs.fleet.exit_code(),
            None => self.latest.as_ref().map_or(0, |s| s.report.exit_code()),
        }
    }

    /// A fleet sample: failures since the previous one raise the namespace they were made in
    /// (issue 7), then the list is rebuilt and the namespace to show is shown.
    fn take_fleet(&mut self, mut sample: Box<FleetSample>) {
        sample.raise_for_failures(&self.interval_failures, "since the previous sample");
        self.interval_failures.clear();
        if self.paused {
            self.skipped += 1;
            self.pending_fleet = Some(sample);
            return;
        }
        let fleet = self.fleet.get_or_insert_with(Fleet::default);
        let note = fleet.take(sample);
        self.show_namespace();
        if note.is_some() {
            self.note = note;
        }
    }

    /// Shows the target namespace of the latest fleet sample; another namespace than the one
    /// shown before starts its histories and rates afresh.
    fn show_namespace(&mut self) {
        let Some(fleet) = &mut self.fleet else { return };
        let target = fleet.target();
        let Some(sample) =
            fleet.latest.as_ref().and_then(|fs| target.and_then(|inode| fs.namespace(inode)))
        else {
            return;
        };
        if fleet.shown != target {
            fleet.shown = target;
            self.histories.clear();
            self.last_at = None;
            self.samples = 0;
        }
        let dt = self.last_at.map(|t| sample.at - t).filter(|dt| *dt > 0.0);
        if dt.is_none() && self.last_at == Some(sample.at) {
            // The same sample again (a change of selection re-shows it): no new rates.
            return;
        }
        self.last_at = Some(sample.at);
        self.show(Box::new(sample), dt);
    }

    /// Pools tightest first (the report's order), filtered, with trend and rates.
    pub fn pools(&self) -> Vec<PoolRow<'_>> {
        let Some(sample) = &self.latest else { return Vec::new() };
        sample
            .report
            .pools
            .iter()
            .filter(|p| p.used > 0 || p.level > porthog_core::Level::Ok)
            .map(|pool| {
                let label = pool.label();
                let history = self.histories.get(&label);
                PoolRow {
                    pool,
                    history,
                    rate: self.pool_rate(pool),
                    sustainable: pool.sustainable_rate(),
                    time_left: history.map_or(
                        super::trend::time_left(None, pool.capacity, pool.effective),
                        |h| h.time_left(pool),
                    ),
                    label,
                }
            })
            .filter(|r| self.matches(&r.label) || self.owners_match(sample, r.pool))
            .collect()
    }

    /// A process holding ports of the pool matches the filter.
    fn owners_match(&self, sample: &Sample, pool: &Pool) -> bool {
        pool.owners.iter().any(|o| {
            self.matches(&o.pid.to_string())
                || sample.report.processes.iter().any(|p| p.pid == o.pid && self.matches(&p.name))
        })
    }

    /// New connections per second into a connect() pool.
    fn pool_rate(&self, pool: &Pool) -> Option<f64> {
        let (sample, dt) = (self.latest.as_ref()?, self.dt?);
        if pool.kind != PoolKind::Connect {
            return None;
        }
        let n = sample
            .opened
            .iter()
            .filter(|o| Some(o.local.ip()) == pool.local && Some(o.remote) == pool.remote)
            .count();
        Some(n as f64 / dt)
    }

    pub fn processes(&self) -> Vec<&ProcessRow> {
        let mut rows: Vec<&ProcessRow> = self
            .processes
            .iter()
            .filter(|r| self.matches(&r.name) || self.matches(&r.pid.to_string()))
            .collect();
        match self.sort {
            SortBy::Ports => rows.sort_by(|a, b| {
                (b.ports, b.time_wait).cmp(&(a.ports, a.time_wait)).then(a.pid.cmp(&b.pid))
            }),
            SortBy::Rate => rows.sort_by(|a, b| {
                b.rate.unwrap_or(0.0).total_cmp(&a.rate.unwrap_or(0.0)).then(b.ports.cmp(&a.ports))
            }),
            SortBy::Name => rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.pid.cmp(&b.pid))),
        }
        rows
    }

    pub fn destinations(&self) -> Vec<&DestinationRow> {
        let mut rows: Vec<&DestinationRow> =
            self.destinations.iter().filter(|r| self.matches(&r.remote.to_string())).collect();
        match self.sort {
            SortBy::Ports => rows.sort_by(|a, b| b.used.cmp(&a.used).then(a.remote.cmp(&b.remote))),
            SortBy::Rate => rows.sort_by(|a, b| {
                b.rate.unwrap_or(0.0).total_cmp(&a.rate.unwrap_or(0.0)).then(b.used.cmp(&a.used))
            }),
            SortBy::Name => rows.sort_by_key(|r| r.remote.to_string()),
        }
        rows
    }

    /// TIME_WAIT owners from history, filtered.
    pub fn time_wait_owners(&self) -> Vec<&porthog_core::timeline::OwnerCount> {
        self.latest.as_ref().map_or_else(Vec::new, |s| {
            s.time_wait_owners
                .iter()
                .filter(|o| self.matches(&o.name) || self.matches(&o.pid.to_string()))
                .collect()
        })
    }

    /// Recent failures, newest first, filtered by process or destination.
    pub fn recent_failures(&self) -> Vec<&Failure> {
        self.failures
            .iter()
            .rev()
            .filter(|f| {
                self.matches(&f.name)
                    || self.matches(&f.pid.to_string())
                    || f.remote.is_some_and(|r| self.matches(&r.to_string()))
            })
            .collect()
    }

    /// Logged events, newest first, filtered by event id (or "tcpip").
    pub fn recent_logged(&self) -> Vec<&Evidence> {
        self.logged
            .iter()
            .rev()
            .filter(|e| self.matches(&e.id.to_string()) || self.matches("tcpip"))
            .collect()
    }

    fn matches(&self, text: &str) -> bool {
        self.filter.is_empty() || text.to_lowercase().contains(&self.filter)
    }

    /// Shows a sample: histories, and rates over `dt`.
    fn show(&mut self, sample: Box<Sample>, dt: Option<f64>) {
        self.samples += 1;
        let n = self.samples;
        for pool in &sample.report.pools {
            self.histories.entry(pool.label()).or_default().push(
                sample.at,
                pool.effective,
                pool.capacity,
                n,
            );
        }
        // Pools gone for a whole history's length are forgotten.
        self.histories.retain(|_, h| n - h.last_seen < super::trend::HISTORY as u64);

        let rate = |count: u64| dt.map(|dt| count as f64 / dt);
        let mut by_pid: HashMap<u32, (String, u64)> = HashMap::new();
        let mut by_remote: HashMap<SocketAddr, u64> = HashMap::new();
        for o in &sample.opened {
            let e = by_pid.entry(o.pid).or_insert_with(|| (o.name.clone(), 0));
            e.1 += 1;
            *by_remote.entry(o.remote).or_default() += 1;
        }
        let tw: HashMap<u32, u64> =
            sample.time_wait_owners.iter().map(|o| (o.pid, o.count)).collect();
        let mut processes: Vec<ProcessRow> = sample
            .report
            .processes
            .iter()
            .filter(|p| p.ephemeral_ports > 0 || by_pid.contains_key(&p.pid))
            .map(|p| ProcessRow {
                pid: p.pid,
                name: p.name.clone(),
                ports: p.ephemeral_ports,
                rate: rate(by_pid.get(&p.pid).map_or(0, |(_, n)| *n)),
                time_wait: tw.get(&p.pid).copied().unwrap_or(0),
                exited: p.cmdline == "(exited)",
            })
            .collect();
        // Openers the report no longer lists (pid 0: opened and closed between samples).
        by_pid.retain(|pid, _| !processes.iter().any(|p| p.pid == *pid));
        processes.extend(by_pid.into_iter().map(|(pid, (name, n))| ProcessRow {
            pid,
            name: if pid == 0 { UNSEEN_OPENER.to_owned() } else { name },
            ports: 0,
            rate: rate(n),
            time_wait: 0,
            exited: false,
        }));
        let mut tightest: HashMap<SocketAddr, (u32, u32)> = HashMap::new();
        for p in sample.report.pools.iter().filter(|p| p.kind == PoolKind::Connect) {
            if let Some(r) = p.remote {
                let e = tightest.entry(r).or_insert((p.used, p.capacity));
                if u64::from(p.used) * u64::from(e.1) > u64::from(e.0) * u64::from(p.capacity) {
                    *e = (p.used, p.capacity);
                }
            }
        }
        let mut remotes: Vec<SocketAddr> =
            tightest.keys().chain(by_remote.keys()).copied().collect();
        remotes.sort();
        remotes.dedup();
        self.destinations = remotes
            .into_iter()
            .map(|remote| {
                let (used, capacity) = tightest.get(&remote).copied().unwrap_or((0, 0));
                DestinationRow {
                    remote,
                    used,
                    capacity,
                    rate: rate(by_remote.get(&remote).copied().unwrap_or(0)),
                }
            })
            .collect();
        self.processes = processes;
        self.dt = dt;
        // A note (a sample that failed) is about the past once a sample is shown.
        self.note = None;
        self.latest = Some(sample);
    }

    fn key(&mut self, key: KeyEvent) {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            self.quit = true;
            return;
        }
        if let Some(text) = &mut self.editing {
            match key.code {
                KeyCode::Enter => {
                    self.filter = text.trim().to_lowercase();
                    self.editing = None;
                }
                KeyCode::Esc => {
                    self.filter.clear();
                    self.editing = None;
                }
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => {}
            }
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Char('?') => self.help = !self.help,
            KeyCode::Esc if self.help => self.help = false,
            KeyCode::Esc => self.filter.clear(),
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('/') => self.editing = Some(String::new()),
            KeyCode::Char(' ') => {
                self.paused = !self.paused;
                if !self.paused
                    && let Some((sample, dt)) = self.pending.take()
                {
                    self.show(sample, dt);
                }
                if !self.paused
                    && let Some(sample) = self.pending_fleet.take()
                {
                    self.take_fleet(sample);
                }
            }
            KeyCode::Tab | KeyCode::Char('n') if self.fleet.is_some() => self.move_selection(1),
            KeyCode::BackTab | KeyCode::Char('p') if self.fleet.is_some() => {
                self.move_selection(-1)
            }
            _ => {}
        }
    }
}

impl App {
    fn move_selection(&mut self, step: isize) {
        if let Some(fleet) = &mut self.fleet {
            fleet.select(step);
            self.show_namespace();
        }
    }
}

/// Applies one event to the state.
pub fn update(app: &mut App, event: Event) {
    match event {
        Event::Tick => {}
        Event::Key(key) => app.key(key),
        Event::Snapshot(mut sample) => {
            // Failures outrank the snapshot (issue 7), as a logged Windows 4231 does.
            raise_for_failures(
                &mut sample.report,
                &app.interval_failures,
                "since the previous sample",
            );
            app.interval_failures.clear();
            for e in sample.report.evidence.iter().filter(|e| e.kind == "event") {
                if app.logged.len() == FAILURES {
                    app.logged.pop_front();
                }
                app.logged.push_back(e.clone());
                app.logged_total += e.count;
            }
            let dt = app.last_at.map(|t| sample.at - t).filter(|dt| *dt > 0.0);
            app.last_at = Some(sample.at);
            if app.paused {
                app.skipped += 1;
                app.pending = Some((sample, dt));
            } else {
                app.show(sample, dt);
            }
        }
        Event::Fleet(sample) => app.take_fleet(sample),
        Event::Failure(f) => {
            if app.failures.len() == FAILURES {
                app.failures.pop_front();
            }
            app.interval_failures.push(f.clone());
            app.failures.push_back(f);
            app.failures_total += 1;
        }
        Event::Lost(n) => app.lost += n,
        Event::Note(text) => app.note = Some(text),
        Event::Quit => app.quit = true,
    }
}
