//! Fuzz target: the in-place decoding of ctnetlink answers (a conntrack entry, a CPU's
//! statistics) never panics on any bytes, and a decoded entry is TCP or UDP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::ctnetlink;
use porthog_core::Protocol;

fuzz_target!(|data: &[u8]| {
    if let Some(e) = ctnetlink::entry(data) {
        assert!(matches!(e.protocol, Protocol::Tcp | Protocol::Udp), "{e:?}");
    }
    let _ = ctnetlink::cpu_stats(data);
});
