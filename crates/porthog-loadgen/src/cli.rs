//! The command line: plain clap data, one variant per subcommand.

use std::net::{IpAddr, SocketAddr};

use clap::{ArgGroup, Parser, Subcommand};

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
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
        /// Bind each socket to this network device first (SO_BINDTODEVICE), e.g. `lo`: its
        /// TIME_WAIT is then loopback for tcp_tw_reuse=2 whatever its addresses.
        #[arg(long, value_name = "DEV")]
        device: Option<String>,
    },
    /// Bind TCP sockets to port 0 and never connect them (BOUND sockets holding ports).
    #[command(group(ArgGroup::new("amount").required(true).args(["count", "until_fail"])))]
    Bind {
        /// Local IP to bind to.
        #[arg(long, value_name = "IP")]
        addr: IpAddr,
        /// Make this many bind attempts; refused ones (EADDRINUSE) are counted.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Keep binding until bind() fails with EADDRINUSE.
        #[arg(long)]
        until_fail: bool,
    },
    /// Connected UDP sockets: each autobinds a port at connect() and holds it.
    #[command(group(ArgGroup::new("amount").required(true).args(["count", "until_fail"])))]
    Udp {
        /// Destination to connect() to (no datagram is sent).
        #[arg(long, value_name = "ADDR:PORT")]
        to: SocketAddr,
        /// Make this many sockets; refused ones (EAGAIN) are counted.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Keep going until connect() fails with EAGAIN: the UDP pool is exhausted.
        #[arg(long)]
        until_fail: bool,
        /// Set IPV6_V6ONLY before connect() (IPv6 destinations only).
        #[arg(long)]
        v6only: bool,
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
