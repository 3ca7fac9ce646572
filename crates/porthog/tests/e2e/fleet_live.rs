//! `watch`, `record` and `serve` with `--all-netns` (issue 9): two namespaces of the test, one
//! whose pool a real client drives to EADDRNOTAVAIL and one healthy. The host runs other
//! people's namespaces too, so the tests compare their own namespaces with each other and say
//! "worst" only where no other namespace is as bad.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::child;
use crate::fleet::{Held, inode_of};
use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_CRITICAL, EXIT_OK};
use crate::record::TempDir;
use crate::serve::{free_port, get, promtool_check};

const SERVER: &str = "127.0.0.1:7070";

/// The exhausted namespace (100-port range, 100 connections held) and a healthy sibling with
/// 5 connections; servers and clients live as long as the returned guards.
pub fn two_namespaces(tag: &str) -> Option<(Netns, Netns, Vec<Loadgen>)> {
    let exhausted = Netns::for_test(tag, &[])?;
    let healthy = exhausted.sibling(&[]);
    let server = Loadgen::start(&exhausted, &["serve", "--listen", SERVER]);
    let client = Loadgen::start(&exhausted, &["connect", "--to", SERVER, "--until-fail"]);
    assert_eq!((client.opened(), client.errno()), (100, Some("EADDRNOTAVAIL")));
    let server2 = Loadgen::start(&healthy, &["serve", "--listen", SERVER]);
    let light = Loadgen::start(&healthy, &["connect", "--to", SERVER, "--count", "5"]);
    assert_eq!(light.opened(), 5);
    Some((exhausted, healthy, vec![server, client, server2, light]))
}

/// `watch --all-netns --once`: every namespace listed worst first with its label and verdict,
/// the exhausted one ahead of the healthy one, and the exit status of the worst.
pub fn watch_all_netns_once_lists_the_exhausted_namespace_first() {
    let Some((exhausted, healthy, _load)) = two_namespaces("watch_all") else { return };
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["watch", "--all-netns", "--once", "--no-trace"]);
    let run = porthog::run(cmd);
    run.assert_code(EXIT_CRITICAL);
    let out = run.stdout();
    let row = |name: &str| {
        out.lines()
            .position(|l| l.get(2..).is_some_and(|rest| rest.starts_with(&format!("{name} ("))))
            .unwrap_or_else(|| panic!("no row for {name}\n{}", run.context()))
    };
    let (bad, good) = (row(exhausted.name()), row(healthy.name()));
    assert!(bad < good, "the exhausted namespace is listed first\n{out}");
    let bad_line = out.lines().nth(bad).unwrap_or("");
    assert!(bad_line.contains("  EXHAUSTED  tcp 127.0.0.1 -> 127.0.0.1:7070  100 / 100"), "{out}");
    let good_line = out.lines().nth(good).unwrap_or("");
    assert!(good_line.contains("  OK  "), "{out}");
    assert!(out.starts_with("porthog watch  all network namespaces  "), "{out}");
    assert!(out.lines().nth(1).is_some_and(|l| l.starts_with("EXHAUSTED  worst of ")), "{out}");
    // The detail below is the worst namespace's: ours, unless another is as bad.
    let first_row = out.lines().find(|l| l.starts_with("> ")).unwrap_or("");
    if first_row.starts_with(&format!("> {} (", exhausted.name())) {
        let heading = format!("=== network namespace {} ===", exhausted.name());
        assert!(out.contains(&heading), "{out}");
    }
}

/// `record --all-netns` while a client in A connects past exhaustion: every refusal is a
/// failure line carrying A's inode (none B's), the samples are fleet samples with both
/// namespaces labelled, and `analyze` of the file gives the worst namespace's verdict, named.
pub fn record_all_netns_counts_failures_in_their_namespace_and_analyze_names_the_worst() {
    let Some(a) = Netns::for_test("record_all", &[]) else { return };
    let b = a.sibling(&[]);
    let _server = Loadgen::start(&a, &["serve", "--listen", SERVER]);
    let _server_b = Loadgen::start(&b, &["serve", "--listen", SERVER]);
    let light = Loadgen::start(&b, &["connect", "--to", SERVER, "--count", "5"]);
    assert_eq!(light.opened(), 5);
    let (inode_a, inode_b) = (
        inode_of(&format!("/run/netns/{}", a.name())),
        inode_of(&format!("/run/netns/{}", b.name())),
    );
    let dir = TempDir::new("record-all-netns");
    let file = dir.0.join("rec.jsonl");
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["record", "--all-netns", "-o"])
        .arg(&file)
        .args(["--interval", "0.5"])
        .stdin(Stdio::null());
    let mut recorder = child::spawn(&mut cmd);
    if let Err(e) = recorder.wait_stderr("porthog: recording to", Duration::from_secs(60)) {
        let _ = recorder.child.kill();
        let _ = recorder.child.wait();
        panic!("`{}` never said it was recording: {e}", recorder.what);
    }
    // 100 ports: 100 connections, then 20 refusals, in A only.
    let client = Loadgen::start(&a, &["connect", "--to", SERVER, "--count", "120"]);
    assert_eq!((client.opened(), client.failed()), (100, 20), "{:?}", client.ready);
    let (client_pid, refused) = (client.pid(), client.failed());
    // A sample of every namespace can take seconds on a busy host: wait until one saw A
    // exhausted, then the client closes everything and one more sample sees A healthy again,
    // so that only the failures can make A the worst namespace of the recording.
    let verdicts_of_a = || {
        fleet_samples(&file)
            .iter()
            .filter_map(|s| {
                s["namespaces"]
                    .as_array()?
                    .iter()
                    .find(|ns| ns["inode"].as_u64() == Some(inode_a))
                    .map(|ns| ns["report"]["verdict"].as_str().unwrap_or("").to_owned())
            })
            .collect::<Vec<String>>()
    };
    crate::record::wait_until("a sample that sees A exhausted", Duration::from_secs(60), || {
        verdicts_of_a().iter().any(|v| v == "exhausted")
    });
    drop(client);
    crate::record::wait_until(
        "a sample that sees A healthy again",
        Duration::from_secs(60),
        || verdicts_of_a().last().is_some_and(|v| v != "exhausted"),
    );
    let pid = rustix::process::Pid::from_raw(recorder.child.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("stop the recorder");
    let done = recorder.wait(Duration::from_secs(60));
    assert_eq!(done.code, Some(EXIT_OK), "{}", done.context());
    assert!(!done.stderr.contains("no failures in the recording"), "{}", done.context());
    let text = std::fs::read_to_string(&file).expect("the recording");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    assert_eq!(lines[0]["type"], "header");
    assert_eq!(
        (lines[0]["schema_version"].as_u64(), lines[0]["all_netns"].as_bool()),
        (Some(2), Some(true))
    );
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../../docs/record.schema.json")).expect("JSON");
    let validator = jsonschema::validator_for(&schema).expect("the record schema is valid");
    for l in &lines {
        let errors: Vec<String> = validator.iter_errors(l).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "a line breaks docs/record.schema.json: {errors:#?}");
    }
    // The client's failures, whatever else failed on the host meanwhile.
    let pid = u64::from(client_pid);
    let ours: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["type"] == "failure" && l["pid"].as_u64() == Some(pid)).collect();
    assert_eq!(ours.len() as u64, refused, "one failure line per refusal");
    for f in &ours {
        assert_eq!(f["netns"].as_u64(), Some(inode_a), "counted in A: {f}");
        assert_eq!(
            (f["remote"].as_str(), f["errno"].as_str()),
            (Some(SERVER), Some("EADDRNOTAVAIL"))
        );
    }
    let in_b =
        lines.iter().filter(|l| l["type"] == "failure" && l["netns"].as_u64() == Some(inode_b));
    assert_eq!(in_b.count(), 0, "no failure is counted in B");

    let fleet: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["type"] == "fleet_sample").collect();
    assert!(fleet.len() >= 2, "{} fleet samples", fleet.len());
    assert!(!lines.iter().any(|l| l["type"] == "sample"), "--all-netns writes fleet samples only");
    let position = |sample: &serde_json::Value, inode: u64| {
        sample["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .position(|ns| ns["inode"].as_u64() == Some(inode))
            .unwrap_or_else(|| panic!("net:[{inode}] is not in a sample"))
    };
    // While the client held every port: A exhausted, named, ahead of B, which stayed ok.
    let exhausted = fleet
        .iter()
        .find(|s| s["namespaces"][position(s, inode_a)]["report"]["verdict"] == "exhausted")
        .expect("a sample saw A exhausted");
    let (pa, pb) = (position(exhausted, inode_a), position(exhausted, inode_b));
    assert!(pa < pb, "A is listed before B");
    assert_eq!(exhausted["namespaces"][pa]["name"], a.name());
    assert_eq!(exhausted["namespaces"][pb]["name"], b.name());
    assert_eq!(exhausted["namespaces"][pb]["report"]["verdict"], "ok");
    let last = fleet[fleet.len() - 1]["namespaces"].as_array().expect("namespaces");

    // watch --replay of the file: the namespace list, and the failures named by namespace.
    let mut replay = Command::new(porthog::binary());
    replay.args(["watch", "--once", "--replay"]).arg(&file);
    let run = porthog::run(replay);
    let frame = run.stdout();
    assert!(frame.contains("Network namespaces (worst first)"), "{}", run.context());
    assert!(frame.contains("EADDRNOTAVAIL  in "), "failures named by namespace\n{frame}");
    // Other tests may make failures on this host too: the pane shows the newest.
    let others = lines.iter().filter(|l| l["type"] == "failure" && l["pid"].as_u64() != Some(pid));
    if others.count() == 0 {
        assert!(frame.contains(&format!("  in {}", a.name())), "failures named in A\n{frame}");
    }
    let row = |name: &str| {
        frame
            .lines()
            .position(|l| l.get(2..).is_some_and(|r| r.starts_with(&format!("{name} ("))))
            .unwrap_or_else(|| panic!("no row for {name}\n{frame}"))
    };
    assert!(row(a.name()) < row(b.name()), "{frame}");

    let mut analyze = Command::new(porthog::binary());
    analyze.args(["analyze", "--json"]).arg(&file);
    let out = analyze.output().expect("porthog analyze");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(out.status.code(), Some(EXIT_CRITICAL), "{}", String::from_utf8_lossy(&out.stdout));
    let summary = report["summary"].as_str().unwrap_or("");
    let labels: Vec<String> = last
        .iter()
        .map(|ns| {
            ns["name"].as_str().map_or_else(|| format!("net:[{}]", ns["inode"]), str::to_owned)
        })
        .collect();
    let named = report["netns"].as_str().unwrap_or("");
    assert!(labels.iter().any(|l| l == named), "analyze names a namespace: {named:?} {labels:?}");
    assert!(summary.starts_with(&format!("network namespace {named} (worst of ")), "{summary}");
    // A's failures raise A to critical: it is the worst unless another namespace of the host
    // is as bad in the last sample.
    let others_as_bad = last.iter().any(|ns| {
        ns["inode"].as_u64() != Some(inode_a)
            && ["exhausted", "critical"].contains(&ns["report"]["verdict"].as_str().unwrap_or(""))
    });
    if !others_as_bad {
        assert_eq!(report["netns"].as_str(), Some(a.name()), "{summary}");
        assert!(
            summary.starts_with(&format!("network namespace {} (worst of ", a.name()))
                && summary.contains("the kernel refused 20 allocations for lack of a port during the recording: porthog-loadgen"),
            "{summary}"
        );
    }
    assert!(
        ["exhausted", "critical"].contains(&report["verdict"].as_str().unwrap_or("")),
        "{summary}"
    );
}

/// `serve --all-netns`: a client's refusals in A are counted under A's label (its `ip netns`
/// name, as the pool metrics call it), none under B's.
pub fn serve_all_netns_labels_failures_with_their_namespace() {
    let Some(a) = Netns::for_test("serve_all_failures", &[]) else { return };
    let b = a.sibling(&[]);
    let _server = Loadgen::start(&a, &["serve", "--listen", SERVER]);
    let _server_b = Loadgen::start(&b, &["serve", "--listen", SERVER]);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["serve", "--all-netns", "--interval", "1", "--listen", &addr]).stdin(Stdio::null());
    let mut serve = Held(child::spawn(&mut cmd));
    serve.0.wait_stderr("serving metrics on", Duration::from_secs(60)).unwrap_or_else(|e| {
        panic!("porthog serve did not start: {e}");
    });
    if serve.0.stderr().contains("no porthog_allocation_failures_total") && !crate::netns::in_ci() {
        eprintln!("serve_all_netns_labels_failures: skipped: {}", serve.0.stderr());
        return;
    }
    let client = Loadgen::start(&a, &["connect", "--to", SERVER, "--until-fail"]);
    assert_eq!(client.errno(), Some("EADDRNOTAVAIL"));
    let series = |ns: &str| {
        format!(
            "porthog_allocation_failures_total{{errno=\"EADDRNOTAVAIL\",netns=\"{ns}\",process=\"porthog-loadgen\",remote=\"{SERVER}\"}}"
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get(&addr, "/metrics").1;
        if let Some(line) = text.lines().find(|l| l.starts_with(&series(a.name()))) {
            let n: u64 = line.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            assert!(n >= client.failed(), "{line}: loadgen saw {} failures", client.failed());
            assert!(
                !text.lines().any(|l| l.starts_with("porthog_allocation_failures_total")
                    && l.contains(&format!("netns=\"{}\"", b.name()))),
                "nothing counted in B\n{text}"
            );
            let pool = format!("porthog_verdict_level{{netns=\"{}\"}} 3", a.name());
            assert!(text.contains(&pool), "the pool metrics call A the same: {pool}\n{text}");
            promtool_check(&text);
            break;
        }
        assert!(Instant::now() < deadline, "no {}\n{text}\n{}", series(a.name()), serve.0.stderr());
        // Polling a deadline for the next collection, not ordering threads.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `serve --all-netns` while a namespace whose client really hit EADDRNOTAVAIL is deleted: its
/// failures stay counted under the label it was first seen with, its pools and verdict leave
/// the metrics, and serve goes on answering (no panic, promtool still happy).
pub fn serve_all_netns_keeps_the_failures_of_a_deleted_namespace() {
    let Some(a) = Netns::for_test("serve_deleted", &[]) else { return };
    let mut load = vec![Loadgen::start(&a, &["serve", "--listen", SERVER])];
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["serve", "--all-netns", "--interval", "1", "--listen", &addr]).stdin(Stdio::null());
    let mut serve = Held(child::spawn(&mut cmd));
    serve.0.wait_stderr("serving metrics on", Duration::from_secs(60)).unwrap_or_else(|e| {
        panic!("porthog serve did not start: {e}");
    });
    if serve.0.stderr().contains("no porthog_allocation_failures_total") && !crate::netns::in_ci() {
        eprintln!("serve_all_netns_keeps_the_failures: skipped: {}", serve.0.stderr());
        return;
    }
    let client = Loadgen::start(&a, &["connect", "--to", SERVER, "--until-fail"]);
    assert_eq!((client.opened(), client.errno()), (100, Some("EADDRNOTAVAIL")));
    let failed = client.failed();
    load.push(client);
    let name = a.name().to_owned();
    let failures = format!(
        "porthog_allocation_failures_total{{errno=\"EADDRNOTAVAIL\",netns=\"{name}\",process=\"porthog-loadgen\",remote=\"{SERVER}\"}}"
    );
    let counted = |text: &str| {
        let line = text.lines().find(|l| l.starts_with(&failures))?;
        line.rsplit_once(' ').and_then(|(_, v)| v.parse::<u64>().ok())
    };
    let verdict = format!("porthog_verdict_level{{netns=\"{name}\"}} 3");
    let pools = format!("netns=\"{name}\",");
    let wait = |what: &str, done: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = get(&addr, "/metrics").1;
            if done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "no {what}\n{text}\n{}", serve.0.stderr());
            // Polling a deadline for the next collection, not ordering threads.
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let text = wait("failures and the exhausted pool of the namespace", &|text| {
        counted(text).is_some_and(|n| n >= failed) && text.contains(&verdict)
    });
    assert!(text.lines().any(|l| l.starts_with("porthog_pool_used_ports") && l.contains(&pools)));

    // Its processes end, then its name goes: the kernel frees the namespace.
    drop(load);
    let out = Command::new("ip").args(["netns", "del", &name]).output().expect("ip netns del");
    assert!(out.status.success(), "ip netns del: {}", String::from_utf8_lossy(&out.stderr));
    let text = wait("a collection without the deleted namespace's pools", &|text| {
        !text.lines().any(|l| l.starts_with("porthog_pool_") && l.contains(&pools))
    });
    assert!(!text.contains(&format!("porthog_verdict_level{{netns=\"{name}\"}}")), "{text}");
    let n = counted(&text).unwrap_or(0);
    assert!(n >= failed, "the failures stay counted under {name}: {n} of {failed}\n{text}");
    promtool_check(&text);
    // One more collection later, serve still answers and has not panicked.
    let again = wait("a later collection", &|t| t != text);
    assert!(counted(&again).is_some_and(|m| m >= n), "{again}");
    let stderr = serve.0.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(serve.0.child.try_wait().is_ok_and(|s| s.is_none()), "serve exited: {stderr}");
}

/// Without CAP_SYS_ADMIN, `watch` and `record --all-netns` say what they need (exit 3), and
/// `record` leaves no file behind.
pub fn all_netns_without_root_says_what_it_needs() {
    let dir = TempDir::new("all-netns-unprivileged");
    let file = dir.0.join("rec.jsonl");
    // The scratch directory is root's: let nobody try to write there, as a user would.
    let _ = std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o777));
    for args in [
        vec!["watch", "--all-netns", "--once"],
        vec!["record", "--all-netns", "--duration", "1", "-o", file.to_str().expect("UTF-8")],
    ] {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", porthog::binary()])
            .args(&args);
        let run = porthog::run(cmd);
        run.assert_code(crate::porthog::EXIT_ERROR);
        assert!(
            run.stderr().contains(
                "--all-netns enters every network namespace, which needs root (CAP_SYS_ADMIN)"
            ),
            "{}",
            run.context()
        );
    }
    assert!(!file.exists(), "no recording is created");
}

/// The fleet sample lines written so far.
fn fleet_samples(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(r#""type":"fleet_sample""#))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect()
}
