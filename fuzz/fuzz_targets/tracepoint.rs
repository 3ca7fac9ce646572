//! Fuzz target: the tracefs `format` parser (porthog trace reads it from the kernel) must never
//! panic, and the fields it yields must read any raw record bytes without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::tracepoint::parse;

fuzz_target!(|data: &[u8]| {
    // The text, then raw record bytes after the first NUL.
    let (text, raw) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(format) = parse(&String::from_utf8_lossy(text)) else { return };
    for name in format.fields.keys() {
        if let Ok(field) = format.field(name, &[1, 2, 4, 8, 16]) {
            let _ = field.uint(raw);
            let _ = field.int(raw);
            let _ = field.array::<4>(raw);
            let _ = field.array::<16>(raw);
        }
    }
});
