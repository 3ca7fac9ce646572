//! `porthog serve`: the exporter against real namespaces, `promtool check metrics`, a duplicate
//! series check of our own (promtool does not catch them), and a real Prometheus that scrapes
//! it and answers a PromQL query. Every process is ended by PID, every file removed, on Drop.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::child;
use crate::fleet::Held;
use crate::loadgen::Loadgen;
use crate::netns::Netns;
use crate::porthog::{self, EXIT_ERROR};
use crate::snat::ExhaustedSnat;

const SERVER: &str = "127.0.0.1:7070";

/// A loopback port free right now (the kernel picked it; the test binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// `GET path` over HTTP/1.0 (so no chunked answer): (status line, body).
pub fn get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or("").to_owned(), body.to_owned())
}

/// Every series (name and labels) of an exposition text, failing on a repeated one.
fn assert_no_duplicate_series(text: &str) {
    let mut seen = HashSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        assert!(seen.insert(series.to_owned()), "duplicate series {series}\n{text}");
    }
    assert!(!seen.is_empty(), "no series at all\n{text}");
}

/// Runs promtool check metrics on `text`.
pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool (Debian package prometheus): {e}"));
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temporary directory removed on Drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn serve_exports_every_namespace_to_a_real_prometheus() {
    let Some(exhausted) = Netns::for_test("serve", &[]) else { return };
    let healthy = exhausted.sibling(&[]);
    let _server = Loadgen::start(&exhausted, &["serve", "--listen", SERVER]);
    let client = Loadgen::start(&exhausted, &["connect", "--to", SERVER, "--until-fail"]);
    assert_eq!((client.opened(), client.errno()), (100, Some("EADDRNOTAVAIL")));
    let _server2 = Loadgen::start(&healthy, &["serve", "--listen", SERVER]);
    let light = Loadgen::start(&healthy, &["connect", "--to", SERVER, "--count", "5"]);
    assert_eq!(light.opened(), 5);
    // A NAT namespace whose snat pool (10 ports towards one server) is exhausted.
    let clients = exhausted.peer(&[("net.ipv4.tcp_syn_retries", "1")]);
    let snat = ExhaustedSnat::new(&clients);

    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["serve", "--all-netns", "--interval", "1", "--listen", &addr]).stdin(Stdio::null());
    let mut serve = Held(child::spawn(&mut cmd));
    serve.0.wait_stderr("serving metrics on", Duration::from_secs(60)).unwrap_or_else(|e| {
        panic!("porthog serve did not start: {e}");
    });

    let (status, page) = get(&addr, "/");
    assert!(status.contains("200"), "{status}");
    assert!(page.contains("/metrics"), "{page}");
    assert!(get(&addr, "/nothing").0.contains("404"));
    let (status, text) = get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}\n{text}");
    promtool_check(&text);
    assert_no_duplicate_series(&text);
    let used = format!(
        "porthog_pool_used_ports{{kind=\"connect\",local=\"127.0.0.1\",netns=\"{}\",protocol=\"tcp\",remote=\"{SERVER}\"}} 100",
        exhausted.name()
    );
    assert!(text.contains(&used), "expected {used}\n{text}");
    assert!(text.contains("porthog_info{mode=\"root\"} 1"), "{text}");
    assert!(
        text.contains(&format!("porthog_verdict_level{{netns=\"{}\"}} 3", exhausted.name())),
        "{text}"
    );
    assert!(
        text.contains(&format!("porthog_verdict_level{{netns=\"{}\"}} 0", healthy.name())),
        "{text}"
    );
    assert!(text.contains("porthog_process_ephemeral_ports{"), "{text}");

    // A real Prometheus scrapes it every second; PromQL divides used by capacity.
    let dir =
        TempDir(std::env::temp_dir().join(format!("porthog-e2e-prom-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(dir.0.join("data")).expect("mkdir");
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: porthog\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdin(Stdio::null());
    let prometheus = Held(child::spawn(&mut cmd));
    // The host may run other namespaces: the selector keeps the answer to ours.
    let connect = format!(
        "porthog_pool_used_ports{{netns=\"{}\"}} / porthog_pool_capacity_ports",
        exhausted.name()
    );
    let answer = prometheus_series(&prom_addr, &connect, &prometheus, |metric| {
        metric["netns"] == exhausted.name() && metric["kind"] == "connect"
    });
    assert_eq!(answer["value"][1], "1", "used / capacity of the exhausted pool: {answer}");
    assert_eq!(answer["metric"]["remote"], SERVER, "{answer}");
    // The NAT namespace's snat pool, as issue 9 words the query.
    let snat_query =
        "porthog_pool_used_ports{kind=\"snat\"} / porthog_pool_capacity_ports{kind=\"snat\"}";
    let answer = prometheus_series(&prom_addr, snat_query, &prometheus, |metric| {
        metric["netns"] == snat.nat.name()
    });
    assert_eq!(answer["value"][1], "1", "used / capacity of the exhausted snat pool: {answer}");
    assert_eq!(answer["metric"]["remote"], "10.88.2.2:8080", "{answer}");
    assert_eq!(answer["metric"]["local"], "10.88.2.1", "{answer}");
    drop(prometheus);
    drop(serve);
}

/// Polls Prometheus (at `prom_addr`) with the PromQL `query` until a series whose labels
/// `wanted` accepts comes back, for at most 60 s; returns that series.
fn prometheus_series(
    prom_addr: &str,
    query: &str,
    prometheus: &Held,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let path = format!("/api/v1/query?query={}", utf8_percent_encode(query, NON_ALPHANUMERIC));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if TcpStream::connect(prom_addr).is_ok() {
            last = get(prom_addr, &path).1;
            let json: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
            let result = json["data"]["result"].as_array().cloned().unwrap_or_default();
            if let Some(series) = result.into_iter().find(|s| wanted(&s["metric"])) {
                return series;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned the series for {query}\nlast answer: {last}\nprometheus \
             stderr: {}",
            prometheus.0.stderr()
        );
        // Polling a deadline for an outside server, not ordering threads.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The listen port is taken: a clear message and exit status 3, before any collection.
pub fn serve_on_a_taken_port_says_so() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["serve", "--listen", &addr]);
    let run = porthog::run(cmd);
    run.assert_code(EXIT_ERROR);
    assert!(
        run.stderr().contains(&format!("cannot listen on {addr}"))
            && run.stderr().contains("--listen"),
        "{}",
        run.context()
    );
}

/// Without privileges: pools of its own namespace still come out, and the mode says so;
/// `--all-netns` is refused with the reason.
pub fn serve_unprivileged_exports_pools() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("serve_unprivileged_exports_pools: skipped: needs root to drop to nobody");
        return;
    }
    let exe = porthog::WorldExecutable::new("serve-nobody");
    let exe_path = exe.path.display().to_string();
    let nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
            .arg(&exe_path)
            .args(args);
        cmd
    };
    let refused = porthog::run(nobody(&["serve", "--all-netns", "--listen", "127.0.0.1:0"]));
    refused.assert_code(EXIT_ERROR);
    assert!(refused.stderr().contains("needs root (CAP_SYS_ADMIN)"), "{}", refused.context());

    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = nobody(&["serve", "--interval", "1", "--listen", &addr]);
    cmd.stdin(Stdio::null());
    let mut serve = Held(child::spawn(&mut cmd));
    serve.0.wait_stderr("serving metrics on", Duration::from_secs(60)).unwrap_or_else(|e| {
        panic!("unprivileged porthog serve did not start: {e}");
    });
    let (status, text) = get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    promtool_check(&text);
    assert!(text.contains("porthog_info{mode=\"unprivileged\"} 1"), "{text}");
    assert!(text.contains("porthog_pool_capacity_ports{kind=\"bind\""), "{text}");
    assert!(text.contains("porthog_namespaces 1"), "{text}");
    drop(serve);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// A namespace without a socket is not dumped (its counters say there is nothing to find),
/// but read again every collection: once it gains sockets, the next collections export them.
pub fn serve_sees_an_idle_namespace_gain_sockets() {
    let Some(idle) = Netns::for_test("serve-idle", &[]) else { return };
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["serve", "--all-netns", "--interval", "1", "--listen", &addr])
        .env("PORTHOG_TIMINGS", "1")
        .stdin(Stdio::null());
    let mut serve = Held(child::spawn(&mut cmd));
    serve.0.wait_stderr("serving metrics on", Duration::from_secs(60)).unwrap_or_else(|e| {
        panic!("porthog serve did not start: {e}");
    });
    let verdict = format!("porthog_verdict_level{{netns=\"{}\"}} 0", idle.name());
    let netns_label = format!("netns=\"{}\"", idle.name());
    let text = wait_for_metrics(&addr, &serve, |text| text.contains(&verdict));
    let used: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("porthog_pool_used_ports{") && l.contains(&netns_label))
        .collect();
    assert!(
        !used.is_empty() && used.iter().all(|l| l.ends_with(" 0")),
        "an empty namespace's pools are empty\n{text}"
    );
    assert!(
        serve.0.stderr().contains("sockstat shows no TCP or UDP socket"),
        "the empty namespace was dumped anyway\n{}",
        serve.0.stderr()
    );

    let _server = Loadgen::start(&idle, &["serve", "--listen", SERVER]);
    let client = Loadgen::start(&idle, &["connect", "--to", SERVER, "--until-fail"]);
    assert_eq!(client.opened(), 100);
    let used = format!(
        "porthog_pool_used_ports{{kind=\"connect\",local=\"127.0.0.1\",{netns_label},protocol=\"tcp\",remote=\"{SERVER}\"}} 100"
    );
    wait_for_metrics(&addr, &serve, |text| text.contains(&used));
}

/// `/metrics` of the exporter at `addr`, polled until `ready` accepts it (at most 30 s).
pub fn wait_for_metrics(addr: &str, serve: &Held, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = get(addr, "/metrics");
        if ready(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics never showed what was waited for\n{text}\nporthog stderr: {}",
            serve.0.stderr()
        );
        // Polling a deadline for the exporter's next collection, not ordering threads.
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A scrape storm: 50 clients scraping back to back for 10 s all get answers, and the
/// exporter's memory stays bounded.
pub fn serve_survives_a_scrape_storm() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["serve", "--interval", "1", "--listen", &addr]).stdin(Stdio::null());
    let mut serve = Held(child::spawn(&mut cmd));
    serve.0.wait_stderr("serving metrics on", Duration::from_secs(60)).unwrap_or_else(|e| {
        panic!("porthog serve did not start: {e}");
    });
    let _ = get(&addr, "/metrics");
    // A few collections first: the collector's own working set (the BPF programs and the
    // kernel's type information, loaded once) settles before the storm is measured.
    std::thread::sleep(Duration::from_secs(4));
    let before = rss_kib(serve.pid());
    let until = Instant::now() + Duration::from_secs(10);
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut answered = 0u32;
                while Instant::now() < until {
                    let (status, body) = get(&addr, "/metrics");
                    assert!(status.contains("200"), "{status}");
                    assert!(body.contains("porthog_info"), "a truncated answer: {body}");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let answered: Vec<u32> = clients.into_iter().map(|c| c.join().expect("a client")).collect();
    let after = rss_kib(serve.pid());
    assert!(answered.iter().all(|&n| n > 0), "a client got no answer: {answered:?}");
    assert!(
        after < before + 20 * 1024,
        "RSS grew from {before} KiB to {after} KiB over {} scrapes",
        answered.iter().sum::<u32>()
    );
    eprintln!(
        "scrape storm: {} answers, RSS {before} -> {after} KiB",
        answered.iter().sum::<u32>()
    );
    drop(serve);
}

/// As root on one namespace, the kernel tracer counts the failures: a client that exhausts its
/// pool after serve started shows up in porthog_allocation_failures_total.
pub fn serve_counts_allocation_failures() {
    let Some(ns) = Netns::for_test("serve_failures", &[]) else { return };
    let _server = Loadgen::start(&ns, &["serve", "--listen", SERVER]);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(porthog::binary());
    cmd.args(["serve", "--netns", ns.name(), "--interval", "1", "--listen", &addr])
        .stdin(Stdio::null());
    let mut serve = Held(child::spawn(&mut cmd));
    serve.0.wait_stderr("serving metrics on", Duration::from_secs(60)).unwrap_or_else(|e| {
        panic!("porthog serve did not start: {e}");
    });
    if serve.0.stderr().contains("no porthog_allocation_failures_total") && !crate::netns::in_ci() {
        eprintln!("serve_counts_allocation_failures: skipped: {}", serve.0.stderr());
        return;
    }
    let client = Loadgen::start(&ns, &["connect", "--to", SERVER, "--until-fail"]);
    assert_eq!(client.errno(), Some("EADDRNOTAVAIL"));
    let series = format!(
        "porthog_allocation_failures_total{{errno=\"EADDRNOTAVAIL\",netns=\"{}\",process=\"porthog-loadgen\",remote=\"{SERVER}\"}}",
        ns.name()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get(&addr, "/metrics").1;
        if let Some(line) = text.lines().find(|l| l.starts_with(&series)) {
            let n: u64 = line.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            assert!(n >= client.failed(), "{line}: loadgen saw {} failures", client.failed());
            promtool_check(&text);
            break;
        }
        assert!(Instant::now() < deadline, "no {series}\n{text}\n{}", serve.0.stderr());
        // Polling a deadline for the next collection, not ordering threads.
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(serve);
}
