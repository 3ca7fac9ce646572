//! The capture oracle (issue 11): one known state in a namespace (range 40000-40099, tw_reuse
//! off), every capture command that exists here run FOR REAL inside it (net-tools `netstat`
//! variants, `busybox netstat`, `ss` variants, `lsof`, `/proc/net/*` with and without its header
//! lines, and the filtered pipes people paste (`netstat -n | grep TIME_WAIT`, `ss -tan | grep
//! 7071`), each after the real `sysctl` lines), its output fed to `porthog analyze`, and the
//! answer compared with `porthog check --netns` on the same state: the verdict, the tightest
//! pool's used and capacity, and (where the capture names owners) the top process. Where a
//! capture cannot give the same answer, the documented difference is asserted, and that the
//! report says so.
//!
//! The state: a listener at 40050 (inside the range: every pool loses a port), a client holding
//! every other port to 127.0.0.1:7070 until EADDRNOTAVAIL (99), 30 connections to
//! 127.0.0.1:7071 closed at once (TIME_WAIT), 10 held connections to [::1]:7072 (IPv6), and
//! 5 connected UDP sockets (bash's `/dev/udp`: connect() autobinds a port from the range), whose
//! UDP pool must agree too where the capture lists UDP.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_CRITICAL, EXIT_ERROR};
use crate::report::Report;

const SERVER: &str = "127.0.0.1:7070";
const CHURN: &str = "127.0.0.1:7071";
const SERVER6: &str = "[::1]:7072";
const UDP_PEER: &str = "127.0.0.1:5353";
const UDP_SOCKETS: usize = 5;
const SYSCTLS: [&str; 4] = [
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_timestamps",
];

/// What a capture can show, and so what must agree with `porthog check`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Same verdict, tightest pool and top process (by pid).
    Everything,
    /// Same verdict and tightest pool; no owners, and a gap saying so.
    NoOwners,
    /// /proc/net rows without their header lines (`tail -n +2`): TCP or UDP told by the rows'
    /// width, and a note says how many were read as which; otherwise as `NoOwners`.
    Headerless,
    /// No listeners (`-n` without -a, `ss -tn`, a state filter): the listener at 40050 is not
    /// seen, so the tightest pool has one port more; a gap says so.
    NoListeners { owners: bool },
    /// lsof: no TIME_WAIT, said so; the held pool agrees, the churn pool's TIME_WAIT is missing.
    NoTimeWait,
    /// `ss -tan state time-wait`: only the churn's rows, state unknown, said so.
    OnlyTimeWait,
    /// `ss -s`: totals only, no pools, exit 3.
    Summary,
    /// A real pipe (`netstat -n | grep TIME_WAIT`, `ss -tan | grep 7071`): rows without their
    /// header, read by shape and noted. The pool to `remote` agrees with the live one, except
    /// that the filter drops the listener at 40050 (capacity one port bigger); a gap says the
    /// rows are a fragment and names the unfiltered command; `owners`: the top process agrees.
    Fragment { remote: &'static str, owners: bool, advice: &'static str },
}

struct Capture {
    command: &'static [&'static str],
    format: &'static str,
    expect: Expect,
    udp: bool,
}

/// One row of the table: what to run, the format it must be read as, what must agree, and
/// whether it lists UDP (then the UDP pool must agree too).
const fn cap(
    command: &'static [&'static str],
    format: &'static str,
    expect: Expect,
    udp: bool,
) -> Capture {
    Capture { command, format, expect, udp }
}

/// UDP sockets held by bash processes (`exec 3<>/dev/udp/HOST/PORT`, one each; bash connects
/// the socket and then waits on its stdin), killed on Drop.
struct UdpHolders {
    children: Vec<std::process::Child>,
}

impl UdpHolders {
    /// Starts `n` holders and waits (with a deadline) until the kernel shows their sockets.
    fn start(ns: &Netns, n: usize, to: &str) -> UdpHolders {
        let (host, port) = to.rsplit_once(':').expect("HOST:PORT");
        let mut holders = UdpHolders { children: Vec::new() };
        for _ in 0..n {
            let mut cmd = ns.exec("bash");
            cmd.args(["-c", &format!("exec 3<>/dev/udp/{host}/{port} && read -r _")])
                .stdin(Stdio::piped())
                .stdout(Stdio::null());
            let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start bash: {e}"));
            ns.record(child.id());
            holders.children.push(child);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = run_in(ns, &["ss", "-Hun", "dst", to]);
            let seen = out.lines().filter(|l| !l.trim().is_empty()).count();
            if seen == n {
                return holders;
            }
            assert!(Instant::now() < deadline, "{seen} of {n} UDP sockets to {to} after 20 s");
            // Polling the kernel's state, not ordering threads: bash gives no ready signal.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for UdpHolders {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

const CAPTURES: &[Capture] = &[
    // First the captures that show the churn's TIME_WAIT, which the kernel keeps for 60 s.
    cap(&["ss", "-tan", "state", "time-wait"], "ss", Expect::OnlyTimeWait, false),
    cap(&["ss", "-s"], "ss-summary", Expect::Summary, false),
    cap(
        &["sh", "-c", "netstat -n | grep TIME_WAIT"],
        "netstat-linux",
        Expect::Fragment { remote: CHURN, owners: false, advice: "netstat -tanp" },
        false,
    ),
    cap(
        &["sh", "-c", "busybox netstat -tan | grep TIME_WAIT"],
        "netstat-linux",
        Expect::Fragment { remote: CHURN, owners: false, advice: "netstat -tanp" },
        false,
    ),
    cap(
        &["sh", "-c", "ss -tan | grep 7071"],
        "ss",
        Expect::Fragment { remote: CHURN, owners: false, advice: "ss -tanp" },
        false,
    ),
    cap(&["netstat", "-tanp"], "netstat-linux", Expect::Everything, false),
    cap(&["netstat", "-antup"], "netstat-linux", Expect::Everything, true),
    cap(&["netstat", "-anp"], "netstat-linux", Expect::Everything, true),
    cap(&["netstat", "-tanpe"], "netstat-linux", Expect::Everything, false),
    cap(&["netstat", "-tanpo"], "netstat-linux", Expect::Everything, false),
    cap(&["netstat", "-tanpW"], "netstat-linux", Expect::Everything, false),
    cap(&["netstat", "-tan"], "netstat-linux", Expect::NoOwners, false),
    cap(&["netstat", "-tane"], "netstat-linux", Expect::NoOwners, false),
    cap(&["netstat", "-nt"], "netstat-linux", Expect::NoListeners { owners: false }, false),
    cap(&["netstat", "-n"], "netstat-linux", Expect::NoListeners { owners: false }, true),
    cap(&["busybox", "netstat", "-tan"], "netstat-linux", Expect::NoOwners, false),
    cap(&["busybox", "netstat", "-an"], "netstat-linux", Expect::NoOwners, true),
    cap(
        &["busybox", "netstat", "-nt"],
        "netstat-linux",
        Expect::NoListeners { owners: false },
        false,
    ),
    cap(&["ss", "-tanp"], "ss", Expect::Everything, false),
    cap(&["ss", "-tanpeo"], "ss", Expect::Everything, false),
    cap(&["ss", "-tanpi"], "ss", Expect::Everything, false),
    cap(&["ss", "-tanpm"], "ss", Expect::Everything, false),
    cap(&["ss", "-tuanp"], "ss", Expect::Everything, true),
    cap(&["ss", "-tan"], "ss", Expect::NoOwners, false),
    cap(&["ss", "-tnp"], "ss", Expect::NoListeners { owners: true }, false),
    cap(&["ss", "-tn"], "ss", Expect::NoListeners { owners: false }, false),
    cap(
        &["ss", "-tanp", "exclude", "listening"],
        "ss",
        Expect::NoListeners { owners: true },
        false,
    ),
    cap(
        &["ss", "-tanp", "state", "established"],
        "ss",
        Expect::NoListeners { owners: true },
        false,
    ),
    // Grepped by address, not the bare port: `7070` can also be in a pid or lsof's DEVICE.
    cap(
        &["sh", "-c", "ss -tanp | grep '127.0.0.1:7070 '"],
        "ss",
        Expect::Fragment { remote: SERVER, owners: true, advice: "ss -tanp" },
        false,
    ),
    cap(
        &["sh", "-c", "netstat -tanp | grep '127.0.0.1:7070 '"],
        "netstat-linux",
        Expect::Fragment { remote: SERVER, owners: true, advice: "netstat -tanp" },
        false,
    ),
    cap(
        &["sh", "-c", "lsof -nP -iTCP | grep -- '->127.0.0.1:7070 '"],
        "lsof",
        Expect::Fragment { remote: SERVER, owners: true, advice: "lsof -nP -i" },
        false,
    ),
    cap(&["lsof", "-nP", "-iTCP"], "lsof", Expect::NoTimeWait, false),
    cap(&["lsof", "-i", "-n", "-P"], "lsof", Expect::NoTimeWait, true),
    cap(
        &["cat", "/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6"],
        "proc-net",
        Expect::NoOwners,
        true,
    ),
    cap(
        &["sh", "-c", "tail -q -n +2 /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6"],
        "proc-net",
        Expect::Headerless,
        true,
    ),
];

pub fn every_capture_command_agrees_with_check_on_the_same_state() {
    let Some(ns) = Netns::for_test("capture-oracle", &[("net.ipv4.tcp_tw_reuse", "0")]) else {
        return;
    };
    let _squatter = Loadgen::start(&ns, &["listen-at", "--addr", "127.0.0.1:40050"]);
    let _server =
        Loadgen::start(&ns, &["serve", "--listen", SERVER, "--listen", CHURN, "--listen", SERVER6]);
    let churn = Loadgen::start(&ns, &["connect", "--to", CHURN, "--count", "30", "--close"]);
    assert_eq!((churn.opened(), churn.failed()), (30, 0), "{:?}", churn.ready);
    let v6 = Loadgen::start(&ns, &["connect", "--to", SERVER6, "--count", "10"]);
    assert_eq!((v6.opened(), v6.failed()), (10, 0), "{:?}", v6.ready);
    let _udp = UdpHolders::start(&ns, UDP_SOCKETS, UDP_PEER);
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--until-fail"]);
    assert_eq!(client.opened(), 99, "the listener at 40050 leaves 99 ports: {:?}", client.ready);
    assert_eq!(client.errno(), Some("EADDRNOTAVAIL"), "{:?}", client.ready);
    ns.wait_for_count("time-wait", &format!("dst {CHURN}"), 30);

    let check = porthog::json_in(&ns, &[]);
    check.assert_code(EXIT_CRITICAL);
    let truth = check.report();
    assert_eq!(truth.verdict, "exhausted", "\n{}", truth.summary());
    let tight = truth.pools.first().unwrap_or_else(|| panic!("no pool\n{}", truth.summary()));
    assert_eq!(
        (tight.remote.as_deref(), tight.used, tight.capacity),
        (Some(SERVER), 99, 99),
        "\n{}",
        truth.summary()
    );
    let top = truth.processes.first().unwrap_or_else(|| panic!("no process\n{}", truth.summary()));
    assert_eq!(top.pid, client.pid(), "\n{}", truth.summary());
    let udp = udp_pool(&truth).unwrap_or_else(|| panic!("no UDP pool\n{}", truth.summary()));
    assert_eq!((udp.used, udp.capacity), (UDP_SOCKETS as u64, 100), "\n{}", truth.summary());

    let sysctl = run_in(&ns, &[&["sysctl"][..], &SYSCTLS[..]].concat());
    let dir = std::env::temp_dir().join(format!("porthog-e2e-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let _cleanup = RemoveDir(dir.clone());
    let mut failures = Vec::new();
    let mut ran = 0;
    for capture in CAPTURES {
        if !installed(capture.command) {
            if crate::netns::in_ci() {
                failures.push(format!(
                    "`{}`: not installed (CI installs it)",
                    capture.command.join(" ")
                ));
            } else {
                eprintln!("capture oracle: skipped `{}`: not installed", capture.command.join(" "));
            }
            continue;
        }
        ran += 1;
        let output = run_in(&ns, capture.command);
        let file = dir.join(format!("capture-{ran}.txt"));
        std::fs::write(&file, format!("{sysctl}{output}"))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        let mut cmd = Command::new(porthog::binary());
        cmd.arg("analyze").arg(&file).arg("--json");
        let run = porthog::run(cmd);
        if let Err(e) = judge(capture, &run, &truth, client.pid()) {
            failures.push(format!(
                "`{}`: {e}\n--- its output (first 15 lines):\n{}\n--- analyze:\n{}",
                capture.command.join(" "),
                output.lines().take(15).collect::<Vec<_>>().join("\n"),
                run.context()
            ));
        }
    }
    assert!(ran >= 20, "only {ran} capture commands ran");
    assert!(
        failures.is_empty(),
        "{} captures disagree:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Compares one capture's report with the live truth, as `capture.expect` says it must.
fn judge(capture: &Capture, run: &porthog::Run, truth: &Report, client: u32) -> Result<(), String> {
    // An `ok` from totals or from a filtered fragment is no answer: exit 3, checked below.
    if run.code() == EXIT_ERROR
        && !matches!(capture.expect, Expect::Summary | Expect::Fragment { .. })
    {
        return Err(format!("exit {}", run.code()));
    }
    let json: Value = serde_json::from_str(run.stdout()).map_err(|e| format!("not JSON: {e}"))?;
    let report: Report = serde_json::from_value(json.clone()).map_err(|e| format!("{e}"))?;
    let formats: Vec<&str> = json["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["format"].as_str())
        .collect();
    let notes: Vec<&str> = json["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["notes"].as_array())
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !formats.contains(&capture.format) || !formats.contains(&"sysctl") {
        return Err(format!("sources {formats:?}, expected {} and sysctl", capture.format));
    }
    let gap = |kind: &str, words: &str| {
        report.gaps.iter().any(|g| g.kind == kind && g.message.contains(words))
    };
    if capture.udp
        && let Some(want) = udp_pool(truth)
    {
        match udp_pool(&report) {
            Some(p) if (p.used, p.capacity) == (want.used, want.capacity) => {}
            other => {
                return Err(format!(
                    "UDP pool {:?}, expected used {} capacity {}",
                    other.map(|p| (p.used, p.capacity)),
                    want.used,
                    want.capacity
                ));
            }
        }
    }
    let want = truth.pools.first().ok_or("no pool in the truth")?;
    let tight = report.pools.first();
    let tight_of = |remote: &str| {
        report.pools.iter().find(|p| p.kind == "connect" && p.remote.as_deref() == Some(remote))
    };
    let same_pool = |p: Option<&crate::report::Pool>, capacity: u64| match p {
        Some(p)
            if (p.remote.as_deref(), p.used, p.capacity)
                == (want.remote.as_deref(), want.used, capacity) =>
        {
            Ok(())
        }
        other => Err(format!(
            "tightest pool {:?}, expected {:?} used {} capacity {capacity}",
            other.map(|p| (&p.remote, p.used, p.capacity)),
            want.remote,
            want.used
        )),
    };
    let top_is_client = || match report.processes.first() {
        Some(p) if p.pid == client => Ok(()),
        other => {
            Err(format!("top process {:?}, expected pid {client}", other.map(|p| (p.pid, &p.name))))
        }
    };
    match capture.expect {
        Expect::Everything => {
            same(&report.verdict, &truth.verdict, "verdict")?;
            same_pool(tight, want.capacity)?;
            top_is_client()?;
        }
        Expect::NoOwners | Expect::Headerless => {
            if capture.expect == Expect::Headerless
                && !notes.iter().any(|n| {
                    n.contains("without its header line")
                        && n.contains("as UDP")
                        && !n.contains(" 0 rows as UDP")
                })
            {
                return Err(format!("no note says how the rows were told TCP or UDP: {notes:?}"));
            }
            same(&report.verdict, &truth.verdict, "verdict")?;
            same_pool(tight, want.capacity)?;
            if !report.processes.is_empty() {
                return Err("processes from a capture without owners".into());
            }
            if !(gap("unattributed", "owner") || gap("unattributed", "PID"))
                && capture.format != "proc-net"
            {
                return Err("no gap says the owners are missing".into());
            }
        }
        Expect::NoListeners { owners } => {
            // 99 of 100: the listener's port looks free, so critical instead of exhausted.
            same(&report.verdict, "critical", "verdict")?;
            same_pool(tight_of(SERVER), want.capacity + 1)?;
            if owners {
                top_is_client()?;
            }
            if !gap("invisible", "listen") {
                return Err("no gap says listeners are not in the capture".into());
            }
        }
        Expect::NoTimeWait => {
            same(&report.verdict, &truth.verdict, "verdict")?;
            same_pool(tight, want.capacity)?;
            top_is_client()?;
            if tight_of(CHURN).is_some_and(|p| p.time_wait > 0) {
                return Err("TIME_WAIT from lsof?".into());
            }
            if !gap("invisible", "TIME_WAIT") {
                return Err("no gap says TIME_WAIT is not in lsof".into());
            }
        }
        Expect::OnlyTimeWait => {
            let churn = tight_of(CHURN).ok_or("no pool to the churn's destination")?;
            let truth_churn = truth.connect_pool(CHURN);
            if churn.used != truth_churn.used {
                return Err(format!("churn pool used {} vs {} live", churn.used, truth_churn.used));
            }
            if !gap("source", "no State column") {
                return Err("no gap says the State column is missing".into());
            }
        }
        Expect::Fragment { remote, owners, advice } => {
            if !notes.iter().any(|n| n.contains("without their header")) {
                return Err(format!("no note says the rows came without their header: {notes:?}"));
            }
            let got = tight_of(remote).ok_or_else(|| format!("no pool to {remote}"))?;
            let live = truth.connect_pool(remote);
            // The filter drops the listener at 40050: the pool looks one port bigger.
            let want = (live.used, live.time_wait, live.capacity + 1);
            if (got.used, got.time_wait, got.capacity) != want {
                return Err(format!(
                    "pool to {remote}: used {} TIME_WAIT {} capacity {}, expected {want:?}",
                    got.used, got.time_wait, got.capacity
                ));
            }
            if owners {
                top_is_client()?;
            }
            // The churn's 30 of 100 ports alone are `ok`, which rows the filter left over cannot
            // prove: exit 3; the held pool's 99 of 100 are critical whatever was filtered out.
            let code = if report.verdict == "ok" { EXIT_ERROR } else { EXIT_CRITICAL };
            if run.code() != code {
                return Err(format!(
                    "exit {} with verdict {}, expected {code}",
                    run.code(),
                    report.verdict
                ));
            }
            let unfiltered = format!("capture `{advice}` without the filter");
            if !report.gaps.iter().any(|g| {
                g.kind == "incomplete"
                    && g.message.contains("filtered fragment")
                    && g.advice.as_deref() == Some(unfiltered.as_str())
            }) {
                return Err(format!("no gap says the rows are a fragment ({unfiltered})"));
            }
        }
        Expect::Summary => {
            if run.code() != EXIT_ERROR {
                return Err(format!("exit {} from totals alone, expected 3", run.code()));
            }
            if !gap("incomplete", "30 in TIME_WAIT against the 100-port range") {
                return Err("no gap gives the TIME_WAIT total against the range".into());
            }
        }
    }
    Ok(())
}

fn udp_pool(report: &Report) -> Option<&crate::report::Pool> {
    report.pools.iter().find(|p| p.kind == "udp")
}

fn same(got: &str, want: &str, what: &str) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what} {got:?}, expected {want:?}")) }
}

/// Whether the capture's programs are installed (a pipe run by `sh -c` needs its first one).
fn installed(command: &[&str]) -> bool {
    match command {
        ["sh", "-c", pipe] => pipe.split_whitespace().next().is_some_and(exists),
        _ => exists(command[0]),
    }
}

fn exists(program: &str) -> bool {
    matches!(program, "cat" | "sh")
        || std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Runs `command` inside the namespace and returns its stdout (it must succeed).
fn run_in(ns: &Netns, command: &[&str]) -> String {
    let mut cmd = ns.exec(command[0]);
    cmd.args(&command[1..]);
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} in {}: {}",
        ns.name(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
