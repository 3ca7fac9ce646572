//! The BPF path (issue 7): each kernel fact porthog reads is checked against sockets built to
//! have it (bind bucket origin, TIME_WAIT timestamps, bound device, v6only, family), owners from
//! the kernel's fd tables equal those from /proc, both paths count what `ss` counts, and a
//! SIGKILLed porthog leaves no program in the kernel. Reads `porthog sockets` (hidden; one
//! JSON line per socket).

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::child;
use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_OK};

const SERVER: &str = "127.0.0.1:7070";
const SERVER2: &str = "127.0.0.1:7071";

#[derive(Debug, Deserialize)]
struct Header {
    source: String,
    gaps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Sock {
    protocol: String,
    state: String,
    local: String,
    remote: String,
    inode: u32,
    cookie: u64,
    pid: Option<u32>,
    timer_ms: u32,
    bucket: Option<String>,
    tw_timestamps: Option<bool>,
    loopback_dev: Option<bool>,
    bound_dev: Option<bool>,
    v6only: Option<bool>,
    family_v6: Option<bool>,
}

/// `porthog sockets --netns NS [--no-bpf]`: the header and the sockets.
fn sockets(ns: &Netns, bpf: bool) -> (Header, Vec<Sock>) {
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["sockets", "--netns", ns.name()]);
    if !bpf {
        cmd.arg("--no-bpf");
    }
    let run = porthog::run(cmd);
    run.assert_code(EXIT_OK);
    let mut lines = run.stdout().lines();
    let header: Header = serde_json::from_str(lines.next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no header line: {e}\n{}", run.context()));
    let socks = lines
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", run.context())))
        .collect();
    (header, socks)
}

/// The BPF path's snapshot, asserting it really came from the kernel's iterators.
fn from_kernel(ns: &Netns) -> Vec<Sock> {
    let (header, socks) = sockets(ns, true);
    assert_eq!(header.source, "bpf", "the BPF path did not run: {:?}", header.gaps);
    socks
}

fn of(socks: &[Sock], pid: u32, state: &str) -> Vec<Sock> {
    socks.iter().filter(|s| s.pid == Some(pid) && s.state == state).cloned().collect()
}

fn to(socks: &[Sock], remote: &str, state: &str) -> Vec<Sock> {
    socks.iter().filter(|s| s.remote == remote && s.state == state).cloned().collect()
}

pub fn bind_buckets_tell_bind_from_connect() {
    let Some(ns) = Netns::for_test("bpf_buckets", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER, "--listen", SERVER2]);
    let bound = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "5", "--bind-first"]);
    let plain = Loadgen::start(&ns, &["connect", "--to", SERVER2, "--count", "5"]);
    assert_eq!(bound.opened() + plain.opened(), 10);

    let socks = from_kernel(&ns);
    let listeners: Vec<_> = socks.iter().filter(|s| s.state == "LISTEN").collect();
    assert_eq!(listeners.len(), 2, "{listeners:?}");
    assert!(listeners.iter().all(|s| s.bucket.as_deref() == Some("bind")), "{listeners:?}");
    let b = of(&socks, bound.pid(), "ESTABLISHED");
    assert_eq!(b.len(), 5, "{socks:#?}");
    assert!(b.iter().all(|s| s.bucket.as_deref() == Some("bind")), "bind() then connect(): {b:?}");
    let p = of(&socks, plain.pid(), "ESTABLISHED");
    assert_eq!(p.len(), 5, "{socks:#?}");
    assert!(p.iter().all(|s| s.bucket.as_deref() == Some("connect")), "connect() alone: {p:?}");
    for s in b.iter().chain(&p) {
        assert_eq!(
            (s.family_v6, s.v6only, s.loopback_dev),
            (Some(false), Some(false), Some(false))
        );
        assert_ne!(s.cookie, 0);
    }
}

pub fn time_wait_timestamps_are_what_each_socket_recorded() {
    // Connections made while timestamps were off recorded none; turning the sysctl on later
    // changes nothing for them (DOMAIN.md 1), and new connections record them.
    let Some(ns) = Netns::for_test("bpf_tw_ts", &[("net.ipv4.tcp_timestamps", "0")]) else {
        return;
    };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER, "--listen", SERVER2]);
    let without = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "3", "--close"]);
    assert_eq!(without.opened(), 3);
    ns.sysctl("net.ipv4.tcp_timestamps", "1").unwrap();
    let with = Loadgen::start(&ns, &["connect", "--to", SERVER2, "--count", "4", "--close"]);
    assert_eq!(with.opened(), 4);
    ns.wait_for_state("time-wait", 7);

    let socks = from_kernel(&ns);
    let off = to(&socks, SERVER, "TIME_WAIT");
    let on = to(&socks, SERVER2, "TIME_WAIT");
    assert_eq!((off.len(), on.len()), (3, 4), "{socks:#?}");
    assert!(off.iter().all(|s| s.tw_timestamps == Some(false)), "{off:?}");
    assert!(on.iter().all(|s| s.tw_timestamps == Some(true)), "{on:?}");
    for s in off.iter().chain(&on) {
        // A fresh TIME_WAIT has nearly all of its 60 s left; its port came from connect().
        assert!((50_000..=60_000).contains(&s.timer_ms), "timer {s:?}");
        assert_eq!((s.bucket.as_deref(), s.pid, s.inode), (Some("connect"), None, 0), "{s:?}");
    }
}

pub fn time_wait_bound_to_the_loopback_device() {
    let Some(ns) = Netns::for_test("bpf_tw_lo", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER, "--listen", SERVER2]);
    let dev = ["connect", "--to", SERVER, "--device", "lo", "--count", "2", "--close"];
    let _lo = Loadgen::start(&ns, &dev);
    let _plain = Loadgen::start(&ns, &["connect", "--to", SERVER2, "--count", "2", "--close"]);

    let socks = from_kernel(&ns);
    let lo = to(&socks, SERVER, "TIME_WAIT");
    let plain = to(&socks, SERVER2, "TIME_WAIT");
    assert_eq!((lo.len(), plain.len()), (2, 2), "{socks:#?}");
    assert!(lo.iter().all(|s| s.loopback_dev == Some(true)), "SO_BINDTODEVICE lo: {lo:?}");
    assert!(plain.iter().all(|s| s.loopback_dev == Some(false)), "unbound: {plain:?}");
    // Bound to a device at all (what keeps them out of the unbound caller's connect() pool),
    // on the BPF path and in sock_diag's idiag_if alike.
    let (_, diag) = sockets(&ns, false);
    for (path, socks) in [("bpf", &socks), ("sock_diag", &diag)] {
        let bound = |server| -> Vec<Option<bool>> {
            to(socks, server, "TIME_WAIT").iter().map(|s| s.bound_dev).collect()
        };
        assert_eq!(bound(SERVER), vec![Some(true); 2], "{path}: {socks:#?}");
        assert_eq!(bound(SERVER2), vec![Some(false); 2], "{path}: {socks:#?}");
    }
}

pub fn udp_family_and_v6only() {
    let Some(ns) = Netns::for_test("bpf_udp", &[]) else { return };
    let v6only = Loadgen::start(&ns, &["udp", "--to", "[::1]:9", "--count", "3", "--v6only"]);
    let dual = Loadgen::start(&ns, &["udp", "--to", "[::1]:9", "--count", "2"]);
    let v4 = Loadgen::start(&ns, &["udp", "--to", "127.0.0.1:9", "--count", "2"]);

    let socks = from_kernel(&ns);
    let facts = |pid| -> Vec<(Option<bool>, Option<bool>)> {
        socks
            .iter()
            .filter(|s| s.pid == Some(pid) && s.protocol == "udp")
            .map(|s| (s.family_v6, s.v6only))
            .collect()
    };
    assert_eq!(facts(v6only.pid()), vec![(Some(true), Some(true)); 3], "{socks:#?}");
    assert_eq!(facts(dual.pid()), vec![(Some(true), Some(false)); 2], "{socks:#?}");
    assert_eq!(facts(v4.pid()), vec![(Some(false), Some(false)); 2], "{socks:#?}");
}

/// One load, both paths: the same sockets with the same owners, and as many as `ss` lists.
pub fn both_paths_see_the_same_sockets_and_owners_as_ss() {
    let Some(ns) = Netns::for_test("bpf_vs_proc", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let _a = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "30"]);
    let _b = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "10", "--close"]);
    let _c = Loadgen::start(&ns, &["bind", "--addr", "127.0.0.1", "--count", "4"]);
    let _d = Loadgen::start(&ns, &["udp", "--to", "[::1]:9", "--count", "3"]);

    let kernel = from_kernel(&ns);
    let (header, proc) = sockets(&ns, false);
    assert_eq!(header.source, "sock_diag");
    assert!(header.gaps.iter().any(|g| g.contains("--no-bpf")), "{:?}", header.gaps);
    let key = |s: &Sock| (s.protocol.clone(), s.state.clone(), s.local.clone(), s.remote.clone());
    let mut k: Vec<_> = kernel.iter().map(|s| (key(s), s.inode, s.pid, s.cookie)).collect();
    let mut p: Vec<_> = proc.iter().map(|s| (key(s), s.inode, s.pid, s.cookie)).collect();
    k.sort();
    p.sort();
    assert_eq!(k, p, "the BPF path and the sock_diag + /proc path disagree");
    assert!(k.iter().filter(|s| s.2.is_some()).count() >= 30 + 30 + 1 + 4 + 3);

    let ss = |args: &[&str]| {
        let out = ns.exec("ss").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
    };
    let tcp = kernel.iter().filter(|s| s.protocol == "tcp").count();
    let udp = kernel.iter().filter(|s| s.protocol == "udp").count();
    // The 4 bound-but-inactive sockets come from the fds that hold them (iter/task_file) on the
    // BPF path and from sock_diag on the other, with the same inode, owner and cookie (above);
    // `ss` before iproute2 6.10 does not ask for them.
    let bound = kernel.iter().filter(|s| s.state == "BOUND").count();
    assert_eq!(bound, 4, "{kernel:#?}");
    let ss_tcp = ss(&["-Htan"]);
    assert!(tcp == ss_tcp || tcp == ss_tcp + bound, "porthog {tcp} TCP sockets, ss {ss_tcp}");
    assert_eq!(udp, ss(&["-Huan"]), "{kernel:#?}");
}

/// The programs (and any map) live only as long as porthog's file descriptors: SIGKILL leaves
/// nothing. The change signal's and TCP events' are checked by `signal::` and by the unit test
/// `signal::tests::aya_programs_and_maps_are_gone_after_sigkill`.
pub fn a_killed_porthog_leaves_no_program_in_the_kernel() {
    let Some(ns) = Netns::for_test("bpf_sigkill", &[]) else { return };
    let out = std::env::temp_dir().join(format!("porthog-e2e-bpf-{}.jsonl", std::process::id()));
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["record", "--netns", ns.name(), "--interval", "0.2", "-o"]).arg(&out);
    let mut record = child::spawn(cmd.stdin(Stdio::null()));
    // Loaded once the first sample is written: the programs stay loaded between samples.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&out).map_or(0, |s| s.lines().count()) < 3 {
        assert!(Instant::now() < deadline, "record wrote no samples in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // This process's programs (other porthog runs, e.g. a test's `serve`, may hold their own).
    let (held, held_maps) = crate::signal::bpf_ids(record.child.id());
    let during = porthog_programs(&held);
    let _ = record.child.kill(); // SIGKILL
    let _ = record.child.wait();
    let _ = std::fs::remove_file(&out);
    assert!(during >= 3, "porthog's 3 programs were not loaded while it ran ({during})");
    // record's TCP events keep a ring buffer (and the iterators none): a map to see go.
    assert!(!held_maps.is_empty(), "record held no BPF map (the TCP events' ring buffer)");
    // The kernel frees a program once its last reference is gone, after an RCU grace period.
    let deadline = Instant::now() + Duration::from_secs(10);
    while porthog_programs(&held) > 0 || !maps_left(&held_maps).is_empty() {
        assert!(
            Instant::now() < deadline,
            "porthog programs or maps left in the kernel after SIGKILL (maps {:?})",
            maps_left(&held_maps)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Without the kernel's BTF (porthog run in a mount namespace of its own where /sys/kernel/btf
/// is an empty tmpfs), `porthog sockets` reads sock_diag and the report's note says why and
/// what to do.
pub fn without_kernel_btf_the_note_says_what_to_do() {
    let Some(ns) = Netns::for_test("bpf_no_btf", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let mut cmd = Command::new("unshare");
    // The mount is private to this porthog's namespace, which goes when it exits.
    let script = r#"mount -t tmpfs none /sys/kernel/btf && exec "$0" "$@""#;
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script, porthog::binary()])
        .args(["sockets", "--netns", ns.name()]);
    let run = porthog::run(cmd);
    run.assert_code(EXIT_OK);
    let mut lines = run.stdout().lines();
    let header: Header = serde_json::from_str(lines.next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no header line: {e}\n{}", run.context()));
    assert_eq!(header.source, "sock_diag", "{}", run.context());
    let note = header.gaps.iter().find(|g| g.contains("/sys/kernel/btf/vmlinux"));
    let note = note.unwrap_or_else(|| panic!("no note about the BTF: {:?}", header.gaps));
    assert!(note.contains("cannot read the kernel's BTF"), "{note}");
    assert!(note.contains("CONFIG_DEBUG_INFO_BTF=y") && note.contains("--no-bpf"), "{note}");
    let listen = format!("\"local\":\"{SERVER}\"");
    assert!(lines.any(|l| l.contains(&listen) && l.contains("LISTEN")), "{}", run.context());
}

/// Of `ids`, the maps the kernel still has (every map id).
fn maps_left(ids: &BTreeSet<u32>) -> Vec<u32> {
    aya::maps::loaded_maps()
        .filter_map(Result::ok)
        .map(|m| m.id())
        .filter(|id| ids.contains(id))
        .collect()
}

/// Of `ids`, the programs named like porthog's that the kernel still has (every program id).
fn porthog_programs(ids: &BTreeSet<u32>) -> usize {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("porthog_")))
        .filter(|p| ids.contains(&p.id()))
        .count()
}
