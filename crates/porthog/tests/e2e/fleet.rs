//! `porthog check --all-netns`: every network namespace, whichever way it is held. The host
//! runs other people's namespaces too, so the tests look only at their own (by inode) and
//! assert the order among them, never the absolute position.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::child::{self, Spawned};
use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_CRITICAL};
use crate::report::Report;

const SERVER: &str = "127.0.0.1:7070";
const READY: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
pub struct Fleet {
    pub schema_version: u32,
    pub verdict: String,
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Deserialize)]
pub struct Namespace {
    pub inode: u64,
    pub name: Option<String>,
    pub pids: Vec<u32>,
    pub report: Report,
}

/// A process started for the test outside the Netns guards; killed and reaped on Drop.
pub struct Held(pub Spawned);

impl Held {
    pub fn pid(&self) -> u32 {
        self.0.child.id()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

pub fn inode_of(path: &str) -> u64 {
    rustix::fs::stat(path).unwrap_or_else(|e| panic!("stat {path}: {e}")).st_ino
}

/// TCP and UDP sockets, every state, as `ss` counts them inside the namespace at `ns_file`.
fn ss_sockets(ns_file: &str) -> usize {
    let out = Command::new("nsenter")
        .arg(format!("--net={ns_file}"))
        .args(["ss", "-Htuan"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run nsenter/ss: {e}"));
    assert!(out.status.success(), "ss in {ns_file}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

/// `porthog check --all-netns --json`, checked against docs/fleet.schema.json and each
/// namespace's report against docs/report.schema.json.
pub fn check_all() -> (porthog::Run, Fleet) {
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["check", "--all-netns", "--json"]);
    let run = porthog::run(cmd);
    let value: serde_json::Value = serde_json::from_str(run.stdout())
        .unwrap_or_else(|e| panic!("--all-netns --json printed no JSON: {e}\n{}", run.context()));
    let validate = |schema: &str, v: &serde_json::Value, what: &str| {
        let schema: serde_json::Value = serde_json::from_str(schema).expect("schema is JSON");
        let validator = jsonschema::validator_for(&schema).expect("schema is valid");
        let errors: Vec<String> = validator.iter_errors(v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{what} breaks its schema: {errors:#?}");
    };
    validate(include_str!("../../../../docs/fleet.schema.json"), &value, "the fleet report");
    for ns in value["namespaces"].as_array().expect("namespaces") {
        validate(include_str!("../../../../docs/report.schema.json"), &ns["report"], "a report");
    }
    let fleet: Fleet = serde_json::from_value(value).expect("fleet report");
    assert_eq!(fleet.schema_version, 1);
    (run, fleet)
}

fn position(fleet: &Fleet, inode: u64, what: &str) -> usize {
    let found: Vec<String> =
        fleet.namespaces.iter().map(|n| format!("{:?} {}", n.name, n.inode)).collect();
    fleet
        .namespaces
        .iter()
        .position(|n| n.inode == inode)
        .unwrap_or_else(|| panic!("{what} (net:[{inode}]) not found among {found:#?}"))
}

/// A named namespace with an exhausted pool, a named healthy one, one held only by a process
/// (`unshare -n`) and one held only by an open fd: all found, each with `ss`'s socket count,
/// the exhausted one ahead of the others.
pub fn all_netns_finds_every_kind_of_namespace() {
    let Some(exhausted) = Netns::for_test("all_netns", &[]) else { return };
    let healthy = exhausted.sibling(&[]);
    let fd_only = exhausted.sibling(&[]);
    let _server = Loadgen::start(&exhausted, &["serve", "--listen", SERVER]);
    let client = Loadgen::start(&exhausted, &["connect", "--to", SERVER, "--until-fail"]);
    assert_eq!((client.opened(), client.errno()), (100, Some("EADDRNOTAVAIL")));
    let _server2 = Loadgen::start(&healthy, &["serve", "--listen", SERVER]);
    let light = Loadgen::start(&healthy, &["connect", "--to", SERVER, "--count", "5"]);
    assert_eq!(light.opened(), 5);

    // Held by a process only: an unnamed namespace with a listener in it.
    let mut cmd = Command::new("unshare");
    cmd.args(["-n", "sh", "-c"])
        .arg(format!(
            "ip link set lo up && exec {} serve --listen {SERVER}",
            crate::loadgen::binary().display()
        ))
        .stdin(Stdio::piped());
    let mut by_process = Held(child::spawn(&mut cmd));
    let line = by_process.0.first_line(READY).unwrap_or_else(|e| panic!("unshare loadgen: {e}"));
    assert!(line.contains("\"ready\":true"), "{line}");
    let process_ns = format!("/proc/{}/ns/net", by_process.pid());

    // Held by an fd only: a process in the host namespace keeps fd 3 on it, and its name goes.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec 3</run/netns/{}; echo held; exec sleep 120", fd_only.name()))
        .stdin(Stdio::null());
    let mut by_fd = Held(child::spawn(&mut cmd));
    assert_eq!(by_fd.0.first_line(READY).as_deref(), Ok("held"));
    let fd_ns = format!("/proc/{}/fd/3", by_fd.pid());
    let fd_inode = inode_of(&fd_ns);
    let deleted = Command::new("ip").args(["netns", "del", fd_only.name()]).status();
    assert!(deleted.is_ok_and(|s| s.success()), "ip netns del {}", fd_only.name());

    let expected = [
        (
            "exhausted",
            inode_of(&format!("/run/netns/{}", exhausted.name())),
            Some(exhausted.name()),
        ),
        ("healthy", inode_of(&format!("/run/netns/{}", healthy.name())), Some(healthy.name())),
        ("process-held", inode_of(&process_ns), None),
        ("fd-held", fd_inode, None),
    ];
    let sockets = [
        ss_sockets(&format!("/run/netns/{}", exhausted.name())),
        ss_sockets(&format!("/run/netns/{}", healthy.name())),
        ss_sockets(&process_ns),
        ss_sockets(&fd_ns),
    ];
    assert_eq!(sockets[..3], [201, 11, 1], "the load is not what the test set up");

    let (run, fleet) = check_all();
    run.assert_code(EXIT_CRITICAL);
    assert_eq!(fleet.verdict, "exhausted", "some namespace is exhausted: ours");
    let mut positions = vec![];
    for ((what, inode, name), count) in expected.iter().zip(sockets) {
        let at = position(&fleet, *inode, what);
        let ns = &fleet.namespaces[at];
        assert_eq!(ns.name.as_deref(), *name, "{what}'s name");
        assert_eq!(ns.report.totals.sockets, count as u64, "{what}: sockets as ss counts them");
        positions.push(at);
    }
    assert!(positions[1..].iter().all(|&p| p > positions[0]), "exhausted first: {positions:?}");
    let exhausted_ns = &fleet.namespaces[positions[0]];
    assert_eq!(exhausted_ns.report.verdict, "exhausted");
    assert!(exhausted_ns.pids.contains(&client.pid()), "{:?}", exhausted_ns.pids);
    assert_eq!(fleet.namespaces[positions[1]].report.verdict, "ok");
    assert!(fleet.namespaces[positions[2]].pids.contains(&by_process.pid()));
    assert!(fleet.namespaces[positions[3]].pids.is_empty(), "only an fd holds it");

    // The text form: the worst verdict first, then one section per namespace.
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["check", "--all-netns", "--color", "never"]);
    let text = porthog::run(cmd);
    text.assert_code(EXIT_CRITICAL);
    assert!(text.first_line().starts_with("EXHAUSTED"), "{}", text.context());
    assert!(
        text.stdout().contains(&format!("=== network namespace {} (", exhausted.name())),
        "{}",
        text.context()
    );
    drop(by_fd);
    drop(by_process);
}
