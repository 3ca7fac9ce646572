//! Fuzz target: format detection over any bytes (any encoding, mixed sections), then analysis.
//! Nothing may panic; a report read back from porthog's own JSON must re-serialize.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::import::{ImportOptions, Imported, Input, import};

fuzz_target!(|data: &[u8]| {
    let opts = ImportOptions { lenient: data.first().is_some_and(|b| b & 1 == 1), ..Default::default() };
    match import(&[Input { name: "fuzz", bytes: data }], &opts) {
        Ok(Imported::Snapshot { snapshot, sources, evidence }) => {
            let report = porthog_core::analyze_imported(&snapshot, sources, evidence, &Default::default());
            assert!(report.pools.iter().all(|p| p.time_wait_reusable <= p.time_wait && p.time_wait <= p.used));
        }
        Ok(Imported::Report(r)) => {
            let _ = serde_json::to_string(&r).expect("a report read back serializes");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
