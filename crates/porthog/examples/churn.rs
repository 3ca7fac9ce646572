//! A connection-churn loop for measuring `porthog trace`'s overhead: connect(), then close()
//! at once (this side closes first, so each connection ends in TIME_WAIT here), round-robin over
//! the destinations, for a fixed time. Unlike `porthog-loadgen connect --close`, it does not wait
//! for the server's FIN, so one process makes more connections per second. Prints one JSON line:
//! {"opened":N,"failed":N,"elapsed_ms":N,"per_second":F}.
//!
//! Run it inside a network namespace against `porthog-loadgen serve` on loopback only:
//!   ip netns exec NS target/release/examples/churn --seconds 10 127.0.0.1:7070 127.0.0.1:7071

#[cfg(target_os = "linux")]
fn main() {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use rustix::net::{AddressFamily, SocketFlags, SocketType};

    let mut args = std::env::args().skip(1);
    let mut seconds = 10.0;
    let mut targets: Vec<SocketAddr> = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage());
        } else {
            targets.push(arg.parse().unwrap_or_else(|_| usage()));
        }
    }
    if targets.is_empty() || targets.iter().any(|t| !t.ip().is_loopback()) {
        usage();
    }
    let deadline = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let (mut opened, mut failed) = (0u64, 0u64);
    let mut i = 0usize;
    // Check the clock every 256 connections: reading it costs more than the check.
    while opened % 256 != 0 || started.elapsed() < deadline {
        let to = &targets[i % targets.len()];
        i += 1;
        let family = if to.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
        let Ok(fd) =
            rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        else {
            failed += 1;
            continue;
        };
        match rustix::net::connect(&fd, to) {
            Ok(()) => opened += 1,
            Err(_) => failed += 1,
        }
        drop(fd);
        if failed > 1000 && failed > opened {
            eprintln!(
                "churn: most connects fail; is `porthog-loadgen serve` listening on {targets:?}?"
            );
            std::process::exit(1);
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{{\"opened\":{opened},\"failed\":{failed},\"elapsed_ms\":{},\"per_second\":{:.0}}}",
        elapsed.as_millis(),
        opened as f64 / elapsed.as_secs_f64()
    );
}

#[cfg(target_os = "linux")]
fn usage() -> ! {
    eprintln!("usage: churn [--seconds S] LOOPBACK_ADDR:PORT...");
    std::process::exit(2);
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("churn: Linux only");
}
