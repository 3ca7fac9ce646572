//! One Windows event as `EvtRender(EvtRenderEventXml)` (or `wevtutil qe /f:xml`) writes it:
//! `<Event xmlns=...><System><Provider Name='Tcpip'/><EventID>4231</EventID>...<TimeCreated
//! SystemTime='2024-01-15T10:23:45.1230000Z'/><EventRecordID>8812</EventRecordID>...</System>
//! ...</Event>`. Only the four fields porthog keeps are read, by element name; the rest of the document is skipped unread. Pure:
//! the live collector (issue 10) hands the rendered text here.

use super::events;
use crate::report::Evidence;

/// What porthog reads of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventXml {
    pub provider: Option<String>,
    pub id: u32,
    /// `TimeCreated/@SystemTime`, as written.
    pub time: Option<String>,
    /// `EventRecordID`: the log's own sequence number of the event, which a poll that asks only
    /// for newer events resumes from (`event_log::EventCursor`).
    pub record_id: Option<u64>,
}

/// The start tag `<name` (followed by a space, `/` or `>`), and the text from there to its `>`.
fn start_tag<'a>(xml: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let mut from = 0;
    while let Some(at) = xml.get(from..)?.find('<').map(|i| from + i) {
        let rest = &xml[at + 1..];
        if let Some(after) = rest.strip_prefix(name)
            && after.starts_with([' ', '\t', '\r', '\n', '/', '>'])
        {
            let end = after.find('>')?;
            return Some((&after[..end], &after[end + 1..]));
        }
        from = at + 1;
    }
    None
}

/// The value of `attr='...'` or `attr="..."` in a start tag's text.
fn attribute<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = tag.get(from..)?.find(attr).map(|i| from + i) {
        let before_ok = i == 0 || tag[..i].ends_with([' ', '\t', '\r', '\n']);
        let rest = tag[i + attr.len()..].trim_start();
        if before_ok && let Some(rest) = rest.strip_prefix('=') {
            let rest = rest.trim_start();
            let quote = rest.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
            let value = &rest[1..];
            return value.find(quote).map(|end| &value[..end]);
        }
        from = i + attr.len();
    }
    None
}

/// Reads one `<Event>` document; `None` when it has no numeric `<EventID>`.
pub fn parse(xml: &str) -> Option<EventXml> {
    let (tag, after) = start_tag(xml, "EventID")?;
    if tag.ends_with('/') {
        return None;
    }
    let id = element_text(after)?.parse().ok()?;
    let provider = start_tag(xml, "Provider")
        .and_then(|(tag, _)| attribute(tag, "Name"))
        .map(|n| unescape(n).into_owned());
    let time = start_tag(xml, "TimeCreated")
        .and_then(|(tag, _)| attribute(tag, "SystemTime"))
        .map(str::to_owned);
    let record_id = start_tag(xml, "EventRecordID")
        .filter(|(tag, _)| !tag.ends_with('/'))
        .and_then(|(_, after)| element_text(after)?.parse().ok());
    Some(EventXml { provider, id, time, record_id })
}

/// The text of an element, from just after its start tag to the next tag, trimmed.
fn element_text(after: &str) -> Option<&str> {
    after.split('<').next().map(str::trim)
}

/// The five predefined entities (a provider name never needs more).
fn unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return s.into();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
        .into()
}

/// Rendered events in, the report's evidence out (the same one the offline importers give),
/// and how many documents could not be read.
pub fn evidence<S: AsRef<str>>(documents: &[S]) -> (Vec<Evidence>, u64) {
    let mut kept = Vec::new();
    let mut unreadable = 0;
    for doc in documents {
        match parse(doc.as_ref()) {
            Some(e) if events::kept(e.provider.as_deref(), e.id) => {
                kept.push((e.id, e.time.as_deref().map(events::normalise_time)));
            }
            Some(_) => {}
            None => unreadable += 1,
        }
    }
    (events::evidence(&kept), unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>\
        <Provider Name='Tcpip' Guid='{2F07E2EE-15DB-40F1-90EF-9D7BA282188A}'/><EventID Qualifiers='0'>4231</EventID>\
        <Version>0</Version><Level>3</Level><TimeCreated SystemTime='2024-01-15T10:23:45.1230000Z'/>\
        <EventRecordID>8812</EventRecordID><Channel>System</Channel></System><EventData></EventData></Event>";

    #[test]
    fn a_rendered_event() {
        assert_eq!(
            parse(RENDERED),
            Some(EventXml {
                provider: Some("Tcpip".into()),
                id: 4231,
                time: Some("2024-01-15T10:23:45.1230000Z".into()),
                record_id: Some(8812),
            })
        );
    }

    #[test]
    fn double_quotes_whitespace_and_other_elements_with_the_same_prefix() {
        let xml = "<Event>\r\n <System>\r\n  <ProviderX Name=\"No\"/>\r\n  <Provider\r\n Name = \"Tcpip\" />\r\n  \
                   <EventIDs>1</EventIDs><EventID>\r\n4266 </EventID>\r\n </System></Event>";
        let e = parse(xml).unwrap();
        assert_eq!((e.provider.as_deref(), e.id, e.time), (Some("Tcpip"), 4266, None));
        assert_eq!(e.record_id, None);
        let odd = parse("<EventID>1</EventID><EventRecordID/><EventRecordID>x</EventRecordID>");
        assert_eq!(odd.map(|e| e.record_id), Some(None));
    }

    #[test]
    fn unreadable_documents_are_counted() {
        for bad in ["", "<Event/>", "<EventID/>", "<EventID>x</EventID>"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        // An element cut off after its number still gives the number (EvtRender output is
        // whole; a truncated one is then counted by its provider, not dropped silently).
        assert_eq!(parse("<EventID>42").map(|e| e.id), Some(42));
        let other = RENDERED.replace("'Tcpip'", "'Service Control Manager'");
        let (ev, bad) = evidence(&[RENDERED, &other, "garbage", RENDERED]);
        assert_eq!(bad, 1);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].id, ev[0].count), (4231, 2));
        assert_eq!(ev[0].first.as_deref(), Some("2024-01-15T10:23:45"));
    }

    #[test]
    fn escaped_provider_names() {
        let e = parse("<Provider Name='A&amp;B'/><EventID>1</EventID>").unwrap();
        assert_eq!(e.provider.as_deref(), Some("A&B"));
    }
}
