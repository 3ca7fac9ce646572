//! Fuzz target: the BPF iterator record decoders must never panic on any bytes, and decode
//! exactly one socket or owner per whole record (a bound socket: head and record) (or say why not).
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::bpf_record::{self, OWNER_RECORD, SOCKET_RECORD};

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    if let Ok(walk) = bpf_record::decode_sockets(data, &mut out) {
        assert_eq!(walk.sockets, out.len());
        assert!(out.len() + walk.unknown_states as usize <= data.len() / SOCKET_RECORD);
    }
    if let Ok(walk) = bpf_record::decode_owners(data) {
        // Each owner takes one record, each bound socket (before dedup) one plus a socket record.
        assert!(walk.owners.len() * OWNER_RECORD + walk.bound.len() * (OWNER_RECORD + SOCKET_RECORD) <= data.len());
        assert!(walk.bound.iter().all(|s| s.state == porthog_core::State::Bound));
    }
    if data.len() >= 16 {
        let j = u64::from_ne_bytes(data[..8].try_into().unwrap_or_default());
        let n = u64::from_ne_bytes(data[8..16].try_into().unwrap_or_default());
        let _ = bpf_record::hz_from_clocks(j, n);
    }
});
