//! `Get-NetTCPConnection | ConvertTo-Json` (and Get-NetUDPEndpoint), Windows PowerShell 5.1 and
//! PowerShell 7: an array of objects, or one bare object when there was one row. State is a
//! number (MSFT_NetTCPConnection's ValueMap) unless `-EnumsAsStrings`; 5.1 writes dates as
//! `"\/Date(ms)\/"`; CimClass, CimInstanceProperties and the rest are skipped unread. Each element
//! is read on its own so an error names the line the object starts on.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;

use super::powershell::{EXPECTED, address, protocol_of, state_code, state_name, state_number};
use super::{Builder, Cursor, Format, ImportError, Line};
use crate::model::{Protocol, Socket, State};

/// `[` or `{` opening a JSON value (pretty or `-Compress`), unless it is porthog's own report.
pub fn starts(line: Line<'_>, cur: &Cursor<'_>) -> bool {
    let t = line.text.trim();
    let opens = match t {
        "[" => (1..4)
            .filter_map(|n| cur.peek_nth(n))
            .find(|l| !l.text.trim().is_empty())
            .is_some_and(|l| l.text.trim_start().starts_with('{')),
        "{" => cur.peek2().is_some_and(|l| l.text.trim_start().starts_with('"')),
        _ => t.starts_with("[{") || t.starts_with("[ {") || t.starts_with("{\""),
    };
    opens && !head(cur.remaining().0, 300).contains("\"schema_version\"")
}

fn head(s: &str, n: usize) -> &str {
    let mut n = n.min(s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

pub fn parse(cur: &mut Cursor<'_>, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
    let (rest, first_no) = cur.remaining();
    let mut w =
        Walk { name: cur.name(), rest, first: first_no, pos: 0, counted: 0, line: first_no };
    let result = w.value(b, lenient);
    let mut end = w.pos.min(rest.len());
    if end == 0 {
        // Never leave the cursor where it was: the caller would hand the same line back.
        end = rest.find('\n').map_or(rest.len(), |i| i + 1);
    }
    cur.advance(&rest[..end]);
    result
}

/// A walk over one JSON value in the text from the section start.
struct Walk<'a> {
    name: &'a str,
    rest: &'a str,
    /// Line number of the first line of `rest`.
    first: usize,
    pos: usize,
    /// Line number of byte `counted`.
    counted: usize,
    line: usize,
}

impl<'a> Walk<'a> {
    fn line_at(&mut self, byte: usize) -> usize {
        let byte = byte.min(self.rest.len());
        if byte > self.counted {
            self.line +=
                self.rest.as_bytes()[self.counted..byte].iter().filter(|&&c| c == b'\n').count();
            self.counted = byte;
        }
        self.line
    }

    fn skip_ws(&mut self) {
        let t = &self.rest[self.pos..];
        self.pos += t.len() - t.trim_start().len();
    }

    fn value(&mut self, b: &mut Builder, lenient: bool) -> Result<(), ImportError> {
        self.skip_ws();
        if !self.rest[self.pos..].starts_with('[') {
            return self.element(b, lenient).map(|_| ());
        }
        self.pos += 1;
        self.skip_ws();
        if self.rest[self.pos..].starts_with(']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if !self.element(b, lenient)? {
                return Ok(());
            }
            self.skip_ws();
            match self.rest.as_bytes().get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.broken(b, lenient, 1, "`,` or `]` after an object").map(|_| ()),
            }
        }
    }

    /// Reads one object; `Ok(false)` when the JSON is broken and the rest was skipped (lenient).
    fn element(&mut self, b: &mut Builder, lenient: bool) -> Result<bool, ImportError> {
        self.skip_ws();
        let text = &self.rest[self.pos..];
        let mut objects = serde_json::Deserializer::from_str(text).into_iter::<Object<'_>>();
        let (object, len) = match objects.next() {
            Some(Ok(o)) => (Some(o), objects.byte_offset()),
            // Valid JSON but not an object (or a duplicate key): skip it whole, as a bad row.
            Some(Err(e)) if e.classify() == Category::Data => {
                let mut any = serde_json::Deserializer::from_str(text).into_iter::<IgnoredAny>();
                match any.next() {
                    Some(Ok(_)) => (None, any.byte_offset()),
                    Some(Err(e)) => return self.broken(b, lenient, e.line(), &e.to_string()),
                    None => return self.broken(b, lenient, 1, "an object"),
                }
            }
            Some(Err(e)) => return self.broken(b, lenient, e.line(), &e.to_string()),
            None => return self.broken(b, lenient, 1, "an object"),
        };
        let no = self.line_at(self.pos);
        let source = &text[..len];
        self.pos += len;
        match object.as_ref().and_then(Object::row) {
            Some((sock, pid)) => b.socket(Format::PowershellJson, sock, pid),
            None => {
                let compact: String = source.split_whitespace().collect::<Vec<_>>().join(" ");
                let line = Line { no, text: &compact };
                let e = ImportError::malformed(self.name, line, Format::PowershellJson, EXPECTED);
                b.malformed(lenient, e)?;
            }
        }
        Ok(true)
    }

    /// JSON that does not parse: an error at its line, or in lenient mode one skipped row and
    /// the text after that line left to the other parsers.
    fn broken(
        &mut self,
        b: &mut Builder,
        lenient: bool,
        rel_line: usize,
        what: &str,
    ) -> Result<bool, ImportError> {
        let no = self.line_at(self.pos) + rel_line.saturating_sub(1);
        let text = self.rest.lines().nth(no - self.first).unwrap_or("");
        let e = ImportError::malformed(
            self.name,
            Line { no, text },
            Format::PowershellJson,
            &format!("valid JSON ({what})"),
        );
        b.malformed(lenient, e)?;
        // Resume after the line that broke: the lines after it may be other sections.
        for _ in 0..rel_line.max(1) {
            match self.rest[self.pos..].find('\n') {
                Some(i) => self.pos += i + 1,
                None => self.pos = self.rest.len(),
            }
        }
        Ok(false)
    }
}

/// The properties porthog reads; everything else is skipped without being built.
#[derive(Deserialize)]
struct Object<'a> {
    #[serde(rename = "LocalAddress", borrow, default)]
    local_address: Loose<'a>,
    #[serde(rename = "LocalPort", borrow, default)]
    local_port: Loose<'a>,
    #[serde(rename = "RemoteAddress", borrow, default)]
    remote_address: Loose<'a>,
    #[serde(rename = "RemotePort", borrow, default)]
    remote_port: Loose<'a>,
    #[serde(rename = "State", borrow, default)]
    state: Loose<'a>,
    #[serde(rename = "OwningProcess", borrow, default)]
    owning_process: Loose<'a>,
}

impl Object<'_> {
    fn row(&self) -> Option<(Socket, u32)> {
        let has = |v: &Loose<'_>| !matches!(v, Loose::Missing);
        let protocol =
            protocol_of(has(&self.state), has(&self.remote_address) || has(&self.remote_port));
        let mut cut = 0;
        let local = (address(self.local_address.text()?, &mut cut)?, self.local_port.number()?);
        let unspecified = (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let (state, remote) = match protocol {
            Protocol::Tcp => {
                let state = match &self.state {
                    Loose::Num(n) => state_code(*n)?,
                    Loose::Str(s) => state_name(s).or_else(|| state_number(s))?,
                    _ => return None,
                };
                let ip = match &self.remote_address {
                    Loose::Missing | Loose::Null => unspecified.0,
                    v => address(v.text()?, &mut cut)?,
                };
                let port = match &self.remote_port {
                    Loose::Missing | Loose::Null => 0,
                    v => v.number()?,
                };
                (state, (ip, port))
            }
            Protocol::Udp => (State::Close, unspecified),
        };
        let pid = match &self.owning_process {
            Loose::Missing | Loose::Null => 0,
            v => v.number()?,
        };
        Some((Socket::new(protocol, state, local, remote), pid))
    }
}

/// A property value as PowerShell may have written it: a number, or (Import-Csv | ConvertTo-Json)
/// the same number as a string.
#[derive(Debug, Default)]
enum Loose<'a> {
    #[default]
    Missing,
    Null,
    Num(u64),
    Str(Cow<'a, str>),
    Other,
}

impl Loose<'_> {
    fn text(&self) -> Option<&str> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }

    fn number<T: TryFrom<u64> + std::str::FromStr>(&self) -> Option<T> {
        match self {
            Loose::Num(n) => T::try_from(*n).ok(),
            Loose::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Loose<'a>, D::Error> {
        d.deserialize_any(LooseVisitor(PhantomData))
    }
}

struct LooseVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LooseVisitor<'a> {
    type Value = Loose<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Loose<'a>, E> {
        Ok(Loose::Other)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Loose<'a>, E> {
        Ok(Loose::Num(n))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Loose<'a>, E> {
        Ok(u64::try_from(n).map_or(Loose::Other, Loose::Num))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Loose<'a>, E> {
        let whole = n.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&n);
        Ok(if whole { Loose::Num(n as u64) } else { Loose::Other })
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Loose<'a>, E> {
        Ok(Loose::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Loose<'a>, E> {
        Ok(Loose::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Loose<'a>, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Loose<'a>, E> {
        Ok(Loose::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'a>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'a>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Other)
    }
}

#[cfg(test)]
mod tests {
    use crate::import::{ImportOptions, Imported, Input, import};
    use crate::model::{Protocol, Snapshot, State};

    fn snapshot(text: &str) -> Snapshot {
        crate::import::testing::snapshot_of("t.json", text)
    }

    fn import_err(text: &str) -> String {
        import(&[Input { name: "t.json", bytes: text.as_bytes() }], &ImportOptions::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn ps51_numbers_dates_and_cim_noise() {
        let s = snapshot(
            "[\r\n    {\r\n        \"State\":  11,\r\n        \"AppliedSetting\":  null,\r\n        \"OwningProcess\":  0,\r\n\
             \x20       \"CreationTime\":  \"\\/Date(1705309200000)\\/\",\r\n        \"LocalAddress\":  \"10.0.0.7\",\r\n\
             \x20       \"LocalPort\":  50001,\r\n        \"RemoteAddress\":  \"10.0.0.5\",\r\n        \"RemotePort\":  443,\r\n\
             \x20       \"CimClass\":  {\"CimClassName\":  \"MSFT_NetTCPConnection\"},\r\n\
             \x20       \"CimInstanceProperties\":  [\"Caption\", \"LocalPort = 50001\"]\r\n    },\r\n\
             \x20   {\"State\": 100, \"OwningProcess\": 5432, \"LocalAddress\": \"0.0.0.0\", \"LocalPort\": 50002, \"RemoteAddress\": \"0.0.0.0\", \"RemotePort\": 0}\r\n]\r\n",
        );
        let got: Vec<(State, u16, Option<u32>)> =
            s.sockets.iter().map(|x| (x.state, x.local_port, x.pid.map(|p| p.get()))).collect();
        assert_eq!(got, [(State::TimeWait, 50001, None), (State::Bound, 50002, Some(5432))]);
    }

    #[test]
    fn one_bare_udp_object_and_enums_as_strings() {
        let s = snapshot(
            "{\n  \"LocalAddress\": \"::\",\n  \"LocalPort\": 5353,\n  \"OwningProcess\": 2212\n}\n",
        );
        assert_eq!((s.sockets[0].protocol, s.sockets[0].state), (Protocol::Udp, State::Close));
        let s = snapshot(
            "[{\"State\":\"Established\",\"LocalAddress\":\"::1\",\"LocalPort\":\"50000\",\"RemoteAddress\":\"::1\",\"RemotePort\":5985,\"OwningProcess\":7}]",
        );
        assert_eq!((s.sockets[0].state, s.sockets[0].remote_port), (State::Established, 5985));
    }

    #[test]
    fn errors_name_the_line_of_the_object() {
        let e = import_err(
            "[\n  {\"LocalAddress\": \"::\", \"LocalPort\": 1},\n  {\"Name\": \"x\"}\n]\n",
        );
        assert!(e.starts_with("t.json:3: powershell-json row: expected LocalAddress"), "{e}");
        let e = import_err(
            "[\n  {\"LocalAddress\": \"::\", \"LocalPort\": 1},\n  {\"LocalAddress\": \"::\",\n",
        );
        assert!(e.starts_with("t.json:4: powershell-json row: expected valid JSON"), "{e}");
        let e = import_err("[\n  {\"LocalAddress\": \"::\", \"LocalPort\": 1},\n  7\n]\n");
        assert!(e.starts_with("t.json:3: powershell-json row"), "{e}");
    }

    #[test]
    fn lenient_resumes_after_the_broken_line() {
        let text = "[\n  {\"LocalAddress\": \"::\", \"LocalPort\": 1},\n  {\"LocalAddress\": \"::\" \"LocalPort\": 2},\n\
                    \x20 TCP    10.0.0.7:50124   10.0.0.5:443   TIME_WAIT   0\n";
        let lenient = ImportOptions { lenient: true, ..Default::default() };
        match import(&[Input { name: "t.json", bytes: text.as_bytes() }], &lenient).unwrap() {
            Imported::Snapshot { snapshot, .. } => {
                let mut ports: Vec<u16> = snapshot.sockets.iter().map(|s| s.local_port).collect();
                ports.sort_unstable();
                assert_eq!(ports, [1, 50124]);
                assert!(snapshot.gaps.iter().any(|g| g.message.contains("t.json:3")));
            }
            Imported::Report(_) => unreachable!(),
        }
    }

    #[test]
    fn porthog_reports_are_not_taken() {
        let text = "netstat said:\n{\n  \"schema_version\": 1\n}\n";
        assert!(import_err(text).contains("no known format"), "{}", import_err(text));
    }
}
