//! Fuzz target: the /proc/PID/cgroup parser must never panic, and whatever it finds must be a
//! piece of its input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let placement = porthog_core::cgroup::parse(&text);
    for found in [&placement.container, &placement.unit].into_iter().flatten() {
        assert!(text.contains(found.as_str()), "{found:?} is not in the input");
    }
    let _ = placement.label();
});
