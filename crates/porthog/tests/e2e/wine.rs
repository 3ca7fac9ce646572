//! porthog.exe under wine inside a test namespace (issue 10). Under wine, GetExtendedTcpTable
//! and GetExtendedUdpTable return the real Linux sockets of the namespace wine runs in, so the
//! Windows binary can be checked against the Linux one on the same kernel state. The `Wine`
//! guard makes a throw-away WINEPREFIX with the ProcessPrng stand-in DLL (tests/wine/), kills
//! its wineserver before anything runs in a namespace (a server started outside would show the
//! host's sockets) and again on Drop, and deletes the prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::child;
use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_OK};
use crate::report::Report;

const LOADERS: [&str; 3] = ["/usr/lib/wine/wine64", "/usr/bin/wine64", "/usr/bin/wine"];
const SERVERS: [&str; 3] =
    ["/usr/lib/wine/wineserver64", "/usr/lib/wine/wineserver", "/usr/bin/wineserver"];
const MINGW: &str = "x86_64-w64-mingw32-gcc";
/// Windows' default dynamic range, which porthog.exe assumes under wine (its netsh prints
/// nothing): the namespace hands out ports from its start so both models see them.
const RANGE: &str = "49152 49251";
const POOL: std::ops::RangeInclusive<u16> = 49152..=65535;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// target/x86_64-pc-windows-gnu/<profile>/porthog.exe, next to this test binary's profile.
pub fn porthog_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/e2e-*");
    let profile = profile_dir.file_name().expect("a profile directory");
    let target = profile_dir.parent().expect("the target directory");
    target.join("x86_64-pc-windows-gnu").join(profile).join("porthog.exe")
}

/// What these tests lack on this machine, if anything.
pub fn missing() -> Option<String> {
    if first_existing(&LOADERS).is_none() || first_existing(&SERVERS).is_none() {
        return Some("needs wine (apt-get install wine64)".to_owned());
    }
    if Command::new(MINGW).arg("--version").output().is_err() {
        return Some(format!("needs {MINGW} (apt-get install mingw-w64)"));
    }
    let exe = porthog_exe();
    if !exe.is_file() {
        return Some(format!(
            "needs {} (cargo build --target x86_64-pc-windows-gnu -p porthog)",
            exe.display()
        ));
    }
    None
}

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wine").join(name)
}

pub struct Wine {
    prefix: PathBuf,
    loader: PathBuf,
    server: PathBuf,
}

impl Wine {
    /// A fresh prefix with the stand-in bcryptprimitives.dll; its wineserver is not running.
    pub fn new() -> Wine {
        if let Some(why) = missing() {
            panic!("cannot set up wine: {why}");
        }
        let prefix = std::env::temp_dir().join(format!(
            "porthog-e2e-wine-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let wine = Wine {
            prefix,
            loader: first_existing(&LOADERS).expect("checked"),
            server: first_existing(&SERVERS).expect("checked"),
        };
        // From here on Drop removes the prefix, also when a step below fails.
        let mut boot = wine.env(Command::new(&wine.loader));
        boot.args(["wineboot", "--init"]);
        let run = porthog::run(boot);
        assert_eq!(run.code(), 0, "wineboot failed\n{}", run.context());
        let system32 = wine.prefix.join("drive_c/windows/system32");
        wine.mingw(
            &source("processprng.c"),
            &system32.join("bcryptprimitives.dll"),
            &["-shared", "-ladvapi32"],
        );
        wine.kill_server();
        wine
    }

    fn env(&self, mut cmd: Command) -> Command {
        cmd.env("WINEPREFIX", &self.prefix).env("WINEDEBUG", "-all");
        cmd
    }

    /// Compiles a C source of tests/wine/ with mingw.
    fn mingw(&self, source: &Path, out: &Path, flags: &[&str]) {
        let mut cmd = Command::new(MINGW);
        cmd.args(["-O2", "-o"]).arg(out).arg(source).args(flags);
        let run = porthog::run(cmd);
        assert_eq!(run.code(), 0, "{MINGW} failed\n{}", run.context());
    }

    /// The test client (tests/wine/client.c), built into the prefix.
    pub fn client(&self) -> PathBuf {
        let out = self.prefix.join("client.exe");
        self.mingw(&source("client.c"), &out, &["-lws2_32"]);
        out
    }

    /// `ip netns exec NS wine64 EXE ARGS`.
    pub fn cmd(&self, ns: &Netns, exe: &Path, args: &[&str]) -> Command {
        let mut cmd = self.env(ns.exec(self.loader.to_str().expect("a UTF-8 wine path")));
        cmd.arg(exe).args(args);
        cmd
    }

    /// `porthog.exe ARGS` in `ns`, to completion.
    pub fn porthog(&self, ns: &Netns, args: &[&str]) -> porthog::Run {
        porthog::run(self.cmd(ns, &porthog_exe(), args))
    }

    fn kill_server(&self) {
        for flag in ["-k", "-w"] {
            let _ = self.env(Command::new(&self.server)).arg(flag).stdin(Stdio::null()).output();
        }
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        self.kill_server();
        if let Err(e) = std::fs::remove_dir_all(&self.prefix) {
            eprintln!("warning: could not remove {}: {e}", self.prefix.display());
        }
    }
}

/// Distinct local ports inside Windows' default pool of the `ss -Hna` (`-t` or `-u`) rows.
fn pool_ports(ns: &Netns, proto_flag: &str) -> usize {
    let out = ns.exec("ss").args(["-Hna", proto_flag]).output().expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let ports: BTreeSet<u16> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|local| local.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        .filter(|p| POOL.contains(p))
        .collect();
    ports.len()
}

fn pool<'a>(report: &'a Report, protocol: &str) -> &'a crate::report::Pool {
    report
        .pools
        .iter()
        .find(|p| p.kind == "global" && p.protocol == protocol)
        .unwrap_or_else(|| panic!("no global {protocol} pool in {:?}", report.pools))
}

/// (1) A known load of held, TIME_WAIT, CLOSE_WAIT, IPv6 and UDP sockets: porthog.exe sees the
/// same sockets and states as `porthog check --netns`, and counts the Windows global pools.
pub fn exe_sees_the_sockets_porthog_sees() {
    let Some(ns) = Netns::for_test(
        "wine-same-sockets",
        &[("net.ipv4.ip_local_port_range", RANGE), ("net.ipv4.tcp_tw_reuse", "0")],
    ) else {
        return;
    };
    let wine = Wine::new();
    let _server =
        Loadgen::start(&ns, &["serve", "--listen", "127.0.0.1:7070", "--listen", "[::1]:7071"]);
    let _leaky = Loadgen::start(&ns, &["serve", "--listen", "127.0.0.1:7072", "--never-close"]);
    let _held = Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:7070", "--count", "30"]);
    let _v6 = Loadgen::start(&ns, &["connect", "--to", "[::1]:7071", "--count", "10"]);
    let _churn =
        Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:7070", "--count", "20", "--close"]);
    // The leak's client exits: its sockets close, the server never closes its side.
    drop(Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:7072", "--count", "10"]));
    let _udp = Loadgen::start(&ns, &["udp", "--to", "127.0.0.1:9999", "--count", "10"]);
    ns.wait_for_state("time-wait", 20);
    ns.wait_for_state("close-wait", 10);
    ns.wait_for_state("fin-wait-2", 10);

    let linux = porthog::json_in(&ns, &[]);
    let linux = linux.report();
    let run = wine.porthog(&ns, &["check", "--json"]);
    let windows = run.report();
    assert_eq!(windows.totals.sockets, linux.totals.sockets, "socket count\n{}", run.context());
    // The Windows UDP table has no remote end: the 10 connected UDP sockets, ESTABLISHED to
    // Linux, are unconnected endpoints (CLOSE) to Windows, as netstat shows them (`*:*`).
    let mut expected = linux.totals.by_state.clone();
    *expected.entry("ESTABLISHED".to_owned()).or_default() -= 10;
    *expected.entry("CLOSE".to_owned()).or_default() += 10;
    assert_eq!(windows.totals.by_state, expected, "states\n{}", run.context());
    let want: BTreeMap<&str, u64> =
        [("TIME_WAIT", 20), ("CLOSE_WAIT", 10), ("FIN_WAIT2", 10)].into_iter().collect();
    for (state, n) in want {
        assert_eq!(windows.totals.by_state.get(state), Some(&n), "{state}\n{}", run.context());
    }
    let (tcp, udp) = (pool(&windows, "tcp"), pool(&windows, "udp"));
    assert_eq!((tcp.capacity, udp.capacity), (16_384, 16_384), "{}", run.context());
    assert_eq!(tcp.used as usize, pool_ports(&ns, "-t"), "TCP pool\n{}", run.context());
    assert_eq!(udp.used as usize, pool_ports(&ns, "-u"), "UDP pool\n{}", run.context());
    // 30 held and 20 TIME_WAIT to one destination need 50 ports; the others may share them.
    assert!(tcp.used >= 50 && udp.used == 10, "tcp {} udp {}", tcp.used, udp.used);
    // TIME_WAIT rows come with pid 0: ownerless, as on Windows. (The pool counts ports, and a
    // TIME_WAIT port may also be held by a live connection to another destination.)
    assert_eq!(windows.totals.ownerless, 20, "{}", run.context());
    assert!((1..=20).contains(&tcp.time_wait), "{}", run.context());
    run.assert_code(EXIT_OK);
}

/// (2) A wine process that wrote on its connections is named as their owner.
pub fn a_wine_client_is_named_as_the_owner() {
    let Some(ns) = Netns::for_test("wine-owner", &[("net.ipv4.ip_local_port_range", RANGE)]) else {
        return;
    };
    let wine = Wine::new();
    let client_exe = wine.client();
    let _server = Loadgen::start(&ns, &["serve", "--listen", "127.0.0.1:7070"]);
    let mut cmd = wine.cmd(&ns, &client_exe, &["127.0.0.1", "7070", "15"]);
    cmd.stdin(Stdio::piped());
    let mut client = child::spawn(&mut cmd);
    ns.record(client.child.id());
    let ready = client.first_line(Duration::from_secs(60));
    assert_eq!(ready.as_deref(), Ok("ready 15"), "client: {}", client.stderr());

    let run = wine.porthog(&ns, &["check", "--json"]);
    let report = run.report();
    drop(client.child.stdin.take());
    let finished = client.wait(Duration::from_secs(30));
    let owner = report.processes.iter().find(|p| p.name == "client.exe");
    let owner = owner.unwrap_or_else(|| panic!("client.exe not named\n{}", run.context()));
    assert_eq!(owner.sockets, 15, "{}", run.context());
    assert_eq!(owner.states.get("ESTABLISHED"), Some(&15), "{}", run.context());
    assert_user_is_the_unix_user(owner.user.as_deref(), &run);
    assert_eq!(finished.code, Some(0), "{}", finished.context());
}

/// Wine gives its processes a token whose user is the Unix user who runs wine, in a domain
/// named after the host (`VM\root`): porthog.exe reads it through OpenProcessToken,
/// TokenUser and LookupAccountSidW, and no "user could not be read" gap is left.
fn assert_user_is_the_unix_user(user: Option<&str>, run: &porthog::Run) {
    let id = Command::new("id").arg("-un").output().expect("id -un");
    let unix = String::from_utf8_lossy(&id.stdout).trim().to_owned();
    let (domain, name) = user
        .and_then(|u| u.split_once('\\'))
        .unwrap_or_else(|| panic!("user {user:?} is not DOMAIN\\name\n{}", run.context()));
    assert!(!domain.is_empty() && name == unix, "user {user:?}, Unix user {unix}");
    let report = run.report();
    assert!(!report.gaps.iter().any(|g| g.message.starts_with("the user of")), "{}", run.context());
}

/// `watch --once` samples the tables as `check` does (the sampler of `watch` and `record`,
/// with its poll of the System log for new Tcpip events, which fails under wine) and shows
/// the wine client with the ports it holds, and the check's exit code.
pub fn watch_once_shows_the_wine_client() {
    let Some(ns) = Netns::for_test("wine-watch", &[("net.ipv4.ip_local_port_range", RANGE)]) else {
        return;
    };
    let wine = Wine::new();
    let client_exe = wine.client();
    let _server = Loadgen::start(&ns, &["serve", "--listen", "127.0.0.1:7070"]);
    let mut cmd = wine.cmd(&ns, &client_exe, &["127.0.0.1", "7070", "12"]);
    cmd.stdin(Stdio::piped());
    let mut client = child::spawn(&mut cmd);
    ns.record(client.child.id());
    let ready = client.first_line(Duration::from_secs(60));
    assert_eq!(ready.as_deref(), Ok("ready 12"), "client: {}", client.stderr());

    let run = wine.porthog(&ns, &["watch", "--once", "--interval", "1"]);
    drop(client.child.stdin.take());
    let finished = client.wait(Duration::from_secs(30));
    run.assert_code(EXIT_OK);
    let out = run.stdout();
    assert!(out.starts_with("porthog watch  live  sample 1"), "{}", run.context());
    assert!(
        out.contains("\nOK  tightest pool: tcp global pool  12 of 16,384"),
        "{}",
        run.context()
    );
    let row = out.lines().find(|l| l.contains("client.exe"));
    let row = row.unwrap_or_else(|| panic!("no client.exe row\n{}", run.context()));
    assert!(row.contains("ports 12"), "{row}\n{}", run.context());
    // The event log cannot be read under wine: no logged events are invented.
    assert!(!out.contains("Logged by the OS"), "{}", run.context());
    assert_eq!(finished.code, Some(0), "{}", finished.context());
}

/// (3) wine's netsh prints nothing and its EvtQuery fails: the ranges, exclusions and events
/// become gaps, the check still answers, in JSON and text.
pub fn netsh_and_event_log_failures_are_gaps() {
    let Some(ns) = Netns::for_test("wine-gaps", &[]) else { return };
    let wine = Wine::new();
    let run = wine.porthog(&ns, &["check", "--json"]);
    let report = run.report();
    run.assert_code(EXIT_OK);
    let has = |needle: &str| report.gaps.iter().any(|g| g.message.contains(needle));
    for needle in [
        "the TCP dynamic port range could not be read (`netsh int ipv4 show dynamicport tcp` printed nothing",
        "the UDP dynamic port range could not be read",
        "assumed the default range 49152-65535",
        "the TCP excluded port ranges could not be read",
        "the System event log could not be read (EvtQuery failed",
    ] {
        assert!(has(needle), "no gap {needle:?}\n{}", run.context());
    }
    let text = wine.porthog(&ns, &["check"]);
    text.assert_code(EXIT_OK);
    assert!(text.first_line().starts_with("OK"), "{}", text.context());
    assert!(text.stdout().contains("Not seen"), "{}", text.context());

    // `record` samples the same tables on Windows (wine maps Z: to /).
    let out = wine.prefix.join("rec.jsonl");
    let z = format!("Z:{}", out.display()).replace('/', "\\");
    let rec = wine.porthog(&ns, &["record", "-o", &z, "--duration", "3", "--interval", "1"]);
    rec.assert_code(EXIT_OK);
    let lines = std::fs::read_to_string(&out).unwrap_or_default();
    let samples: Vec<&str> = lines.lines().filter(|l| l.contains(r#""type":"sample""#)).collect();
    assert!(
        !samples.is_empty() && lines.contains(r#""os":"windows""#),
        "{lines}\n{}",
        rec.context()
    );
    // Every sample polls the System log for new events, and says it could not.
    for sample in &samples {
        assert!(sample.contains("the System event log could not be read"), "{sample}");
    }
}
