//! Fuzz target: pruning the kernel's BTF (`porthog_core::btf::prune`) never panics on any bytes,
//! read in pieces of any size; a lying length field is an error, not an allocation of what it
//! claims (run.sh's -rss_limit_mb, which libFuzzer also applies to a single malloc, catches one);
//! the copy and the functions' ids are the same however the bytes arrive, and the copy is BTF
//! that prunes again.
//!
//! Input: the first byte is the most a single read() returns (1-256), the rest is the BTF.
#![no_main]

use std::io::{Cursor, Read, Seek, SeekFrom};

use libfuzzer_sys::fuzz_target;
use porthog_core::btf;

/// Names as the BPF loader asks for them: a struct, ones it reaches, an iterator target.
const STRUCTS: [&str; 4] = ["sock", "sock_common", "inet_timewait_sock", "in6_addr"];
const FUNCS: [&str; 2] = ["bpf_iter_tcp", "bpf_iter_udp"];

/// A reader that hands out at most `most` bytes per read(), so records and strings are cut at
/// every place a file or pipe could cut them.
struct ShortReads<'a> {
    inner: Cursor<&'a [u8]>,
    most: usize,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.most);
        self.inner.read(&mut buf[..n])
    }
}

impl Seek for ShortReads<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(to)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&most, btf_bytes)) = data.split_first() else {
        return;
    };
    let whole = btf::prune(&mut Cursor::new(btf_bytes), &STRUCTS, &FUNCS);
    let mut pieces = ShortReads { inner: Cursor::new(btf_bytes), most: usize::from(most) + 1 };
    let cut = btf::prune(&mut pieces, &STRUCTS, &FUNCS);
    assert_eq!(whole, cut, "reads of at most {} bytes gave other copies", usize::from(most) + 1);
    let Ok(pruned) = whole else {
        return;
    };
    // The copy is well-formed BTF: pruning it again succeeds; one id (or none) per function.
    if let Err(e) = btf::prune(&mut Cursor::new(&pruned.types), &STRUCTS, &FUNCS) {
        panic!("the pruned types do not read back: {e}");
    }
    assert_eq!(pruned.func_ids.len(), FUNCS.len());
});
