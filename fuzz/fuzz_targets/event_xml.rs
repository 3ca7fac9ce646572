//! Fuzz target: the rendered-event reader (the live Windows event query, issue 10) must never
//! panic on any text, and a document it reads back keeps its id; the sampler's cursor
//! (`event_log::EventCursor`) counts a document once, however often a poll returns it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porthog_core::event_log::EventCursor;
use porthog_core::import::event_xml;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(e) = event_xml::parse(&text) {
        assert!(text.contains(&e.id.to_string()) || text.contains("EventID"));
    }
    let (evidence, unreadable) = event_xml::evidence(&[text.as_ref(), text.as_ref()]);
    assert!(unreadable == 0 || unreadable == 2);
    assert!(evidence.iter().all(|e| e.count == 2));
    let now = std::time::Instant::now();
    let mut cursor = EventCursor::new();
    let first = cursor.take(now, &[text.as_ref(), text.as_ref()]);
    let again = cursor.take(now, &[text.as_ref()]);
    if event_xml::parse(&text).is_some_and(|e| e.record_id.is_some()) {
        assert!(first.evidence.iter().all(|e| e.count == 1));
        assert!(again.evidence.is_empty());
    }
});
