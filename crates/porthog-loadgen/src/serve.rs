//! `serve`: listeners plus one epoll loop that accepts and holds connections, closing each when
//! its peer closes (or keeping it in CLOSE_WAIT with --never-close).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;
use rustix::io::Errno;
use rustix::net::SocketFlags;
use serde_json::{Value, json};

use crate::socket::{Hold, hard_nofile, listener};

/// One epoll loop for all listeners and accepted sockets (simpler than a thread per listener
/// plus a way to notice EOF on thousands of accepted sockets).
pub fn serve(addrs: &[SocketAddr], never_close: bool) -> Result<(Value, Hold), String> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let fd = listener(*addr).map_err(|f| format!("listen on {addr}: {}", f.describe()))?;
        rustix::io::ioctl_fionbio(&fd, true).map_err(|e| format!("listen on {addr}: {e}"))?;
        listeners.push(fd);
    }
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
    for (i, fd) in listeners.iter().enumerate() {
        epoll::add(&ep, fd, epoll::EventData::new_u64(LISTENER | i as u64), epoll::EventFlags::IN)
            .map_err(|e| format!("epoll: {e}"))?;
    }
    std::thread::spawn(move || {
        if let Err(e) = serve_loop(&ep, &listeners, never_close) {
            eprintln!("porthog-loadgen: serve stopped: {e}");
            std::process::exit(1);
        }
    });
    let listening: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    Ok((json!({"command": "serve", "listening": listening, "never_close": never_close}), vec![]))
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
