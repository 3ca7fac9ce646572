//! porthog-bench-wintable: the cost of `porthog.exe check`'s analysis (issue 10's target: a
//! 20,000-row table under 50 ms), measured on Linux through the code path the Windows collector
//! takes after its API calls: table rows (`porthog_core::win_table::Row`, as
//! GetExtendedTcpTable/GetExtendedUdpTable give them) → `win_table::snapshot` → `analyze` →
//! the JSON report. The table is generated deterministically, shaped like a busy server's:
//! listeners, established and TIME_WAIT connections to a few destinations over IPv4 and IPv6,
//! CLOSE_WAIT and BOUND rows, UDP endpoints, a few hundred owners.
//!
//!   cargo build --release -p porthog-bench && target/release/porthog-bench-wintable --rows 20000 --runs 21

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use porthog_core::win_table::{self, Owner, Row};
use porthog_core::{AnalyzeOptions, Protocol, Settings, analyze};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic table of `n` rows.
fn table(n: usize) -> Vec<Row> {
    let local4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    let local6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7));
    (0..n)
        .map(|i| {
            let v6 = i % 5 == 0;
            let dest = (i % 7) as u8;
            let remote = if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 1, u16::from(dest)))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 0, 1, dest))
            };
            let local = if v6 { local6 } else { local4 };
            let port = 49152 + (i % 16_000) as u16;
            let pid = 1000 + (i % 300) as u32;
            match i % 20 {
                0 => Row {
                    protocol: Protocol::Tcp,
                    state: 2,
                    local: (local, 135 + (i % 50) as u16),
                    remote: (local, 0),
                    pid,
                },
                1..=3 => Row {
                    protocol: Protocol::Udp,
                    state: 0,
                    local: (local, port),
                    remote: (local, 0),
                    pid,
                },
                4..=9 => Row {
                    protocol: Protocol::Tcp,
                    state: 11,
                    local: (local, port),
                    remote: (remote, 443),
                    pid: 0,
                },
                10 => Row {
                    protocol: Protocol::Tcp,
                    state: 8,
                    local: (local, port),
                    remote: (remote, 5432),
                    pid,
                },
                11 => Row {
                    protocol: Protocol::Tcp,
                    state: 100,
                    local: (local, port),
                    remote: (local, 0),
                    pid,
                },
                _ => Row {
                    protocol: Protocol::Tcp,
                    state: 5,
                    local: (local, port),
                    remote: (remote, 443),
                    pid,
                },
            }
        })
        .collect()
}

fn main() {
    let rows = table(arg("--rows", 20_000));
    let runs = arg("--runs", 21).max(1);
    let owners: Vec<Owner> = (1000..1300)
        .map(|pid| Owner { pid, path: Some(format!(r"C:\apps\app{pid}.exe")), ..Owner::default() })
        .collect();
    let mut times = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let snapshot = win_table::snapshot(&rows, &owners, Settings::default(), Vec::new());
        let report = analyze(&snapshot, &AnalyzeOptions::default());
        let json = serde_json::to_string(&report).unwrap_or_default();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        bytes = json.len();
    }
    times.sort_by(f64::total_cmp);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{} rows, {runs} runs: median {:.1} ms, min {:.1} ms, max {:.1} ms (rows -> snapshot -> analyze -> JSON, {bytes} bytes); load average {}",
        rows.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
}
