//! Shrinks the kernel's BTF (/sys/kernel/btf/vmlinux, ~130,000 types) to what porthog's BPF
//! programs are relocated against, before the loader parses it: parsing and searching the whole
//! of it cost ~0.4 s, most of it matching names of types the programs never use (issue 7).
//! Pure: bytes in, bytes out.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom};

const MAGIC: u16 = 0xeb9f;
const HEADER: usize = 24;

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_DATASEC: u32 = 15;
const KIND_ENUM64: u32 = 19;

/// BTF that is not what the kernel writes, or that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfError {
    #[error("BTF is too short or its header is malformed")]
    Header,
    #[error("BTF type {id} has unknown kind {kind}")]
    UnknownKind { id: usize, kind: u32 },
    #[error("BTF type {id} runs past the type section")]
    Truncated { id: usize },
    #[error("cannot read the BTF: {0}")]
    Read(String),
}

impl From<std::io::Error> for BtfError {
    fn from(e: std::io::Error) -> Self {
        BtfError::Read(e.to_string())
    }
}

/// What the loader needs, made by [`prune`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// What the programs are relocated against (see [`keep_only`]).
    pub types: Vec<u8>,
    /// The id in the kernel's own BTF of each function of `funcs` (in its order; `None` if the
    /// BTF has no such function): an iterator program's `attach_btf_id`.
    pub func_ids: Vec<Option<u32>>,
}

/// How much of the BTF a sequential pass holds at a time.
const CHUNK: usize = 64 * 1024;

/// [`keep_only`] and the kernel's ids of the functions of `funcs`, reading `src` in passes of [`CHUNK`] bytes and
/// positioned reads of the kept types: the kernel's BTF (5.5 MB) is never resident whole; what
/// is held is one offset per type (4 bytes) and the kept types themselves.
pub fn prune<R: Read + Seek>(
    src: &mut R,
    structs: &[&str],
    funcs: &[&str],
) -> Result<Pruned, BtfError> {
    prune_in_chunks(src, structs, funcs, CHUNK)
}

/// A smaller BTF (native endian, as the running kernel exposes it) holding the named structs
/// and unions of `structs` with everything their members reach, and the functions of `funcs`.
/// A named struct or union not in `structs` is kept only as an empty placeholder where a kept
/// type points to it, and function prototypes and enums lose their parameters and values.
/// Types are renumbered and the string section holds only the names kept.
pub fn keep_only(btf: &[u8], structs: &[&str], funcs: &[&str]) -> Result<Vec<u8>, BtfError> {
    Ok(prune(&mut std::io::Cursor::new(btf), structs, funcs)?.types)
}

fn prune_in_chunks<R: Read + Seek>(
    src: &mut R,
    structs: &[&str],
    funcs: &[&str],
    chunk: usize,
) -> Result<Pruned, BtfError> {
    let layout = Layout::read(src)?;

    // Pass 1, the strings: the offsets whose name is one of `structs` or `funcs` (a name may
    // also be the tail of a longer string).
    let mut struct_names = HashSet::new();
    let mut func_names = HashSet::new();
    // The last bytes of the names: most of the kernel's strings end in none of them, and are
    // passed over without comparing them with every name. An empty name (no caller passes one) ends every non-empty string.
    let mut last = [false; 256];
    for n in structs.iter().chain(funcs) {
        match n.as_bytes().last() {
            Some(&b) => last[usize::from(b)] = true,
            None => last = [true; 256],
        }
    }
    scan_strings(src, layout.strings, chunk, |start, s| {
        if !s.last().is_some_and(|&b| last[usize::from(b)]) {
            return;
        }
        for (names, set) in [(structs, &mut struct_names), (funcs, &mut func_names)] {
            for n in names {
                if s.ends_with(n.as_bytes()) {
                    set.insert(start + (s.len() - n.len()) as u32);
                }
            }
        }
    })?;
    let kind_of = |r: &[u8]| (u32_at(r, 4).unwrap_or(0) >> 24) & 0x1f;
    let name_of = |r: &[u8]| u32_at(r, 0).unwrap_or(0);
    // Followed: kept named structs and every anonymous one; other named ones are placeholders.
    let followed = |r: &[u8]| {
        matches!(kind_of(r), KIND_STRUCT | KIND_UNION)
            && (name_of(r) == 0 || struct_names.contains(&name_of(r)))
    };

    // Pass 2, the types: where each starts, the roots, and the functions' ids.
    let mut offsets: Vec<u32> = vec![0];
    let mut roots = Vec::new();
    let mut func_ids = Vec::new();
    {
        let mut types = section_reader(src, layout.types, chunk)?;
        let mut record = Vec::new();
        let mut at = 0;
        while at < layout.types.1 {
            let id = offsets.len();
            offsets.push(at as u32);
            read_record(&mut types, id, layout.types.1 - at, &mut record)?;
            at += record.len();
            let root = match kind_of(&record) {
                KIND_STRUCT | KIND_UNION => {
                    name_of(&record) != 0 && struct_names.contains(&name_of(&record))
                }
                KIND_FUNC => func_names.contains(&name_of(&record)),
                _ => false,
            };
            if root {
                roots.push(id);
            }
            if kind_of(&record) == KIND_FUNC && func_names.contains(&name_of(&record)) {
                func_ids.push((id, name_of(&record), u32_at(&record, 4).unwrap_or(0)));
            }
        }
    }

    // Breadth-first from the roots, reading each kept type where it is; `new_id[old]` is 0
    // until a type is kept.
    let mut new_id = vec![0u32; offsets.len()];
    let mut order: Vec<usize> = Vec::new();
    let keep = |old: usize, new_id: &mut Vec<u32>, order: &mut Vec<usize>| {
        if old != 0 && old < new_id.len() && new_id[old] == 0 {
            order.push(old);
            new_id[old] = order.len() as u32;
        }
    };
    for &root in &roots {
        keep(root, &mut new_id, &mut order);
    }
    let mut kept: Vec<Vec<u8>> = Vec::new();
    while kept.len() < order.len() {
        let old = order[kept.len()];
        let at = offsets[old] as usize;
        src.seek(SeekFrom::Start((layout.types.0 + at) as u64))?;
        let mut record = Vec::new();
        read_record(src, old, layout.types.1 - at, &mut record)?;
        for next in references(&record, followed(&record)) {
            keep(next as usize, &mut new_id, &mut order);
        }
        kept.push(record);
    }
    drop(offsets);

    // Pass 3, the strings again: the names the copy keeps.
    let mut wanted: Vec<u32> = Vec::new();
    for r in &kept {
        wanted.push(name_of(r));
        if followed(r) {
            wanted.extend(r[12..].chunks_exact(12).filter_map(|m| u32_at(m, 0)));
        }
    }
    wanted.extend(func_ids.iter().map(|&(_, name, _)| name));
    wanted.sort_unstable();
    wanted.dedup();
    let mut names: HashMap<u32, Vec<u8>> = HashMap::with_capacity(wanted.len());
    let mut next = 0;
    scan_strings(src, layout.strings, chunk, |start, s| {
        let end = start as usize + s.len();
        while let Some(&off) = wanted.get(next) {
            if off as usize > end {
                break;
            }
            if off >= start {
                names.insert(off, s[(off - start) as usize..].to_vec());
            }
            next += 1;
        }
    })?;
    let name = |off: u32| names.get(&off).map(Vec::as_slice).unwrap_or_default();

    let remap = |old: u32| new_id.get(old as usize).copied().unwrap_or(0);
    let mut out_types = Vec::new();
    let mut out_strings = Strings::new();
    for r in &kept {
        let (kind, info) = (kind_of(r), u32_at(r, 4).unwrap_or(0));
        let name_off = match kind {
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
                head(&mut out_types, name_off, info, third);
                for m in r[12..].chunks_exact(12) {
                    let member = out_strings.intern(name(u32_at(m, 0).unwrap_or(0)));
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
            KIND_FUNC => head(&mut out_types, name_off, info, 0),
            // PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, VAR, DECL_TAG, TYPE_TAG
            2 | 8..=11 | 14 | 17 | 18 => {
                head(&mut out_types, name_off, info, remap(third));
                out_types.extend(&r[12..]);
            }
            3 => {
                head(&mut out_types, name_off, info, third);
                out_types.extend(remap(u32_at(r, 12).unwrap_or(0)).to_ne_bytes());
                out_types.extend(remap(u32_at(r, 16).unwrap_or(0)).to_ne_bytes());
                out_types.extend(&r[20..24]);
            }
            // INT, FWD, FLOAT: no references.
            _ => {
                head(&mut out_types, name_off, info, third);
                out_types.extend(&r[12..]);
            }
        }
    }
    let types = assemble(&layout.magic, &out_types, &out_strings.bytes);

    let func_ids = funcs
        .iter()
        .map(|f| {
            let named = |&&(_, off, _): &&(usize, u32, u32)| name(off) == f.as_bytes();
            func_ids.iter().find(named).and_then(|&(id, _, _)| u32::try_from(id).ok())
        })
        .collect();
    Ok(Pruned { types, func_ids })
}

/// The header of the original (magic, version, flags) over new type and string sections.
fn assemble(magic: &[u8; 4], types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + types.len() + strings.len());
    out.extend(magic);
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
    offsets: HashMap<&'a [u8], u32>,
}

impl<'a> Strings<'a> {
    fn new() -> Self {
        Strings { bytes: vec![0], offsets: HashMap::new() }
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

/// Where the header puts the two sections (absolute start, length) in a BTF of known size.
struct Layout {
    magic: [u8; 4],
    types: (usize, usize),
    strings: (usize, usize),
}

impl Layout {
    fn read<R: Read + Seek>(src: &mut R) -> Result<Layout, BtfError> {
        let size = usize::try_from(src.seek(SeekFrom::End(0))?).map_err(|_| BtfError::Header)?;
        if size < HEADER {
            return Err(BtfError::Header);
        }
        let mut h = [0u8; HEADER];
        src.seek(SeekFrom::Start(0))?;
        src.read_exact(&mut h)?;
        if u16::from_ne_bytes([h[0], h[1]]) != MAGIC {
            return Err(BtfError::Header);
        }
        let field = |at| u32_at(&h, at).map(|v| v as usize).ok_or(BtfError::Header);
        let hdr_len = field(4)?;
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        if hdr_len < HEADER {
            return Err(BtfError::Header);
        }
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(off).ok_or(BtfError::Header)?;
            match start.checked_add(len) {
                Some(end) if end <= size => Ok((start, len)),
                _ => Err(BtfError::Header),
            }
        };
        Ok(Layout {
            magic: [h[0], h[1], h[2], h[3]],
            types: section(type_off, type_len)?,
            strings: section(str_off, str_len)?,
        })
    }
}

/// A buffered reader of one section, `chunk` bytes at a time.
fn section_reader<R: Read + Seek>(
    src: &mut R,
    (start, len): (usize, usize),
    chunk: usize,
) -> Result<BufReader<std::io::Take<&mut R>>, BtfError> {
    src.seek(SeekFrom::Start(start as u64))?;
    Ok(BufReader::with_capacity(chunk, src.take(len as u64)))
}

/// Reads type `id`'s record (at most `left` bytes remain of the type section) into `record`.
fn read_record(
    src: &mut impl Read,
    id: usize,
    left: usize,
    record: &mut Vec<u8>,
) -> Result<(), BtfError> {
    let truncated = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => BtfError::Truncated { id },
        _ => e.into(),
    };
    if left < 8 {
        return Err(BtfError::Truncated { id });
    }
    let mut head = [0u8; 8];
    src.read_exact(&mut head).map_err(truncated)?;
    let info = u32_at(&head, 4).unwrap_or(0);
    let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
    let extra = match kind {
        1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
        2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, modifiers, FUNC, FLOAT, TYPE_TAG
        3 => 12,                   // ARRAY
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
        KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
        _ => return Err(BtfError::UnknownKind { id, kind }),
    };
    if 12 + extra > left {
        return Err(BtfError::Truncated { id });
    }
    record.clear();
    record.extend(head);
    record.resize(12 + extra, 0);
    src.read_exact(&mut record[8..]).map_err(truncated)
}

/// Calls `f(offset, string)` for each NUL-terminated string of the string section, in order,
/// reading it `chunk` bytes at a time (a string cut by the end of the section included).
fn scan_strings<R: Read + Seek>(
    src: &mut R,
    (start, len): (usize, usize),
    chunk: usize,
    mut f: impl FnMut(u32, &[u8]),
) -> Result<(), BtfError> {
    src.seek(SeekFrom::Start(start as u64))?;
    let mut reader = src.take(len as u64);
    let mut buf = vec![0u8; chunk.max(1)];
    // The string the last chunk ended in, and where it starts.
    let mut carry: Vec<u8> = Vec::new();
    let (mut at, mut pos) = (0u32, 0usize);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let mut piece = &buf[..n];
        while let Some(nul) = memchr::memchr(0, piece) {
            if carry.is_empty() {
                f(at, &piece[..nul]);
            } else {
                carry.extend(&piece[..nul]);
                f(at, &carry);
                carry.clear();
            }
            pos += nul + 1;
            at = pos as u32;
            piece = &piece[nul + 1..];
        }
        carry.extend(piece);
        pos += piece.len();
    }
    if !carry.is_empty() {
        f(at, &carry);
    }
    Ok(())
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

    /// The attach ids come with the copy: the kernel's own id of each function asked for, in
    /// the order asked, `None` for one the BTF does not have (nor for a struct of that name).
    #[test]
    fn func_ids_are_the_original_ids_in_the_order_asked() {
        let pruned = prune(&mut std::io::Cursor::new(sample()), &["keep"], &["g", "f", "keep"]);
        assert_eq!(pruned.unwrap().func_ids, [None, Some(4), None]);
    }

    /// Read a byte at a time or a few bytes at a time, strings and records cut at every
    /// place: the same copies as in one piece.
    #[test]
    fn any_chunk_size_gives_the_same_copies() {
        let whole = prune(&mut std::io::Cursor::new(sample()), &["keep"], &["f"]).unwrap();
        for chunk in 1..40 {
            let cut =
                prune_in_chunks(&mut std::io::Cursor::new(sample()), &["keep"], &["f"], chunk);
            assert_eq!(cut.as_ref(), Ok(&whole), "chunk {chunk}");
        }
        // A name that is the tail of a longer string is found too.
        assert_eq!(keep_only(&sample(), &["eep"], &[]).unwrap().len(), 24 + 1);
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
