//! Fuzz target: decoding any bytes, with each encoding forced or guessed, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::import::decode::{Encoding, decode};

fuzz_target!(|data: &[u8]| {
    let _ = decode(data, None);
    let forced = Encoding::ALL[usize::from(data.first().copied().unwrap_or(0)) % Encoding::ALL.len()];
    let _ = decode(data, Some(forced));
});
