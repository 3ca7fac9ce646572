//! Fuzz target: the lsof importer, forced, must never panic on any bytes, and what it reads
//! must analyze without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::import::{Format, ImportOptions, Imported, Input, import};

fuzz_target!(|data: &[u8]| {
    let opts = ImportOptions { format: Some(Format::Lsof), lenient: data.first().is_some_and(|b| b & 1 == 1), ..Default::default() };
    if let Ok(Imported::Snapshot { snapshot, sources, evidence }) = import(&[Input { name: "fuzz", bytes: data }], &opts) {
        let _ = porthog_core::analyze_imported(&snapshot, sources, evidence, &Default::default());
    }
});
