//! The live view driven by a replayed recording, as the user would drive it: synthetic
//! snapshots go through the sampler's `digest` (the path live samples take), are written as a
//! recording, read back by `Replay`, applied with `update` and drawn with `draw` on ratatui's
//! test backend. No live system is read.

use std::net::IpAddr;
use std::num::NonZeroU32;

use porthog_core::timeline::{Errno, Failure, RecordLine};
use porthog_core::{AnalyzeOptions, Protocol, Socket, State};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Event, SortBy, update};
use super::replay::Replay;
use super::trend::TimeLeft;
use crate::collect::CollectOptions;
use crate::sample::tests::{conn, snapshot};
use crate::sample::{self, Sample, Sampler};

const DB: &str = "10.0.0.5:5432";

/// A worker's steady connection from 10.0.0.7 to the database.
fn db_conn(lport: u16) -> Socket {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    Socket {
        pid: NonZeroU32::new(43),
        cookie: 100_000 + u64::from(lport),
        inode: u32::from(lport) + 100_000,
        ..Socket::new(
            Protocol::Tcp,
            State::Established,
            (ip("10.0.0.7"), lport),
            (ip("10.0.0.5"), 5432),
        )
    }
}

/// Five samples a second apart: "client" (pid 42) opens 10 connections a second to
/// 127.0.0.1:7070 and closes each a second later (TIME_WAIT, tw_reuse off), then exits before
/// the last sample; "worker" (pid 43) holds 5 connections to the database throughout.
pub fn samples() -> Vec<Sample> {
    let mut sampler = Sampler::new(CollectOptions::default(), AnalyzeOptions::default(), 1.0);
    (0..5u16)
        .map(|t| {
            let exited = t == 4;
            let mut sockets: Vec<Socket> =
                (40000..40000 + 10 * t).map(|p| conn(State::TimeWait, p, 0)).collect();
            let open = 40000 + 10 * t..40000 + 10 * (t + 1);
            // Exited: what it held last second is TIME_WAIT now, and nothing new opens.
            if !exited {
                sockets.extend(open.map(|p| conn(State::Established, p, 42)));
            }
            sockets.extend((40090..40095).map(db_conn));
            let procs: &[(u32, &str)] =
                if exited { &[(43, "worker")] } else { &[(42, "client"), (43, "worker")] };
            let snap = snapshot(sockets, procs);
            sampler.digest(snap, f64::from(t), format!("2026-11-24T02:00:0{t}.000Z"))
        })
        .collect()
}

pub fn failure() -> Failure {
    Failure {
        time: "2026-11-24T02:00:03.500Z".into(),
        pid: 42,
        name: "client".into(),
        container: None,
        protocol: Protocol::Tcp,
        remote: Some("127.0.0.1:7070".parse().unwrap()),
        errno: Errno::AddrNotAvail,
        call: "connect".into(),
        class: porthog_core::timeline::FailureClass::Exhaustion,
        netns: None,
    }
}

/// The samples as a recording on disk (with a failure between the 4th and 5th sample).
fn recording(tag: &str) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("porthog-watch-{tag}-{}.jsonl", std::process::id()));
    let mut lines = vec![sample::header(None, 1.0)];
    for (i, s) in samples().into_iter().enumerate() {
        if i == 4 {
            lines.push(RecordLine::Failure(failure()));
        }
        lines.push(s.into_record());
    }
    let text: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// Replays the first `n` samples (and what comes between them) into a fresh App.
fn replayed(tag: &str, n: usize) -> App {
    let path = recording(tag);
    let mut app = App::new("replay of rec.jsonl", 1.0);
    let mut seen = 0;
    for event in Replay::open(&path).unwrap() {
        let event = event.unwrap();
        if matches!(event, Event::Snapshot(_)) {
            if seen == n {
                break;
            }
            seen += 1;
        }
        update(&mut app, event);
    }
    std::fs::remove_file(&path).unwrap();
    app
}

fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn special(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        update(app, key(c));
    }
}

/// The screen as text, trailing blanks trimmed; the sample's clock scrubbed.
fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| super::draw::draw(app, f)).unwrap();
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    match app.latest.as_ref() {
        Some(s) => out.replace(super::draw::clock(&s.time), "[clock]"),
        None => out,
    }
}

#[test]
fn rates_are_new_connections_over_the_interval() {
    let app = replayed("rates", 2);
    let procs = app.processes();
    let client = procs.iter().find(|p| p.pid == 42).unwrap();
    assert_eq!(client.rate, Some(10.0), "{client:?}");
    assert_eq!(client.ports, 20, "10 open and 10 in TIME_WAIT attributed from history");
    assert_eq!(client.time_wait, 10);
    let worker = procs.iter().find(|p| p.pid == 43).unwrap();
    assert_eq!(worker.rate, Some(0.0), "steady connections are not new");
    let dests = app.destinations();
    let local = dests.iter().find(|d| d.remote.to_string() == "127.0.0.1:7070").unwrap();
    assert_eq!((local.rate, local.used, local.capacity), (Some(10.0), 20, 100));
    // Rates need two samples.
    let first = replayed("first", 1);
    assert!(first.processes().iter().all(|p| p.rate.is_none()));
}

#[test]
fn time_left_follows_the_trend_of_the_tightest_pool() {
    let app = replayed("trend", 5);
    let pools = app.pools();
    let local = pools.iter().find(|p| p.label == "tcp 127.0.0.1 -> 127.0.0.1:7070").unwrap();
    assert_eq!((local.pool.effective, local.pool.capacity), (40, 100));
    // Used 10, 20, 30, 40, 40 over 5 s: a least-squares slope of 8 ports/s, 60 left.
    match local.time_left {
        TimeLeft::Seconds(s) => assert!((s - 7.5).abs() < 1e-6, "{s}"),
        other => panic!("{other:?}"),
    }
    assert!((local.sustainable.unwrap() - 100.0 / 60.0).abs() < 1e-9);
    assert_eq!(local.rate, Some(0.0), "the client exited: nothing new in the last second");
    let db = pools.iter().find(|p| p.label.ends_with(DB)).unwrap();
    assert_eq!(db.time_left, TimeLeft::Stable);
}

#[test]
fn time_wait_owners_survive_the_exit_of_their_process() {
    let app = replayed("owners", 5);
    let owners = app.time_wait_owners();
    assert_eq!(owners.len(), 1);
    assert_eq!((owners[0].pid, owners[0].name.as_str(), owners[0].count), (42, "client", 40));
    let client = app.processes().into_iter().find(|p| p.pid == 42).cloned().unwrap();
    assert!(client.exited, "{client:?}");
    assert_eq!(app.failures_total, 1);
}

#[test]
fn sorting_cycles_ports_rate_name() {
    let mut app = replayed("sort", 2);
    let pids = |app: &App| app.processes().iter().map(|p| p.pid).collect::<Vec<_>>();
    assert_eq!(app.sort, SortBy::Ports);
    assert_eq!(pids(&app), vec![42, 43], "client holds 20 ports, worker 5");
    update(&mut app, key('s'));
    assert_eq!(app.sort, SortBy::Rate);
    assert_eq!(pids(&app), vec![42, 43]);
    update(&mut app, key('s'));
    assert_eq!(app.sort, SortBy::Name);
    assert_eq!(pids(&app), vec![42, 43], "client < worker");
    let dests: Vec<String> = app.destinations().iter().map(|d| d.remote.to_string()).collect();
    assert_eq!(dests, vec![DB.to_owned(), "127.0.0.1:7070".to_owned()]);
    update(&mut app, key('s'));
    assert_eq!(app.sort, SortBy::Ports);
}

#[test]
fn filtering_by_process_or_destination() {
    let mut app = replayed("filter", 3);
    update(&mut app, key('/'));
    type_text(&mut app, "WORK");
    assert_eq!(app.editing.as_deref(), Some("WORK"));
    assert_eq!(app.processes().len(), 2, "not applied before Enter");
    update(&mut app, special(KeyCode::Enter));
    assert_eq!(app.filter, "work");
    assert_eq!(app.processes().iter().map(|p| p.pid).collect::<Vec<_>>(), vec![43]);
    assert!(app.time_wait_owners().is_empty());
    // Typing a filter does not trigger the other keys.
    update(&mut app, key('/'));
    type_text(&mut app, "5432q");
    update(&mut app, special(KeyCode::Backspace));
    assert!(!app.quit);
    update(&mut app, special(KeyCode::Enter));
    assert_eq!(app.destinations().len(), 1);
    assert!(app.pools().iter().all(|p| p.label.contains("5432")));
    update(&mut app, special(KeyCode::Esc));
    assert_eq!(app.filter, "");
    assert_eq!(app.processes().len(), 2);
    // Esc while typing clears too.
    update(&mut app, key('/'));
    type_text(&mut app, "x");
    update(&mut app, special(KeyCode::Esc));
    assert_eq!((app.filter.as_str(), app.editing.is_none()), ("", true));
}

#[test]
fn pausing_holds_the_screen_and_resumes_with_the_newest_sample() {
    let mut all = samples().into_iter();
    let mut app = App::new("test", 1.0);
    update(&mut app, Event::Snapshot(Box::new(all.next().unwrap())));
    update(&mut app, key(' '));
    assert!(app.paused);
    update(&mut app, Event::Snapshot(Box::new(all.next().unwrap())));
    update(&mut app, Event::Snapshot(Box::new(all.next().unwrap())));
    assert_eq!((app.samples, app.skipped), (1, 2), "the screen stays on the first sample");
    assert_eq!(app.latest.as_ref().unwrap().at, 0.0);
    update(&mut app, key(' '));
    assert!(!app.paused);
    assert_eq!(app.samples, 2);
    assert_eq!(app.latest.as_ref().unwrap().at, 2.0);
    // The rate is over the interval its new connections came in, not the pause.
    assert_eq!(app.dt, Some(1.0));
    let client = app.processes().into_iter().find(|p| p.pid == 42).cloned().unwrap();
    assert_eq!(client.rate, Some(10.0));
}

#[test]
fn quitting_help_and_bounded_failures() {
    let mut app = App::new("test", 1.0);
    update(&mut app, key('?'));
    assert!(app.help);
    update(&mut app, special(KeyCode::Esc));
    assert!(!app.help);
    for _ in 0..250 {
        update(&mut app, Event::Failure(failure()));
    }
    assert_eq!((app.failures.len(), app.failures_total), (super::app::FAILURES, 250));
    update(&mut app, Event::Lost(7));
    assert_eq!(app.lost, 7);
    update(&mut app, key('q'));
    assert!(app.quit);
    let mut app = App::new("test", 1.0);
    update(&mut app, Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(app.quit);
    let mut app = App::new("test", 1.0);
    update(&mut app, Event::Quit);
    assert!(app.quit);
}

#[test]
fn screen_while_the_client_churns() {
    let app = replayed("screen-churn", 3);
    insta::assert_snapshot!(screen(&app, 140, 36));
}

#[test]
fn screen_after_the_client_exited_with_a_failure() {
    let app = replayed("screen-exited", 5);
    insta::assert_snapshot!(screen(&app, 140, 36));
}

#[test]
fn screen_with_help_and_filter() {
    let mut app = replayed("screen-help", 2);
    update(&mut app, key('/'));
    type_text(&mut app, "work");
    update(&mut app, special(KeyCode::Enter));
    update(&mut app, key(' '));
    update(&mut app, key('?'));
    insta::assert_snapshot!(screen(&app, 100, 30));
}

#[test]
fn screen_before_the_first_sample() {
    insta::assert_snapshot!(screen(&App::new("live", 1.0), 80, 20));
}

#[test]
fn plain_frame_of_the_last_sample() {
    let app = replayed("plain", 5);
    insta::assert_snapshot!(
        super::plain::frame(&app)
            .replace(super::draw::clock(&app.latest.as_ref().unwrap().time), "[clock]")
    );
}

/// Issue 8: "time left none left" read twice; an exhausted pool has "time left none".
#[test]
fn an_exhausted_pool_has_no_time_left_said_once() {
    assert_eq!(super::trend::TimeLeft::Exhausted.text(), "none");
}

/// Issue 8: the row of connections whose opener no sample saw shows its counts as unknown,
/// not as zeros next to a failures pane that names the pid.
#[test]
fn the_unseen_opener_row_shows_unknown_counts_not_zeros() {
    use super::app::{ProcessRow, UNSEEN_OPENER};
    let row = ProcessRow {
        pid: 0,
        name: UNSEEN_OPENER.into(),
        ports: 0,
        rate: Some(12.0),
        time_wait: 0,
        exited: false,
    };
    assert_eq!(row.held_text(), ("-".to_owned(), "-".to_owned()));
    let seen = ProcessRow { pid: 42, ports: 3, time_wait: 1_200, ..row };
    assert_eq!(seen.held_text(), ("3".to_owned(), "1,200".to_owned()));
}

/// `watch --all-netns`, driven through a recording like the one-namespace view: the worst
/// namespace first and shown; Tab shows the next; a namespace that vanishes is listed as gone
/// and the view falls back to the worst; a failure made in the calm namespace raises that one
/// (and only that one), named in the failures pane.
#[test]
fn all_namespaces_worst_first_selectable_gone_and_raised_by_their_own_failures() {
    use crate::collect::Collected;
    use crate::fleet::FleetSampler;
    use porthog_core::Level;

    let ns = |inode: u64, name: &str, ports: std::ops::Range<u16>| Collected {
        inode,
        name: Some(name.to_owned()),
        container: None,
        pids: vec![42],
        snapshot: snapshot(
            ports.map(|p| conn(State::Established, p, 42)).collect(),
            &[(42, "client")],
        ),
        unchanged: false,
    };
    let mut sampler = FleetSampler::for_tests(AnalyzeOptions::default(), 1.0);
    let s0 = sampler.digest(
        vec![ns(1, "calm", 40000..40002), ns(2, "full", 40000..40100)],
        vec![],
        0.0,
        "2026-11-24T02:00:00.000Z".into(),
    );
    let s1 = sampler.digest(
        vec![ns(1, "calm", 40000..40002), ns(3, "newcomer", 40000..40001)],
        vec![],
        1.0,
        "2026-11-24T02:00:01.000Z".into(),
    );
    let path =
        std::env::temp_dir().join(format!("porthog-watch-fleet-{}.jsonl", std::process::id()));
    let mut header = sample::header(None, 1.0);
    if let RecordLine::Header { all_netns, .. } = &mut header {
        *all_netns = true;
    }
    let calm_failure = Failure { netns: Some(1), ..failure() };
    let lines = [header, s0.into_record(), RecordLine::Failure(calm_failure), s1.into_record()];
    let text: String = lines.iter().map(|l| serde_json::to_string(l).unwrap() + "\n").collect();
    std::fs::write(&path, text).unwrap();
    let replay = Replay::open(&path).unwrap();
    assert!(replay.all_netns);
    let events: Vec<Event> = replay.map(Result::unwrap).collect();
    std::fs::remove_file(&path).unwrap();

    let mut app = App::new("replay", 1.0);
    update(&mut app, events[0].clone());
    let fleet = app.fleet.as_ref().unwrap();
    let labels: Vec<&str> = fleet.rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["full", "calm"]);
    assert_eq!(fleet.shown, Some(2), "the worst is shown");
    assert_eq!(app.latest.as_ref().unwrap().report.verdict, Level::Exhausted);
    assert_eq!(app.exit_code(), 2);
    let frame = super::plain::frame(&app);
    assert!(frame.contains("EXHAUSTED  worst of 2: full"), "{frame}");
    assert!(frame.contains("=== network namespace full ==="), "{frame}");
    let full_row = frame.lines().position(|l| l.starts_with("> full")).expect(&frame);
    let calm_row = frame.lines().position(|l| l.starts_with("  calm")).expect(&frame);
    assert!(full_row < calm_row, "{frame}");

    update(&mut app, special(KeyCode::Tab));
    assert_eq!(app.fleet.as_ref().unwrap().shown, Some(1), "Tab shows the next namespace");
    assert_eq!(app.latest.as_ref().unwrap().report.verdict, Level::Ok);
    update(&mut app, key('p'));
    assert_eq!(app.fleet.as_ref().unwrap().shown, Some(2));
    update(&mut app, key('n'));

    // The failure made in calm, then the next sample: full is gone, newcomer is new.
    for event in &events[1..] {
        update(&mut app, event.clone());
    }
    let fleet = app.fleet.as_ref().unwrap();
    let rows: Vec<(&str, String)> =
        fleet.rows.iter().map(|r| (r.label.as_str(), r.presence_text())).collect();
    assert_eq!(
        rows,
        [
            ("calm", String::new()),
            ("newcomer", "NEW".to_owned()),
            ("full", "GONE at 02:00:01".to_owned())
        ]
    );
    let calm = &fleet.latest.as_ref().unwrap().fleet.namespaces[0];
    assert_eq!(calm.report.verdict, Level::Critical, "calm's own failure raises calm");
    let newcomer = &fleet.latest.as_ref().unwrap().fleet.namespaces[1];
    assert_eq!(newcomer.report.verdict, Level::Ok, "and not the others");
    let frame = super::plain::frame(&app);
    assert!(frame.contains("EADDRNOTAVAIL  in calm"), "{frame}");
    assert!(screen(&app, 160, 50).contains("GONE at [clock]"));
    assert!(screen(&app, 160, 50).contains("client in calm"));
}

/// Recordings of format version 1 (before `--all-netns`) still replay; a newer version is
/// refused by its header, naming the versions this porthog reads.
#[test]
fn version_1_recordings_replay_and_newer_ones_are_refused() {
    let path = recording("v1");
    let text = std::fs::read_to_string(&path).unwrap();
    let v1 = text.replacen("\"schema_version\":2", "\"schema_version\":1", 1);
    assert_ne!(v1, text);
    std::fs::write(&path, &v1).unwrap();
    let replay = Replay::open(&path).unwrap();
    let samples = replay.filter(|e| matches!(e, Ok(Event::Snapshot(_)))).count();
    assert_eq!(samples, 5);
    std::fs::write(&path, text.replacen("\"schema_version\":2", "\"schema_version\":3", 1))
        .unwrap();
    let e = Replay::open(&path).err().unwrap().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(e.contains("schema_version 3; this porthog reads versions 1 to 2"), "{e}");
}

/// Issue 10: a Tcpip 4231 the Windows System log wrote during an interval (added to that
/// sample's report by the sampler) makes that sample critical, is listed in the failures pane
/// and the plain frame, and is not shown again by the next sample.
#[test]
fn a_logged_4231_is_shown_and_raises_only_its_interval() {
    let mut cursor = porthog_core::event_log::EventCursor::new();
    let xml = "<Event><System><Provider Name='Tcpip'/><EventID>4231</EventID>\
               <TimeCreated SystemTime='2026-11-24T02:00:01.250Z'/>\
               <EventRecordID>900</EventRecordID></System></Event>";
    let now = std::time::Instant::now();
    let polled = cursor.take(now, &[xml, xml]);
    let mut samples = samples().into_iter();
    let mut first = samples.next().unwrap();
    porthog_core::add_evidence(&mut first.report, polled.evidence);
    let mut app = App::new("live", 1.0);
    update(&mut app, Event::Snapshot(Box::new(first)));
    let shown = app.latest.as_ref().unwrap();
    assert_eq!(shown.report.verdict, porthog_core::Level::Critical, "{}", shown.report.summary);
    assert_eq!((app.logged.len(), app.logged_total), (1, 1));
    let text = screen(&app, 140, 36);
    assert!(text.contains("Tcpip 4231 ×1"), "{text}");
    assert!(text.contains("1 logged by the OS"), "{text}");
    let frame = super::plain::frame(&app);
    assert!(frame.contains("Logged by the OS (1 in all)"), "{frame}");
    assert!(frame.contains("2026-11-24T02:00:01  Tcpip 4231 ×1"), "{frame}");
    // The log hands the same record back: nothing new, the next sample is judged on itself.
    let mut second = samples.next().unwrap();
    porthog_core::add_evidence(&mut second.report, cursor.take(now, &[xml]).evidence);
    update(&mut app, Event::Snapshot(Box::new(second)));
    assert!(app.latest.as_ref().unwrap().report.verdict < porthog_core::Level::Critical);
    assert_eq!(app.logged_total, 1);
}
