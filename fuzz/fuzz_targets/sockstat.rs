//! Fuzz target: the sockstat parser must never panic, and a namespace it calls empty must have
//! had every counter it reads given as 0.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (v4, v6) = text.split_once('\u{0}').unwrap_or((&text, ""));
    if let Ok(s) = porthog_core::sockstat::Sockstat::parse(v4, v6)
        && s.no_sockets()
    {
        assert_eq!(s.sockets_used, Some(0));
        assert!(text.contains("used 0") && text.contains("tw 0"), "{text:?}");
    }
});
