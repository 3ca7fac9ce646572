//! Where each field of a tracepoint's raw record lies, parsed from tracefs
//! `events/<group>/<name>/format` (`field:int ret; offset:16; size:8; signed:1;`), and the decoder
//! that turns a raw record into the values porthog needs. Offsets are never hard-coded: they move
//! between kernel versions and configurations. Pure: text and bytes in, values out.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::lifecycle::Call;
use thiserror::Error;

/// One field of a tracepoint record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
}

/// A parsed `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    pub id: u16,
    pub fields: HashMap<String, Field>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("line {line}: {what}")]
    Malformed { line: usize, what: String },
    #[error("no `{0}:` line")]
    Missing(&'static str),
    #[error("tracepoint {event} has no field `{field}` (is this kernel older than porthog needs?)")]
    NoField { event: String, field: String },
    #[error("field `{field}` of {event} is {size} bytes, {expected} expected")]
    BadSize { event: String, field: String, size: usize, expected: String },
}

/// Parses a tracefs `format` file.
pub fn parse(text: &str) -> Result<Format, FormatError> {
    let (mut name, mut id, mut fields) = (None, None, HashMap::new());
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if let Some(v) = line.strip_prefix("name:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("ID:") {
            let v = v.trim();
            id = Some(v.parse::<u16>().map_err(|_| FormatError::Malformed {
                line: line_no,
                what: format!("ID {v:?} is not a number below 65536"),
            })?);
        } else if line.starts_with("field:") {
            let (field_name, field) = parse_field(line).ok_or_else(|| FormatError::Malformed {
                line: line_no,
                what: format!(
                    "expected `field:TYPE NAME; offset:N; size:N; signed:N;`, got {line:?}"
                ),
            })?;
            fields.insert(field_name, field);
        }
    }
    Ok(Format {
        name: name.ok_or(FormatError::Missing("name"))?,
        id: id.ok_or(FormatError::Missing("ID"))?,
        fields,
    })
}

/// `field:const void * skaddr; offset:8; size:8; signed:0;` (tab-separated)
fn parse_field(line: &str) -> Option<(String, Field)> {
    let mut parts = line.split(';').map(str::trim);
    let decl = parts.next()?.strip_prefix("field:")?;
    // The name is the declaration's last word, without an array suffix: `__u8 saddr[4]`.
    let last = decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()?;
    let name = last.split('[').next()?.trim();
    if name.is_empty() {
        return None;
    }
    let (mut offset, mut size, mut signed) = (None, None, None);
    for part in parts.filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once(':')?;
        let value: usize = value.trim().parse().ok()?;
        match key.trim() {
            "offset" => offset = Some(value),
            "size" => size = Some(value),
            "signed" => signed = Some(value != 0),
            _ => {}
        }
    }
    Some((name.to_owned(), Field { offset: offset?, size: size?, signed: signed.unwrap_or(false) }))
}

impl Format {
    /// The field `name`, which must be one of `sizes` bytes long.
    pub fn field(&self, name: &str, sizes: &[usize]) -> Result<Field, FormatError> {
        let f = self.fields.get(name).copied().ok_or_else(|| FormatError::NoField {
            event: self.name.clone(),
            field: name.to_owned(),
        })?;
        if !sizes.contains(&f.size) {
            return Err(FormatError::BadSize {
                event: self.name.clone(),
                field: name.to_owned(),
                size: f.size,
                expected: format!("{sizes:?}"),
            });
        }
        Ok(f)
    }
}

impl Field {
    fn bytes<'a>(&self, raw: &'a [u8]) -> Option<&'a [u8]> {
        raw.get(self.offset..self.offset.checked_add(self.size)?)
    }

    /// The field as an unsigned integer (native byte order, as the kernel wrote it).
    pub fn uint(&self, raw: &[u8]) -> Option<u64> {
        let b = self.bytes(raw)?;
        Some(match *b {
            [a] => u64::from(a),
            [a, b] => u64::from(u16::from_ne_bytes([a, b])),
            [a, b, c, d] => u64::from(u32::from_ne_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] => u64::from_ne_bytes([a, b, c, d, e, f, g, h]),
            _ => return None,
        })
    }

    /// The field as a signed integer, sign-extended from its size when it is signed.
    pub fn int(&self, raw: &[u8]) -> Option<i64> {
        let v = self.uint(raw)?;
        if !self.signed || self.size >= 8 {
            return Some(v as i64);
        }
        let shift = 64 - 8 * self.size as u32;
        Some(((v << shift) as i64) >> shift)
    }

    /// A fixed-size byte array field (addresses, in network byte order).
    pub fn array<const N: usize>(&self, raw: &[u8]) -> Option<[u8; N]> {
        self.bytes(raw)?.try_into().ok()
    }
}

/// Fields of `sock:inet_sock_set_state`.
#[derive(Debug, Clone)]
struct SetState {
    id: u16,
    skaddr: Field,
    oldstate: Field,
    newstate: Field,
    sport: Field,
    dport: Field,
    family: Field,
    protocol: Field,
    saddr: Field,
    daddr: Field,
    saddr_v6: Field,
    daddr_v6: Field,
}

/// Fields of `tcp:tcp_destroy_sock`.
#[derive(Debug, Clone)]
struct Destroy {
    id: u16,
    skaddr: Field,
    cookie: Field,
}

/// A raw record, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A syscall's exit with its return value.
    Exit {
        call: Call,
        ret: i64,
    },
    /// A TCP state change; addresses and ports as the socket had them then.
    SetState {
        skaddr: u64,
        old: u8,
        new: u8,
        local: SocketAddr,
        remote: SocketAddr,
    },
    Destroy {
        skaddr: u64,
        cookie: u64,
    },
}

const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const IPPROTO_TCP: u64 = 6;

/// Turns raw records of the four tracepoints into `Decoded`, telling them apart by
/// `common_type`, which is the tracepoint id.
#[derive(Debug, Clone)]
pub struct Decoder {
    common_type: Field,
    exit_connect: (u16, Field),
    exit_bind: (u16, Field),
    set_state: SetState,
    destroy: Destroy,
}

impl Decoder {
    pub fn new(
        exit_connect: &Format,
        exit_bind: &Format,
        set_state: &Format,
        destroy: &Format,
    ) -> Result<Decoder, FormatError> {
        let s = set_state;
        Ok(Decoder {
            common_type: s.field("common_type", &[2])?,
            exit_connect: (exit_connect.id, exit_connect.field("ret", &[4, 8])?),
            exit_bind: (exit_bind.id, exit_bind.field("ret", &[4, 8])?),
            set_state: SetState {
                id: s.id,
                skaddr: s.field("skaddr", &[8, 4])?,
                oldstate: s.field("oldstate", &[4, 1, 2])?,
                newstate: s.field("newstate", &[4, 1, 2])?,
                sport: s.field("sport", &[2])?,
                dport: s.field("dport", &[2])?,
                family: s.field("family", &[2])?,
                protocol: s.field("protocol", &[2, 1])?,
                saddr: s.field("saddr", &[4])?,
                daddr: s.field("daddr", &[4])?,
                saddr_v6: s.field("saddr_v6", &[16])?,
                daddr_v6: s.field("daddr_v6", &[16])?,
            },
            destroy: Destroy {
                id: destroy.id,
                skaddr: destroy.field("skaddr", &[8, 4])?,
                cookie: destroy.field("sock_cookie", &[8])?,
            },
        })
    }

    /// Decodes one raw record; None for a record of another tracepoint, a truncated one, or a
    /// state change porthog does not follow (not TCP, or an unknown family).
    pub fn decode(&self, raw: &[u8]) -> Option<Decoded> {
        let ty = self.common_type.uint(raw)? as u16;
        if ty == self.exit_connect.0 {
            return Some(Decoded::Exit { call: Call::Connect, ret: self.exit_connect.1.int(raw)? });
        }
        if ty == self.exit_bind.0 {
            return Some(Decoded::Exit { call: Call::Bind, ret: self.exit_bind.1.int(raw)? });
        }
        if ty == self.destroy.id {
            let d = &self.destroy;
            return Some(Decoded::Destroy {
                skaddr: d.skaddr.uint(raw)?,
                cookie: d.cookie.uint(raw)?,
            });
        }
        if ty != self.set_state.id {
            return None;
        }
        let s = &self.set_state;
        if s.protocol.uint(raw)? != IPPROTO_TCP {
            return None;
        }
        let (local, remote): (IpAddr, IpAddr) = match s.family.uint(raw)? {
            AF_INET => (
                Ipv4Addr::from(s.saddr.array::<4>(raw)?).into(),
                Ipv4Addr::from(s.daddr.array::<4>(raw)?).into(),
            ),
            AF_INET6 => (
                Ipv6Addr::from(s.saddr_v6.array::<16>(raw)?).to_canonical(),
                Ipv6Addr::from(s.daddr_v6.array::<16>(raw)?).to_canonical(),
            ),
            _ => return None,
        };
        // The tracepoint stores the ports already converted to host order (ntohs).
        let sport = s.sport.uint(raw)? as u16;
        let dport = s.dport.uint(raw)? as u16;
        Some(Decoded::SetState {
            skaddr: s.skaddr.uint(raw)?,
            old: s.oldstate.uint(raw)? as u8,
            new: s.newstate.uint(raw)? as u8,
            local: SocketAddr::new(local, sport),
            remote: SocketAddr::new(remote, dport),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `events/sock/inet_sock_set_state/format` as Linux 6.18 writes it (print fmt shortened).
    pub const SET_STATE: &str =
        include_str!("../tests/fixtures/tracefs/inet_sock_set_state.format");

    pub const EXIT_CONNECT: &str =
        include_str!("../tests/fixtures/tracefs/sys_exit_connect.format");

    pub const DESTROY: &str = include_str!("../tests/fixtures/tracefs/tcp_destroy_sock.format");

    pub fn decoder() -> Decoder {
        let bind =
            EXIT_CONNECT.replace("sys_exit_connect", "sys_exit_bind").replace("2229", "2237");
        Decoder::new(
            &parse(EXIT_CONNECT).unwrap(),
            &parse(&bind).unwrap(),
            &parse(SET_STATE).unwrap(),
            &parse(DESTROY).unwrap(),
        )
        .unwrap()
    }

    /// A raw `inet_sock_set_state` record as the kernel lays it out (offsets of SET_STATE).
    pub fn set_state_raw(
        skaddr: u64,
        old: i32,
        new: i32,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
    ) -> Vec<u8> {
        let mut r = vec![0u8; 72];
        r[0..2].copy_from_slice(&2287u16.to_ne_bytes());
        r[4..8].copy_from_slice(&1234i32.to_ne_bytes());
        r[8..16].copy_from_slice(&skaddr.to_ne_bytes());
        r[16..20].copy_from_slice(&old.to_ne_bytes());
        r[20..24].copy_from_slice(&new.to_ne_bytes());
        r[24..26].copy_from_slice(&src.1.to_ne_bytes());
        r[26..28].copy_from_slice(&dst.1.to_ne_bytes());
        r[28..30].copy_from_slice(&2u16.to_ne_bytes());
        r[30..32].copy_from_slice(&6u16.to_ne_bytes());
        r[32..36].copy_from_slice(&src.0);
        r[36..40].copy_from_slice(&dst.0);
        r
    }

    pub fn exit_raw(id: u16, ret: i64) -> Vec<u8> {
        let mut r = vec![0u8; 24];
        r[0..2].copy_from_slice(&id.to_ne_bytes());
        r[16..24].copy_from_slice(&ret.to_ne_bytes());
        r
    }

    #[test]
    fn parses_a_real_format_file() {
        let f = parse(SET_STATE).unwrap();
        assert_eq!((f.name.as_str(), f.id), ("inet_sock_set_state", 2287));
        assert_eq!(f.fields.len(), 15);
        assert_eq!(f.fields["skaddr"], Field { offset: 8, size: 8, signed: false });
        assert_eq!(f.fields["oldstate"], Field { offset: 16, size: 4, signed: true });
        assert_eq!(f.fields["saddr_v6"], Field { offset: 40, size: 16, signed: false });
        let e = parse(EXIT_CONNECT).unwrap();
        assert_eq!(e.fields["ret"], Field { offset: 16, size: 8, signed: true });
        assert_eq!(parse(DESTROY).unwrap().fields["sock_cookie"].offset, 64);
    }

    #[test]
    fn format_errors_say_what_is_wrong() {
        assert_eq!(parse("ID: 5\n").unwrap_err(), FormatError::Missing("name"));
        let e = parse("name: x\nID: 70000\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse("name: x\nID: 1\n\tfield:int ret;\toffset:sixteen;\tsize:8;\n").unwrap_err();
        assert!(e.to_string().starts_with("line 3: expected `field:"), "{e}");
        let f = parse("name: x\nID: 1\n").unwrap();
        assert!(f.field("ret", &[8]).unwrap_err().to_string().contains("has no field `ret`"));
        let f = parse(EXIT_CONNECT).unwrap();
        assert!(matches!(f.field("ret", &[4]), Err(FormatError::BadSize { size: 8, .. })));
    }

    #[test]
    fn signed_fields_are_sign_extended() {
        let f = Field { offset: 0, size: 4, signed: true };
        assert_eq!(f.int(&(-99i32).to_ne_bytes()), Some(-99));
        let u = Field { offset: 0, size: 4, signed: false };
        assert_eq!(u.int(&(-99i32).to_ne_bytes()), Some(u32::MAX as i64 - 98));
        assert_eq!(f.int(&[1, 2]), None, "truncated records decode to nothing");
    }

    #[test]
    fn decodes_each_tracepoint() {
        let d = decoder();
        let raw =
            set_state_raw(0xffff_8880_1234_5678, 7, 2, ([127, 0, 0, 1], 0), ([127, 0, 0, 1], 7070));
        assert_eq!(
            d.decode(&raw),
            Some(Decoded::SetState {
                skaddr: 0xffff_8880_1234_5678,
                old: 7,
                new: 2,
                local: "127.0.0.1:0".parse().unwrap(),
                remote: "127.0.0.1:7070".parse().unwrap(),
            })
        );
        assert_eq!(
            d.decode(&exit_raw(2229, -99)),
            Some(Decoded::Exit { call: Call::Connect, ret: -99 })
        );
        assert_eq!(
            d.decode(&exit_raw(2237, -98)),
            Some(Decoded::Exit { call: Call::Bind, ret: -98 })
        );
        let mut destroy = vec![0u8; 72];
        destroy[0..2].copy_from_slice(&2278u16.to_ne_bytes());
        destroy[8..16].copy_from_slice(&7u64.to_ne_bytes());
        destroy[64..72].copy_from_slice(&99u64.to_ne_bytes());
        assert_eq!(d.decode(&destroy), Some(Decoded::Destroy { skaddr: 7, cookie: 99 }));
        // Not TCP (SCTP is 132): ignored. Unknown tracepoint id: ignored.
        let mut sctp = raw.clone();
        sctp[30..32].copy_from_slice(&132u16.to_ne_bytes());
        assert_eq!(d.decode(&sctp), None);
        assert_eq!(d.decode(&exit_raw(1, -99)), None);
        assert_eq!(d.decode(&raw[..20]), None);
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let d = decoder();
        let mut raw = set_state_raw(1, 5, 7, ([0; 4], 40000), ([0; 4], 443));
        raw[28..30].copy_from_slice(&10u16.to_ne_bytes());
        raw[40..56].copy_from_slice(&"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets());
        raw[56..72].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        let Some(Decoded::SetState { local, remote, .. }) = d.decode(&raw) else { panic!() };
        assert_eq!(
            local,
            "10.0.0.1:40000".parse().unwrap(),
            "mapped v4 is canonical, as sock_diag's"
        );
        assert_eq!(remote, "[2001:db8::1]:443".parse().unwrap());
    }
}
