//! Fuzz target: pasting noise (paste.rs). The first byte picks a decoration put before every
//! line of the rest (a quote marker, a chat timestamp, a line number, code fences around it);
//! detection and every parser then read the result. Nothing may panic, and no error message may
//! carry a control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::import::{ImportOptions, Imported, Input, import};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let decorated: String = match pick % 5 {
        0 => text.lines().map(|l| format!("> {l}\n")).collect(),
        1 => text.lines().enumerate().map(|(i, l)| format!("[10:{:02}] {l}\n", i % 60)).collect(),
        2 => text.lines().enumerate().map(|(i, l)| format!("{:>6}\t{l}\n", i + 1)).collect(),
        3 => format!("```text\n{text}\n```\n...\n"),
        _ => text.into_owned(),
    };
    let opts = ImportOptions { lenient: pick & 0x80 != 0, ..Default::default() };
    match import(&[Input { name: "fuzz", bytes: decorated.as_bytes() }], &opts) {
        Ok(Imported::Snapshot { snapshot, sources, evidence }) => {
            let _ = porthog_core::analyze_imported(&snapshot, sources, evidence, &Default::default());
        }
        Ok(Imported::Report(_)) => {}
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{msg:?}");
        }
    }
});
