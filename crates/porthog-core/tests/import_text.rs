//! netstat, netsh, ss, sysctl and /proc/net captures, imported from the fixtures that
//! `tests/fixtures/make_text_fixtures.py` writes, with the exact numbers its lists give.
//! Windows machine APP02: OK with the default range, WARN with its captured 4,000-port range,
//! CRITICAL once its captured exclusions are taken out. Linux host db-client: CRITICAL.

use std::collections::BTreeMap;

use porthog_core::import::{Encoding, ImportOptions, Imported, Input, SourceInfo, import};
use porthog_core::{
    AnalyzeOptions, FindingKind, Level, PoolKind, Protocol, Report, Snapshot, State,
    analyze_imported,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Read {
    snapshot: Snapshot,
    sources: Vec<SourceInfo>,
    report: Report,
}

fn read(names: &[&str]) -> Read {
    let bytes: Vec<Vec<u8>> = names.iter().map(|n| fixture(n)).collect();
    let inputs: Vec<Input<'_>> =
        names.iter().zip(&bytes).map(|(name, bytes)| Input { name, bytes }).collect();
    match import(&inputs, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}")) {
        Imported::Snapshot { snapshot, sources, evidence } => {
            let report =
                analyze_imported(&snapshot, sources.clone(), evidence, &AnalyzeOptions::default());
            Read { snapshot, sources, report }
        }
        Imported::Report(_) => panic!("read as a porthog report"),
    }
}

fn per_pid(s: &Snapshot) -> BTreeMap<u32, usize> {
    let mut m = BTreeMap::new();
    for x in &s.sockets {
        *m.entry(x.pid.map_or(0, |p| p.get())).or_default() += 1;
    }
    m
}

fn count(s: &Snapshot, state: State) -> usize {
    s.sockets.iter().filter(|x| x.state == state).count()
}

fn tcp_pool(r: &Report) -> &porthog_core::Pool {
    r.pools
        .iter()
        .find(|p| p.kind == PoolKind::Global && p.protocol == Protocol::Tcp)
        .expect("tcp global pool")
}

const APP02_PER_PID: [(u32, usize); 9] = [
    (0, 200),
    (4, 1),
    (700, 1),
    (960, 2),
    (1300, 1),
    (2900, 2),
    (3880, 4),
    (5120, 3000),
    (6100, 50),
];

#[test]
fn netstat_ano_en_us_cp437_default_range_is_ok() {
    let r = read(&["netstat-ano_win2019_en-US_cp437.txt"]);
    assert_eq!(r.sources[0].encoding, "utf-8", "pure ASCII cp437 is valid UTF-8");
    assert_eq!(r.snapshot.sockets.len(), 3261);
    assert_eq!(per_pid(&r.snapshot), BTreeMap::from(APP02_PER_PID));
    assert_eq!(count(&r.snapshot, State::TimeWait), 200);
    let pool = tcp_pool(&r.report);
    assert_eq!((pool.used, pool.capacity, pool.time_wait), (3255, 16384, 200));
    assert_eq!(r.report.verdict, Level::Ok);
    assert!(
        r.report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::LeakCloseWait && f.pid == Some(6100))
    );
    assert!(
        r.report.gaps.iter().any(|g| g.message.contains("dynamic port range was not in the input"))
    );
    // TIME_WAIT rows have PID 0: no owner, not a process called "0".
    assert!(r.report.processes.iter().all(|p| p.pid != 0));
    assert_eq!(r.report.totals.ownerless, 200);
}

#[test]
fn captured_range_makes_it_warn_and_exclusions_make_it_critical() {
    let r = read(&["netstat-ano_win2019_en-US_cp437.txt", "netsh_dynamicport-tcp_en-US.txt"]);
    let pool = tcp_pool(&r.report);
    assert_eq!((pool.used, pool.capacity, pool.time_wait), (3153, 4000, 152));
    assert_eq!(r.report.verdict, Level::Warn);
    assert!(
        r.report
            .gaps
            .iter()
            .any(|g| g.message.contains("excluded port ranges were not in the input"))
    );

    let r = read(&[
        "netstat-ano_win2019_en-US_cp437.txt",
        "netsh_dynamicport-tcp_en-US.txt",
        "netsh_excludedportrange-tcp_en-US.txt",
    ]);
    let pool = tcp_pool(&r.report);
    assert_eq!((pool.used, pool.capacity), (3153, 3400));
    assert_eq!(r.report.ranges[0].reserved, 600);
    assert_eq!(r.report.verdict, Level::Critical);
    let shrunk = r
        .report
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::ShrunkRange)
        .expect("shrunk range");
    assert!(shrunk.message.contains("600 ports in it are excluded"), "{}", shrunk.message);
}

#[test]
fn anob_names_executables_and_groups_programs() {
    let r = read(&["netstat-anob_win2019_en-US_cp437.txt"]);
    assert_eq!(r.snapshot.sockets.len(), 3261);
    let name = |pid| r.snapshot.process(pid).map(|p| p.name.clone());
    assert_eq!(name(5120).as_deref(), Some("w3wp.exe"));
    assert_eq!(name(4).as_deref(), Some("?"), "\"Can not obtain ownership information\"");
    assert_eq!(r.report.processes[0].name, "w3wp.exe");
    assert_eq!(r.report.processes[0].ephemeral_ports, 3000);
    let svchost =
        r.report.programs.iter().find(|g| g.name == "svchost.exe").expect("svchost grouped");
    assert_eq!(svchost.pids, vec![960, 1300, 2900]);
}

#[test]
fn anoq_german_cp850_with_bound_rows() {
    let r = read(&["netstat-anoq_win2022_de-DE_cp850.txt"]);
    assert_eq!(r.sources[0].encoding, Encoding::Cp850.as_str());
    assert_eq!(r.snapshot.sockets.len(), 3271);
    assert_eq!(count(&r.snapshot, State::Bound), 10);
    assert_eq!(count(&r.snapshot, State::Listen), 4);
    assert_eq!(count(&r.snapshot, State::CloseWait), 50);
    assert_eq!(tcp_pool(&r.report).used, 3265);
    let java = r.report.processes.iter().find(|p| p.pid == 6100).expect("java.exe");
    assert_eq!((java.states["BOUND"], java.states["CLOSE_WAIT"]), (10, 50));
    // 10 bound sockets stay under the leak threshold (5 % of the pool, at most 50); 50 CLOSE_WAIT do not.
    assert!(!r.report.findings.iter().any(|f| f.kind == FindingKind::LeakBound));
    assert!(
        r.report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::LeakCloseWait && f.pid == Some(6100))
    );
}

#[test]
fn japanese_cp932_and_utf8_bom_lf() {
    let r = read(&["netstat-ano_win2019_ja-JP_cp932.txt"]);
    assert_eq!(r.sources[0].encoding, Encoding::Cp932.as_str());
    assert_eq!(r.snapshot.sockets.len(), 3261);
    assert_eq!(per_pid(&r.snapshot), BTreeMap::from(APP02_PER_PID));
    let r = read(&["netstat-ano_utf8-bom_lf.txt"]);
    assert_eq!(r.sources[0].encoding, Encoding::Utf8Bom.as_str());
    assert_eq!(r.snapshot.sockets.len(), 7);
}

#[test]
fn german_netsh_range() {
    let r = read(&["netstat-ano_win2019_en-US_cp437.txt", "netsh_dynamicport-tcp_de-DE_cp850.txt"]);
    assert_eq!(tcp_pool(&r.report).capacity, 4000);
    assert_eq!(r.report.verdict, Level::Warn);
}

#[test]
fn a_pasted_ticket_with_prompts_reads_as_one_machine() {
    let r = read(&["pasted-ticket_netstat-anoq_netsh_prompts.txt"]);
    let formats: Vec<&str> = r.sources.iter().map(|s| s.format.as_str()).collect();
    assert_eq!(formats, ["netstat", "netsh-dynamicport", "netsh-excluded"]);
    assert_eq!(r.snapshot.sockets.len(), 3271);
    assert_eq!((tcp_pool(&r.report).used, tcp_pool(&r.report).capacity), (3153, 3400));
    assert_eq!(r.report.verdict, Level::Critical);
    assert!(
        r.report.gaps.iter().all(|g| !g.message.contains("was not in the input")),
        "{:#?}",
        r.report.gaps
    );
}

#[test]
fn linux_ticket_sysctl_and_ss() {
    let r = read(&["linux-ticket_sysctl_ss.txt"]);
    let formats: Vec<&str> = r.sources.iter().map(|s| s.format.as_str()).collect();
    assert_eq!(formats, ["ss", "sysctl"]);
    assert_eq!(r.report.source, "ss", "sysctl lists no sockets (issue 8)");
    assert_eq!(r.snapshot.sockets.len(), 964);
    assert_eq!(per_pid(&r.snapshot), BTreeMap::from([(0, 60), (500, 2), (880, 1), (2211, 901)]));
    let pool = &r.report.pools[0];
    assert_eq!(pool.kind, PoolKind::Connect);
    assert_eq!(pool.remote, Some("10.0.0.5:5432".parse().unwrap()));
    assert_eq!(
        (pool.used, pool.capacity, pool.time_wait, pool.time_wait_reusable),
        (960, 999, 60, 0)
    );
    assert_eq!(r.report.verdict, Level::Critical);
    let top = &r.report.processes[0];
    assert_eq!((top.pid, top.name.as_str(), top.ephemeral_ports), (2211, "python3", 901));
    let squat = r
        .report
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Squatting)
        .expect("nginx squats 40100");
    assert!(squat.message.contains("40100 (nginx, pid 880)"), "{}", squat.message);
}

#[test]
fn linux_files_read_separately_agree_with_the_ticket() {
    let r = read(&["sysctl_ports_debian12.txt", "ss-tanp_debian12.txt", "ss-uanp_debian12.txt"]);
    assert_eq!(r.snapshot.sockets.len(), 964);
    assert_eq!(r.report.verdict, Level::Critical);
    let udp = r.snapshot.sockets.iter().filter(|s| s.protocol == Protocol::Udp).count();
    assert_eq!(udp, 2);
    // Without the sysctl lines the default range is assumed, and the same sockets are OK.
    let r = read(&["ss-tanp_debian12.txt"]);
    assert_eq!(r.report.verdict, Level::Ok);
    assert!(
        r.report
            .gaps
            .iter()
            .any(|g| g.message.contains("ip_local_port_range was not in the input"))
    );
}

#[test]
fn proc_net_tcp_has_no_owners() {
    let r = read(&["sysctl_ports_debian12.txt", "proc-net-tcp_debian12.txt"]);
    assert_eq!(r.snapshot.sockets.len(), 960);
    assert_eq!(count(&r.snapshot, State::TimeWait), 60);
    assert_eq!(r.report.totals.unattributed, 900);
    let pool = &r.report.pools[0];
    assert_eq!((pool.used, pool.capacity), (960, 1000));
    assert_eq!(r.report.verdict, Level::Critical);
}
