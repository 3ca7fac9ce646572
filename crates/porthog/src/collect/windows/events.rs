//! Tcpip events 4227, 4231 and 4266 of the System log: `EvtQuery` with the XPath filter of
//! `porthog_core::event_log` (the last `--since` for a check; for each sample of `watch` and
//! `record`, logged since the previous poll or newer than the last record seen), `EvtNext` in batches, `EvtRender(EvtRenderEventXml)`,
//! the XML read by the core into the same evidence the offline importers give.
//! A failure (no wevtapi, access denied, wine's error 6) is a gap, never an error.

use std::time::{Duration, Instant};

use porthog_core::event_log::{self, EventCursor, Since};
use porthog_core::import::{Evidence, event_xml};
use porthog_core::{Gap, GapKind};

use super::{from_wide_nul, to_wide_nul};
use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_NO_MORE_ITEMS, GetLastError,
};
use windows_sys::Win32::System::EventLog::{
    EVT_HANDLE, EvtClose, EvtNext, EvtQuery, EvtQueryChannelPath, EvtQueryReverseDirection,
    EvtRender, EvtRenderEventXml,
};

/// Enough to date and count a storm; the newest come first.
const MAX_EVENTS: usize = 10_000;
const BATCH: usize = 64;

/// The evidence of the last `since`, or a gap saying why there is none.
pub fn evidence(since: Duration) -> (Vec<Evidence>, Vec<Gap>) {
    match rendered(&event_log::query(Since::Last(since))) {
        Ok(docs) => {
            let (evidence, unreadable) = event_xml::evidence(&docs);
            (evidence, unreadable_gap(unreadable).into_iter().collect())
        }
        Err(e) => (Vec::new(), vec![unread_gap(&e)]),
    }
}

/// The events logged since `cursor`'s last poll that read the log (the last `first` on its
/// first), or a gap (and the next poll reaches back over this one's time).
pub fn poll(cursor: &mut EventCursor, first: Duration) -> (Vec<Evidence>, Vec<Gap>) {
    let now = Instant::now();
    match rendered(&cursor.query(now, first)) {
        Ok(docs) => {
            let polled = cursor.take(now, &docs);
            (polled.evidence, unreadable_gap(polled.unreadable).into_iter().collect())
        }
        Err(e) => (Vec::new(), vec![unread_gap(&e)]),
    }
}

fn unreadable_gap(unreadable: u64) -> Option<Gap> {
    (unreadable > 0).then(|| Gap {
        kind: GapKind::Source,
        count: Some(unreadable),
        message: format!("{unreadable} Tcpip events of the System log could not be read"),
        advice: None,
    })
}

fn unread_gap(e: &str) -> Gap {
    Gap {
        kind: GapKind::Source,
        count: None,
        message: format!(
            "the System event log could not be read ({e}): past port exhaustion (Tcpip events 4227, 4231, 4266) is not shown"
        ),
        advice: Some(
            "run elevated, or check with `wevtutil qe System /q:\"*[System[Provider[@Name='Tcpip']]]\" /f:text` and `porthog analyze`"
                .to_owned(),
        ),
    }
}

struct Handle(EVT_HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from EvtQuery/EvtNext and is closed once.
        unsafe { EvtClose(self.0) };
    }
}

fn last_error(call: &str) -> String {
    // SAFETY: plain call.
    format!("{call} failed with error {}", unsafe { GetLastError() })
}

/// The XML of each event `query` matches, newest first.
fn rendered(query: &str) -> Result<Vec<String>, String> {
    let (path, query) = (to_wide_nul("System"), to_wide_nul(query));
    // SAFETY: both strings are NUL-terminated and outlive the call; 0 is the local session.
    let results = unsafe {
        EvtQuery(0, path.as_ptr(), query.as_ptr(), EvtQueryChannelPath | EvtQueryReverseDirection)
    };
    if results == 0 {
        return Err(last_error("EvtQuery"));
    }
    let results = Handle(results);
    let mut docs = Vec::new();
    let mut buf: Vec<u16> = vec![0; 4096];
    while docs.len() < MAX_EVENTS {
        let mut batch = [0isize; BATCH];
        let mut returned = 0u32;
        // SAFETY: `batch` holds BATCH handles; `returned` says how many were written.
        let ok =
            unsafe { EvtNext(results.0, BATCH as u32, batch.as_mut_ptr(), 1000, 0, &mut returned) };
        if ok == 0 {
            // SAFETY: plain call.
            let e = unsafe { GetLastError() };
            if e == ERROR_NO_MORE_ITEMS {
                break;
            }
            return Err(format!("EvtNext failed with error {e}"));
        }
        let events: Vec<Handle> = batch[..returned as usize].iter().map(|&h| Handle(h)).collect();
        for event in &events {
            docs.push(render(event.0, &mut buf)?);
        }
    }
    Ok(docs)
}

/// One event as XML, growing `buf` when the call asks for more.
fn render(event: EVT_HANDLE, buf: &mut Vec<u16>) -> Result<String, String> {
    for _ in 0..2 {
        let (mut used, mut props) = (0u32, 0u32);
        let bytes = u32::try_from(buf.len() * 2).unwrap_or(u32::MAX);
        // SAFETY: `buf` holds `bytes` writable bytes; `used` is set to the bytes written (or
        // needed).
        let ok = unsafe {
            EvtRender(
                0,
                event,
                EvtRenderEventXml,
                bytes,
                buf.as_mut_ptr().cast(),
                &mut used,
                &mut props,
            )
        };
        if ok != 0 {
            let chars = (used as usize / 2).min(buf.len());
            return Ok(from_wide_nul(&buf[..chars]));
        }
        // SAFETY: plain call.
        if unsafe { GetLastError() } != ERROR_INSUFFICIENT_BUFFER {
            return Err(last_error("EvtRender"));
        }
        buf.resize((used as usize).div_ceil(2) + 1, 0);
    }
    Err(last_error("EvtRender"))
}
