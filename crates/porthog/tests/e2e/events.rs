//! `porthog record` driven by the kernel's TCP state events (issue 9): a full walk, then the
//! events since. Its samples must agree with `porthog check` (a full walk) taken between them,
//! on a namespace with churn, held connections, bind()-only sockets and UDP, and it must see a
//! pool exhausted while it records.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::child;
use crate::loadgen::{self, Loadgen};
use crate::netns::Netns;
use crate::porthog::{self, EXIT_OK};
use crate::record::{TempDir, wait_until};

const SERVER: &str = "127.0.0.1:7070";
/// What the gap of an event-driven sample says (`collect/linux/events.rs`).
const FROM_EVENTS: &str = "state changes since";

fn samples(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "sample")
        .collect()
}

fn from_events(sample: &Value) -> bool {
    sample["report"]["gaps"].as_array().is_some_and(|gaps| {
        gaps.iter().any(|g| g["message"].as_str().is_some_and(|m| m.contains(FROM_EVENTS)))
    })
}

/// A pool's identity in a report.
fn pool_key(pool: &Value) -> String {
    format!("{} {} {} {}", pool["kind"], pool["protocol"], pool["local"], pool["remote"])
}

fn pool<'a>(report: &'a Value, key: &str) -> Option<&'a Value> {
    report["pools"].as_array()?.iter().find(|p| pool_key(p) == key)
}

fn used(pool: &Value) -> i64 {
    pool["used"].as_i64().expect("a pool's used count")
}

/// `porthog record --interval 1` on churn (50 connect+close a second), 60 held connections,
/// 10 bind()-only sockets and 10 connected UDP sockets: each `porthog check` taken while it
/// records lies, pool by pool, between the event-driven samples just before and just after it
/// (the churn only adds TIME_WAIT within the test's minute); a client started while recording
/// is named from its connect() events.
pub fn event_driven_record_agrees_with_check() {
    let Some(ns) = Netns::for_test("events-agree", &[("net.ipv4.tcp_tw_reuse", "0")]) else {
        return;
    };
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 44999").expect("the port range");
    let dir = TempDir::new("events-agree");
    let file = dir.0.join("rec.jsonl");
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let held = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "60"]);
    assert_eq!(held.opened(), 60, "{:?}", held.ready);
    let bound = Loadgen::start(&ns, &["bind", "--addr", "127.0.0.1", "--count", "10"]);
    assert_eq!(bound.opened(), 10, "{:?}", bound.ready);
    let udp = Loadgen::start(&ns, &["udp", "--to", "127.0.0.1:9999", "--count", "10"]);
    assert_eq!(udp.opened(), 10, "{:?}", udp.ready);
    // The churn never says it is ready (it never ends): started without waiting, ended by the
    // namespace's Drop (its pid is recorded).
    let mut churn = ns.exec(loadgen::binary().to_str().expect("a UTF-8 path"));
    churn
        .args(["connect", "--to", SERVER, "--count", "100000000", "--close", "--rate", "50"])
        .stdin(Stdio::piped());
    let churn = child::spawn(&mut churn);
    ns.record(churn.child.id());

    let mut cmd = Command::new(porthog::binary());
    cmd.args(["record", "-o"])
        .arg(&file)
        .args(["--duration", "20", "--interval", "1", "--netns", ns.name(), "--no-trace"])
        .stdin(Stdio::null());
    let recorder = child::spawn(&mut cmd);
    wait_until("the first sample", Duration::from_secs(15), || !samples(&file).is_empty());

    let late = Loadgen::start(&ns, &["connect", "--to", SERVER, "--count", "20"]);
    let late_pid = late.pid();
    let mut compared = 0;
    for round in 0..5 {
        let before = samples(&file);
        let check = porthog::json_in(&ns, &[]);
        let now: Value = serde_json::from_str(check.stdout())
            .unwrap_or_else(|e| panic!("check's JSON: {e}\n{}", check.context()));
        // The last sample begun before the check and the first written after it ended: the
        // check's walk lies between them, however long it took.
        let ended = samples(&file).len();
        wait_until("the sample after the check", Duration::from_secs(5), || {
            samples(&file).len() > ended
        });
        let after = samples(&file);
        let (s0, s1) = (&before[before.len() - 1], &after[ended]);
        if !(from_events(s0) && from_events(s1)) {
            // A full walk (the first sample, or a resync): not what this test compares.
            continue;
        }
        compared += 1;
        for p in now["pools"].as_array().expect("pools") {
            let key = pool_key(p);
            let (a, b) = (&s0["report"], &s1["report"]);
            let (p0, p1) = (
                pool(a, &key).unwrap_or_else(|| panic!("round {round}: {key} not in {a}")),
                pool(b, &key).unwrap_or_else(|| panic!("round {round}: {key} not in {b}")),
            );
            let (lo, hi) = (used(p0).min(used(p1)), used(p0).max(used(p1)));
            // A connect+close a second can fall between the check's walk and a sample's reading.
            assert!(
                (lo - 3..=hi + 3).contains(&used(p)),
                "round {round}: pool {key}: check {} outside the samples' {lo}..={hi}",
                used(p)
            );
            assert_eq!(p["capacity"], p1["capacity"], "round {round}: pool {key}");
        }
    }
    assert!(compared >= 3, "only {compared} of 5 checks fell between event-driven samples");

    let done = recorder.wait(Duration::from_secs(30));
    assert_eq!(done.code, Some(EXIT_OK), "{}", done.context());
    let all = samples(&file);
    let named = all.iter().filter(|s| from_events(s)).any(|s| {
        s["report"]["processes"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["pid"] == late_pid
                    && p["name"] == "porthog-loadgen"
                    && p["states"]["ESTABLISHED"] == serde_json::json!(20)
            })
        })
    });
    assert!(named, "no event-driven sample names the client started while recording");
    // bind()-only and UDP sockets have no events: kept from the walk, in every sample.
    for s in &all {
        let states = &s["report"]["totals"]["by_state"];
        assert_eq!(states["BOUND"], serde_json::json!(10), "{}", s["report"]["totals"]);
    }
}

/// A pool exhausted while `porthog record` runs (held connections until EADDRNOTAVAIL) is
/// reported exhausted by an event-driven sample, as `porthog check` reports it.
pub fn event_driven_record_sees_an_exhausted_pool() {
    let Some(ns) = Netns::for_test("events-exhausted", &[("net.ipv4.tcp_tw_reuse", "0")]) else {
        return;
    };
    let dir = TempDir::new("events-exhausted");
    let file = dir.0.join("rec.jsonl");
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["record", "-o"])
        .arg(&file)
        .args(["--duration", "10", "--interval", "1", "--netns", ns.name(), "--no-trace"])
        .stdin(Stdio::null());
    let recorder = child::spawn(&mut cmd);
    wait_until("the first sample", Duration::from_secs(15), || !samples(&file).is_empty());
    let first = samples(&file).remove(0);
    assert_eq!(first["report"]["verdict"], "ok", "{}", first["report"]);

    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--until-fail"]);
    assert_eq!(client.errno(), Some("EADDRNOTAVAIL"), "{:?}", client.ready);
    let check = porthog::json_in(&ns, &[]);
    let now: Value = serde_json::from_str(check.stdout()).expect("check's JSON");
    assert_eq!(now["verdict"], "exhausted", "{}", check.context());
    wait_until("an event-driven sample saying exhausted", Duration::from_secs(5), || {
        samples(&file).iter().any(|s| from_events(s) && s["report"]["verdict"] == "exhausted")
    });
    let done = recorder.wait(Duration::from_secs(30));
    assert_eq!(done.code, Some(EXIT_OK), "{}", done.context());
}
