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
    // lsass.exe on 49664 is an RPC dynamic endpoint: INFO, and no advice to exclude it (issue 8).
    let squat: Vec<_> =
        r.report.findings.iter().filter(|f| f.kind == FindingKind::Squatting).collect();
    assert_eq!(squat.len(), 1);
    assert_eq!(squat[0].level, Level::Info);
    assert!(squat[0].message.contains("49664 (lsass.exe, pid 700)"), "{}", squat[0].message);
    assert!(!squat[0].advice.contains("exclude"), "{}", squat[0].advice);
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

/// Issue 8: a listing of zero sockets (a header and no rows, captured for real in an empty
/// namespace by `fixtures/capture_empty_netns.sh`) is a capture, not an unknown format.
mod empty_listings {
    use super::*;
    use porthog_core::import::has_socket_listing;

    #[test]
    fn proc_net_tcp_plus_an_empty_tcp6_plus_sysctl_gets_its_report() {
        let r = read(&[
            "proc-net-tcp_debian12.txt",
            "proc-net-tcp6_empty_linux6.18.txt",
            "sysctl_ports_debian12.txt",
        ]);
        let read_as: Vec<(&str, &str, u64)> =
            r.sources.iter().map(|s| (s.file.as_str(), s.format.as_str(), s.records)).collect();
        assert_eq!(
            read_as,
            [
                ("proc-net-tcp_debian12.txt", "proc-net", 960),
                ("proc-net-tcp6_empty_linux6.18.txt", "proc-net", 0),
                ("sysctl_ports_debian12.txt", "sysctl", 4),
            ]
        );
        assert_eq!(r.snapshot.sockets.len(), 960);
        let pool = &r.report.pools[0];
        assert_eq!((pool.used, pool.capacity), (960, 1000));
        assert_eq!(r.report.verdict, Level::Critical);
        assert!(!r.report.gaps.iter().any(|g| g.message.contains("held no sockets")));
    }

    #[test]
    fn only_empty_listings_are_an_ok_machine_without_sockets_and_say_so() {
        for name in ["proc-net-all_empty-netns_linux6.18.txt", "ss-tanp_empty-netns_linux6.18.txt"]
        {
            let r = read(&[name]);
            assert_eq!(r.snapshot.sockets.len(), 0, "{name}");
            assert!(has_socket_listing(&r.sources), "{name}");
            assert_eq!(r.sources.len(), 1, "{name}: {:?}", r.sources);
            assert_eq!(r.sources[0].records, 0);
            assert_eq!(r.report.verdict, Level::Ok, "{name}");
            assert!(
                r.report.gaps.iter().any(|g| g.message.contains("held no sockets")),
                "{name}: {:#?}",
                r.report.gaps
            );
        }
        let r = read(&["ss-tanp_empty-netns_linux6.18.txt", "ss-uanp_debian12.txt"]);
        assert_eq!(r.snapshot.sockets.len(), 2);
        assert!(!r.report.gaps.iter().any(|g| g.message.contains("held no sockets")));
    }

    #[test]
    fn settings_alone_are_no_socket_listing() {
        let r = read(&["sysctl_ports_debian12.txt"]);
        assert!(!has_socket_listing(&r.sources));
    }
}

/// Issue 8: `porthog analyze /bin/ls` said "no known format" and echoed the binary.
#[test]
fn a_binary_file_is_named_as_such_and_nothing_of_it_is_shown() {
    let exe = std::env::current_exe().unwrap();
    for path in [exe.as_path(), std::path::Path::new("/bin/ls")] {
        let Ok(bytes) = std::fs::read(path) else { continue };
        let e = import(&[Input { name: "prog", bytes: &bytes }], &ImportOptions::default())
            .expect_err("a binary is no capture");
        assert_eq!(
            e.to_string(),
            "prog: binary file, not a capture; give the text a command printed (see docs/CAPTURING.md)"
        );
    }
}

/// Issue 8: netsh read by its layout, so any language gives the English numbers (the en-US
/// pair: 4,000 ports from 49152, 600 of them excluded inside the range; CRITICAL).
#[test]
fn netsh_in_german_french_and_japanese() {
    // German dynamicport output is pure ASCII, which reads as UTF-8.
    for (lang, enc, range_enc) in
        [("de-DE", "cp850", "utf-8"), ("fr-FR", "cp850", "cp850"), ("ja-JP", "cp932", "cp932")]
    {
        let range = format!("netsh_dynamicport-tcp_{lang}_{enc}.txt");
        let excluded = format!("netsh_excludedportrange-tcp_{lang}_{enc}.txt");
        let r = read(&["netstat-ano_win2019_en-US_cp437.txt", &range, &excluded]);
        let read_as: Vec<(&str, &str, u64)> = r.sources[1..]
            .iter()
            .map(|s| (s.format.as_str(), s.encoding.as_str(), s.records))
            .collect();
        assert_eq!(
            read_as,
            [("netsh-dynamicport", range_enc, 1), ("netsh-excluded", enc, 1)],
            "{lang}"
        );
        let pool = tcp_pool(&r.report);
        assert_eq!((pool.used, pool.capacity), (3153, 3400), "{lang}");
        assert_eq!(r.report.ranges[0].reserved, 600, "{lang}");
        assert_eq!(r.report.verdict, Level::Critical, "{lang}");
        assert!(
            r.report.gaps.iter().all(|g| !g.message.contains("was not in the input")),
            "{lang}"
        );
    }
}

/// Issue 11: Windows netstat without `-o`, without `-n`, and a findstr fragment.
mod windows_netstat_variants {
    use super::*;

    /// The pools as numbers: without PIDs the owners are unknown, everything else must agree.
    fn pools(r: &Report) -> Vec<porthog_core::Pool> {
        r.pools.iter().map(|p| porthog_core::Pool { owners: Vec::new(), ..p.clone() }).collect()
    }

    #[test]
    fn an_without_pids_gives_the_same_pools_as_ano() {
        let ano = read(&["netstat-ano_win2019_en-US_cp437.txt"]);
        let an = read(&["netstat-an_win2019_en-US_cp437.txt"]);
        assert_eq!(an.snapshot.sockets.len(), 3261);
        assert_eq!(pools(&an.report), pools(&ano.report));
        assert_eq!(an.report.verdict, ano.report.verdict);
        assert_eq!((tcp_pool(&an.report).used, tcp_pool(&an.report).capacity), (3255, 16384));
        assert!(an.report.processes.is_empty());
        assert_eq!(an.sources[0].notes, ["no PID column (netstat without -o): owners unknown"]);
        let gap = an.report.gaps.iter().find(|g| g.message.contains("without -o")).unwrap();
        // 3,261 rows, 200 of them TIME_WAIT (never owned).
        assert_eq!(gap.count, Some(3061));
        assert_eq!(gap.advice.as_deref(), Some("capture `netstat -anoq` instead"));
    }

    #[test]
    fn a_with_names_gives_the_same_pools_and_counts_the_row_it_cannot_place() {
        let ano = read(&["netstat-ano_win2019_en-US_cp437.txt"]);
        let a = read(&["netstat-a_win2019_en-US_cp437.txt"]);
        assert_eq!(a.sources[0].records, 3262);
        assert_eq!(a.snapshot.sockets.len(), 3261);
        assert_eq!(pools(&a.report), pools(&ano.report));
        let gap = a.report.gaps.iter().find(|g| g.message.contains("could not be placed")).unwrap();
        assert_eq!(gap.count, Some(1));
        assert!(gap.message.contains("0.0.0.0:wsd"), "{}", gap.message);
    }

    #[test]
    fn a_findstr_fragment_is_read_and_said_to_be_one() {
        let r = read(&["netstat-ano-findstr-TIME_WAIT_win2019_en-US_cp437.txt"]);
        assert_eq!(r.snapshot.sockets.len(), 200);
        assert_eq!(count(&r.snapshot, State::TimeWait), 200);
        assert_eq!((tcp_pool(&r.report).used, tcp_pool(&r.report).time_wait), (200, 200));
        assert!(r.sources[0].notes[0].starts_with("rows without the netstat header"));
        // The other sockets were filtered out: the 200 rows are no `ok`, and the gap names the
        // unfiltered capture for cmd.exe (the file is cp437).
        let gap = r
            .report
            .gaps
            .iter()
            .find(|g| g.message.contains("filtered fragment"))
            .unwrap_or_else(|| panic!("{:?}", r.report.gaps));
        assert_eq!(gap.count, Some(200));
        assert_eq!(gap.advice.as_deref(), Some("capture `netstat -anoq` without the filter"));
        assert_eq!(r.report.exit_code(), 3, "{}", r.report.summary);
    }
}

/// Issue 11: what pasting adds around a capture is removed once, for every format, and counted.
mod pasting_noise {
    use super::*;
    use porthog_core::GapKind;

    #[test]
    fn an_email_quoting_a_fenced_netstat_cut_with_dots() {
        let r = read(&["pasted-email_netstat-an_quoted-fenced-truncated.txt"]);
        assert_eq!(r.snapshot.sockets.len(), 50);
        assert_eq!(count(&r.snapshot, State::Listen), 4);
        assert_eq!(tcp_pool(&r.report).used, 47);
        let noise = r.report.gaps.iter().find(|g| g.message.contains("pasting noise")).unwrap();
        // 59 quoted lines, 2 of them fences.
        assert!(
            noise.message.ends_with(
                "markdown code fence lines on 2 lines, quote markers (`> `) on 59 lines"
            ),
            "{}",
            noise.message
        );
        let cut = r.report.gaps.iter().find(|g| g.kind == GapKind::Incomplete).unwrap();
        assert_eq!(cut.count, Some(1));
        assert!(
            cut.message.contains("first at pasted-email_netstat-an_quoted-fenced-truncated.txt:58"),
            "{}",
            cut.message
        );
        // Rows are missing: an ok from them is no answer.
        assert_eq!(r.report.exit_code(), 3);
    }

    #[test]
    fn a_chat_paste_with_timestamps_and_a_cut_last_row() {
        let r = read(&["pasted-chat_netstat-ano-findstr_timestamps-cut.txt"]);
        assert_eq!(r.snapshot.sockets.len(), 199);
        assert_eq!(count(&r.snapshot, State::TimeWait), 199);
        assert!(r.sources[0].notes[0].starts_with("rows without the netstat header"));
        let noise = r.report.gaps.iter().find(|g| g.message.contains("pasting noise")).unwrap();
        assert!(noise.message.ends_with("chat timestamps on 201 lines"), "{}", noise.message);
        let cut = r.report.gaps.iter().find(|g| g.kind == GapKind::Incomplete).unwrap();
        assert!(cut.message.contains(":201)"), "{}", cut.message);
    }
}

/// Issue 11: `Get-NetTCPConnection | Format-List` gives APP02's TCP sockets and pool.
#[test]
fn get_nettcpconnection_format_list_ps51_utf16le() {
    let r = read(&["get-nettcpconnection_format-list_ps51_utf16le.txt"]);
    assert_eq!(
        (r.sources[0].format.as_str(), r.sources[0].encoding.as_str(), r.sources[0].records),
        ("powershell-list", "utf-16le", 3258)
    );
    assert_eq!(count(&r.snapshot, State::TimeWait), 200);
    assert_eq!(count(&r.snapshot, State::CloseWait), 50);
    let pool = tcp_pool(&r.report);
    assert_eq!((pool.used, pool.capacity, pool.time_wait), (3255, 16384, 200));
    assert_eq!(r.report.processes[0].pid, 5120);
}
