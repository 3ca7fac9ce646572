//! Fuzz target: the /proc/net/{tcp,udp}[6] parser must never panic on any bytes, and an error
//! must name a line that exists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::{Protocol, proc_net};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        match proc_net::parse(&text, protocol) {
            Ok(table) => assert!(table.sockets.len() + table.unknown_states <= text.lines().count()),
            Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count(), "{e}"),
        }
    }
});
