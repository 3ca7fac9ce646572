//! `porthog record` against real kernel state: a client seen holding its connections in one
//! sample exits, its connections turn TIME_WAIT with no owner, and the recording read back with
//! `porthog analyze` still names it, where a plain `porthog check` cannot.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::child;
use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_OK};
use crate::report::Report;

const SERVER: &str = "127.0.0.1:7070";
const CONNECTIONS: usize = 20;

/// A scratch directory removed on Drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("porthog-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sample lines written so far, as JSON.
fn samples(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "sample")
        .collect()
}

/// Polls (with a deadline) until `done` holds; `what` names it in the failure message.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        // Polling the kernel's or a child's state against a deadline; nothing is ordered by it.
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn a_recording_names_the_owner_of_time_wait_after_it_exited() {
    let Some(ns) = Netns::for_test("record", &[("net.ipv4.tcp_tw_reuse", "0")]) else { return };
    let dir = TempDir::new("record");
    let file = dir.0.join("rec.jsonl");
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);

    let mut cmd = Command::new(porthog::binary());
    cmd.args(["record", "-o"])
        .arg(&file)
        .args(["--duration", "3", "--interval", "0.25", "--netns", ns.name()])
        .stdin(Stdio::null());
    let recorder = child::spawn(&mut cmd);
    wait_until("the first sample", Duration::from_secs(10), || !samples(&file).is_empty());

    // The client opens its connections while porthog records, is seen holding them, exits.
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "20"]);
    let pid = client.pid();
    assert_eq!((client.opened(), client.failed()), (CONNECTIONS as u64, 0), "{:?}", client.ready);
    wait_until("a sample showing the client's connections", Duration::from_secs(3), || {
        samples(&file).iter().any(|s| {
            s["report"]["processes"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["pid"] == pid && p["states"]["ESTABLISHED"] == serde_json::json!(CONNECTIONS)
                })
            })
        })
    });
    drop(client);
    // The client closed first (its exit closed its sockets): TIME_WAIT on its side, no owner.
    wait_until("20 TIME_WAIT sockets", Duration::from_secs(5), || {
        ns.ss_count("time-wait", &format!("dst {SERVER}")) == CONNECTIONS
    });

    let done = recorder.wait(Duration::from_secs(30));
    assert_eq!(done.code, Some(EXIT_OK), "record should end with its duration\n{}", done.context());
    assert!(done.stderr.contains("porthog: recorded"), "{}", done.context());
    let last = samples(&file).pop().expect("samples");
    assert!(
        last["report"]["totals"]["by_state"]["TIME_WAIT"] == serde_json::json!(CONNECTIONS),
        "the last sample should see the 20 TIME_WAIT sockets: {}",
        last["report"]["totals"]
    );

    // Read back: the TIME_WAIT sockets are the exited client's.
    let mut cmd = Command::new(porthog::binary());
    cmd.arg("analyze").arg(&file).arg("--json");
    let run = porthog::run(cmd);
    let report: Report = run.report();
    let p = report.process(pid);
    assert_eq!(p.name, "porthog-loadgen", "{p:?}");
    assert_eq!(
        p.states.get("TIME_WAIT"),
        Some(&(CONNECTIONS as u64)),
        "{p:?}\n{}",
        report.summary()
    );
    assert_eq!(report.totals.ownerless, 0, "\n{}", report.summary());
    let owners = &last["time_wait_owners"];
    assert_eq!(owners[0]["pid"], pid, "{owners}");
    assert_eq!(owners[0]["count"], serde_json::json!(CONNECTIONS), "{owners}");

    // A plain check of the same moment cannot name them, and says why.
    let check = porthog::json_in(&ns, &[]);
    let now = check.report();
    assert!(now.processes.iter().all(|p| p.pid != pid), "\n{}", now.summary());
    assert_eq!(now.totals.ownerless, CONNECTIONS as u64, "\n{}", now.summary());
    assert_eq!(now.findings_of("ownerless_time_wait").len(), 1, "\n{}", now.summary());
}

/// Owners kept across samples (the sock_diag path reads again only the fd tables that changed)
/// still find a process started mid-recording in the first sample that begins after its
/// connections exist, and keep finding it while its fd table stays the same.
pub fn a_recording_without_bpf_finds_a_new_process_within_one_sample() {
    let Some(ns) = Netns::for_test("record-nobpf", &[("net.ipv4.tcp_tw_reuse", "0")]) else {
        return;
    };
    let dir = TempDir::new("record-nobpf");
    let file = dir.0.join("rec.jsonl");
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);

    let mut cmd = Command::new(porthog::binary());
    cmd.args(["record", "--no-bpf", "-o"])
        .arg(&file)
        .args(["--duration", "6", "--interval", "0.25", "--netns", ns.name()])
        .stdin(Stdio::null());
    let recorder = child::spawn(&mut cmd);
    wait_until("two samples", Duration::from_secs(10), || samples(&file).len() >= 2);

    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "20"]);
    let pid = client.pid();
    assert_eq!((client.opened(), client.failed()), (CONNECTIONS as u64, 0), "{:?}", client.ready);
    // A sample may be under way now; the one after it began once the connections existed.
    let n0 = samples(&file).len();
    wait_until("four more samples", Duration::from_secs(5), || samples(&file).len() >= n0 + 4);
    let all = samples(&file);
    for (i, s) in all.iter().enumerate().skip(n0 + 1).take(3) {
        let holds = s["report"]["processes"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["pid"] == pid && p["states"]["ESTABLISHED"] == serde_json::json!(CONNECTIONS)
            })
        });
        assert!(
            holds,
            "sample {i} (client ready before sample {n0}) misses pid {pid}: {}",
            s["report"]["processes"]
        );
        assert_eq!(s["report"]["source"], "sock_diag", "{}", s["report"]["source"]);
    }
    drop(client);
    let done = recorder.wait(Duration::from_secs(30));
    assert_eq!(done.code, Some(EXIT_OK), "{}", done.context());
}

/// Stopped by SIGINT (Ctrl-C), SIGTERM or SIGHUP: the recording is flushed, complete, and the exit is 0.
/// Needs no privilege: it records porthog's own namespace.
pub fn record_stops_cleanly_on_sigint_sigterm_and_sighup() {
    for signal in [Signal::INT, Signal::TERM, Signal::HUP] {
        let dir = TempDir::new(&format!("record-signal-{}", signal.as_raw()));
        let file = dir.0.join("rec.jsonl");
        let mut cmd = Command::new(porthog::binary());
        cmd.args(["record", "--interval", "0.2", "-o"]).arg(&file).stdin(Stdio::null());
        let recorder = child::spawn(&mut cmd);
        wait_until("two samples", Duration::from_secs(20), || samples(&file).len() >= 2);
        let pid = rustix::process::Pid::from_raw(recorder.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal the recorder");
        let done = recorder.wait(Duration::from_secs(20));
        assert_eq!(done.code, Some(EXIT_OK), "{signal:?}\n{}", done.context());
        let text = std::fs::read_to_string(&file).expect("the recording");
        assert!(text.ends_with('\n'), "the last line is complete");
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
        assert_eq!(lines[0]["type"], "header");
        // Run as root in the host namespace the recorder also traces: a port failure somewhere
        // on this machine may add failure or lost lines, which are not this test's subject.
        assert!(
            lines[1..]
                .iter()
                .all(|l| ["sample", "failure", "lost"].contains(&l["type"].as_str().unwrap_or("")))
        );
        let samples_written = lines.iter().filter(|l| l["type"] == "sample").count();
        assert!(samples_written >= 2);
        assert!(
            done.stderr.contains(&format!("recorded {samples_written} samples")),
            "{}",
            done.context()
        );
    }
}

/// Issue 4: while porthog records, a client connects past exhaustion; the recording holds one
/// failure line per refusal the client counted itself, with its pid and destination. The test
/// waits for the ready line, which porthog prints once the tracepoints are on.
pub fn a_recording_holds_every_refused_connect() {
    let Some(ns) = Netns::for_test("record-failures", &[]) else { return };
    let dir = TempDir::new("record-failures");
    let file = dir.0.join("rec.jsonl");
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);

    let mut cmd = Command::new(porthog::binary());
    cmd.args(["record", "-o"])
        .arg(&file)
        .args(["--duration", "5", "--interval", "0.5", "--netns", ns.name()])
        .stdin(Stdio::null());
    let mut recorder = child::spawn(&mut cmd);
    if let Err(e) = recorder.wait_stderr("porthog: recording to", Duration::from_secs(30)) {
        let _ = recorder.child.kill();
        let _ = recorder.child.wait();
        panic!("`{}` never said it was recording: {e}", recorder.what);
    }
    // 100 ports: 100 connections, then 20 refusals.
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "120"]);
    assert_eq!((client.opened(), client.failed()), (100, 20), "{:?}", client.ready);
    assert_eq!(client.errno(), Some("EADDRNOTAVAIL"), "{:?}", client.ready);

    let done = recorder.wait(Duration::from_secs(60));
    assert_eq!(done.code, Some(EXIT_OK), "{}", done.context());
    assert!(!done.stderr.contains("no failures in the recording"), "{}", done.context());
    let text = std::fs::read_to_string(&file).expect("the recording");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    assert!(lines.iter().all(|l| l["type"] != "lost"), "the kernel dropped events:\n{text}");
    let failures: Vec<_> = lines.iter().filter(|l| l["type"] == "failure").collect();
    assert_eq!(failures.len() as u64, client.failed(), "\n{}", done.context());
    for f in failures {
        assert_eq!(f["pid"].as_u64(), Some(u64::from(client.pid())), "{f}");
        assert_eq!(f["remote"], SERVER, "{f}");
        assert_eq!(f["errno"], "EADDRNOTAVAIL", "{f}");
    }
    assert!(lines.iter().filter(|l| l["type"] == "sample").count() >= 2, "\n{text}");
}

/// Issue 7, case 7: a recording's failure lines outrank its last sample. The client's 20
/// refusals happen early; it then closes everything, so the last sample is healthy (TIME_WAIT
/// that tw_reuse=2 may take back). `porthog analyze` gave that sample's verdict, exit 0 or 1.
pub fn case7_analyze_of_a_recording_counts_its_failures() {
    let Some(ns) = Netns::for_test("record-analyze-failures", &[]) else { return };
    let dir = TempDir::new("record-analyze-failures");
    let file = dir.0.join("rec.jsonl");
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);

    let mut cmd = Command::new(porthog::binary());
    cmd.args(["record", "-o"])
        .arg(&file)
        .args(["--duration", "4", "--interval", "0.5", "--netns", ns.name()])
        .stdin(Stdio::null());
    let mut recorder = child::spawn(&mut cmd);
    if let Err(e) = recorder.wait_stderr("porthog: recording to", Duration::from_secs(30)) {
        let _ = recorder.child.kill();
        let _ = recorder.child.wait();
        panic!("`{}` never said it was recording: {e}", recorder.what);
    }
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "120"]);
    assert_eq!((client.opened(), client.failed()), (100, 20), "{:?}", client.ready);
    drop(client);
    let done = recorder.wait(Duration::from_secs(60));
    assert_eq!(done.code, Some(EXIT_OK), "{}", done.context());
    let text = std::fs::read_to_string(&file).expect("the recording");
    let last = text.lines().rev().find(|l| l.contains(r#""type":"sample""#)).expect("a sample");
    let last: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert!(
        ["ok", "warn"].contains(&last["report"]["verdict"].as_str().unwrap_or("")),
        "the last sample is healthy again: {}",
        last["report"]["summary"]
    );

    let mut analyze = Command::new(porthog::binary());
    analyze.args(["analyze", "--json"]).arg(&file);
    let out = analyze.output().expect("porthog analyze");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["verdict"], "critical");
    let summary = report["summary"].as_str().unwrap_or("");
    assert!(
        summary.starts_with("the kernel refused 20 allocations for lack of a port during the recording: porthog-loadgen")
            && summary.contains(SERVER),
        "{summary}"
    );
}

/// The same failures in `porthog watch`'s plain frames (stdout not a terminal).
pub fn watch_frames_show_the_refused_connects() {
    let Some(ns) = Netns::for_test("watch-failures", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["watch", "--interval", "0.3", "--netns", ns.name()]).stdin(Stdio::null());
    let mut watcher = child::spawn(&mut cmd);
    // The first frame is printed after the tracer is on (or after its note).
    if let Err(e) = watcher.wait_stdout("porthog watch", Duration::from_secs(30)) {
        let _ = watcher.child.kill();
        let _ = watcher.child.wait();
        panic!("`{}` printed no frame: {e}", watcher.what);
    }
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "120"]);
    assert_eq!(client.failed(), 20, "{:?}", client.ready);
    let wanted = format!("Recent failures ({} in all)", client.failed());
    let seen = watcher.wait_stdout(&wanted, Duration::from_secs(20));
    let pid = rustix::process::Pid::from_raw(watcher.child.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT to watch");
    let done = watcher.wait(Duration::from_secs(20));
    assert!(seen.is_ok(), "no frame with {wanted:?}: {seen:?}\n{}", done.context());
    assert!(!done.stderr.contains("failures pane needs root"), "{}", done.context());
    let row = format!("{} porthog-loadgen  {SERVER}  EADDRNOTAVAIL", client.pid());
    assert!(done.stdout.contains(&row), "no row {row:?}\n{}", done.context());
}

/// The perf events a process holds open (the kernel tracer's rings, one per CPU and tracepoint).
fn perf_event_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|target| target.as_os_str() == "anon_inode:[perf_event]")
                .count()
        })
        .unwrap_or_default()
}

/// Issue 8.21: as root, `record` starts the kernel tracer (perf events on every CPU);
/// `--no-trace` records without it. Checked on the running recorder's own fds.
pub fn record_starts_the_tracer_as_root_unless_no_trace() {
    let Some(ns) = Netns::for_test("record-no-trace", &[]) else { return };
    for (extra, traced) in [(None, true), (Some("--no-trace"), false)] {
        let dir = TempDir::new("record-no-trace");
        let file = dir.0.join("rec.jsonl");
        let mut cmd = Command::new(porthog::binary());
        cmd.args(["record", "--interval", "0.2", "--netns", ns.name(), "-o"]).arg(&file);
        cmd.args(extra).stdin(Stdio::null());
        let recorder = child::spawn(&mut cmd);
        // The tracer is running (or not) before the first interval's sample is written.
        wait_until("two samples", Duration::from_secs(20), || samples(&file).len() >= 2);
        let fds = perf_event_fds(recorder.child.id());
        let pid = rustix::process::Pid::from_raw(recorder.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, Signal::INT).expect("signal the recorder");
        let done = recorder.wait(Duration::from_secs(20));
        assert_eq!(done.code, Some(EXIT_OK), "{extra:?}\n{}", done.context());
        assert_eq!(fds > 0, traced, "{fds} perf events with {extra:?}\n{}", done.context());
    }
}

/// Issue 8.21, the same for `watch` (plain frames: the first one is printed once the tracer is
/// on or off).
pub fn watch_starts_the_tracer_as_root_unless_no_trace() {
    let Some(ns) = Netns::for_test("watch-no-trace", &[]) else { return };
    for (extra, traced) in [(None, true), (Some("--no-trace"), false)] {
        let mut cmd = Command::new(porthog::binary());
        cmd.args(["watch", "--interval", "0.3", "--netns", ns.name()]);
        cmd.args(extra).stdin(Stdio::null());
        let mut watcher = child::spawn(&mut cmd);
        let framed = watcher.wait_stdout("porthog watch", Duration::from_secs(30));
        let fds = perf_event_fds(watcher.child.id());
        let pid = rustix::process::Pid::from_raw(watcher.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, Signal::INT).expect("SIGINT to watch");
        let done = watcher.wait(Duration::from_secs(20));
        assert!(framed.is_ok(), "no frame: {framed:?}\n{}", done.context());
        assert_eq!(done.code, Some(EXIT_OK), "{extra:?}\n{}", done.context());
        assert_eq!(fds > 0, traced, "{fds} perf events with {extra:?}\n{}", done.context());
    }
}
