//! What machine the numbers come from: CPU model, cores, memory, kernel, load average, and the
//! tool versions, read from /proc and the tools themselves (never assumed).

use std::process::Command;

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub load_average: String,
    pub date: String,
    pub versions: Vec<(String, String)>,
}

pub fn describe() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = read("/proc/meminfo");
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let versions = [
        ("ss", &["-V"][..]),
        ("netstat", &["-V"][..]),
        ("lsof", &["-v"][..]),
        ("cc", &["--version"][..]),
    ]
    .into_iter()
    .map(|(tool, args)| (tool.to_string(), version(tool, args)))
    .collect();
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_gib: mem_kib / 1024.0 / 1024.0,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        load_average: load_average(),
        date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).trim().to_string(),
        versions,
    }
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows up here.
pub fn load_average() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text
        })
        .unwrap_or_default()
}

/// The first line that names a version (lsof -v prints a banner first).
fn version(program: &str, args: &[&str]) -> String {
    let text = output(program, args);
    text.lines()
        .map(str::trim)
        .find(|l| l.to_lowercase().contains("revision") || l.chars().any(|c| c.is_ascii_digit()))
        .unwrap_or("not installed")
        .to_string()
}
