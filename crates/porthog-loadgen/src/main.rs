//! porthog-loadgen: runs out of ephemeral ports on purpose, so tests and benchmarks can check what
//! porthog says about a machine in that state. Each subcommand sets up its sockets, prints ONE JSON
//! line to stdout and then holds its sockets until stdin reaches EOF (or SIGTERM), so a parent that
//! keeps the stdin pipe open knows exactly when the state exists and cleans up even if it dies.
//! It only talks to the addresses it is given: run it inside a network namespace on loopback.

#[cfg(target_os = "linux")]
mod bind;
#[cfg(target_os = "linux")]
mod cli;
#[cfg(target_os = "linux")]
mod connect;
#[cfg(target_os = "linux")]
#[cfg(target_os = "linux")]
mod ready;
#[cfg(target_os = "linux")]
mod serve;
#[cfg(target_os = "linux")]
mod socket;
#[cfg(target_os = "linux")]
mod udp;

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("porthog-loadgen: only Linux is supported");
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
fn main() {
    ready::main()
}
