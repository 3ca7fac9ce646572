//! Fuzz target: the NAT rule parsers (`nft -j list ruleset`, `iptables-save`) and the conntrack
//! statistics parser (counters and entry count) must never panic, and every port range they return must be ordered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::{nat_rules, snat};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut rules = nat_rules::parse_iptables_save(&text);
    if let Ok(nft) = nat_rules::parse_nft_json(&text) {
        rules.extend(nft);
    }
    for r in &rules {
        if let Some(p) = r.ports {
            assert!(p.start <= p.end, "{r:?}");
        }
    }
    let _ = snat::parse_proc_stat(&text);
});
