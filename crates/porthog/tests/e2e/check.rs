//! `porthog check` against real kernel state, one scenario per test and per namespace (range
//! 40000-40099: 100 ports). Each test first asserts that the kernel is in the state the scenario
//! claims (what loadgen and `ss` report), then what porthog says about it.

use std::process::Command;

use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_CRITICAL, EXIT_ERROR, EXIT_OK, EXIT_WARN, WorldExecutable};

const SERVER: &str = "127.0.0.1:7070";
const SERVER2: &str = "127.0.0.1:7071";

/// Scenario 1: one client takes every port to one destination until the kernel refuses.
pub fn exhaustion_names_the_client_and_the_destination() {
    let Some(ns) = Netns::for_test("exhaustion", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--until-fail"]);
    // The kernel really refused: connect() returned EADDRNOTAVAIL after the 100th port.
    assert_eq!(client.opened(), 100, "connections before the kernel refused: {:?}", client.ready);
    assert!(client.failed() >= 1, "the kernel never refused: {:?}", client.ready);
    assert_eq!(client.errno(), Some("EADDRNOTAVAIL"), "{:?}", client.ready);
    assert_eq!(ns.ss_count("established", &format!("dst {SERVER}")), 100);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    run.assert_code(EXIT_CRITICAL);
    assert_eq!(report.verdict, "exhausted", "\n{}", report.summary());
    let range = report.tcp_range();
    assert_eq!((range.start, range.end, range.usable), (40000, 40099, 100), "{range:?}");
    let top =
        report.processes.first().unwrap_or_else(|| panic!("no process\n{}", report.summary()));
    assert_eq!(top.pid, client.pid(), "the client should lead the processes\n{}", report.summary());
    assert_eq!(top.name, "porthog-loadgen");
    assert_eq!(top.ephemeral_ports, 100, "\n{}", report.summary());
    let pool = report.connect_pool(SERVER);
    assert_eq!((pool.used, pool.capacity), (100, 100), "pool {pool:?}");
    assert_eq!(pool.local.as_deref(), Some("127.0.0.1"), "pool {pool:?}");
    assert_eq!(pool.level, "exhausted", "pool {pool:?}");
    // The listener, and each of the 100 connections seen from both ends.
    assert_eq!(report.totals.sockets, 201, "{:?}", report.totals);
    assert_eq!(report.totals.by_state.get("ESTABLISHED"), Some(&200), "{:?}", report.totals);

    let text = porthog::text_in(&ns, &[]);
    text.assert_code(EXIT_CRITICAL);
    let first = text.first_line();
    assert!(
        first.starts_with("EXHAUSTED") && first.contains(SERVER),
        "the first line should start with EXHAUSTED and name {SERVER}\n{}",
        text.context()
    );
}

/// Scenario 2: 10 connections out of 100 ports.
pub fn a_light_load_is_ok() {
    let Some(ns) = Netns::for_test("healthy", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "10"]);
    assert_eq!((client.opened(), client.failed()), (10, 0), "{:?}", client.ready);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    run.assert_code(EXIT_OK);
    assert_eq!(report.verdict, "ok", "\n{}", report.summary());
    let pool = report.connect_pool(SERVER);
    assert_eq!((pool.used, pool.capacity, pool.level.as_str()), (10, 100, "ok"), "pool {pool:?}");
    let proc = report.process(client.pid());
    assert_eq!(proc.ephemeral_ports, 10, "{proc:?}");
    assert_eq!(proc.states.get("ESTABLISHED"), Some(&10), "{proc:?}");
    let top = proc.top_remotes.first().unwrap_or_else(|| panic!("no top_remotes: {proc:?}"));
    assert_eq!((top.remote.as_str(), top.count), (SERVER, 10), "{proc:?}");
    // As root every socket has a known owner.
    assert_eq!(report.totals.unattributed, 0, "\n{}", report.summary());

    let text = porthog::text_in(&ns, &[]);
    text.assert_code(EXIT_OK);
    assert!(text.first_line().starts_with("OK"), "\n{}", text.context());
}

/// Scenario 3: 120 connections in a 100-port range, 60 to each of two destinations. The pools
/// are per destination, so nothing is exhausted, but each is past half (the half-range cliff).
pub fn two_destinations_have_a_pool_each() {
    let Some(ns) = Netns::for_test("two-destinations", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER, "--listen", SERVER2]);
    let a = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "60"]);
    let b = Loadgen::start(&ns, &["connect", "--to", SERVER2, "--count", "60"]);
    for c in [&a, &b] {
        assert_eq!((c.opened(), c.failed()), (60, 0), "{:?}", c.ready);
    }
    assert_eq!(ns.ss_count("established", "sport >= :40000 and sport <= :40099"), 120);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    run.assert_code(EXIT_WARN);
    assert_eq!(report.verdict, "warn", "\n{}", report.summary());
    for remote in [SERVER, SERVER2] {
        let pool = report.connect_pool(remote);
        assert_eq!((pool.used, pool.capacity), (60, 100), "pool {pool:?}");
        assert_eq!(pool.level, "warn", "past half of a Linux connect pool warns: {pool:?}");
    }
}

/// Scenario 4a: every connection closed at once by the client, tcp_tw_reuse off: TIME_WAIT
/// alone exhausts the pool, and no process owns those sockets.
pub fn time_wait_without_reuse_exhausts_the_pool() {
    let Some(ns) = Netns::for_test("tw-no-reuse", &[("net.ipv4.tcp_tw_reuse", "0")]) else {
        return;
    };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--until-fail", "--close"]);
    assert_eq!(
        client.errno(),
        Some("EADDRNOTAVAIL"),
        "the kernel never refused: {:?}",
        client.ready
    );
    // Exactly 100 since test namespaces set tcp_rfc1337=1; before, rarely 101, when a TIME_WAIT
    // socket was killed early (a late RST: RFC 1337 assassination) and its port served one more
    // connect(). The pool is full again either way, which is what porthog must say.
    assert!((100..=101).contains(&client.opened()), "{:?}", client.ready);
    ns.wait_for_count("time-wait", &format!("dst {SERVER}"), 100);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    run.assert_code(EXIT_CRITICAL);
    assert_eq!(report.verdict, "exhausted", "\n{}", report.summary());
    let pool = report.connect_pool(SERVER);
    assert_eq!((pool.used, pool.capacity), (100, 100), "pool {pool:?}");
    assert_eq!((pool.time_wait, pool.time_wait_reusable), (100, 0), "pool {pool:?}");
    assert_eq!(pool.level, "exhausted", "pool {pool:?}");
}

/// Scenario 4b: the same churn with tcp_tw_reuse=2 (loopback only, the default): once older
/// than a second the TIME_WAIT ports can be reused, so the pool is fine.
pub fn time_wait_reusable_on_loopback_is_not_a_problem() {
    let Some(ns) = Netns::for_test("tw-reuse-loopback", &[("net.ipv4.tcp_tw_reuse", "0")]) else {
        return;
    };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    // 95, not "until fail": TIME_WAIT younger than a second is not reusable yet, so the kernel
    // would refuse the 101st connection now.
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "95", "--close"]);
    assert_eq!((client.opened(), client.failed()), (95, 0), "{:?}", client.ready);
    ns.wait_for_count("time-wait", &format!("dst {SERVER}"), 95);
    // The churn ran with tw_reuse off: a slow churn (a loaded CI machine) would otherwise reuse
    // its own first TIME_WAIT ports once they are a second old, and the count would not be 95.
    ns.sysctl("net.ipv4.tcp_tw_reuse", "2").expect("tcp_tw_reuse=2");
    // The thing waited on is the kernel's clock, not another thread: tw reuse needs the
    // TIME_WAIT socket to be older than net.ipv4.tcp_tw_reuse_delay (1000 ms by default;
    // tcp_twsk_unique() in net/ipv4/tcp_ipv4.c), and nothing announces that moment.
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    assert!([EXIT_OK, EXIT_WARN].contains(&run.code()), "exit code\n{}", run.context());
    assert!(
        !["exhausted", "critical"].contains(&report.verdict.as_str()),
        "reusable TIME_WAIT must not make the verdict {}\n{}",
        report.verdict,
        report.summary()
    );
    let pool = report.connect_pool(SERVER);
    assert!(pool.time_wait > 0, "pool {pool:?}");
    assert_eq!(pool.time_wait, 95, "pool {pool:?}");
    assert_eq!(pool.time_wait_reusable, pool.time_wait, "all of it is reusable: {pool:?}");
    assert_eq!(pool.level, "ok", "pool {pool:?}");
}

/// Scenario 5: a listener at 40050, inside the range: every connect() skips that port, so every
/// destination's pool has 99 ports, and porthog calls it squatting.
pub fn listener_inside_the_range_shrinks_every_pool() {
    let Some(ns) = Netns::for_test("squatting", &[]) else { return };
    let _squatter = Loadgen::start(&ns, &["listen-at", "--addr", "127.0.0.1:40050"]);
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER, "--listen", SERVER2]);
    let _a = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "5"]);
    let _b = Loadgen::start(&ns, &["connect", "--to", SERVER2, "--count", "5"]);
    assert_eq!(ns.ss_count("listening", "sport = :40050"), 1);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    assert_ne!(run.code(), EXIT_ERROR, "\n{}", run.context());
    let pools = report.connect_pools();
    assert_eq!(pools.len(), 2, "one connect pool per destination\n{}", report.summary());
    for pool in pools {
        assert_eq!(pool.capacity, 99, "the listener at 40050 takes a port from {pool:?}");
    }
    let squatting = report.findings_of("squatting");
    let finding = squatting
        .iter()
        .find(|f| f.message.contains("40050"))
        .unwrap_or_else(|| panic!("no squatting finding naming 40050\n{}", report.summary()));
    assert!(
        finding.advice.contains("ip_local_reserved_ports"),
        "the fix for squatting is reserving the port: {finding:?}"
    );
}

/// Bound-but-unconnected sockets hold their ports against every connect(), like listeners.
pub fn bound_sockets_shrink_every_pool() {
    let Some(ns) = Netns::for_test("bound", &[]) else { return };
    let bound = Loadgen::start(&ns, &["bind", "--addr", "127.0.0.1", "--count", "10"]);
    assert_eq!((bound.opened(), bound.failed()), (10, 0), "{:?}", bound.ready);
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let _client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "5"]);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    assert_ne!(run.code(), EXIT_ERROR, "\n{}", run.context());
    let pool = report.connect_pool(SERVER);
    assert_eq!((pool.used, pool.capacity), (5, 90), "10 bound ports are out of {pool:?}");
}

/// Scenario 6: porthog as nobody inside the namespace cannot read root's /proc/PID/fd: it must
/// still give a verdict, and say how many sockets it could not attribute.
pub fn unprivileged_run_reports_unattributed_sockets() {
    let Some(ns) = Netns::for_test("unprivileged", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let _client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "10"]);
    let exe = WorldExecutable::new("unprivileged");

    // No --netns: `ip netns exec` already put it inside.
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), "setpriv", "--reuid=65534", "--regid=65534"])
        .arg("--clear-groups")
        .arg(&exe.path)
        .arg("--json");
    let run = porthog::run(cmd);
    let report = run.report();
    assert!(
        [EXIT_OK, EXIT_WARN, EXIT_CRITICAL].contains(&run.code()),
        "a lack of privilege is a gap, not an error\n{}",
        run.context()
    );
    assert!(report.totals.unattributed > 0, "\n{}", report.summary());
    let gaps = report.gaps_of("unattributed");
    let gap = gaps
        .iter()
        .find(|g| g.count.is_some_and(|c| c > 0))
        .unwrap_or_else(|| panic!("no unattributed gap with a count\n{}", report.summary()));
    assert!(
        gap.advice.as_deref().is_some_and(|a| !a.is_empty()),
        "an unattributed gap should say how to fix it (run as root...): {gap:?}"
    );
    // Issue 8: the errno that refused, and the advice that fits an unprivileged user.
    assert!(
        gap.message.contains("was refused (EACCES") || gap.message.contains("was refused (EPERM"),
        "{gap:?}"
    );
    assert_eq!(gap.advice.as_deref(), Some("run as root (or with CAP_SYS_PTRACE)"), "{gap:?}");
}
