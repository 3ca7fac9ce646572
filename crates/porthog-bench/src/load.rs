//! The socket load inside the namespace, made of porthog-loadgen processes: `serve` processes,
//! `connect` clients holding established connections (each process under the per-process fd
//! limit), and churn clients (`connect --close --rate R`) that keep TIME_WAIT at a steady
//! level of about R x 60 s. It owns those processes and stops them by pid when dropped.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::interrupt;
use crate::netns::Netns;
use crate::sockstat::{self, TcpCount};

/// TCP_TIMEWAIT_LEN (include/net/tcp.h): how long a TIME_WAIT socket lives.
pub const TIME_WAIT_SECS: f64 = 60.0;
/// The TIME_WAIT timer fires up to a timer-wheel granule late (4 s at 60 s), so wait a bit
/// past one lifetime before calling the level steady.
const STEADY_AFTER: Duration = Duration::from_secs(66);
/// One churn client comfortably keeps this many connect+close per second.
const CHURN_PER_CLIENT: f64 = 500.0;
/// Churn goes to these ports (below the widened ephemeral range 1024-65535), spread so no one
/// destination's 4-tuple space fills with TIME_WAIT.
const CHURN_PORTS: [u16; 4] = [1020, 1021, 1022, 1023];
/// Established server `i` listens on FIRST_PORT + 2i and FIRST_PORT + 2i + 1.
const FIRST_PORT: u16 = 900;
const MAX_SERVERS: u64 = 60;

/// How a load of `total` sockets is made.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub total: u64,
    /// Connections each client holds (each has a matching server): 2 sockets per connection.
    pub clients: Vec<u64>,
    /// TIME_WAIT sockets to keep.
    pub time_wait: u64,
    /// Connections per second, over all churn clients.
    pub churn_rate: f64,
    pub churn_clients: usize,
}

impl Plan {
    /// 4/5 of the sockets established, 1/5 TIME_WAIT.
    pub fn new(total: u64, per_process: u64) -> Result<Plan> {
        let time_wait = total / 5;
        let connections = (total - time_wait) / 2;
        let k = connections.div_ceil(per_process).max(1);
        ensure!(
            k <= MAX_SERVERS,
            "{total} sockets need {k} client processes of {per_process} connections; at most {MAX_SERVERS}"
        );
        let clients = (0..k).map(|i| connections / k + u64::from(i < connections % k)).collect();
        let churn_rate = time_wait as f64 / TIME_WAIT_SECS;
        let churn_clients = (churn_rate / CHURN_PER_CLIENT).ceil().max(1.0) as usize;
        Ok(Plan { total, clients, time_wait, churn_rate, churn_clients })
    }

    pub fn connections(&self) -> u64 {
        self.clients.iter().sum()
    }

    pub fn established(&self) -> u64 {
        self.connections() * 2
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server(usize),
    Client(usize),
    ChurnServer,
    Churn(usize),
}

struct Proc {
    role: Role,
    child: Child,
    /// Held open: loadgen keeps its sockets until stdin reaches EOF.
    stdin: Option<ChildStdin>,
    ready: Option<Value>,
    exited: bool,
}

/// A line from a loadgen's stdout (None: its stdout closed, i.e. it exited).
struct Event {
    index: usize,
    line: Option<String>,
}

pub struct Load {
    procs: Vec<Proc>,
    events: Receiver<Event>,
    sender: Sender<Event>,
    churn_started: Option<Instant>,
}

impl Load {
    /// Starts servers, churn and established clients; returns once every client holds its
    /// connections (TIME_WAIT is still ramping up: see `wait_steady`).
    pub fn start(ns: &Netns, loadgen: &Path, plan: &Plan, churn_max_secs: u64) -> Result<Load> {
        let (sender, events) = mpsc::channel();
        let mut load = Load { procs: Vec::new(), events, sender, churn_started: None };
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let mut args = vec!["serve".to_string()];
        for port in CHURN_PORTS {
            args.extend(["--listen".to_string(), addr(port)]);
        }
        load.spawn(ns, loadgen, Role::ChurnServer, &args)?;
        for i in 0..plan.clients.len() {
            let (a, b) = server_ports(i);
            let args = ["serve", "--listen", &addr(a), "--listen", &addr(b)].map(String::from);
            load.spawn(ns, loadgen, Role::Server(i), &args)?;
        }
        load.wait_ready(|r| matches!(r, Role::Server(_) | Role::ChurnServer), 30)?;

        let per_client = plan.churn_rate / plan.churn_clients as f64;
        let count = (per_client * churn_max_secs as f64).ceil() as u64;
        for i in 0..plan.churn_clients {
            let mut args: Vec<String> = vec!["connect".into()];
            for port in CHURN_PORTS {
                args.extend(["--to".to_string(), addr(port)]);
            }
            args.extend(["--close", "--count", &count.to_string()].map(String::from));
            args.extend(["--rate".to_string(), format!("{per_client:.3}")]);
            load.spawn(ns, loadgen, Role::Churn(i), &args)?;
        }
        load.churn_started = Some(Instant::now());

        let started = Instant::now();
        for (i, &n) in plan.clients.iter().enumerate() {
            let (a, b) = server_ports(i);
            let args = ["connect", "--to", &addr(a), "--to", &addr(b), "--count", &n.to_string()]
                .map(String::from);
            load.spawn(ns, loadgen, Role::Client(i), &args)?;
        }
        let budget = 60 + plan.connections() / 1000;
        load.wait_ready(|r| matches!(r, Role::Client(_)), budget)?;
        for p in load.procs.iter().filter(|p| matches!(p.role, Role::Client(_))) {
            let Role::Client(i) = p.role else { continue };
            let ready = p.ready.as_ref().expect("wait_ready saw every client ready");
            let opened = ready["opened"].as_u64().unwrap_or(0);
            ensure!(
                opened == plan.clients[i] && ready["failed"].as_u64() == Some(0),
                "client {i} opened {opened} of {} connections: {ready}",
                plan.clients[i]
            );
        }
        eprintln!(
            "porthog-bench: {} established connections open in {:.1} s ({} client processes)",
            plan.connections(),
            started.elapsed().as_secs_f64(),
            plan.clients.len()
        );
        Ok(load)
    }

    /// Waits until churn has run one TIME_WAIT lifetime, so the level is steady.
    pub fn wait_steady(&mut self) -> Result<()> {
        let since = self.churn_started.context("churn was not started")?;
        let mut last_print = Instant::now();
        while since.elapsed() < STEADY_AFTER {
            interrupt::check()?;
            self.check_alive()?;
            if last_print.elapsed() >= Duration::from_secs(10) {
                let c = self.count()?;
                eprintln!(
                    "porthog-bench: TIME_WAIT ramping: {} TIME_WAIT, {} other TCP sockets ({:.0} s of {} s)",
                    c.time_wait,
                    c.inuse + c.inuse6,
                    since.elapsed().as_secs_f64(),
                    STEADY_AFTER.as_secs()
                );
                last_print = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// The namespace's TCP socket counts now.
    pub fn count(&self) -> Result<TcpCount> {
        let server = self.procs.iter().find(|p| !p.exited).context("no loadgen process is left")?;
        sockstat::read(server.child.id())
    }

    /// Fails if a server or established client died; warns if churn stopped early.
    pub fn check_alive(&mut self) -> Result<()> {
        while let Ok(event) = self.events.try_recv() {
            let p = &mut self.procs[event.index];
            match (event.line, p.role) {
                (Some(line), Role::Churn(i)) => {
                    eprintln!("porthog-bench: warning: churn client {i} finished early: {line}")
                }
                (Some(_), _) => {}
                (None, role) => {
                    p.exited = true;
                    if !matches!(role, Role::Churn(_)) {
                        bail!(
                            "loadgen {role:?} (pid {}) exited while the load was held",
                            p.child.id()
                        );
                    }
                    eprintln!(
                        "porthog-bench: warning: churn client {role:?} stopped: TIME_WAIT will decay"
                    );
                }
            }
        }
        Ok(())
    }

    fn spawn(&mut self, ns: &Netns, loadgen: &Path, role: Role, args: &[String]) -> Result<()> {
        let mut cmd = ns.command(loadgen);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        // Its own process group, so a terminal Ctrl-C reaches only us and we stop it in order.
        cmd.process_group(0);
        // SAFETY: prctl(2) is async-signal-safe. If porthog-bench is SIGKILLed, the loadgen
        // gets SIGKILL too (PDEATHSIG survives ip's exec: ip is not set-uid).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| format!("starting loadgen {role:?}"))?;
        let stdout = child.stdout.take().context("loadgen stdout")?;
        let index = self.procs.len();
        let sender = self.sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(Event { index, line: Some(line) }).is_err() {
                    return;
                }
            }
            let _ = sender.send(Event { index, line: None });
        });
        let stdin = child.stdin.take();
        self.procs.push(Proc { role, child, stdin, ready: None, exited: false });
        Ok(())
    }

    /// Waits for the ready line of every process whose role matches.
    fn wait_ready(&mut self, which: impl Fn(Role) -> bool, timeout_secs: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        while self.procs.iter().any(|p| which(p.role) && p.ready.is_none()) {
            interrupt::check()?;
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(!left.is_zero(), "loadgen processes not ready after {timeout_secs} s");
            let event = match self.events.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => bail!("lost every loadgen's output"),
            };
            let p = &mut self.procs[event.index];
            let Some(line) = event.line else {
                p.exited = true;
                bail!("loadgen {:?} (pid {}) exited before it was ready", p.role, p.child.id());
            };
            let value: Value = serde_json::from_str(&line)
                .with_context(|| format!("loadgen {:?} printed {line:?}", p.role))?;
            if value["ready"] != Value::Bool(true) {
                bail!("loadgen {:?} failed: {}", p.role, value["error"]);
            }
            p.ready = Some(value);
        }
        Ok(())
    }

    /// Closes every stdin, sends SIGTERM by pid, waits, and SIGKILLs what is left.
    pub fn stop(&mut self) {
        for p in &mut self.procs {
            drop(p.stdin.take());
        }
        let alive = |p: &mut Proc| matches!(p.child.try_wait(), Ok(None));
        for p in &mut self.procs {
            if alive(p) {
                // SAFETY: kill(2) on our own child, not reaped yet (try_wait said running).
                unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.procs.iter_mut().any(alive) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in &mut self.procs {
            if alive(p) {
                eprintln!("porthog-bench: loadgen pid {} ignored SIGTERM; killing", p.child.id());
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
        self.procs.clear();
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

fn server_ports(i: usize) -> (u16, u16) {
    let a = FIRST_PORT + 2 * i as u16;
    (a, a + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_load_is_four_established_to_one_time_wait() {
        let p = Plan::new(250_000, 18_000).unwrap();
        assert_eq!(p.time_wait, 50_000);
        assert_eq!(p.established(), 200_000);
        assert_eq!(p.clients.len(), 6);
        assert!(p.clients.iter().all(|&n| n <= 18_000));
        assert!((p.churn_rate - 833.33).abs() < 0.01);
        assert_eq!(p.churn_clients, 2);
    }

    #[test]
    fn small_loads_need_one_process_each() {
        let p = Plan::new(25_000, 18_000).unwrap();
        assert_eq!(p.clients, vec![10_000]);
        assert_eq!(p.time_wait, 5_000);
        assert_eq!(p.churn_clients, 1);
    }

    #[test]
    fn refuses_more_servers_than_ports() {
        assert!(Plan::new(5_000_000, 18_000).is_err());
    }

    #[test]
    fn server_ports_stay_below_the_ephemeral_range_and_churn_ports() {
        let (_, last) = server_ports(MAX_SERVERS as usize - 1);
        assert!(last < CHURN_PORTS[0]);
    }
}
