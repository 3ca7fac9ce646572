//! `porthog watch` for real, in a terminal: tmux runs it against a namespace with a client (or
//! every namespace, `--all-netns`), the test reads the screen with capture-pane, presses keys,
//! and checks that porthog exited cleanly, left the alternate screen, and that no tmux or
//! porthog process is left behind.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::loadgen::Loadgen;
use crate::netns::{Netns, in_ci};
use crate::porthog;

const SERVER: &str = "127.0.0.1:7070";

/// A tmux server of the test's own (`-L`), killed on Drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.args(["-L", &self.socket]).stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self.cmd().args(args).output().map_err(|e| format!("cannot run tmux: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("tmux {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    fn screen(&self) -> String {
        // With the history (-S -): what the shell prints after porthog may scroll into it.
        self.run(&["capture-pane", "-p", "-S", "-", "-t", "watch"]).unwrap_or_else(|e| e)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Polls the screen until `done` holds (deadline 30 s); the failure shows the last screen.
fn poll(tmux: &Tmux, what: &str, mut done: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let screen = tmux.screen();
        if done(&screen) {
            return screen;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; the screen:\n{screen}");
        // Polling another process's screen against a deadline; nothing is ordered by it.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits (deadline 10 s) until `pid` is gone: reaping an exited process takes its parent a moment.
fn gone(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "{what} (pid {pid}) is still running\n{}", threads(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where each thread of `pid` waits, for a failure message.
fn threads(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(pid {pid} has exited)");
    };
    tasks
        .flatten()
        .map(|t| {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            format!(
                "thread {:?} {} wchan {}\n{}",
                t.file_name(),
                read("comm").trim(),
                read("wchan"),
                read("stack")
            )
        })
        .collect()
}

pub fn watch_in_a_terminal_shows_the_verdict_and_the_client_and_quits_on_q() {
    let Some(ns) = Netns::for_test("watch-tmux", &[]) else { return };
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(!in_ci(), "tmux is missing, and CI=true forbids skipping (.ci/run installs it)");
        eprintln!("watch-tmux: skipped: tmux is not installed");
        return;
    }
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "30"]);
    assert_eq!(client.opened(), 30, "{:?}", client.ready);

    let tmux = Tmux { socket: format!("porthog-e2e-{}", std::process::id()) };
    // The shell prints porthog's exit status after it: on the normal screen, so seeing it also
    // shows that porthog left the alternate screen. (tmux's own #{pane_dead_status} is not
    // always filled in when the pane closes, so it is not relied on.)
    let command = format!(
        "{} watch --netns {} --interval 0.5; echo porthog exited with status $?",
        porthog::binary(),
        ns.name()
    );
    tmux.run(&["new-session", "-d", "-x", "160", "-y", "50", "-s", "watch", &command])
        .unwrap_or_else(|e| panic!("{e}"));
    // Keep the pane after the shell exits, to read what was left on the terminal.
    tmux.run(&["set-option", "-t", "watch", "remain-on-exit", "on"])
        .unwrap_or_else(|e| panic!("{e}"));
    let shell: u32 = tmux
        .run(&["display-message", "-p", "-t", "watch", "#{pane_pid}"])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .parse()
        .expect("a pane pid");

    let client_pid = client.pid().to_string();
    let screen = poll(&tmux, "the client on porthog's screen", |screen| {
        screen.contains("porthog-loadgen") && screen.contains(&client_pid)
    });
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].contains("porthog watch") && lines[0].contains(ns.name()), "{screen}");
    assert!(lines[1].trim_start().starts_with("OK "), "the verdict line: {screen}");
    assert!(lines[1].contains(SERVER), "{screen}");
    assert!(screen.contains("Pools nearest exhaustion"), "{screen}");
    let row = lines.iter().find(|l| l.contains(&client_pid)).unwrap();
    assert!(row.contains("porthog-loadgen") && row.contains("30"), "the client's row: {row}");

    let children = format!("/proc/{shell}/task/{shell}/children");
    let pid: u32 = std::fs::read_to_string(&children)
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("porthog is not a child of the pane's shell ({children})"));

    tmux.run(&["send-keys", "-t", "watch", "q"]).unwrap_or_else(|e| panic!("{e}"));
    // Generous: exiting waits for every thread, and a sample in progress on a loaded machine
    // (another namespace under heavy tracing) can hold one in the kernel for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let screen = tmux.screen();
        if screen.contains("porthog exited with status") {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "porthog did not exit on q; the screen:\n{screen}\nporthog's threads:\n{}",
            threads(pid)
        );
        // Polling another process's screen against a deadline; nothing is ordered by it.
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(after.contains("porthog exited with status 0"), "{after}");
    assert!(
        !after.contains("Pools nearest exhaustion"),
        "the alternate screen was not left:\n{after}"
    );
    gone(pid, "porthog");

    tmux.run(&["kill-server"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(tmux.run(&["has-session", "-t", "watch"]).is_err(), "the tmux server is still up");
    gone(shell, "the pane's shell");
}

/// The pid of the pane's only child (porthog, run by the pane's shell).
fn pane_child(tmux: &Tmux) -> (u32, u32) {
    let shell: u32 = tmux
        .run(&["display-message", "-p", "-t", "watch", "#{pane_pid}"])
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .parse()
        .expect("a pane pid");
    let children = format!("/proc/{shell}/task/{shell}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid = std::fs::read_to_string(&children)
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok());
        if let Some(pid) = pid {
            return (shell, pid);
        }
        assert!(Instant::now() < deadline, "porthog is not a child of the pane's shell");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The index of the namespace list's row for `name` ("name (net:[...], pids ...)").
fn row_of(screen: &str, name: &str) -> Option<usize> {
    screen.lines().position(|l| l.contains(&format!(" {name} (net:[")))
}

/// The second line of the screen: the shown namespace's verdict, " OK  LABEL: summary".
fn verdict_line(screen: &str) -> &str {
    screen.lines().nth(1).unwrap_or("")
}

/// `watch --all-netns` in a terminal: two namespaces of the test's own, one whose pool a real
/// client drove to EADDRNOTAVAIL; the list shows both with their labels and verdicts, the
/// exhausted one first; Tab moves the selection to the healthy one and its detail (its own
/// client) shows; deleting it while watching lists it as GONE and the view falls back to the
/// worst; q exits 0 and leaves the alternate screen.
pub fn watch_all_netns_in_a_terminal_lists_selects_and_marks_a_deleted_namespace_gone() {
    let Some((exhausted, healthy, mut load)) = crate::fleet_live::two_namespaces("watch-all-tmux")
    else {
        return;
    };
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(!in_ci(), "tmux is missing, and CI=true forbids skipping (.ci/run installs it)");
        eprintln!("watch-all-tmux: skipped: tmux is not installed");
        return;
    }
    // two_namespaces: [server, client] in the exhausted one, [server, client] in the healthy.
    let light_pid = load[3].pid().to_string();
    // The detail's process row of the healthy namespace's client (the list names pids too).
    let client_row = |screen: &str| {
        screen
            .lines()
            .find(|l| l.contains("porthog-loadgen") && l.contains(&format!("│{light_pid} ")))
            .map(str::to_owned)
    };
    let tmux = Tmux { socket: format!("porthog-e2e-all-{}", std::process::id()) };
    let command = format!(
        "{} watch --all-netns --no-trace --interval 0.5; echo porthog exited with status $?",
        porthog::binary()
    );
    tmux.run(&["new-session", "-d", "-x", "200", "-y", "60", "-s", "watch", &command])
        .unwrap_or_else(|e| panic!("{e}"));
    tmux.run(&["set-option", "-t", "watch", "remain-on-exit", "on"])
        .unwrap_or_else(|e| panic!("{e}"));
    let (shell, pid) = pane_child(&tmux);

    let (bad, good) = (exhausted.name(), healthy.name());
    // The list also holds the host's other namespaces (other tests make and delete them), and
    // shows 8 rows with the shown one kept in view: Tab from the worst until each of ours is
    // shown, counting the presses; the shown row is then always on screen.
    let mut presses = 0;
    let mut tab_to = |name: &str, ready: &dyn Fn(&str) -> bool| loop {
        let screen = tmux.screen();
        if verdict_line(&screen).contains(&format!(" {name}:")) && ready(&screen) {
            return (presses, screen);
        }
        assert!(presses < 64, "Tab never showed {name}; the screen:\n{screen}");
        let marked = screen.lines().find(|l| l.contains('▶')).unwrap_or("").to_owned();
        tmux.run(&["send-keys", "-t", "watch", "Tab"]).unwrap_or_else(|e| panic!("{e}"));
        presses += 1;
        // The next frame moves the marker (or shows the namespace): wait for it, then look.
        poll(&tmux, "the selection to move", |s| {
            s.lines().find(|l| l.contains('▶')).unwrap_or("") != marked
                || verdict_line(s).contains(&format!(" {name}:"))
        });
    };
    let (to_bad, screen) = tab_to(bad, &|s| row_of(s, bad).is_some());
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].contains("porthog watch") && lines[0].contains("all network namespaces"));
    assert!(screen.contains("Network namespaces: "), "{screen}");
    let bad_at = row_of(&screen, bad).unwrap_or_default();
    let bad_row = lines[bad_at];
    assert!(bad_row.contains('▶'), "the exhausted row is marked:\n{screen}");
    assert!(bad_row.contains("EXHAUSTED") && bad_row.contains("100 / 100"), "{screen}");
    assert!(verdict_line(&screen).trim_start().starts_with("EXHAUSTED "), "{screen}");
    // Worst first: every namespace listed above ours is exhausted too.
    for above in lines[..bad_at].iter().filter(|l| l.contains(" (net:[")) {
        assert!(above.contains("EXHAUSTED"), "a better namespace listed first:\n{screen}");
    }
    // Its own client's pid in the detail proves the panes follow the selection.
    let (to_good, screen) = tab_to(good, &|s| client_row(s).is_some());
    assert!(to_bad < to_good, "the exhausted namespace comes before the healthy one");
    assert!(verdict_line(&screen).trim_start().starts_with("OK "), "{screen}");
    let marked = screen.lines().find(|l| l.contains('▶')).unwrap_or("");
    assert!(marked.contains(&format!(" {good} (net:[")), "the healthy row is marked:\n{screen}");
    let row = client_row(&screen).unwrap_or_default();
    assert!(row.contains(" 5 "), "its client, holding 5 ports, in the detail:\n{screen}");

    // Delete the shown namespace: its processes end, then its name goes.
    load.truncate(2);
    let out = Command::new("ip").args(["netns", "del", good]).output().expect("ip netns del");
    assert!(out.status.success(), "ip netns del {good}: {}", String::from_utf8_lossy(&out.stderr));
    let note = format!("network namespace {good} is gone; showing the worst one");
    // The list holds 8 rows: on a host whose other namespaces come and go (other tests), more
    // recently gone ones can push ours out of view; then the list must be full.
    let rows = |screen: &str| screen.lines().filter(|l| l.contains(" (net:[")).count();
    let screen = poll(&tmux, "the deleted namespace marked GONE", |screen| {
        screen.contains(&note)
            && match row_of(screen, good) {
                Some(i) => screen.lines().nth(i).unwrap_or("").contains("GONE at"),
                None => rows(screen) == 8,
            }
    });
    if row_of(&screen, good).is_none() {
        eprintln!("watch-all-tmux: {good} was pushed out of the full list by other namespaces");
    }
    assert!(!verdict_line(&screen).contains(&format!(" {good}:")), "{screen}");

    tmux.run(&["send-keys", "-t", "watch", "q"]).unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        let screen = tmux.screen();
        if screen.contains("porthog exited with status") {
            break screen;
        }
        assert!(
            Instant::now() < deadline,
            "porthog did not exit on q; the screen:\n{screen}\nporthog's threads:\n{}",
            threads(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(after.contains("porthog exited with status 0"), "{after}");
    assert!(!after.contains("Network namespaces: "), "the alternate screen was not left:\n{after}");
    gone(pid, "porthog");
    tmux.run(&["kill-server"]).unwrap_or_else(|e| panic!("{e}"));
    gone(shell, "the pane's shell");
    drop(load);
    drop(healthy);
}
