//! SNAT pools from conntrack (issue 9): clients -> NAT -> server over veth pairs, the NAT
//! masquerading to 10 ports; 20 clients connect with one SYN retry. porthog in the NAT
//! namespace must report the snat pool 10/10 exhausted and the insert failures, as
//! `conntrack -L` and `conntrack -S` show them; without privilege the table is a gap.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::child;
use crate::fleet::Held;
use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_CRITICAL, EXIT_OK, EXIT_WARN, WorldExecutable};

const SERVER: &str = "10.88.2.2:8080";
const NAT_RULES: &str = "table ip porthog_nat { chain post { type nat hook postrouting priority srcnat; \
    ip daddr 10.88.2.0/24 meta l4proto tcp masquerade to :40000-40009; }; }";

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{}: {e}", child::describe(cmd)));
    assert!(
        out.status.success(),
        "{}: {}",
        child::describe(cmd),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nft(ns: &Netns, rules: &str) {
    let mut cmd = ns.exec("nft");
    cmd.args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run nft (nftables): {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(rules.as_bytes()).expect("write the rules to nft");
    }
    let out = child.wait_with_output().expect("nft ran");
    assert!(out.status.success(), "nft -f: {}", String::from_utf8_lossy(&out.stderr).trim());
}

/// `conntrack -S` summed over CPUs: (insert_failed, drop).
fn conntrack_stats(ns: &Netns) -> (u64, u64) {
    let text = sh(ns.exec("conntrack").arg("-S"));
    let sum = |key: &str| -> u64 {
        text.split_whitespace()
            .filter_map(|w| w.strip_prefix(key))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    };
    (sum("insert_failed="), sum("drop="))
}

/// Distinct translated ports towards the server in `conntrack -L`: the reply direction's
/// `dport=` of entries whose reply comes from the server.
fn conntrack_ports(ns: &Netns) -> BTreeSet<u16> {
    let text = sh(ns.exec("conntrack").args(["-L", "-p", "tcp", "--reply-src", "10.88.2.2"]));
    text.lines()
        .filter_map(|l| l.split_whitespace().filter_map(|w| w.strip_prefix("dport=")).nth(1))
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// An exhausted SNAT pool: `clients` -> NAT -> server over veth pairs, the NAT masquerading to
/// 10 ports, and 20 clients in `clients` connecting at once (10 get through). The NAT and server
/// namespaces are peers of `clients`; everything ends on Drop (the clients first, in field
/// order).
pub struct ExhaustedSnat {
    _clients: Held,
    _server: Loadgen,
    pub nat: Netns,
    _server_ns: Netns,
}

impl ExhaustedSnat {
    /// `clients` must have net.ipv4.tcp_syn_retries=1, so a refused connect ends in about 3 s.
    pub fn new(clients: &Netns) -> ExhaustedSnat {
        let nat = clients.peer(&[("net.ipv4.ip_forward", "1")]);
        let server = clients.peer(&[]);
        clients.link_veth(&nat, "10.88.1.2", "10.88.1.1");
        nat.link_veth(&server, "10.88.2.1", "10.88.2.2");
        sh(Command::new("ip").args([
            "-n",
            clients.name(),
            "route",
            "add",
            "default",
            "via",
            "10.88.1.1",
        ]));
        nft(&nat, NAT_RULES);
        let server_loadgen = Loadgen::start(&server, &["serve", "--listen", SERVER]);

        // 20 connects at once; with one SYN retry each refused one times out in about 3 s.
        let script = "import socket, threading\n\
            ok = []\n\
            def c():\n\
            \x20   s = socket.socket()\n\
            \x20   try:\n\
            \x20       s.connect(('10.88.2.2', 8080)); ok.append(s)\n\
            \x20   except OSError:\n\
            \x20       pass\n\
            ts = [threading.Thread(target=c) for _ in range(20)]\n\
            [t.start() for t in ts]\n\
            [t.join() for t in ts]\n\
            print(len(ok), flush=True)\n\
            import sys; sys.stdin.read()\n";
        let mut cmd = clients.exec("python3");
        cmd.args(["-c", script]).stdin(Stdio::piped());
        let mut spawned = child::spawn(&mut cmd);
        clients.record(spawned.child.id());
        let connected = spawned
            .first_line(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("the clients never finished connecting: {e}"));
        assert_eq!(connected.trim(), "10", "10 ports, so 10 connections get through");
        ExhaustedSnat { _clients: Held(spawned), _server: server_loadgen, nat, _server_ns: server }
    }
}

pub fn snat_pool_is_exhausted_and_insert_failures_are_evidence() {
    let Some(clients) = Netns::for_test("snat", &[("net.ipv4.tcp_syn_retries", "1")]) else {
        return;
    };
    let snat = ExhaustedSnat::new(&clients);
    let nat = &snat.nat;

    let run = porthog::json_in(nat, &[]);
    let report: Value = serde_json::from_str(run.stdout())
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", run.context()));
    let (failed, dropped) = conntrack_stats(nat);
    let ports = conntrack_ports(nat);
    assert_eq!(ports.len(), 10, "conntrack -L shows the 10 translated ports: {ports:?}");
    assert_eq!(ports.first().copied(), Some(40000));
    assert_eq!(ports.last().copied(), Some(40009));

    let pool = report["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["kind"] == "snat"))
        .unwrap_or_else(|| panic!("no snat pool\n{}", run.context()));
    assert_eq!(pool["local"], "10.88.2.1", "{pool}");
    assert_eq!(pool["remote"], SERVER, "{pool}");
    assert_eq!((pool["used"].as_u64(), pool["capacity"].as_u64()), (Some(10), Some(10)), "{pool}");
    assert_eq!(pool["level"], "exhausted", "{pool}");
    assert!(
        pool["range_from"].as_str().is_some_and(|r| r.contains("masquerade to :40000-40009")),
        "{pool}"
    );
    assert_eq!(report["verdict"], "exhausted", "\n{}", run.context());
    run.assert_code(2);

    // The failures: counted by the kernel, read by porthog before conntrack -S ran.
    let ct = &report["conntrack"];
    let seen_failed = ct["insert_failed"].as_u64().expect("insert_failed read");
    let seen_dropped = ct["drop"].as_u64().expect("drop read");
    assert!(seen_failed > 0 || seen_dropped > 0, "no failures counted: {ct}");
    assert!(
        seen_failed <= failed && seen_dropped <= dropped,
        "{ct} vs conntrack -S {failed}/{dropped}"
    );
    assert!(
        report["evidence"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["kind"] == "conntrack" && e["count"].as_u64() > Some(0))),
        "{}",
        report["evidence"]
    );
    assert!(
        report["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["kind"] == "snat_failures")),
        "{}",
        report["findings"]
    );
    let schema: Value =
        serde_json::from_str(include_str!("../../../../docs/report.schema.json")).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("the schema is valid");
    let errors: Vec<String> = validator.iter_errors(&report).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "the SNAT report breaks its schema: {errors:#?}");

    // --all-netns reads the NAT namespace's conntrack too.
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["check", "--all-netns", "--json"]);
    let all = porthog::run(cmd);
    let fleet: Value = serde_json::from_str(all.stdout())
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", all.context()));
    let ns = fleet["namespaces"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == nat.name()))
        .unwrap_or_else(|| panic!("the NAT namespace is not in --all-netns\n{}", all.context()));
    let snat = ns["report"]["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["kind"] == "snat"))
        .unwrap_or_else(|| panic!("no snat pool with --all-netns: {}", ns["report"]["pools"]));
    assert_eq!((snat["used"].as_u64(), snat["capacity"].as_u64()), (Some(10), Some(10)), "{snat}");
}

/// Without CAP_NET_ADMIN, ctnetlink refuses the dump: a gap, not an error, and the counters
/// still come from /proc/net/stat/nf_conntrack. A namespace without conntrack entries is not
/// dumped at all (nothing to miss, so no gap either).
pub fn ctnetlink_unavailable_is_a_gap() {
    let Some(ns) = Netns::for_test("snat-unprivileged", &[]) else { return };
    nft(&ns, NAT_RULES);
    // Make sure conntrack exists in this namespace (the rule above needs it).
    sh(ns.exec("conntrack").arg("-S"));
    let exe = WorldExecutable::new("snat-unprivileged");
    let unprivileged = || {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns.name(), "setpriv", "--reuid=65534", "--regid=65534"])
            .arg("--clear-groups")
            .arg(&exe.path)
            .args(["check", "--json"]);
        porthog::run(cmd)
    };
    let conntrack_gap = |report: &Value| {
        report["gaps"].as_array().and_then(|g| {
            g.iter()
                .find(|g| g["message"].as_str().is_some_and(|m| m.contains("conntrack table")))
                .cloned()
        })
    };
    let empty = unprivileged();
    let report: Value = serde_json::from_str(empty.stdout())
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", empty.context()));
    assert_eq!(conntrack_gap(&report), None, "no entry, no dump, no gap\n{}", empty.context());
    assert!(report["conntrack"]["insert_failed"].is_u64(), "{}", report["conntrack"]);

    // One entry: now the dump is needed, and refused.
    sh(ns.exec("conntrack").args([
        "-I",
        "-p",
        "udp",
        "-s",
        "127.0.0.1",
        "-d",
        "127.0.0.1",
        "--sport",
        "40000",
        "--dport",
        "53",
        "--timeout",
        "120",
    ]));
    let run = unprivileged();
    assert!(
        [EXIT_OK, EXIT_WARN, EXIT_CRITICAL].contains(&run.code()),
        "ctnetlink refused is a gap, not an error\n{}",
        run.context()
    );
    let report: Value = serde_json::from_str(run.stdout())
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", run.context()));
    let gap =
        conntrack_gap(&report).unwrap_or_else(|| panic!("no conntrack gap\n{}", run.context()));
    assert!(gap["message"].as_str().is_some_and(|m| m.contains("ctnetlink")), "{gap}");
    assert!(gap["advice"].as_str().is_some_and(|a| a.contains("CAP_NET_ADMIN")), "{gap}");
    assert!(
        report["conntrack"]["insert_failed"].is_u64(),
        "/proc counters: {}",
        report["conntrack"]
    );
}
