//! Shrinks the kernel's BTF (/sys/kernel/btf/vmlinux, ~130,000 types) to what porthog's BPF
//! programs are relocated against, before the loader parses it: parsing and searching the whole
//! of it cost ~0.4 s, most of it matching names of types the programs never use (issue 7).
//! Pure: bytes in, bytes out.

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

/// A smaller BTF (native endian, as the running kernel exposes it) holding the named structs
/// and unions of `structs` with everything their members reach, and the functions of `funcs`.
/// A named struct or union not in `structs` is kept only as an empty placeholder where a kept
/// type points to it, and function prototypes and enums lose their parameters and values.
/// Types are renumbered and the string section holds only the names kept.
pub fn keep_only(btf: &[u8], structs: &[&str], funcs: &[&str]) -> Result<Vec<u8>, BtfError> {
    let (records, strings) = records(btf)?;
    let name = |off: u32| name_at(strings, off);
    let wanted = |names: &[&str], off: u32| names.iter().any(|n| n.as_bytes() == name(off));
    let kind_of = |r: &[u8]| (u32_at(r, 4).unwrap_or(0) >> 24) & 0x1f;
    let name_of = |r: &[u8]| u32_at(r, 0).unwrap_or(0);
    // Followed: kept named structs and every anonymous one; other named ones are placeholders.
    let followed = |r: &[u8]| {
        matches!(kind_of(r), KIND_STRUCT | KIND_UNION)
            && (name_of(r) == 0 || wanted(structs, name_of(r)))
    };

    // Breadth-first from the roots; `new_id[old]` is 0 until a type is kept.
    let mut new_id = vec![0u32; records.len()];
    let mut order: Vec<usize> = Vec::new();
    let keep = |old: usize, new_id: &mut Vec<u32>, order: &mut Vec<usize>| {
        if old != 0 && old < new_id.len() && new_id[old] == 0 {
            order.push(old);
            new_id[old] = order.len() as u32;
        }
    };
    for (old, r) in records.iter().enumerate().skip(1) {
        let root = match kind_of(r) {
            KIND_STRUCT | KIND_UNION => name_of(r) != 0 && wanted(structs, name_of(r)),
            KIND_FUNC => wanted(funcs, name_of(r)),
            _ => false,
        };
        if root {
            keep(old, &mut new_id, &mut order);
        }
    }
    let mut next = 0;
    while next < order.len() {
        let r = records[order[next]];
        next += 1;
        for old in references(r, followed(r)) {
            keep(old as usize, &mut new_id, &mut order);
        }
    }

    let remap = |old: u32| new_id.get(old as usize).copied().unwrap_or(0);
    let mut out_types = Vec::new();
    let mut out_strings = Strings::new();
    for &old in &order {
        let r = records[old];
        let (kind, info) = (kind_of(r), u32_at(r, 4).unwrap_or(0));
        let name = match kind {
            KIND_STRUCT | KIND_UNION if !followed(r) => 0,
            KIND_ENUM | KIND_ENUM64 | KIND_DATASEC | KIND_FUNC_PROTO => 0,
            _ => out_strings.intern(name(name_of(r))),
        };
        let head = |out: &mut Vec<u8>, name: u32, info: u32, size_or_type: u32| {
            out.extend(name.to_ne_bytes());
            out.extend(info.to_ne_bytes());
            out.extend(size_or_type.to_ne_bytes());
        };
        let third = u32_at(r, 8).unwrap_or(0);
        match kind {
            KIND_STRUCT | KIND_UNION if followed(r) => {
                head(&mut out_types, name, info, third);
                for m in r[12..].chunks_exact(12) {
                    let member = out_strings.intern(name_at(strings, u32_at(m, 0).unwrap_or(0)));
                    out_types.extend(member.to_ne_bytes());
                    out_types.extend(remap(u32_at(m, 4).unwrap_or(0)).to_ne_bytes());
                    out_types.extend(&m[8..12]);
                }
            }
            // Placeholders, emptied: same kind and size, no name, no members.
            KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | KIND_DATASEC => {
                head(&mut out_types, 0, info & !0xffff, third);
            }
            KIND_FUNC_PROTO => head(&mut out_types, 0, info & !0xffff, 0),
            KIND_FUNC => head(&mut out_types, name, info, 0),
            // PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, VAR, DECL_TAG, TYPE_TAG
            2 | 8..=11 | 14 | 17 | 18 => {
                head(&mut out_types, name, info, remap(third));
                out_types.extend(&r[12..]);
            }
            3 => {
                head(&mut out_types, name, info, third);
                out_types.extend(remap(u32_at(r, 12).unwrap_or(0)).to_ne_bytes());
                out_types.extend(remap(u32_at(r, 16).unwrap_or(0)).to_ne_bytes());
                out_types.extend(&r[20..24]);
            }
            // INT, FWD, FLOAT: no references.
            _ => {
                head(&mut out_types, name, info, third);
                out_types.extend(&r[12..]);
            }
        }
    }
    Ok(assemble(btf, &out_types, &out_strings.bytes))
}

/// The header of `original` (magic, version, flags) over new type and string sections.
fn assemble(original: &[u8], types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + types.len() + strings.len());
    out.extend(&original[..4]);
    for v in [HEADER, 0, types.len(), types.len(), strings.len()] {
        out.extend((v as u32).to_ne_bytes());
    }
    out.extend(types);
    out.extend(strings);
    out
}

/// A string section holding only the names the copy uses (the kernel's is ~2.5 MB, and the
/// loader keeps a copy of whatever it is given).
struct Strings<'a> {
    bytes: Vec<u8>,
    offsets: std::collections::HashMap<&'a [u8], u32>,
}

impl<'a> Strings<'a> {
    fn new() -> Self {
        Strings { bytes: vec![0], offsets: std::collections::HashMap::new() }
    }

    /// The new offset of `name` (0, the empty string, for no name).
    fn intern(&mut self, name: &'a [u8]) -> u32 {
        if name.is_empty() {
            return 0;
        }
        *self.offsets.entry(name).or_insert_with(|| {
            let at = self.bytes.len() as u32;
            self.bytes.extend(name);
            self.bytes.push(0);
            at
        })
    }
}

/// A BTF in which the functions of `funcs` keep their type ids and every other type is a
/// placeholder (a pointer to void): what an iterator program's attach (`attach_btf_id`, an id
/// in the kernel's own BTF) is looked up in, cheaply. It ends at the last of those functions and
/// its strings are their names alone.
pub fn funcs_in_place(btf: &[u8], funcs: &[&str]) -> Result<Vec<u8>, BtfError> {
    let (records, strings) = records(btf)?;
    let mut out_strings = Strings::new();
    let mut out_types = Vec::new();
    let mut last = 0;
    for r in records.iter().skip(1) {
        let info = u32_at(r, 4).unwrap_or(0);
        let name = name_at(strings, u32_at(r, 0).unwrap_or(0));
        let func = (info >> 24) & 0x1f == KIND_FUNC && funcs.iter().any(|f| f.as_bytes() == name);
        let (name_off, info) = if func { (out_strings.intern(name), info) } else { (0, 2 << 24) };
        out_types.extend(name_off.to_ne_bytes());
        out_types.extend(info.to_ne_bytes());
        out_types.extend(0u32.to_ne_bytes());
        if func {
            last = out_types.len();
        }
    }
    out_types.truncate(last);
    Ok(assemble(btf, &out_types, &out_strings.bytes))
}

/// Every type's record (index = type id; 0 is void) and the string section.
fn records(btf: &[u8]) -> Result<(Vec<&[u8]>, &[u8]), BtfError> {
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
    let mut records: Vec<&[u8]> = vec![&[]];
    let mut at = 0;
    while at < types.len() {
        let id = records.len();
        let info = u32_at(types, at + 4).ok_or(BtfError::Truncated { id })?;
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let extra = match kind {
            1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
            2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, modifiers, FUNC, FLOAT, TYPE_TAG
            3 => 12,                   // ARRAY
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
            KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
            _ => return Err(BtfError::UnknownKind { id, kind }),
        };
        let record = types.get(at..at + 12 + extra).ok_or(BtfError::Truncated { id })?;
        records.push(record);
        at += 12 + extra;
    }
    Ok((records, strings))
}

/// The type ids a record refers to that the copy keeps: members only of `followed` structs;
/// nothing behind functions, prototypes, enums or data sections.
fn references(r: &[u8], followed: bool) -> Vec<u32> {
    let kind = (u32_at(r, 4).unwrap_or(0) >> 24) & 0x1f;
    match kind {
        KIND_STRUCT | KIND_UNION if followed => {
            r[12..].chunks_exact(12).filter_map(|m| u32_at(m, 4)).collect()
        }
        2 | 8..=11 | 14 | 17 | 18 => u32_at(r, 8).into_iter().collect(),
        3 => [u32_at(r, 12), u32_at(r, 16)].into_iter().flatten().collect(),
        _ => Vec::new(),
    }
}

/// The NUL-terminated string at `off` of a string section (empty when out of range).
fn name_at(strings: &[u8], off: u32) -> &[u8] {
    let rest = strings.get(off as usize..).unwrap_or_default();
    &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
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
    fn keeps_the_named_and_what_they_reach_renumbered() {
        let out = keep_only(&sample(), &["keep"], &[]).unwrap();
        // Only the names kept: `keep` (at 1) and its member `m` (at 6).
        let strings = b"\0keep\0m\0";
        assert!(out.ends_with(strings), "{out:?}");
        let types = &out[24..out.len() - strings.len()];
        // keep (new id 1) with its member now pointing at the int (new id 2); drop and f gone.
        let mut keep = record(1, KIND_STRUCT, 1, 4);
        keep.extend([6u32, 2, 0].iter().flat_map(|v| v.to_ne_bytes()));
        let mut int = record(0, 1, 0, 4);
        int.extend(0x0100_0020u32.to_ne_bytes());
        assert_eq!(types, [keep, int].concat());
        let with_f = keep_only(&sample(), &[], &["f"]).unwrap();
        assert_eq!(&with_f[24..36], &record(1, KIND_FUNC, 0, 0)[..]);
        assert!(with_f.ends_with(b"\0f\0"));
    }

    #[test]
    fn funcs_keep_their_ids_and_the_copy_ends_at_the_last() {
        let out = funcs_in_place(&sample(), &["f"]).unwrap();
        // ids 1-3 placeholders (pointers to void), f at id 4 as in the original, named at 1.
        let placeholder = record(0, 2, 0, 0);
        let types =
            [placeholder.clone(), placeholder.clone(), placeholder, record(1, KIND_FUNC, 0, 0)]
                .concat();
        assert_eq!(out, [&sample()[..4], &header(types.len(), 3)[..], &types, b"\0f\0"].concat());
        // A function that is not there: no types at all.
        let none = funcs_in_place(&sample(), &["g"]).unwrap();
        assert_eq!(none, [&sample()[..4], &header(0, 1)[..], b"\0"].concat());
    }

    fn header(types: usize, strings: usize) -> Vec<u8> {
        [24, 0, types as u32, types as u32, strings as u32]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
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
