//! Fuzz target: the sysctl parsers must never panic, and what they accept must be well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::sysctl;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(range) = sysctl::parse_port_range(&text) {
        assert!(range.start <= range.end);
    }
    if let Ok(set) = sysctl::parse_port_list(&text) {
        assert!(set.ranges().windows(2).all(|w| u32::from(w[0].end) + 1 < u32::from(w[1].start)));
        let _ = set.to_string();
    }
    let _ = sysctl::parse_tw_reuse(&text);
    let _ = sysctl::parse_timestamps(&text);
    let _ = sysctl::parse_millis("net.ipv4.tcp_tw_reuse_delay", &text);
});
