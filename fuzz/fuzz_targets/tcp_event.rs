//! Fuzz target: the TCP event record decoder must never panic on any bytes, and the table must
//! take any sequence of decoded events without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::tcp_event::{self, EventTable, TCP_EVENT_RECORD};

fuzz_target!(|data: &[u8]| {
    let _ = tcp_event::decode(data);
    let mut table = EventTable::default();
    for record in data.chunks(TCP_EVENT_RECORD) {
        match tcp_event::decode(record) {
            Ok(event) => table.apply(&event),
            Err(_) => table.bad_record(),
        }
    }
    assert!(table.sockets().count() <= data.len() / TCP_EVENT_RECORD);
});
