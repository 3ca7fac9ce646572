//! Issue 7's measured wrong cases, one test each, named after the case: the kernel's own next
//! allocation (a loadgen probe) decides, and porthog must agree with it. Where the fact that
//! decides is only readable with a BPF socket iterator (bind bucket origin, recorded
//! timestamps), porthog without it must declare the assumption it made instead.

use std::time::Duration;

use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_CRITICAL};

/// Past `tcp_tw_reuse_delay` (1 s): TIME_WAIT sockets are then old enough to be reused.
const PAST_REUSE_DELAY: Duration = Duration::from_millis(1300);

/// Case 1: 50 sockets bind(0)+connect to :5000; plain connect() to :6000 then gets only the
/// other 50 ports of 100. porthog said WARN, pool :6000 at 50/100 "connect() still works".
pub fn case1_bind_before_connect_ports_leave_every_connect_pool() {
    let Some(ns) = Netns::for_test("case1-bind-before-connect", &[]) else { return };
    let _server =
        Loadgen::start(&ns, &["serve", "--listen", "127.0.0.1:5000", "--listen", "127.0.0.1:6000"]);
    let bound = Loadgen::start(
        &ns,
        &["connect", "--to", "127.0.0.1:5000", "--bind-first", "--count", "50"],
    );
    assert_eq!((bound.opened(), bound.failed()), (50, 0), "{:?}", bound.ready);
    // The kernel's answer: plain connect() to :6000 is refused after 50 ports.
    let plain = Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:6000", "--until-fail"]);
    assert_eq!(plain.opened(), 50, "{:?}", plain.ready);
    assert_eq!(plain.errno(), Some("EADDRNOTAVAIL"), "{:?}", plain.ready);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    let pool = report.connect_pool("127.0.0.1:6000");
    assert_eq!(pool.level, "exhausted", "pool {pool:?}\n{}", report.summary());
    run.assert_code(EXIT_CRITICAL);
    assert_eq!(report.findings[0].kind, "bind_before_connect", "\n{}", report.summary());
    assert!(report.findings[0].advice.contains("IP_BIND_ADDRESS_NO_PORT"));
    // Without the BPF iterator the bucket origin is inferred, and the report says so.
    assert!(
        report.assumes("PROBABLE bind-before-connect") || !report.assumes("connected sockets were"),
        "\n{}",
        report.summary()
    );
}

/// Case 1, TIME_WAIT: bind-before-connect sockets closed under tcp_tw_reuse=1 keep their
/// bind-made buckets (`tw_tb`), so connect() cannot reuse their ports. porthog said all
/// reusable (0 %) while connect() failed.
pub fn case1_bind_before_connect_time_wait_is_not_reusable() {
    let Some(ns) = Netns::for_test("case1-bbc-time-wait", &[("net.ipv4.tcp_tw_reuse", "1")]) else {
        return;
    };
    let _server = Loadgen::start(&ns, &["serve", "--listen", "127.0.0.1:5000"]);
    let churn = Loadgen::start(
        &ns,
        &["connect", "--to", "127.0.0.1:5000", "--bind-first", "--close", "--count", "100"],
    );
    assert_eq!(churn.opened(), 100, "{:?}", churn.ready);
    // The last closes reach TIME_WAIT a moment after connect() returned: wait for the kernel.
    ns.wait_for_state("time-wait", 100);
    std::thread::sleep(PAST_REUSE_DELAY);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    let next = Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:5000", "--count", "1"]);
    assert_eq!(next.errno(), Some("EADDRNOTAVAIL"), "the kernel refuses: {:?}", next.ready);

    let pool = report.connect_pool("127.0.0.1:5000");
    // Exact with the bucket origin (BPF); otherwise the connect()-made stand-in is declared.
    assert!(
        pool.level == "exhausted"
            || report.assumes("connected sockets were taken to have their port from connect()"),
        "pool {pool:?}\n{}",
        report.summary()
    );
}

/// Case 2: reuse follows what the TIME_WAIT socket recorded, not today's sysctl. Timestamps
/// turned off after the connections closed do not stop connect() from reusing their ports.
pub fn case2_time_wait_reuse_follows_recorded_timestamps_not_todays_sysctl() {
    let Some(ns) = Netns::for_test("case2-tw-timestamps", &[("net.ipv4.tcp_tw_reuse", "0")]) else {
        return;
    };
    let _server = Loadgen::start(&ns, &["serve", "--listen", "127.0.0.1:7070"]);
    let churn =
        Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:7070", "--close", "--count", "100"]);
    assert_eq!(churn.opened(), 100, "{:?}", churn.ready);
    // The last closes reach TIME_WAIT a moment after connect() returned: wait for the kernel.
    ns.wait_for_state("time-wait", 100);
    // Reuse only now: during a slow churn it would take the churn's own older TIME_WAIT ports.
    ns.sysctl("net.ipv4.tcp_tw_reuse", "1").expect("sysctl");
    ns.sysctl("net.ipv4.tcp_timestamps", "0").expect("sysctl");
    std::thread::sleep(PAST_REUSE_DELAY);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    // The kernel's answer: connect() reuses a TIME_WAIT port.
    let next = Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:7070", "--count", "1"]);
    assert_eq!((next.opened(), next.failed()), (1, 0), "{:?}", next.ready);

    let pool = report.connect_pool("127.0.0.1:7070");
    // Exact with the recorded timestamps (BPF); otherwise the stand-in is declared.
    assert!(
        pool.level != "exhausted"
            || report.assumes("100 TIME_WAIT sockets: whether they recorded TCP timestamps"),
        "pool {pool:?}\n{}",
        report.summary()
    );
}

/// Case 2, peer side: a peer with timestamps off makes its TIME_WAIT unreusable even with
/// tcp_tw_reuse=1 (porthog: reusable, WARN; kernel: EADDRNOTAVAIL). The peer is a second
/// namespace over a veth pair with net.ipv4.tcp_timestamps=0.
pub fn case2_a_peer_without_timestamps_makes_time_wait_unreusable() {
    let Some(ns) = Netns::for_test("case2-peer-no-timestamps", &[("net.ipv4.tcp_tw_reuse", "1")])
    else {
        return;
    };
    let peer = ns.peer(&[("net.ipv4.tcp_timestamps", "0")]);
    ns.link_veth(&peer, "10.8.0.1", "10.8.0.2");
    let _server = Loadgen::start(&peer, &["serve", "--listen", "10.8.0.2:7070"]);
    let churn =
        Loadgen::start(&ns, &["connect", "--to", "10.8.0.2:7070", "--close", "--count", "100"]);
    assert_eq!(churn.opened(), 100, "{:?}", churn.ready);
    // The last closes reach TIME_WAIT a moment after connect() returned: wait for the kernel.
    ns.wait_for_state("time-wait", 100);
    std::thread::sleep(PAST_REUSE_DELAY);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    // The kernel's answer: no TIME_WAIT port can be reused.
    let next = Loadgen::start(&ns, &["connect", "--to", "10.8.0.2:7070", "--count", "1"]);
    assert_eq!(next.errno(), Some("EADDRNOTAVAIL"), "{:?}", next.ready);

    let pool = report.connect_pool("10.8.0.2:7070");
    // Exact with the recorded timestamps (BPF); otherwise the stand-in is declared.
    assert!(
        pool.level == "exhausted"
            || report.assumes("100 TIME_WAIT sockets: whether they recorded TCP timestamps"),
        "pool {pool:?}\n{}",
        report.summary()
    );
}

/// Case 3: bind() pools are per family and address. 100 ports bound on [::1] exhaust
/// bind([::], 0) but leave bind(0.0.0.0, 0) every port.
pub fn case3_bind_pools_are_per_family_and_address() {
    let Some(ns) = Netns::for_test("case3-bind-family", &[]) else { return };
    let v6 = Loadgen::start(&ns, &["bind", "--addr", "::1", "--count", "100"]);
    assert_eq!((v6.opened(), v6.failed()), (100, 0), "{:?}", v6.ready);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    let any6 = report.caller_pool("bind", "::");
    assert_eq!((any6.used, any6.level.as_str()), (100, "exhausted"), "\n{}", report.summary());
    let any4 = report.caller_pool("bind", "0.0.0.0");
    assert_eq!((any4.used, any4.level.as_str()), (0, "ok"), "\n{}", report.summary());

    // The kernel's answers.
    let probe4 = Loadgen::start(&ns, &["bind", "--addr", "0.0.0.0", "--count", "1"]);
    assert_eq!((probe4.opened(), probe4.failed()), (1, 0), "{:?}", probe4.ready);
    drop(probe4);
    let probe6 = Loadgen::start(&ns, &["bind", "--addr", "::", "--count", "1"]);
    assert_eq!((probe6.opened(), probe6.failed()), (0, 1), "{:?}", probe6.ready);
    drop(probe6);
    drop(v6);

    // Ports bound on 127.0.0.1 do not block bind(127.0.0.2, 0).
    let v4 = Loadgen::start(&ns, &["bind", "--addr", "127.0.0.1", "--count", "100"]);
    assert_eq!(v4.opened(), 100, "{:?}", v4.ready);
    let report = porthog::json_in(&ns, &[]).report();
    let own = report.caller_pool("bind", "127.0.0.1");
    assert_eq!(own.level, "exhausted", "\n{}", report.summary());
    assert!(
        report.pools.iter().all(|p| p.local.as_deref() != Some("127.0.0.2")),
        "no pool claims 127.0.0.2 is full\n{}",
        report.summary()
    );
    let other = Loadgen::start(&ns, &["bind", "--addr", "127.0.0.2", "--count", "1"]);
    assert_eq!((other.opened(), other.failed()), (1, 0), "{:?}", other.ready);
}

/// Case 3, UDP: 100 IPV6_V6ONLY UDP sockets connected to [::1] exhaust IPv6 autobind while
/// IPv4 UDP still gets ports. porthog reported the UDP pool exhausted for everyone.
pub fn case3_udp_autobind_pools_are_per_family() {
    let Some(ns) = Netns::for_test("case3-udp-family", &[]) else { return };
    let v6 = Loadgen::start(&ns, &["udp", "--to", "[::1]:5353", "--v6only", "--count", "100"]);
    assert_eq!((v6.opened(), v6.failed()), (100, 0), "{:?}", v6.ready);

    let report = porthog::json_in(&ns, &[]).report();
    let any6 = report.caller_pool("udp", "::");
    assert_eq!((any6.used, any6.level.as_str()), (100, "exhausted"), "\n{}", report.summary());
    // sock_diag gives IPV6_V6ONLY only for listening and unconnected sockets: for these
    // connected ones porthog without the BPF iterator must say it assumed the default (off).
    let any4 = report.caller_pool("udp", "0.0.0.0");
    assert!(
        (any4.used, any4.level.as_str()) == (0, "ok")
            || report.assumes("100 IPv6 sockets: IPV6_V6ONLY is not shown"),
        "\n{}",
        report.summary()
    );

    // The kernel's answers: IPv4 autobind works, IPv6 gets EAGAIN.
    let probe4 = Loadgen::start(&ns, &["udp", "--to", "127.0.0.1:5353", "--count", "1"]);
    assert_eq!((probe4.opened(), probe4.failed()), (1, 0), "{:?}", probe4.ready);
    let probe6 = Loadgen::start(&ns, &["udp", "--to", "[::1]:5353", "--count", "1"]);
    assert_eq!((probe6.failed(), probe6.errno()), (1, Some("EAGAIN")), "{:?}", probe6.ready);
}

/// Case 4: tcp_tw_reuse=2 also covers a TIME_WAIT socket bound to lo (SO_BINDTODEVICE) with
/// addresses that are not loopback, for a caller bound to lo too; an unbound caller is not
/// blocked by them at all. porthog said EXHAUSTED while connect() worked.
pub fn case4_tw_reuse_loopback_covers_sockets_bound_to_lo() {
    let Some(ns) = Netns::for_test("case4-bound-to-lo", &[("net.ipv4.tcp_tw_reuse", "0")]) else {
        return;
    };
    let out = std::process::Command::new("ip")
        .args(["-n", ns.name(), "addr", "add", "10.7.7.7/32", "dev", "lo"])
        .output()
        .expect("ip addr add");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _server = Loadgen::start(&ns, &["serve", "--listen", "10.7.7.7:7070"]);
    let churn = Loadgen::start(
        &ns,
        &["connect", "--to", "10.7.7.7:7070", "--close", "--count", "100", "--device", "lo"],
    );
    assert_eq!(churn.opened(), 100, "{:?}", churn.ready);
    // The last closes reach TIME_WAIT a moment after connect() returned: wait for the kernel.
    ns.wait_for_state("time-wait", 100);
    // Reuse only now: during a slow churn it would take the churn's own older TIME_WAIT ports.
    ns.sysctl("net.ipv4.tcp_tw_reuse", "2").expect("sysctl");
    std::thread::sleep(PAST_REUSE_DELAY);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    let next = Loadgen::start(
        &ns,
        &["connect", "--to", "10.7.7.7:7070", "--count", "1", "--device", "lo"],
    );
    assert_eq!(
        (next.opened(), next.failed()),
        (1, 0),
        "the kernel reused a port: {:?}",
        next.ready
    );
    // An unbound caller is not blocked by them at all: `inet_bound_dev_eq` never matches a
    // socket bound to a device for a caller bound to none, whatever tcp_tw_reuse says.
    let unbound = Loadgen::start(&ns, &["connect", "--to", "10.7.7.7:7070", "--count", "1"]);
    assert_eq!((unbound.opened(), unbound.failed()), (1, 0), "{:?}", unbound.ready);
    // sock_diag and BPF show the TIME_WAIT's device: exact, no assumption needed. porthog's
    // pool is the unbound caller's, in which device-bound sockets hold nothing.
    let pool = report.connect_pool("10.7.7.7:7070");
    assert_eq!((pool.used, pool.time_wait), (0, 0), "pool {pool:?}\n{}", report.summary());
    assert_ne!(pool.level, "exhausted", "\n{}", report.summary());
}

/// Case 6: a listener on an ephemeral port got it from bind(0); with the rest of the range in
/// TIME_WAIT, bind(0.0.0.0, 0) really fails. porthog capped the pool at WARN ("latent").
pub fn case6_a_full_bind_pool_with_an_ephemeral_listener_is_not_latent() {
    let Some(ns) = Netns::for_test("case6-bind-not-latent", &[("net.ipv4.tcp_tw_reuse", "0")])
    else {
        return;
    };
    let _listener = Loadgen::start(&ns, &["listen-at", "--addr", "127.0.0.1:40099"]);
    let _server = Loadgen::start(&ns, &["serve", "--listen", "127.0.0.1:7070"]);
    let churn =
        Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:7070", "--close", "--count", "99"]);
    assert_eq!(churn.opened(), 99, "{:?}", churn.ready);
    ns.wait_for_state("time-wait", 99);
    std::thread::sleep(PAST_REUSE_DELAY);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    let probe = Loadgen::start(&ns, &["bind", "--addr", "0.0.0.0", "--count", "1"]);
    assert_eq!(
        (probe.failed(), probe.errno()),
        (1, Some("EADDRINUSE")),
        "bind(0.0.0.0, 0) fails: {:?}",
        probe.ready
    );
    let bind = report.caller_pool("bind", "0.0.0.0");
    assert_eq!((bind.used, bind.level.as_str()), (100, "exhausted"), "\n{}", report.summary());
    run.assert_code(EXIT_CRITICAL);
}

/// Case 7: a server that never closes; its clients' ports are held by orphaned FIN_WAIT2.
/// The headline is the leak in the server, not fan-out "cap the client's pool size".
pub fn case7_a_close_wait_leak_is_headlined_as_a_leak() {
    let Some(ns) = Netns::for_test("case7-close-wait-leak", &[]) else { return };
    let server = Loadgen::start(&ns, &["serve", "--listen", "127.0.0.1:7070", "--never-close"]);
    let client = Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:7070", "--count", "100"]);
    assert_eq!(client.opened(), 100, "{:?}", client.ready);
    // The client exits: its sockets close, the server never closes its side.
    drop(client);
    ns.wait_for_state("fin-wait-2", 100);
    ns.wait_for_state("close-wait", 100);

    let run = porthog::json_in(&ns, &[]);
    let report = run.report();
    let next = Loadgen::start(&ns, &["connect", "--to", "127.0.0.1:7070", "--count", "1"]);
    assert_eq!(next.errno(), Some("EADDRNOTAVAIL"), "the kernel refuses: {:?}", next.ready);
    assert_eq!(report.connect_pool("127.0.0.1:7070").level, "exhausted", "\n{}", report.summary());
    let head = &report.findings[0];
    assert_eq!(head.kind, "leak_close_wait", "\n{}", report.summary());
    assert_eq!(head.pid, Some(server.pid()), "the server is named\n{}", report.summary());
    assert!(report.findings_of("fan_out").is_empty(), "\n{}", report.summary());
}
