//! porthog-bench-analyze: how fast `porthog analyze` reads a large capture (Windows `netstat
//! -ano` by default; `--format` picks Windows `-an`, `-a` with names, `Format-List` or
//! `Format-Table -Wrap`, or Linux `netstat -tanpe`, `ss -tanpo state established` or `lsof -nP
//! -iTCP`), against a plain `awk` that counts rows per owner on the same file, in one run.
//! It writes a deterministic capture (IPv4 and IPv6 rows, several states, ownerless TIME_WAIT),
//! times each tool with wait4() rusage (wall, CPU, peak RSS) and prints a markdown section.
//! The file is read from the page cache after a warm-up run: this measures parsing, not the disk.
//!
//!   cargo build --release && target/release/porthog-bench-analyze --rows 1000000 --runs 5
//!   target/release/porthog-bench-analyze --format netstat-an --rows 1000000 --runs 3

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("porthog-bench-analyze: Linux only (it reads rusage with wait4)");
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    linux::main()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::{BufWriter, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{Context, Result, bail, ensure};
    use clap::Parser;

    /// Times `porthog analyze` on a generated netstat -ano capture against awk.
    #[derive(Debug, Parser)]
    #[command(name = "porthog-bench-analyze")]
    struct Cli {
        /// Rows of the generated capture.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Timed runs per tool (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The porthog binary. Default: `porthog` next to this program.
        #[arg(long)]
        porthog: Option<PathBuf>,
        /// Which capture to generate.
        #[arg(long, value_enum, default_value_t = Capture::NetstatAno)]
        format: Capture,
        /// Only write the capture to this file (to profile `porthog analyze` on it) and exit.
        #[arg(long)]
        save: Option<PathBuf>,
    }

    /// The captures the benchmark can generate.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    enum Capture {
        /// Windows `netstat -ano`
        NetstatAno,
        /// Windows `netstat -an`: no PID column
        NetstatAn,
        /// Windows `netstat -a`: host and service names
        NetstatA,
        /// `Get-NetTCPConnection | Format-List`
        PowershellList,
        /// `Get-NetTCPConnection | Format-Table -Wrap`, IPv6 addresses wrapped
        PowershellTableWrap,
        /// Linux net-tools `netstat -tanpe`
        NetstatLinux,
        /// `ss -tanpo state established` (no State column)
        SsState,
        /// `lsof -nP -iTCP`
        Lsof,
    }

    impl Capture {
        fn title(self) -> &'static str {
            match self {
                Capture::NetstatAno => "`netstat -ano`",
                Capture::NetstatAn => "`netstat -an` (no PID column)",
                Capture::NetstatA => "`netstat -a` (host and service names)",
                Capture::PowershellList => "`Get-NetTCPConnection | Format-List`",
                Capture::PowershellTableWrap => "`Get-NetTCPConnection | Format-Table -Wrap`",
                Capture::NetstatLinux => "`netstat -tanpe`",
                Capture::SsState => "`ss -tanpo state established`",
                Capture::Lsof => "`lsof -nP -iTCP`",
            }
        }

        fn is_linux(self) -> bool {
            matches!(self, Capture::NetstatLinux | Capture::SsState | Capture::Lsof)
        }

        /// What awk counts: rows per owner (the last field), or objects per owner.
        fn awk(self) -> &'static str {
            match self {
                Capture::PowershellList => {
                    "/^OwningProcess/{c[$3]++} END{for(k in c) print k, c[k]}"
                }
                Capture::PowershellTableWrap => {
                    "NR>2 && $2 ~ /^[0-9]+$/{c[$NF]++} END{for(k in c) print k, c[k]}"
                }
                Capture::Lsof => "NR>1{c[$2]++} END{for(k in c) print k, c[k]}",
                Capture::NetstatLinux | Capture::SsState => {
                    "NR>2{c[$NF]++} END{for(k in c) print k, c[k]}"
                }
                _ => "$1==\"TCP\"||$1==\"UDP\"{c[$NF]++} END{for(k in c) print k, c[k]}",
            }
        }
    }

    struct Run {
        wall: Duration,
        cpu: Duration,
        rss_kib: u64,
    }

    pub fn main() -> Result<()> {
        let cli = Cli::parse();
        ensure!(cli.runs >= 1 && cli.rows >= 1, "--runs and --rows must be at least 1");
        if let Some(path) = &cli.save {
            return write_any(path, cli.rows, cli.format);
        }
        let porthog = match cli.porthog {
            Some(p) => p,
            None => std::env::current_exe()?.with_file_name("porthog"),
        };
        ensure!(
            porthog.exists(),
            "{} not found: build it with cargo build --release",
            porthog.display()
        );
        let dir =
            std::env::temp_dir().join(format!("porthog-bench-analyze-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("capture.txt");
        let result = measure(&porthog, &file, cli.rows, cli.runs, cli.format);
        let _ = std::fs::remove_dir_all(&dir);
        print!("{}", result?);
        Ok(())
    }

    fn measure(
        porthog: &Path,
        file: &Path,
        rows: u64,
        runs: usize,
        format: Capture,
    ) -> Result<String> {
        write_any(file, rows, format)?;
        let bytes = std::fs::metadata(file)?.len();
        let f = file.to_str().context("temp path is not UTF-8")?;
        let porthog_s = porthog.to_str().context("porthog path is not UTF-8")?;
        let porthog_args = ["analyze", "--json", f];
        let awk_prog = format.awk();

        // The JSON must count every row, or the run measured something else.
        let out = Command::new(porthog).args(porthog_args).output()?;
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("porthog printed no JSON")?;
        let sockets = json["totals"]["sockets"].as_u64().unwrap_or(0);
        ensure!(sockets == rows, "porthog counted {sockets} sockets in a {rows}-row capture");
        let _ = Command::new("awk").args([awk_prog, f]).stdout(Stdio::null()).status()?;

        let mut p = Vec::new();
        let mut a = Vec::new();
        for _ in 0..runs {
            p.push(timed(porthog_s, &porthog_args)?);
            a.push(timed("awk", &[awk_prog, f])?);
        }
        let awk_version = Command::new("awk")
            .arg("-W")
            .arg("version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.lines().next().map(str::to_owned))
            .unwrap_or_else(|| "awk".into());
        let mb = bytes as f64 / 1e6;
        let (pw, aw) = (median(&p, |r| r.wall), median(&a, |r| r.wall));
        let row = |name: &str, r: &[Run], w: Duration| {
            let rss = r.iter().map(|x| x.rss_kib).max().unwrap_or(0);
            format!(
                "| {name} | {} | {:.3} s | {:.3} s | {:.0} MB/s | {:.1} MiB | {:.0} B | {:.2}x |\n",
                r.len(),
                w.as_secs_f64(),
                median(r, |x| x.cpu).as_secs_f64(),
                mb / w.as_secs_f64(),
                rss as f64 / 1024.0,
                rss as f64 * 1024.0 / rows as f64,
                w.as_secs_f64() / pw.as_secs_f64(),
            )
        };
        let mut s = String::new();
        let title = format.title();
        let flag = match clap::ValueEnum::to_possible_value(&format) {
            Some(v) if format != Capture::NetstatAno => format!(" --format {}", v.get_name()),
            _ => String::new(),
        };
        s += &format!(
            "### Offline: `porthog analyze` of a {rows}-row {title} capture ({mb:.1} MB)\n\n\
             Command: `cargo build --release && target/release/porthog-bench-analyze{flag} --rows {rows} --runs {runs}`; \
             awk: {awk_version}. Warm page cache; porthog's JSON counted all {sockets} sockets.\n\n\
             | tool | runs | wall (median) | CPU (median) | throughput | peak RSS | RSS per row | wall vs porthog |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n"
        );
        s += &row("porthog analyze --json", &p, pw);
        s += &row("awk (rows per owner)", &a, aw);
        let rss_per_row =
            p.iter().map(|x| x.rss_kib).max().unwrap_or(0) as f64 * 1024.0 / rows as f64;
        s += &format!(
            "\n- at least 150 MB/s: {} ({:.0} MB/s)\n- peak RSS under 200 B per row: {} ({:.0} B)\n",
            if mb / pw.as_secs_f64() >= 150.0 { "met" } else { "**missed**" },
            mb / pw.as_secs_f64(),
            if rss_per_row < 200.0 { "met" } else { "**missed**" },
            rss_per_row
        );
        // awk is the floor for the simple netstat -ano rows; mawk is slow on the long ss rows
        // (`users:((...))`), so there it is only a point of comparison.
        if aw > pw && format == Capture::NetstatAno {
            bail!("unexpected: awk slower than porthog; check the machine");
        }
        Ok(s)
    }

    /// Writes the capture, dated a minute back: `porthog analyze` reads a file modified in the
    /// last 2 s instead of mapping it (it may still be growing), and a capture being analysed
    /// is a finished file.
    fn write_any(path: &Path, rows: u64, format: Capture) -> Result<()> {
        if format.is_linux() {
            write_linux_capture(path, rows, format)?;
        } else {
            write_capture(path, rows, format)?;
        }
        let minute_ago = std::time::SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(minute_ago))
            .with_context(|| format!("dating {} a minute back", path.display()))
    }

    fn median(runs: &[Run], f: impl Fn(&Run) -> Duration) -> Duration {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    }

    /// Runs a command with stdout to /dev/null and returns its wall time and wait4() rusage.
    fn timed(program: &str, args: &[&str]) -> Result<Run> {
        let start = Instant::now();
        let child = Command::new(program).args(args).stdout(Stdio::null()).spawn()?;
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child's pid with valid out-pointers; std's Child is not
        // waited on afterwards, so the pid is reaped exactly once.
        let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        let wall = start.elapsed();
        ensure!(pid > 0 && libc::WIFEXITED(status), "{program} did not exit normally");
        let code = libc::WEXITSTATUS(status);
        // porthog exits 0-2 with a verdict; 3 means it could not read the capture.
        ensure!(code <= 2, "{program} exited {code}");
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Ok(Run {
            wall,
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            rss_kib: usage.ru_maxrss as u64,
        })
    }

    /// A capture like a busy Windows server's: 90 % IPv4 rows, 10 % IPv6, mostly ESTABLISHED,
    /// a third TIME_WAIT (PID 0), some CLOSE_WAIT; CRLF line ends, as cmd.exe writes them.
    fn write_capture(path: &Path, rows: u64, format: Capture) -> Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(path)?);
        match format {
            Capture::NetstatAno => write!(
                w,
                "\r\nActive Connections\r\n\r\n  Proto  Local Address          Foreign Address        State           PID\r\n"
            )?,
            Capture::NetstatAn | Capture::NetstatA => write!(
                w,
                "\r\nActive Connections\r\n\r\n  Proto  Local Address          Foreign Address        State\r\n"
            )?,
            // Linux captures have their own writer (`write_linux_capture`).
            Capture::PowershellList | Capture::NetstatLinux | Capture::SsState | Capture::Lsof => {}
            Capture::PowershellTableWrap => write!(
                w,
                "\r\nLocalAddress         LocalPort RemoteAddress        RemotePort State       OwningProcess\r\n\
                 ------------         --------- -------------        ---------- -----       -------------\r\n"
            )?,
        }
        let pids = [4321, 5555, 812, 1044, 2020];
        for i in 0..rows {
            let state = match i % 10 {
                0..=5 => "ESTABLISHED",
                6..=8 => "TIME_WAIT",
                _ => "CLOSE_WAIT",
            };
            let ps_state = match state {
                "ESTABLISHED" => "Established",
                "TIME_WAIT" => "TimeWait",
                _ => "CloseWait",
            };
            let pid = if state == "TIME_WAIT" { 0 } else { pids[(i % 5) as usize] };
            let lport = 49152 + i % 16384;
            let dport = if i % 3 == 0 { 5432 } else { 443 };
            let v6 = i % 10 == 0;
            let (local, remote) = if v6 {
                (format!("2001:db8:4000:12::{:x}", i % 9999), "2001:db8:4000:12::1".to_owned())
            } else {
                (
                    format!("10.0.{}.{}", (i >> 16) & 255, (i >> 8) & 255),
                    format!("10.1.{}.{}", i % 200, i % 250),
                )
            };
            let (bl, br) = if v6 {
                (format!("[{local}]"), format!("[{remote}]"))
            } else {
                (local.clone(), remote.clone())
            };
            match format {
                Capture::NetstatAno => {
                    write!(w, "  TCP    {bl}:{lport}  {br}:{dport}  {state:<15} {pid}\r\n")?
                }
                Capture::NetstatAn => {
                    write!(w, "  TCP    {bl}:{lport}  {br}:{dport}  {state}\r\n")?
                }
                Capture::NetstatA => {
                    let service = if dport == 443 { "https" } else { "5432" };
                    write!(w, "  TCP    APP02:{lport}  db{:02}:{service}  {state}\r\n", i % 50)?
                }
                Capture::PowershellList => write!(
                    w,
                    "\r\nLocalAddress   : {local}\r\nLocalPort      : {lport}\r\nRemoteAddress  : {remote}\r\n\
                     RemotePort     : {dport}\r\nState          : {ps_state}\r\nAppliedSetting : Internet\r\n\
                     OwningProcess  : {pid}\r\nCreationTime   : 1/2/2024 10:42:13 AM\r\nOffloadState   : InHost\r\n"
                )?,
                Capture::NetstatLinux | Capture::SsState | Capture::Lsof => {
                    bail!("{} is written by write_linux_capture", format.title())
                }
                Capture::PowershellTableWrap => {
                    // Addresses longer than the 20-character column go on in the next line.
                    let (l1, l2) = local.split_at(local.len().min(20));
                    let (r1, r2) = remote.split_at(remote.len().min(20));
                    write!(
                        w,
                        "{l1:<20} {lport:>9} {r1:<20} {dport:>10} {ps_state:<11} {pid:>13}\r\n"
                    )?;
                    if !l2.is_empty() || !r2.is_empty() {
                        write!(w, "{l2:<20} {:>9} {r2:<20}\r\n", "")?;
                    }
                }
            }
        }
        w.flush()?;
        Ok(())
    }

    /// A Linux capture of a busy client: 90 % IPv4, 10 % IPv6, four local addresses, sixteen
    /// destinations, all owned. `netstat -tanpe` puts a third in TIME_WAIT (no owner); the state-filtered `ss` and
    /// lsof have only live sockets, so every row is ESTABLISHED.
    fn write_linux_capture(path: &Path, rows: u64, format: Capture) -> Result<()> {
        let mut w = BufWriter::new(std::fs::File::create(path)?);
        match format {
            Capture::NetstatLinux => write!(
                w,
                "Active Internet connections (servers and established)\n\
                 Proto Recv-Q Send-Q Local Address           Foreign Address         State       User       Inode      PID/Program name    \n"
            )?,
            Capture::SsState => writeln!(
                w,
                "Recv-Q Send-Q      Local Address:Port        Peer Address:Port Process"
            )?,
            _ => writeln!(w, "COMMAND     PID USER   FD   TYPE   DEVICE SIZE/OFF NODE NAME")?,
        }
        let owners = [(4321, "java"), (5555, "nginx"), (812, "python3"), (1044, "Web Content")];
        for i in 0..rows {
            let (pid, name) = owners[(i % 4) as usize];
            let lport = 32768 + (i / 32) % 28232;
            let inode = 100_000 + i;
            // Four local addresses, sixteen destinations: a client host's few pools, each
            // well filled (4-tuples unique for the first 903,424 rows).
            let (local, remote, v6) = if i % 10 == 0 {
                (format!("2001:db8::{}", 4 + i % 4), format!("2001:db8:1::{}", (i / 4) % 8), true)
            } else {
                let dport = if i % 2 == 0 { 5432 } else { 3306 };
                (format!("10.0.0.{}", 4 + i % 4), format!("10.1.0.{}:{dport}", (i / 4) % 8), false)
            };
            let remote = if v6 { format!("{remote}:443") } else { remote };
            match format {
                Capture::NetstatLinux => {
                    let tw = i % 3 == 1;
                    let (state, owner) = if tw {
                        ("TIME_WAIT", "-".to_owned())
                    } else {
                        ("ESTABLISHED", format!("{pid}/{name}"))
                    };
                    let proto = if v6 { "tcp6" } else { "tcp" };
                    writeln!(
                        w,
                        "{proto:<5}      0      0 {:<23} {remote:<23} {state:<11} 1000       {:<10} {owner:<20}",
                        format!("{local}:{lport}"),
                        if tw { 0 } else { inode }
                    )?;
                }
                Capture::SsState => {
                    let (l, r) = if v6 {
                        (
                            format!("[{local}]:{lport}"),
                            format!("[{}]", remote.rsplit_once(':').map_or("", |x| x.0)) + ":443",
                        )
                    } else {
                        (format!("{local}:{lport}"), remote.clone())
                    };
                    writeln!(
                        w,
                        "0      0      {l:>26} {r:>24} users:((\"{name}\",pid={pid},fd={})) timer:(keepalive,{}sec,0) ino:{inode}",
                        i % 1000 + 3,
                        i % 7200
                    )?;
                }
                _ => {
                    let (l, r) = if v6 {
                        (
                            format!("[{local}]:{lport}"),
                            format!("[{}]", remote.rsplit_once(':').map_or("", |x| x.0)) + ":443",
                        )
                    } else {
                        (format!("{local}:{lport}"), remote.clone())
                    };
                    let command: String = name.replace(' ', "\\x20").chars().take(9).collect();
                    writeln!(
                        w,
                        "{command:<9} {pid:>5} user {:>4}u  {}  {inode:>7}      0t0  TCP {l}->{r} (ESTABLISHED)",
                        i % 1000 + 3,
                        if v6 { "IPv6" } else { "IPv4" }
                    )?;
                }
            }
        }
        w.flush()?;
        Ok(())
    }
}
