//! Shrinks the kernel's BTF (/sys/kernel/btf/vmlinux, ~130,000 types) to what porthog's BPF
//! programs are relocated against, before the loader parses it: relocating against the whole
//! of it cost ~0.4 s, most of it matching names of types the programs never use (issue 7).
//! Type ids are positions, so every type stays in place: a named struct or union the programs
//! do not declare, and every function but the iterator targets, loses its name and members.
//! Anonymous structs and unions keep theirs (they sit inside the kept ones). Pure: bytes in,
//! bytes out.

const MAGIC: u16 = 0xeb9f;
const HEADER: usize = 24;

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_DATASEC: u32 = 15;
const KIND_ENUM64: u32 = 19;

/// BTF that is not what the kernel writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    #[error("BTF is too short or its header is malformed")]
    Header,
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind { id: usize, kind: u32 },
    #[error("BTF type {id} runs past the type section")]
    Truncated { id: usize },
}

/// A copy of `btf` (native endian, as the running kernel exposes it) in which only the named
/// structs and unions of `structs` and the functions of `funcs` keep their names and members.
pub fn keep_only(btf: &[u8], structs: &[&str], funcs: &[&str]) -> Result<Vec<u8>, BtfError> {
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let magic = btf.get(..2).map(|m| u16::from_ne_bytes([m[0], m[1]]));
    if magic != Some(MAGIC) {
        return Err(BtfError::Header);
    }
    let field = |at| u32_at(btf, at).map(|v| v as usize).ok_or(BtfError::Header);
    let hdr_len = field(4)?;
    let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
    if hdr_len < HEADER {
        return Err(BtfError::Header);
    }
    let section = |off: usize, len: usize| {
        let start = hdr_len.checked_add(off).ok_or(BtfError::Header)?;
        btf.get(start..start.checked_add(len).ok_or(BtfError::Header)?).ok_or(BtfError::Header)
    };
    let types = section(type_off, type_len)?;
    let strings = section(str_off, str_len)?;
    let name = |off: u32| -> &[u8] {
        let rest = strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    };

    let mut out_types = Vec::with_capacity(types.len() / 2);
    let mut at = 0;
    let mut id = 1;
    while at < types.len() {
        let (Some(name_off), Some(info)) = (u32_at(types, at), u32_at(types, at + 4)) else {
            return Err(BtfError::Truncated { id });
        };
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let extra = match kind {
            1 | 14 | 17 => 4,                  // INT, VAR, DECL_TAG
            2 | 7..=12 | 16 | 18 => 0,         // PTR, FWD, modifiers, FUNC, FLOAT, TYPE_TAG
            3 => 12,                           // ARRAY
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
            KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
            _ => return Err(BtfError::UnknownKind { id, kind }),
        };
        let end = at + 12 + extra;
        let Some(record) = types.get(at..end) else { return Err(BtfError::Truncated { id }) };
        let wanted = |names: &[&str]| names.iter().any(|n| n.as_bytes() == name(name_off));
        let emptied = match kind {
            KIND_STRUCT | KIND_UNION => name_off != 0 && !wanted(structs),
            KIND_FUNC => !wanted(funcs),
            // Nothing in the programs relocates against these; emptied, they parse in no time.
            KIND_ENUM | KIND_ENUM64 | KIND_FUNC_PROTO | KIND_DATASEC => true,
            _ => false,
        };
        if emptied {
            // No name and no members: never a relocation candidate, same id as before.
            out_types.extend(0u32.to_ne_bytes());
            out_types.extend((info & !0xffff).to_ne_bytes());
            out_types.extend(&record[8..12]);
        } else {
            out_types.extend(record);
        }
        at = end;
        id += 1;
    }

    let mut out = Vec::with_capacity(HEADER + out_types.len() + strings.len());
    out.extend(&btf[..8]); // magic, version, flags, hdr_len
    out.truncate(4);
    out.extend((HEADER as u32).to_ne_bytes());
    for v in [0, out_types.len(), out_types.len(), strings.len()] {
        out.extend((v as u32).to_ne_bytes());
    }
    out.extend(out_types);
    out.extend(strings);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name_off: u32, kind: u32, vlen: u32, size: u32) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend(name_off.to_ne_bytes());
        r.extend(((kind << 24) | vlen).to_ne_bytes());
        r.extend(size.to_ne_bytes());
        r
    }

    /// A struct `keep` with one member, a struct `drop` with one, a func `f`, an int.
    fn sample() -> Vec<u8> {
        let strings = b"\0keep\0drop\0f\0m\0".to_vec();
        let mut types = record(0, 1, 0, 4); // int (id 1)
        types.extend(0x0100_0020u32.to_ne_bytes()); // its encoding
        types.extend(record(1, KIND_STRUCT, 1, 4)); // keep (id 2)
        types.extend([13u32, 1, 0].iter().flat_map(|v| v.to_ne_bytes()));
        types.extend(record(6, KIND_STRUCT, 1, 4)); // drop (id 3)
        types.extend([13u32, 1, 0].iter().flat_map(|v| v.to_ne_bytes()));
        types.extend(record(11, KIND_FUNC, 0, 0)); // f (id 4)
        let mut b = Vec::new();
        b.extend(MAGIC.to_ne_bytes());
        b.extend([1, 0]);
        for v in [24, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            b.extend(v.to_ne_bytes());
        }
        b.extend(types);
        b.extend(strings);
        b
    }

    #[test]
    fn keeps_the_named_and_empties_the_rest_in_place() {
        let out = keep_only(&sample(), &["keep"], &[]).unwrap();
        let types = &out[24..24 + 16 + 24 + 12 + 12];
        assert_eq!(&types[16..40], &sample()[24 + 16..24 + 40], "keep is untouched");
        assert_eq!(&types[40..52], &record(0, KIND_STRUCT, 0, 4)[..], "drop: no name, no members");
        assert_eq!(&types[52..64], &record(0, KIND_FUNC, 0, 0)[..], "f: no name");
        assert!(out.ends_with(b"\0keep\0drop\0f\0m\0"));
        let kept_f = keep_only(&sample(), &["keep"], &["f"]).unwrap();
        assert_eq!(&kept_f[24 + 52..24 + 64], &record(11, KIND_FUNC, 0, 0)[..]);
    }

    #[test]
    fn malformed_btf_is_an_error() {
        assert_eq!(keep_only(b"", &[], &[]), Err(BtfError::Header));
        let mut b = sample();
        b.truncate(30);
        assert_eq!(keep_only(&b, &[], &[]), Err(BtfError::Header));
        let mut b = sample();
        b[24 + 7] = 30; // kind 30 of the first type
        assert_eq!(keep_only(&b, &[], &[]), Err(BtfError::UnknownKind { id: 1, kind: 30 }));
    }
}
