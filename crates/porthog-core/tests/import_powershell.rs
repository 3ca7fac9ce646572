//! PowerShell and Windows event-log captures, imported from the fixtures that
//! `tests/fixtures/make_fixtures.py` writes, with the exact numbers its lists give: machine WEB01
//! (10.20.30.40) captured as a table, as CSV and as JSON, and its Tcpip events four ways.

use std::collections::{BTreeMap, BTreeSet};

use porthog_core::import::{Evidence, ImportOptions, Imported, Input, SourceInfo, import};
use porthog_core::{AnalyzeOptions, Level, PoolKind, Protocol, Report, Snapshot, State, analyze};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Imports {
    snapshot: Snapshot,
    sources: Vec<SourceInfo>,
    evidence: Vec<Evidence>,
}

fn import_all(inputs: &[(&str, &[u8])]) -> Imports {
    let inputs: Vec<Input<'_>> = inputs.iter().map(|(name, bytes)| Input { name, bytes }).collect();
    match import(&inputs, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}")) {
        Imported::Snapshot { snapshot, sources, evidence } => {
            Imports { snapshot, sources, evidence }
        }
        Imported::Report(_) => panic!("read as a porthog report"),
    }
}

fn import_fixture(name: &str) -> Imports {
    import_all(&[(name, &fixture(name))])
}

/// Sockets per owning pid, 0 for none (TIME_WAIT, and endpoints printed without OwningProcess).
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

/// Distinct local ports of `protocol` in the default Windows dynamic range 49152-65535.
fn pool_ports(s: &Snapshot, protocol: Protocol) -> usize {
    let ports: BTreeSet<u16> = s
        .sockets
        .iter()
        .filter(|x| x.protocol == protocol && x.local_port >= 49152)
        .map(|x| x.local_port)
        .collect();
    ports.len()
}

/// (used, capacity, time_wait) of the global pool of `protocol`.
fn global_pool(r: &Report, protocol: Protocol) -> (u32, u32, u32) {
    let p = r
        .pools
        .iter()
        .find(|p| p.kind == PoolKind::Global && p.protocol == protocol)
        .expect("a global pool");
    (p.used, p.capacity, p.time_wait)
}

fn source(i: &Imports) -> (&str, &str, u64) {
    assert_eq!(i.sources.len(), 1, "{:?}", i.sources);
    let s = &i.sources[0];
    (s.format.as_str(), s.encoding.as_str(), s.records)
}

mod sockets {
    use super::*;

    /// The whole TCP table of WEB01: 110 sockets.
    fn web01_tcp(s: &Snapshot) {
        assert_eq!(s.sockets.len(), 110);
        assert!(s.sockets.iter().all(|x| x.protocol == Protocol::Tcp));
        assert_eq!(
            per_pid(s),
            BTreeMap::from([
                (0, 40),
                (4, 13),
                (564, 2),
                (712, 2),
                (956, 2),
                (1104, 2),
                (1320, 1),
                (2456, 1),
                (3880, 4),
                (5432, 24),
                (6120, 19),
            ])
        );
        assert_eq!(count(s, State::TimeWait), 40);
        assert_eq!(count(s, State::Listen), 16);
        assert_eq!(count(s, State::CloseWait), 12);
        assert_eq!(count(s, State::Bound), 6);
        assert_eq!(count(s, State::SynRecv), 1);
        assert_eq!(pool_ports(s, Protocol::Tcp), 91);
        let r = analyze(s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Ok);
        assert_eq!(global_pool(&r, Protocol::Tcp), (91, 16384, 40));
        assert_eq!(r.totals.ownerless, 40);
    }

    #[test]
    fn tcp_table_ps51_utf16le_with_cut_ipv6_addresses() {
        let i = import_fixture("get-nettcpconnection_table_ps51_en-US_utf16le.txt");
        assert_eq!(source(&i), ("powershell-table", "utf-16le", 110));
        web01_tcp(&i.snapshot);
        // 4 IPv6 connections, both addresses cut by the 35-wide column: kept, unspecified.
        let v6: Vec<_> =
            i.snapshot.sockets.iter().filter(|x| x.pid.is_some_and(|p| p.get() == 3880)).collect();
        assert!(v6.iter().all(|x| x.local_ip.is_unspecified() && x.remote_port == 443));
        let gap = i.snapshot.gaps.iter().find(|g| g.message.contains("Format-Table")).unwrap();
        assert_eq!(gap.count, Some(8));
        assert!(gap.advice.as_deref().unwrap().contains("Out-String -Width 4096"));
    }

    #[test]
    fn tcp_export_csv_ps7_gives_the_same_sockets_with_full_addresses() {
        let i = import_fixture("get-nettcpconnection_export-csv_ps7_utf8.csv");
        assert_eq!(source(&i), ("powershell-csv", "utf-8", 110));
        web01_tcp(&i.snapshot);
        assert!(i.snapshot.gaps.iter().all(|g| !g.message.contains("Format-Table")));
        let v6 = i.snapshot.sockets.iter().find(|x| x.local_port == 54000).unwrap();
        assert_eq!(v6.local_ip.to_string(), "2001:db8:85a3:1200:4c2d:8e1f:a90b:77d3");
        let table = import_fixture("get-nettcpconnection_table_ps51_en-US_utf16le.txt");
        let key = |s: &Snapshot| -> Vec<_> {
            s.sockets.iter().map(|x| (x.state, x.local_port, x.remote_port, x.pid)).collect()
        };
        assert_eq!(key(&i.snapshot), key(&table.snapshot));
    }

    #[test]
    fn tcp_convertto_json_ps51_numbers_and_dates() {
        let i = import_fixture("get-nettcpconnection_convertto-json_ps51.json");
        let s = &i.snapshot;
        assert_eq!(source(&i), ("powershell-json", "utf-8", 27));
        assert_eq!(per_pid(s), BTreeMap::from([(0, 4), (3880, 4), (6120, 19)]));
        assert_eq!(count(s, State::TimeWait), 4);
        assert_eq!(count(s, State::CloseWait), 12);
        assert_eq!(count(s, State::LastAck), 1);
        assert_eq!(count(s, State::Bound), 6);
        assert_eq!(pool_ports(s, Protocol::Tcp), 27);
        let r = analyze(s, &AnalyzeOptions::default());
        assert_eq!((r.verdict, global_pool(&r, Protocol::Tcp)), (Level::Ok, (27, 16384, 4)));
    }

    #[test]
    fn tcp_convertto_json_ps7_enums_as_strings() {
        let i = import_fixture("get-nettcpconnection_convertto-json_ps7_enumsasstrings.json");
        let s = &i.snapshot;
        assert_eq!(source(&i), ("powershell-json", "utf-8", 22));
        assert_eq!(per_pid(s), BTreeMap::from([(5432, 22)]));
        assert_eq!((count(s, State::Established), count(s, State::FinWait2)), (20, 2));
        assert_eq!(count(s, State::TimeWait), 0);
        assert_eq!(pool_ports(s, Protocol::Tcp), 22);
        assert!(s.sockets.iter().all(|x| x.remote_ip.to_string() == "10.20.40.11"));
        let r = analyze(s, &AnalyzeOptions::default());
        assert_eq!((r.verdict, global_pool(&r, Protocol::Tcp)), (Level::Ok, (22, 16384, 0)));
    }

    #[test]
    fn tcp_convertto_json_single_object() {
        let i = import_fixture("get-nettcpconnection_convertto-json_ps7_single.json");
        let s = &i.snapshot;
        assert_eq!(source(&i), ("powershell-json", "utf-8", 1));
        let x = &s.sockets[0];
        assert_eq!(
            (x.state, x.local_port, x.remote_port, x.pid.map(|p| p.get())),
            (State::Established, 50123, 5432, Some(7788))
        );
        let r = analyze(s, &AnalyzeOptions::default());
        assert_eq!((r.verdict, global_pool(&r, Protocol::Tcp)), (Level::Ok, (1, 16384, 0)));
    }

    #[test]
    fn udp_default_table_has_no_owners() {
        let i = import_fixture("get-netudpendpoint_table.txt");
        let s = &i.snapshot;
        assert_eq!(source(&i), ("powershell-table", "utf-8", 28));
        assert!(s.sockets.iter().all(|x| x.protocol == Protocol::Udp && x.state == State::Close));
        assert_eq!(per_pid(s), BTreeMap::from([(0, 28)]));
        assert!(s.processes.is_empty());
        assert_eq!(pool_ports(s, Protocol::Udp), 14);
        let r = analyze(s, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Ok);
        assert_eq!(global_pool(&r, Protocol::Udp), (14, 16384, 0));
        assert_eq!(global_pool(&r, Protocol::Tcp), (0, 16384, 0));
    }

    #[test]
    fn udp_export_csv_ps51_with_type_line() {
        let i = import_fixture("get-netudpendpoint_export-csv_ps51_ascii.csv");
        let s = &i.snapshot;
        assert_eq!(source(&i), ("powershell-csv", "utf-8", 28));
        assert!(s.sockets.iter().all(|x| x.protocol == Protocol::Udp));
        assert_eq!(
            per_pid(s),
            BTreeMap::from([(4, 2), (1676, 2), (2212, 17), (3120, 4), (3344, 2), (4412, 1)])
        );
        assert_eq!(pool_ports(s, Protocol::Udp), 14);
        let r = analyze(s, &AnalyzeOptions::default());
        let udp = r.pools.iter().find(|p| p.protocol == Protocol::Udp).unwrap();
        assert_eq!((udp.used, udp.capacity), (14, 16384));
        let owners: Vec<(u32, u32)> = udp.owners.iter().map(|o| (o.pid, o.ports)).collect();
        assert_eq!(owners, [(2212, 13), (3344, 1)]);
    }

    /// A shrunk dynamic range with a Hyper-V style exclusion, the CSV and the event log of the
    /// same machine: the pool that is left is all TIME_WAIT, and event 4231 proves it failed.
    #[test]
    fn netsh_csv_and_events_together() {
        let netsh = "Protocol tcp Dynamic Port Range\r\n---------------------------------\r\n\
                     Start Port      : 51000\r\nNumber of Ports : 255\r\n\r\n\
                     Protocol tcp Port Exclusion Ranges\r\n\r\nStart Port    End Port\r\n\
                     ----------    --------\r\n     51040       51254\r\n\r\n\
                     * - Administered port exclusions.\r\n";
        let csv = fixture("get-nettcpconnection_export-csv_ps7_utf8.csv");
        let events = fixture("wevtutil_tcpip_4231.txt");
        let i = import_all(&[
            ("netsh.txt", netsh.as_bytes()),
            ("tcp.csv", &csv),
            ("events.txt", &events),
        ]);
        assert_eq!(i.sources.len(), 4);
        let r = analyze(&i.snapshot, &AnalyzeOptions::default());
        assert_eq!(r.verdict, Level::Exhausted);
        assert_eq!(global_pool(&r, Protocol::Tcp), (40, 40, 40));
        assert_eq!(
            i.evidence.iter().map(|e| (e.id, e.count)).collect::<Vec<_>>(),
            [(4227, 2), (4231, 3)]
        );
    }
}

mod mixed {
    use super::*;

    /// One pasted console session: CSV, JSON, an event and netstat rows between prompts. The
    /// bad netstat row on line 21 must be reported there, after CSV and JSON moved the cursor.
    const SESSION: &str = "PS C:\\> Get-NetUDPEndpoint | ConvertTo-Csv\r\n\
        \"LocalAddress\",\"LocalPort\",\"OwningProcess\"\r\n\
        \"0.0.0.0\",\"55000\",\"2212\"\r\n\
        \"::\",\"55001\",\"2212\"\r\n\
        PS C:\\> Get-NetTCPConnection -LocalPort 50123 | ConvertTo-Json\r\n\
        {\r\n  \"State\": 11,\r\n  \"LocalAddress\": \"10.0.0.7\",\r\n  \"LocalPort\": 50123,\r\n\
        \x20 \"RemoteAddress\": \"10.0.0.5\",\r\n  \"RemotePort\": 443,\r\n  \"OwningProcess\": 0\r\n}\r\n\
        PS C:\\> wevtutil qe System /f:text /c:1\r\n\
        Event[0]:\r\n  Log Name: System\r\n  Source: Tcpip\r\n  Date: 2024-01-15T10:23:45.123\r\n  Event ID: 4231\r\n\
        PS C:\\> netstat -ano\r\n\
        \x20 TCP    10.0.0.7:50124   10.0.0.5:443   ESTABLISHED\r\n\
        \x20 TCP    10.0.0.7:50125   10.0.0.5:443   TIME_WAIT   0\r\n";

    #[test]
    fn errors_keep_their_line_across_sections() {
        let input = [Input { name: "session.txt", bytes: SESSION.as_bytes() }];
        let e = import(&input, &ImportOptions::default()).unwrap_err().to_string();
        assert!(e.starts_with("session.txt:21: netstat row"), "{e}");
        let lenient = ImportOptions { lenient: true, ..Default::default() };
        let Imported::Snapshot { snapshot, sources, evidence } = import(&input, &lenient).unwrap()
        else {
            panic!("not a report")
        };
        let formats: Vec<(&str, u64)> =
            sources.iter().map(|s| (s.format.as_str(), s.records)).collect();
        assert_eq!(
            formats,
            [("netstat", 1), ("powershell-csv", 2), ("powershell-json", 1), ("wevtutil", 1)]
        );
        assert_eq!(snapshot.sockets.len(), 4);
        assert_eq!(count(&snapshot, State::TimeWait), 2);
        assert_eq!(evidence.iter().map(|e| (e.id, e.count)).collect::<Vec<_>>(), [(4231, 1)]);
    }
}

mod events {
    use super::*;

    fn summary(ev: &[Evidence]) -> Vec<(u32, u64, &str, &str)> {
        ev.iter()
            .map(|e| (e.id, e.count, e.first.as_deref().unwrap(), e.last.as_deref().unwrap()))
            .collect()
    }

    #[test]
    fn wevtutil_english() {
        let i = import_fixture("wevtutil_tcpip_4231.txt");
        assert_eq!(source(&i), ("wevtutil", "utf-8", 5));
        assert!(i.snapshot.sockets.is_empty());
        assert_eq!(
            summary(&i.evidence),
            [
                (4227, 2, "2024-01-15T10:20:11", "2024-01-15T10:22:59"),
                (4231, 3, "2024-01-15T10:23:45", "2024-01-15T10:31:02"),
            ]
        );
        assert_eq!(i.evidence[1].kind, "event");
        assert!(i.evidence[1].meaning.contains("global TCP ephemeral port space was exhausted"));
    }

    #[test]
    fn wevtutil_german_labels_in_code_page_850() {
        let i = import_fixture("wevtutil_tcpip_de-DE_cp850.txt");
        assert_eq!(source(&i), ("wevtutil", "cp850", 3));
        assert_eq!(
            summary(&i.evidence),
            [
                (4227, 2, "2024-03-04T08:16:40", "2024-03-04T09:01:13"),
                (4266, 1, "2024-03-04T08:15:02", "2024-03-04T08:15:02"),
            ]
        );
    }

    #[test]
    fn get_winevent_table_en_us_newest_first() {
        let i = import_fixture("get-winevent_table_en-US.txt");
        assert_eq!(source(&i), ("get-winevent", "utf-8", 7));
        assert_eq!(
            summary(&i.evidence),
            [
                (4227, 3, "2024-01-14T21:45:00", "2024-01-15T10:22:59"),
                (4231, 3, "2024-01-15T10:31:02", "2024-01-16T00:05:33"),
                (4266, 1, "2024-01-15T12:30:00", "2024-01-15T12:30:00"),
            ]
        );
    }

    #[test]
    fn get_winevent_format_list_de_de() {
        let i = import_fixture("get-winevent_list_de-DE.txt");
        assert_eq!(source(&i), ("get-winevent", "utf-8-bom", 4));
        assert_eq!(
            summary(&i.evidence),
            [
                (4227, 2, "2024-03-04T08:16:40", "2024-03-04T09:01:13"),
                (4231, 1, "2024-03-04T08:14:59", "2024-03-04T08:14:59"),
                (4266, 1, "2024-03-04T08:15:02", "2024-03-04T08:15:02"),
            ]
        );
    }
}

mod robustness {
    use super::*;

    const FIXTURES: [&str; 11] = [
        "get-nettcpconnection_table_ps51_en-US_utf16le.txt",
        "get-nettcpconnection_export-csv_ps7_utf8.csv",
        "get-nettcpconnection_convertto-json_ps51.json",
        "get-nettcpconnection_convertto-json_ps7_enumsasstrings.json",
        "get-nettcpconnection_convertto-json_ps7_single.json",
        "get-netudpendpoint_table.txt",
        "get-netudpendpoint_export-csv_ps51_ascii.csv",
        "wevtutil_tcpip_4231.txt",
        "wevtutil_tcpip_de-DE_cp850.txt",
        "get-winevent_table_en-US.txt",
        "get-winevent_list_de-DE.txt",
    ];

    /// Every prefix of the first 1 KiB of each fixture, then about 300 more spread over the
    /// rest (every prefix of the 120 KiB fixtures would take minutes in a debug build), strict
    /// and lenient: an error is fine, a panic is not.
    #[test]
    fn truncated_fixtures_never_panic() {
        let lenient = ImportOptions { lenient: true, ..Default::default() };
        for name in FIXTURES {
            let bytes = fixture(name);
            let step = (bytes.len() / 300).max(1);
            let cuts = (0..bytes.len().min(1024)).chain((1024..bytes.len()).step_by(step));
            for n in cuts {
                let input = [Input { name, bytes: &bytes[..n] }];
                let _ = import(&input, &ImportOptions::default());
                let _ = import(&input, &lenient);
            }
        }
    }

    /// Each fixture with one byte changed in many places, every format forced in turn.
    #[test]
    fn corrupted_fixtures_never_panic() {
        for name in FIXTURES {
            let mut bytes = fixture(name);
            let step = (bytes.len() / 150).max(1);
            for (k, at) in (0..bytes.len()).step_by(step).enumerate() {
                let old = bytes[at];
                bytes[at] = [b'"', b'\n', b' ', b'{', 0xC3, b'-', b'.', b':'][k % 8];
                let all = porthog_core::import::Format::ALL;
                let format = all[k % all.len()];
                let opts = ImportOptions {
                    format: Some(format),
                    lenient: k % 2 == 0,
                    ..Default::default()
                };
                let _ = import(&[Input { name, bytes: &bytes }], &opts);
                let _ = import(&[Input { name, bytes: &bytes }], &ImportOptions::default());
                bytes[at] = old;
            }
        }
    }

    /// Words of every format in any order: headers without rules, rules under the wrong words,
    /// `…` where a byte index would split it, half-open JSON, Event blocks without ids.
    const WORDS: [&str; 44] = [
        "LocalAddress",
        "LocalPort",
        "RemoteAddress",
        "RemotePort",
        "State",
        "OwningProcess",
        "TimeCreated",
        "Id",
        "ProviderName:",
        "Message",
        " ",
        "   ",
        "\n",
        "\r\n",
        "-----",
        "--",
        "…",
        "...",
        "\"",
        ",",
        ";",
        "{",
        "}",
        "[",
        "]",
        ":",
        " : ",
        "Event[0]:",
        "  Source: Tcpip",
        "#TYPE MSFT_NetTCPConnection",
        "4231",
        "65536",
        "10.0.0.7",
        "::",
        "fe80::1%12",
        "Established",
        "TimeWait",
        "1/15/2024 10:23:45 AM",
        "15.01.2024 1.2.3",
        "\"LocalPort\":",
        "null",
        "ü",
        "PS C:\\> ",
        "\"schema_version\"",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        #[test]
        fn word_soup_never_panics(
            words in proptest::collection::vec(proptest::sample::select(WORDS.to_vec()), 0..80),
        ) {
            let text = words.concat();
            let input = [Input { name: "soup.txt", bytes: text.as_bytes() }];
            let _ = import(&input, &ImportOptions::default());
            for format in porthog_core::import::Format::ALL {
                let opts = ImportOptions { format: Some(format), lenient: true, ..Default::default() };
                let _ = import(&input, &opts);
            }
        }
    }
}
