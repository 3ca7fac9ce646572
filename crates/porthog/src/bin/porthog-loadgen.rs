//! porthog-loadgen: runs out of ephemeral ports on purpose, so tests and benchmarks can check what
//! porthog says about a machine in that state. Each subcommand sets up its sockets, prints ONE JSON
//! line to stdout and then holds its sockets until stdin reaches EOF (or SIGTERM), so a parent that
//! keeps the stdin pipe open knows exactly when the state exists and cleans up even if it dies.
//! It only talks to the addresses it is given: run it inside a network namespace on loopback.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("porthog-loadgen: only Linux is supported");
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::io::{self, Read, Write};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::time::{Duration, Instant};

    use clap::{ArgGroup, Parser, Subcommand};
    use rustix::event::epoll;
    use rustix::io::Errno;
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    use rustix::process::{Resource, Rlimit};
    use serde_json::{Value, json};

    /// Backlog of every listener: large enough that a burst of connects never waits on accept().
    const BACKLOG: i32 = 4096;
    /// File descriptors kept back for stdio, epoll and the like when checking --count.
    const FD_SLACK: u64 = 16;
    /// How long `connect --close` waits for the server's FIN (`serve` closes on EOF by default).
    const PEER_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

    /// Reproduces ephemeral-port exhaustion on purpose (for porthog's tests and benchmarks).
    ///
    /// Every subcommand sets up its sockets, prints ONE JSON line to stdout, e.g.
    /// {"ready":true,"pid":1234,"command":"connect","opened":100,"failed":1,"errno":"EADDRNOTAVAIL"},
    /// and then HOLDS its sockets until stdin reaches EOF or it gets SIGTERM. A parent keeps the
    /// stdin pipe open for as long as it wants the state to exist; if the parent dies the pipe
    /// closes and loadgen exits. On a setup error it prints {"ready":false,"error":"..."} and
    /// exits 1. It raises its soft open-file limit to the hard limit first.
    ///
    /// Run it inside a network namespace and aim it only at loopback, e.g.
    ///   ip netns exec NS porthog-loadgen serve --listen 127.0.0.1:7070
    ///   ip netns exec NS porthog-loadgen connect --to 127.0.0.1:7070 --until-fail
    #[derive(Debug, Parser)]
    #[command(name = "porthog-loadgen", version, verbatim_doc_comment)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, Subcommand)]
    enum Command {
        /// Listen and accept forever, holding accepted sockets open.
        ///
        /// An accepted socket is closed when its peer closes, so clients that close first end in
        /// TIME_WAIT rather than FIN_WAIT2 (unless --never-close).
        Serve {
            /// Address to listen on (repeatable).
            #[arg(long = "listen", value_name = "ADDR:PORT", required = true)]
            listen: Vec<SocketAddr>,
            /// Never close accepted sockets, so they sit in CLOSE_WAIT once the peer closes (a leak).
            #[arg(long)]
            never_close: bool,
        },
        /// Open TCP connections round-robin over the targets and hold them (or close them).
        #[command(group(ArgGroup::new("amount").required(true).args(["count", "until_fail"])))]
        Connect {
            /// Target to connect to (repeatable; used round-robin).
            #[arg(long = "to", value_name = "ADDR:PORT", required = true)]
            to: Vec<SocketAddr>,
            /// Make this many connection attempts; refused ones (EADDRNOTAVAIL) are counted.
            #[arg(long, value_name = "N")]
            count: Option<u64>,
            /// Keep connecting until every target fails with EADDRNOTAVAIL (errno 99), or
            /// EADDRINUSE from bind() with --bind-first: the pool is exhausted.
            #[arg(long)]
            until_fail: bool,
            /// Close each connection right after connecting: this side closes first and waits for
            /// the server's FIN, so every connection ends in TIME_WAIT here (churn).
            #[arg(long)]
            close: bool,
            /// bind() to port 0 before connect() (the bind-before-connect pattern: each socket
            /// takes a port for every destination).
            #[arg(long)]
            bind_first: bool,
            /// At most this many connection attempts per second.
            #[arg(long, value_name = "R")]
            rate: Option<f64>,
        },
        /// Bind TCP sockets to port 0 and never connect them (BOUND sockets holding ports).
        #[command(group(ArgGroup::new("amount").required(true).args(["count", "until_fail"])))]
        Bind {
            /// Local IP to bind to.
            #[arg(long, value_name = "IP")]
            addr: std::net::IpAddr,
            /// Make this many bind attempts; refused ones (EADDRINUSE) are counted.
            #[arg(long, value_name = "N")]
            count: Option<u64>,
            /// Keep binding until bind() fails with EADDRINUSE.
            #[arg(long)]
            until_fail: bool,
        },
        /// One listener at a fixed address and port, accepting nothing.
        ///
        /// Put it inside the ephemeral range to reproduce squatting: every connect() skips it.
        ListenAt {
            /// Address and port to listen on.
            #[arg(long, value_name = "IP:PORT")]
            addr: SocketAddr,
        },
    }

    /// Why a setup step failed: which call and which errno.
    #[derive(Debug)]
    struct Failure {
        call: &'static str,
        errno: Errno,
    }

    impl Failure {
        /// The kernel said the port pool is exhausted (not some other problem).
        fn is_exhaustion(&self) -> bool {
            matches!(
                (self.call, self.errno),
                ("connect", Errno::ADDRNOTAVAIL) | ("bind", Errno::ADDRINUSE)
            )
        }

        fn describe(&self) -> String {
            let mut s = format!("{}() failed: {}", self.call, errno_name(self.errno));
            if matches!(self.errno, Errno::MFILE | Errno::NFILE) {
                let hard = hard_nofile();
                s.push_str(&format!(
                    " (out of file descriptors, not ports; hard RLIMIT_NOFILE is {hard}: split the load over several processes)"
                ));
            }
            s
        }
    }

    pub fn main() {
        let cli = Cli::parse();
        let result = raise_nofile().and_then(|()| run(cli.command));
        match result {
            Ok((report, hold)) => {
                let mut line = json!({"ready": true, "pid": std::process::id()});
                if let (Value::Object(line), Value::Object(report)) = (&mut line, report) {
                    line.extend(report);
                }
                print_line(&line);
                hold_until_stdin_eof();
                // The held sockets close when the process exits.
                drop(hold);
            }
            Err(error) => {
                eprintln!("porthog-loadgen: {error}");
                print_line(&json!({"ready": false, "pid": std::process::id(), "error": error}));
                std::process::exit(1);
            }
        }
    }

    /// Whatever must stay alive while the state is held.
    type Hold = Vec<OwnedFd>;

    fn run(command: Command) -> Result<(Value, Hold), String> {
        match command {
            Command::Serve { listen, never_close } => serve(&listen, never_close),
            Command::Connect { to, count, until_fail: _, close, bind_first, rate } => {
                connect(&to, count, close, bind_first, rate)
            }
            Command::Bind { addr, count, until_fail: _ } => bind(addr, count),
            Command::ListenAt { addr } => {
                let fd =
                    listener(addr).map_err(|f| format!("listen on {addr}: {}", f.describe()))?;
                Ok((json!({"command": "listen-at", "listening": [addr.to_string()]}), vec![fd]))
            }
        }
    }

    fn print_line(value: &Value) {
        let mut out = io::stdout().lock();
        // A parent that stopped reading is not our problem: it will close stdin too.
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    }

    fn hold_until_stdin_eof() {
        let mut buf = [0u8; 512];
        let mut stdin = io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn raise_nofile() -> Result<(), String> {
        let lim = rustix::process::getrlimit(Resource::Nofile);
        if lim.current != lim.maximum {
            rustix::process::setrlimit(
                Resource::Nofile,
                Rlimit { current: lim.maximum, maximum: lim.maximum },
            )
            .map_err(|e| format!("cannot raise RLIMIT_NOFILE to the hard limit: {e}"))?;
        }
        Ok(())
    }

    fn hard_nofile() -> u64 {
        rustix::process::getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX)
    }

    /// Fails clearly when `count` sockets cannot fit under the open-file limit.
    fn check_count(count: Option<u64>, what: &str) -> Result<(), String> {
        let hard = hard_nofile();
        match count {
            Some(n) if n.saturating_add(FD_SLACK) > hard => Err(format!(
                "--count {n} needs {n} {what} but the hard RLIMIT_NOFILE is {hard} (minus {FD_SLACK} kept back): split the load over several processes"
            )),
            _ => Ok(()),
        }
    }

    fn errno_name(e: Errno) -> String {
        let name = match e {
            Errno::ADDRNOTAVAIL => "EADDRNOTAVAIL",
            Errno::ADDRINUSE => "EADDRINUSE",
            Errno::AGAIN => "EAGAIN",
            Errno::MFILE => "EMFILE",
            Errno::NFILE => "ENFILE",
            Errno::CONNREFUSED => "ECONNREFUSED",
            Errno::TIMEDOUT => "ETIMEDOUT",
            Errno::NOBUFS => "ENOBUFS",
            Errno::ACCESS => "EACCES",
            Errno::PERM => "EPERM",
            _ => return format!("errno {}", e.raw_os_error()),
        };
        name.to_string()
    }

    fn family(addr: &SocketAddr) -> AddressFamily {
        if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 }
    }

    fn tcp_socket(addr: &SocketAddr) -> Result<OwnedFd, Failure> {
        rustix::net::socket_with(family(addr), SocketType::STREAM, SocketFlags::CLOEXEC, None)
            .map_err(|errno| Failure { call: "socket", errno })
    }

    fn listener(addr: SocketAddr) -> Result<OwnedFd, Failure> {
        let fd = tcp_socket(&addr)?;
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)
            .map_err(|errno| Failure { call: "setsockopt", errno })?;
        rustix::net::bind(&fd, &addr).map_err(|errno| Failure { call: "bind", errno })?;
        rustix::net::listen(&fd, BACKLOG).map_err(|errno| Failure { call: "listen", errno })?;
        Ok(fd)
    }

    // ---- serve -------------------------------------------------------------------------------

    /// One epoll loop for all listeners and accepted sockets (simpler than a thread per listener
    /// plus a way to notice EOF on thousands of accepted sockets).
    fn serve(addrs: &[SocketAddr], never_close: bool) -> Result<(Value, Hold), String> {
        let mut listeners = Vec::new();
        for addr in addrs {
            let fd = listener(*addr).map_err(|f| format!("listen on {addr}: {}", f.describe()))?;
            rustix::io::ioctl_fionbio(&fd, true).map_err(|e| format!("listen on {addr}: {e}"))?;
            listeners.push(fd);
        }
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        for (i, fd) in listeners.iter().enumerate() {
            epoll::add(
                &ep,
                fd,
                epoll::EventData::new_u64(LISTENER | i as u64),
                epoll::EventFlags::IN,
            )
            .map_err(|e| format!("epoll: {e}"))?;
        }
        std::thread::spawn(move || {
            if let Err(e) = serve_loop(&ep, &listeners, never_close) {
                eprintln!("porthog-loadgen: serve stopped: {e}");
                std::process::exit(1);
            }
        });
        let listening: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        Ok((
            json!({"command": "serve", "listening": listening, "never_close": never_close}),
            vec![],
        ))
    }

    /// Marks listener entries in the epoll data (accepted sockets use their fd number).
    const LISTENER: u64 = 1 << 63;

    fn serve_loop(ep: &OwnedFd, listeners: &[OwnedFd], never_close: bool) -> io::Result<()> {
        let mut conns: HashMap<i32, OwnedFd> = HashMap::new();
        // With --never-close: sockets whose peer closed, kept open so they stay in CLOSE_WAIT.
        let mut close_wait: Vec<OwnedFd> = Vec::new();
        let mut events = Vec::with_capacity(256);
        let mut buf = [0u8; 4096];
        let mut warned_fds = false;
        loop {
            events.clear();
            match epoll::wait(ep, rustix::buffer::spare_capacity(&mut events), None) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            for event in events.iter() {
                let data = event.data.u64();
                if data & LISTENER != 0 {
                    let listener = &listeners[(data & !LISTENER) as usize];
                    loop {
                        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
                        match rustix::net::accept_with(listener, flags) {
                            Ok(conn) => {
                                let raw = conn.as_raw_fd();
                                let data = epoll::EventData::new_u64(raw as u64);
                                epoll::add(ep, &conn, data, epoll::EventFlags::IN)?;
                                conns.insert(raw, conn);
                            }
                            Err(Errno::AGAIN) => break,
                            Err(Errno::INTR | Errno::CONNABORTED) => {}
                            Err(Errno::MFILE | Errno::NFILE) => {
                                if !warned_fds {
                                    eprintln!(
                                        "porthog-loadgen: serve is out of file descriptors (hard RLIMIT_NOFILE {}); connections wait in the backlog",
                                        hard_nofile()
                                    );
                                    warned_fds = true;
                                }
                                // Level-triggered: back off instead of spinning on the listener.
                                std::thread::sleep(Duration::from_millis(50));
                                break;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    continue;
                }
                let raw = data as i32;
                let Some(conn) = conns.get(&raw) else { continue };
                match rustix::io::read(conn, &mut buf) {
                    Ok(0) => {
                        let conn = conns.remove(&raw).expect("present: looked up above");
                        epoll::delete(ep, &conn)?;
                        if never_close {
                            close_wait.push(conn);
                        }
                    }
                    Ok(_) | Err(Errno::AGAIN | Errno::INTR) => {}
                    // Reset or similar: the connection is gone either way.
                    Err(_) => {
                        let conn = conns.remove(&raw).expect("present: looked up above");
                        epoll::delete(ep, &conn)?;
                    }
                }
            }
        }
    }

    // ---- connect -----------------------------------------------------------------------------

    struct Target {
        addr: SocketAddr,
        opened: u64,
        failed: u64,
        exhausted: bool,
    }

    fn connect(
        to: &[SocketAddr],
        count: Option<u64>,
        close: bool,
        bind_first: bool,
        rate: Option<f64>,
    ) -> Result<(Value, Hold), String> {
        if !close {
            check_count(count, "connections (one file descriptor each)")?;
        }
        if let Some(r) = rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(format!("--rate {r}: must be a positive number of connections per second"));
        }
        let mut targets: Vec<Target> = to
            .iter()
            .map(|&addr| Target { addr, opened: 0, failed: 0, exhausted: false })
            .collect();
        let mut held: Hold = Vec::new();
        let mut last_failure: Option<Failure> = None;
        let started = Instant::now();
        let mut attempts: u64 = 0;
        let mut next = 0usize;
        loop {
            if count.is_some_and(|n| attempts >= n) {
                break;
            }
            // --until-fail: a target leaves the rotation once the kernel refuses it.
            let Some(i) = (0..targets.len())
                .map(|k| (next + k) % targets.len())
                .find(|&i| count.is_some() || !targets[i].exhausted)
            else {
                break;
            };
            next = i + 1;
            if let Some(r) = rate {
                let due = started + Duration::from_secs_f64(attempts as f64 / r);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            attempts += 1;
            let target = &mut targets[i];
            match open_one(target.addr, bind_first) {
                Ok(fd) => {
                    target.opened += 1;
                    if close {
                        close_first(fd).map_err(|e| format!("close {}: {e}", target.addr))?;
                    } else {
                        held.push(fd);
                    }
                }
                Err(f) if f.is_exhaustion() => {
                    target.failed += 1;
                    target.exhausted = true;
                    last_failure = Some(f);
                }
                Err(f) => {
                    let addr = target.addr;
                    let opened: u64 = targets.iter().map(|t| t.opened).sum();
                    return Err(format!(
                        "connection {attempts} to {addr}: {} ({opened} opened before it)",
                        f.describe()
                    ));
                }
            }
        }
        let per_target: Vec<Value> = targets
            .iter()
            .map(|t| json!({"to": t.addr.to_string(), "opened": t.opened, "failed": t.failed}))
            .collect();
        Ok((
            json!({
                "command": "connect",
                "opened": targets.iter().map(|t| t.opened).sum::<u64>(),
                "failed": targets.iter().map(|t| t.failed).sum::<u64>(),
                "errno": last_failure.as_ref().map(|f| errno_name(f.errno)),
                "failed_call": last_failure.as_ref().map(|f| f.call),
                "held": held.len(),
                "closed": close,
                "elapsed_ms": started.elapsed().as_millis() as u64,
                "targets": per_target,
            }),
            held,
        ))
    }

    fn open_one(to: SocketAddr, bind_first: bool) -> Result<OwnedFd, Failure> {
        let fd = tcp_socket(&to)?;
        if bind_first {
            let any = if to.is_ipv4() {
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
            } else {
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
            };
            rustix::net::bind(&fd, &any).map_err(|errno| Failure { call: "bind", errno })?;
        }
        loop {
            match rustix::net::connect(&fd, &to) {
                Ok(()) => return Ok(fd),
                // Interrupted blocking connect continues in the background; wait for it once.
                Err(Errno::INTR) => continue,
                Err(Errno::ALREADY | Errno::ISCONN) => return Ok(fd),
                Err(errno) => return Err(Failure { call: "connect", errno }),
            }
        }
    }

    /// Closes our side first, then waits for the server's FIN: receiving it in FIN_WAIT2 moves
    /// the socket to TIME_WAIT (tcp_fin() in net/ipv4/tcp_input.c), so when this returns the
    /// TIME_WAIT entry exists and the ready line tells the truth.
    fn close_first(fd: OwnedFd) -> io::Result<()> {
        let mut stream = TcpStream::from(fd);
        stream.shutdown(std::net::Shutdown::Write)?;
        stream.set_read_timeout(Some(PEER_CLOSE_TIMEOUT))?;
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    return Err(io::Error::new(
                        e.kind(),
                        "the server did not close within 10 s of our FIN (is it `serve --never-close`?): this side would sit in FIN_WAIT2, not TIME_WAIT",
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    // ---- bind --------------------------------------------------------------------------------

    fn bind(ip: std::net::IpAddr, count: Option<u64>) -> Result<(Value, Hold), String> {
        check_count(count, "bound sockets (one file descriptor each)")?;
        let addr = SocketAddr::new(ip, 0);
        let mut held: Hold = Vec::new();
        let mut failed = 0u64;
        let mut last_failure: Option<Failure> = None;
        let mut attempts = 0u64;
        while count.is_none_or(|n| attempts < n) {
            attempts += 1;
            let fd = tcp_socket(&addr).map_err(|f| f.describe())?;
            match rustix::net::bind(&fd, &addr) {
                Ok(()) => held.push(fd),
                Err(errno) => {
                    let f = Failure { call: "bind", errno };
                    if !f.is_exhaustion() {
                        return Err(format!("bind {addr}: {}", f.describe()));
                    }
                    failed += 1;
                    last_failure = Some(f);
                    if count.is_none() {
                        break;
                    }
                }
            }
        }
        Ok((
            json!({
                "command": "bind",
                "opened": held.len(),
                "failed": failed,
                "errno": last_failure.as_ref().map(|f| errno_name(f.errno)),
                "failed_call": last_failure.as_ref().map(|f| f.call),
                "held": held.len(),
            }),
            held,
        ))
    }
}
